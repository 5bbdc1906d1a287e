"""``npuc build --target cpu --precision int8 --calib DATA -o m.so``: the integer CPU library.

The tiny quantize model (every layer integer) is built twice from the same
calibration data: as an int8 CPU library and as an NPU artifact. ``npuc run
m.so --raw`` must give exactly what ``npuc run m.npuc --engine ref --raw``
gives (the integer executor), as stored integers of the output's type.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.npuc.test_cli_quantize import SHAPE, _tiny_onnx
from tests.npuc.test_cli_quantize import npuc as cli


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cpu_int8")
    onnx.save(_tiny_onnx(), root / "t.onnx")
    rng = np.random.default_rng(1)
    np.save(root / "cal.npy", rng.standard_normal((4, *SHAPE[1:])).astype(np.float32))
    np.save(root / "x.npy", rng.standard_normal(SHAPE).astype(np.float32))
    return root


def test_int8_library_equals_the_integer_executor(work: Path) -> None:
    code, out, err = cli(
        "build", work / "t.onnx", "--target", "cpu", "--precision", "int8",
        "--calib", work / "cal.npy", "-o", work / "m.so", "--json",
    )  # fmt: skip
    assert code == 0, out + err
    built = json.loads(out)
    assert built["precision"] == "int8" and built["float_layers"] == []
    sidecar = json.loads((work / "m.so.json").read_text())
    (name, q), = sidecar["model"]["extra"]["quantized_outputs"].items()  # fmt: skip
    assert sidecar["model"]["outputs"][0]["dtype"] == q["dtype"] == "int8"

    code, out, err = cli(
        "build", work / "t.onnx", "--target", "npu", "--calib", work / "cal.npy",
        "-o", work / "m.npuc", "--golden", "1",
    )  # fmt: skip
    assert code == 0, out + err
    for library, flags in (("m.so", ()), ("m.npuc", ("--engine", "ref"))):
        code, out, err = cli(
            "run", work / library, "--raw", *flags, "--input", work / "x.npy",
            "--output", work / f"{library}.npz",
        )  # fmt: skip
        assert code == 0, out + err
    cpu, ref = np.load(work / "m.so.npz"), np.load(work / "m.npuc.npz")
    assert list(cpu) == list(ref) == [name]
    np.testing.assert_array_equal(cpu[name], ref[name].astype(np.int8), strict=True)

    # Without --raw the library's outputs are dequantized with the sidecar's parameters.
    code, out, err = cli(
        "run", work / "m.so", "--input", work / "x.npy", "--output", work / "real.npz", "--json",
    )  # fmt: skip
    assert code == 0, out + err
    assert json.loads(out)["raw"] is False
    real = np.load(work / "real.npz")[name]
    expected = ((cpu[name].astype(np.float64) - q["zero_point"]) * q["scale"]).astype(np.float32)
    assert real.dtype == np.float32
    np.testing.assert_array_equal(real, expected)


def test_int8_library_refuses_nan_and_infinite_inputs(work: Path) -> None:
    """As ``npuc run m.npuc`` does: the library would quantize NaN to the lowest integer,
    the integer executor to 0 (numpy's cast); neither is a value."""
    code, out, err = cli(
        "build", work / "t.onnx", "--target", "cpu", "--precision", "int8",
        "--calib", work / "cal.npy", "-o", work / "nan.so",
    )  # fmt: skip
    assert code == 0, out + err
    for bad in (np.nan, np.inf):
        x = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
        x.flat[3] = bad
        np.save(work / "bad.npy", x)
        code, _out, err = cli(
            "run", work / "nan.so", "--input", work / "bad.npy", "--output", work / "bad.npz"
        )  # fmt: skip
        assert code != 0
        assert "holds NaN or infinite values" in err and "np.nan_to_num" in err
        assert not (work / "bad.npz").exists()


def test_int8_library_needs_calibration_data(work: Path) -> None:
    code, _out, err = cli(
        "build", work / "t.onnx", "--precision", "int8", "-o", work / "none.so"
    )  # fmt: skip
    assert code != 0
    assert "--precision int8 needs calibration data" in err
    assert not (work / "none.so").exists()


def test_flags_that_would_do_nothing_are_refused(work: Path) -> None:
    cases = {
        ("--calib", str(work / "cal.npy")): "a float CPU build does not quantize",
        ("--target", "npu", "--precision", "int8", "--calib", str(work / "cal.npy")): (
            "applies to --target cpu"
        ),
    }
    for flags, message in cases.items():
        code, _out, err = cli("build", work / "t.onnx", *flags, "-o", work / "ignored.x")
        assert code == 3 and message in err, (flags, err)
        assert not (work / "ignored.x").exists()
