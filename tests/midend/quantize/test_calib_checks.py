"""Checks on calibration and evaluation samples before anything runs on them
(``calib_set.calibration_samples`` / ``finite_samples``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from npuc.core.errors import InvalidInputError
from npuc.core.model_info import TensorInfo
from npuc.midend.quantize.calib_data import load_calibration
from npuc.midend.quantize.calib_set import (
    CalibrationDataWarning,
    calibration_samples,
    finite_samples,
    nonfinite,
)

X = TensorInfo(name="x", shape=(1, 4), dtype="float32")
TWO = (X, TensorInfo(name="mask", shape=(1, 4), dtype="float32"))


def _folder(tmp_path: Path, samples: list[dict[str, np.ndarray]]) -> Path:
    for i, sample in enumerate(samples):
        np.savez(tmp_path / f"s{i}.npz", **sample)
    return tmp_path


def _sample(x: list[float], mask: list[float] | None = None) -> dict[str, np.ndarray]:
    out = {"x": np.array([x], np.float32)}
    if mask is not None:
        out["mask"] = np.array([mask], np.float32)
    return out


def test_nonfinite_counts_nan_and_inf() -> None:
    assert nonfinite(np.array([1.0, np.nan, np.inf, -np.inf])) == "1 NaN, 2 infinite"
    assert nonfinite(np.array([1.0, 2.0])) is None
    assert nonfinite(np.array([1, 2])) is None  # integers are always finite


def test_constant_input_warns_by_name_and_others_do_not(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [_sample([1, 2, 3, 4], [0, 0, 0, 0]) for _ in range(3)])
    data = load_calibration(folder, TWO)
    with pytest.warns(CalibrationDataWarning) as caught:
        samples = calibration_samples(data)
    assert len(samples) == 3
    (warning,) = caught
    assert "input 'mask' is constant (every value is 0 in all 3 sample(s))" in str(warning.message)


def test_nonfinite_refused_or_trimmed(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [_sample([1, 2, 3, 4]), _sample([1, np.inf, -1e38, 4])])
    data = load_calibration(folder, (X,))
    with pytest.raises(InvalidInputError, match=r"s1\.npz .*sample 0: input 'x' holds 1 infinite"):
        calibration_samples(data)
    with pytest.warns(CalibrationDataWarning, match=r"s1\.npz .*\(1 infinite\)") as caught:
        samples = calibration_samples(data, trim_infinity=True)
    assert len(samples) == 2 and len(caught) == 1  # the sentinel -1e38 is no constant either
    with pytest.raises(InvalidInputError, match=r"evaluation file .*s1\.npz") as info:
        finite_samples(data)
    assert "clean the evaluation data" in (info.value.hint or "")


def test_limit_stops_before_bad_samples(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [_sample([1, 2, 3, 4]), _sample([np.nan, 2, 3, 4])])
    data = load_calibration(folder, (X,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(calibration_samples(data, limit=1)) == 1
        assert len(finite_samples(data, limit=1)) == 1
