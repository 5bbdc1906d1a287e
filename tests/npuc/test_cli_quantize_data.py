"""``npuc quantize`` on bad or degenerate data: NaN/inf, constant inputs, report-only flags.

Every refusal exits 3 with a message naming the file, the sample and the
input; every degenerate-but-usable case gives npuc's own warning (in
``notes`` with ``--json``), never a numpy RuntimeWarning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from npuc.midend.quantize.serialize import load_quantized
from tests.npuc.test_cli_quantize import SHAPE, _tiny_onnx, error, npuc


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``t.onnx``; ``cal.npy`` (6 samples); ``nan.npy``/``inf.npy`` (one bad value in sample
    2/3); ``zero.npy``; ``bad.npy`` (wrong shape)."""
    root = tmp_path_factory.mktemp("quantize_data")
    onnx.save(_tiny_onnx(), root / "t.onnx")
    cal = np.random.default_rng(1).standard_normal((6, *SHAPE[1:])).astype(np.float32)
    np.save(root / "cal.npy", cal)
    nan = cal.copy()
    nan[2, 0, 0, 0] = np.nan
    np.save(root / "nan.npy", nan)
    inf = cal.copy()
    inf[3, 1, 2, 2] = np.inf
    np.save(root / "inf.npy", inf)
    np.save(root / "zero.npy", np.zeros_like(cal))
    np.save(root / "bad.npy", np.zeros((2, 3, 9, 9), np.float32))
    return root


def ok(work: Path, *extra: str | Path) -> tuple[dict[str, Any], str]:
    """A successful ``npuc quantize t.onnx --json ...``: (JSON, stderr)."""
    code, stdout, stderr = npuc("quantize", work / "t.onnx", "--json", *extra)
    assert code == 0, stdout + stderr
    return json.loads(stdout), stderr


def test_eval_without_report_is_refused(work: Path) -> None:
    code, err = error(work / "t.onnx", "--calib", work / "cal.npy", "--eval", work / "cal.npy")
    assert code == 3
    assert "--eval" in err["message"] and "--report" in err["message"]
    assert "--report" in err["hint"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("--metric", "output_cosine"), "--metric output_cosine"),
        (("--eval-limit", "4"), "--eval-limit"),
    ],
)
def test_report_flags_without_report_are_refused(
    work: Path, flags: tuple[str, ...], expected: str
) -> None:
    code, err = error(work / "t.onnx", "--calib", work / "cal.npy", *flags)
    assert code == 3
    assert expected in err["message"] and "--report" in err["hint"]


def test_eval_limit_must_be_positive(work: Path) -> None:
    code, err = error(
        work / "t.onnx", "--calib", work / "cal.npy", "--report", work / "r", "--eval-limit", "0"
    )
    assert code == 3
    assert "--eval-limit 0" in err["message"]


def test_eval_with_wrong_shape_names_evaluation_file(work: Path) -> None:
    code, err = error(
        work / "t.onnx", "--calib", work / "cal.npy", "--eval", work / "bad.npy",
        "--report", work / "r", "-o", work / "x.npuq",
    )  # fmt: skip
    assert code == 3
    assert f"evaluation file {work / 'bad.npy'}" in err["message"]
    assert "1x3x8x8" in err["message"]
    assert not (work / "x.npuq").exists()  # refused before quantizing


def test_report_on_nan_evaluation_data_names_file_and_sample(work: Path) -> None:
    code, err = error(
        work / "t.onnx", "--calib", work / "cal.npy", "--eval", work / "nan.npy",
        "--report", work / "r",
    )  # fmt: skip
    assert code == 3
    assert (
        err["message"]
        == f"evaluation file {work / 'nan.npy'} sample 2: input 'x' holds 1 NaN value(s)"
    )


def test_report_on_trimmed_calibration_data_asks_for_eval(work: Path) -> None:
    out = work / "trimmed.npuq"
    code, err = error(
        work / "t.onnx", "--calib", work / "inf.npy", "--trim-infinity", "--report", work / "r",
        "-o", out,
    )  # fmt: skip
    assert code == 3
    assert "inf.npy sample 3" in err["message"] and "infinite" in err["message"]
    assert "--eval" in err["hint"]
    # Refused before quantizing: no model or template is left behind.
    assert not out.exists() and not Path(f"{out}.layers.json").exists()


