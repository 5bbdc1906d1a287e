"""``npuc eval``: metrics of a quantized model against its float model, and its bad inputs."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from npuc.cli.main import main
from tests.npuc.test_cli_quantize import SHAPE, _tiny_onnx


def _run(argv: list[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--json"])
    return code, json.loads(out.getvalue())


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("eval")
    onnx.save(_tiny_onnx(), str(folder / "m.onnx"))
    rng = np.random.default_rng(3)
    np.save(folder / "cal.npy", rng.standard_normal((6, *SHAPE[1:])).astype(np.float32))
    np.save(folder / "ev.npy", rng.standard_normal((5, *SHAPE[1:])).astype(np.float32))
    code, _ = _run(["quantize", str(folder / "m.onnx"), "--calib", str(folder / "cal.npy"),
                    "-o", str(folder / "m.npuq"), "--optimization", "none"])  # fmt: skip
    assert code == 0
    return folder / "m.npuq", folder / "ev.npy"


def test_eval_reports_metrics_with_labels(quantized: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = quantized
    np.save(tmp_path / "labels.npy", np.array([0, 1, 2, 3, 4]))
    code, out = _run(["eval", str(model), "--data", str(data), "--labels",
                      str(tmp_path / "labels.npy"), "--metric", "top1_accuracy",
                      "--metric", "output_cosine"])  # fmt: skip
    assert code == 0
    assert out["samples"] == 5
    assert set(out["metrics"]) == {"top1_accuracy", "output_cosine"}
    assert set(out["metrics"]["top1_accuracy"]) >= {"float", "quantized"}
    assert 0.9 < out["metrics"]["output_cosine"]["quantized"] <= 1.0 + 1e-9


def test_eval_bad_inputs(quantized: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = quantized
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 3, 4, 4), np.float32))
    code, out = _run(["eval", str(model), "--data", str(bad)])
    assert code == 3 and "bad.npy" in out["message"]
    code, out = _run(["eval", str(tmp_path / "none.npuq"), "--data", str(data)])
    assert code == 3
    (tmp_path / "junk.npuq").write_bytes(b"not a zip")
    code, out = _run(["eval", str(tmp_path / "junk.npuq"), "--data", str(data)])
    assert code == 3 and "junk.npuq" in out["message"]
    code, out = _run(["eval", str(model), "--data", str(data), "--metric", "nonsense"])
    assert code == 3


def test_eval_refuses_non_finite_samples(quantized: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = quantized
    values = np.load(data)
    values[1, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", values)
    code, out = _run(["eval", str(model), "--data", str(tmp_path / "nan.npy")])
    assert code == 3
    assert "sample 1" in out["message"] and "NaN" in out["message"]