@pytest.mark.parametrize(("name", "sample", "what"), [("nan", 2, "NaN"), ("inf", 3, "infinite")])
def test_nonfinite_calibration_names_file_sample_input(
    work: Path, name: str, sample: int, what: str
) -> None:
    code, err = error(work / "t.onnx", "--calib", work / f"{name}.npy")
    assert code == 3
    path = work / f"{name}.npy"
    assert err["message"] == (
        f"calibration file {path} sample {sample}: input 'x' holds 1 {what} value(s)"
    )
    assert "--trim-infinity" in err["hint"]


def test_trim_infinity_warns_by_name_and_keeps_biases(work: Path) -> None:
    data, stderr = ok(
        work, "--calib", work / "inf.npy", "--trim-infinity", "-o", work / "trim.npuq"
    )
    assert "RuntimeWarning" not in stderr
    assert not any("encountered" in note for note in data["notes"])
    (note,) = data["notes"]
    assert "input 'x'" in note and f"{work / 'inf.npy'} sample 3 (1 infinite)" in note
    # Bias correction skips the sample with the infinity (it used to zero every bias).
    model = load_quantized(work / "trim.npuq")
    for layer in ("conv2d_0", "conv2d_1", "dense_0"):
        params = model.layers[layer].params
        assert np.abs(params["b16"]).max() > 0 and params["bias_shift"] < 16, layer


def test_constant_calibration_data_warns(work: Path) -> None:
    data, _ = ok(work, "--calib", work / "zero.npy", "-o", work / "zero.npuq")
    (note,) = data["notes"]
    assert "input 'x' is constant" in note and "every value is 0 in all 6" in note
    code, stdout, _ = npuc(
        "quantize", work / "t.onnx", "--calib", work / "zero.npy", "-o", work / "zero.npuq"
    )
    assert code == 0 and "warning: calibration data" in stdout


def test_unsigned_16_bit_activations_say_what_to_do(work: Path) -> None:
    code, err = error(
        work / "t.onnx", "--calib", work / "cal.npy", "--unsigned-activations",
        "--activation-bits", "16",
    )  # fmt: skip
    assert code == 3
    assert "uint8" in err["message"] and "not 16" in err["message"]
    assert "drop --unsigned-activations" in err["hint"]


def test_unsigned_symmetric_activations_say_what_to_do(work: Path) -> None:
    code, err = error(
        work / "t.onnx", "--calib", work / "cal.npy", "--unsigned-activations",
        "--quantizer", "symmetric",
    )  # fmt: skip
    assert code == 3
    assert "asymmetric" in err["message"] and "--quantizer asymmetric" in err["hint"]


def test_npuc_eval_nan_names_file(work: Path) -> None:
    ok(work, "--calib", work / "cal.npy", "-o", work / "m.npuq", "--optimization", "none")
    code, stdout, _ = npuc("eval", work / "m.npuq", "--data", work / "nan.npy", "--json")
    assert code == 3
    message = json.loads(stdout)["message"]
    assert message == f"evaluation file {work / 'nan.npy'} sample 2: input 'x' holds 1 NaN value(s)"


def test_npu_build_checks_calibration_data_the_same_way(work: Path) -> None:
    """``npuc build --target npu`` shares the checks: NaN/inf refused by file, sample and input;
    with --trim-infinity a warning (in ``notes``) and an artifact that verifies bit-exact."""
    args = ("build", work / "t.onnx", "--target", "npu", "--json")
    code, stdout, _ = npuc(*args, "--calib", work / "inf.npy", "-o", work / "inf.npuc")
    assert code == 3
    assert json.loads(stdout)["message"] == (
        f"calibration file {work / 'inf.npy'} sample 3: input 'x' holds 1 infinite value(s)"
    )
    code, stdout, stderr = npuc(
        *args, "--calib", work / "inf.npy", "--trim-infinity", "-o", work / "inf.npuc"
    )
    assert code == 0, stdout + stderr
    assert "RuntimeWarning" not in stderr
    (note,) = json.loads(stdout)["notes"]
    assert "input 'x'" in note and "sample 3 (1 infinite)" in note
    code, stdout, _ = npuc("verify", work / "inf.npuc")
    assert code == 0 and stdout.strip().endswith("bit-exact")
