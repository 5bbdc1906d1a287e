"""``npuc build --target npu --io-dtype float|int8|uint8``: the artifact's interface.

The tiny quantize model (Conv ... Sigmoid, every layer on the NPU) is built
four times from the same calibration data, so the quantized models are equal:
float (the default), int8 and uint8 interfaces over int8 storage, and an int8
interface over uint8 storage (``--unsigned-activations``). Integer interfaces
must give exactly the stored integers, shifted by 128 where int8 <-> uint8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.npu_artifact import open_artifact
from npuc.runtime import load
from tests.npuc.test_cli_quantize import SHAPE, _tiny_onnx
from tests.npuc.test_cli_quantize import npuc as cli

BUILDS = {
    "float": (),
    "int8": ("--io-dtype", "int8"),
    "uint8": ("--io-dtype", "uint8"),
    "u8_int8": ("--io-dtype", "int8", "--unsigned-activations"),
}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("io_dtype")
    onnx.save(_tiny_onnx(), root / "t.onnx")
    rng = np.random.default_rng(1)
    np.save(root / "cal.npy", rng.standard_normal((4, *SHAPE[1:])).astype(np.float32))
    np.save(root / "x.npy", rng.standard_normal(SHAPE).astype(np.float32))
    for name, flags in BUILDS.items():
        code, out, err = cli(
            "build", root / "t.onnx", "--target", "npu", "--calib", root / "cal.npy",
            "-o", root / f"{name}.npuc", "--golden", "1", *flags,
        )  # fmt: skip
        assert code == 0, out + err
    return root


def _interface_input(model: Any, x: np.ndarray) -> np.ndarray:
    """``x`` quantized as the integer interface of ``model`` takes it."""
    dtype, offset = model.interface["x"]
    return (model.qm.tensors["x"].quantize(x).astype(np.int64) - offset).astype(dtype)


def test_manifest_records_the_interface(work: Path) -> None:
    manifest = open_artifact(work / "uint8.npuc").manifest
    assert manifest["io_dtype"] == "uint8"
    entry = manifest["io"]["x"]
    assert entry["dtype"] == "int8"
    assert entry["interface"] == {
        "dtype": "uint8",
        "scale": entry["scale"],
        "zero_point": entry["zero_point"] + 128,
        "offset": -128,
    }
    assert open_artifact(work / "float.npuc").manifest["io_dtype"] == "float"
    assert "interface" not in open_artifact(work / "float.npuc").manifest["io"]["x"]


@pytest.mark.parametrize(("name", "shift"), [("int8", 0), ("uint8", 128), ("u8_int8", -128)])
def test_integer_interface_is_the_stored_integers(work: Path, name: str, shift: int) -> None:
    x = np.load(work / "x.npy")
    reference = load(work / "float.npuc")
    y = reference.output_names[0]  # the ONNX output's name
    stored = reference.run({"x": x}, raw=True)[y].astype(np.int64)
    model = load(work / f"{name}.npuc")
    assert model.input_dtypes == {"x": model.interface["x"][0]}
    xi = _interface_input(model, x)
    if name == "u8_int8":  # uint8 storage: its own ranges, compare with its raw integers
        stored = model.run({"x": xi}, raw=True)[y].astype(np.int64)
    else:  # same quantized model as the float build: same integers at the input
        want_x = reference.qm.tensors["x"].quantize(x).astype(np.int64)
        np.testing.assert_array_equal(xi.astype(np.int64) + model.interface["x"][1], want_x)
    out = model.run({"x": xi})[y]
    dtype = "uint8" if name == "uint8" else "int8"
    np.testing.assert_array_equal(out, (stored + shift).astype(dtype), strict=True)


def test_runtime_refuses_floats_for_an_integer_interface(work: Path) -> None:
    model = load(work / "int8.npuc")
    with pytest.raises(InvalidInputError, match=r"input 'x': this model takes int8") as info:
        model.run({"x": np.load(work / "x.npy")})
    assert "np.clip(np.round(x / " in (info.value.hint or "")
    with pytest.raises(InvalidInputError, match=r"input 'x'.*got uint8"):
        model.run({"x": np.zeros(SHAPE, np.uint8)})


def test_cli_run_takes_and_gives_integers(work: Path) -> None:
    model = load(work / "uint8.npuc")
    xi = _interface_input(model, np.load(work / "x.npy"))
    np.save(work / "xu.npy", xi)
    for engine in ("sim", "ref"):
        out = work / f"out_{engine}.npz"
        code, stdout, err = cli(
            "run", work / "uint8.npuc", "--input", f"x={work / 'xu.npy'}", "--output", out,
            "--engine", engine, "--json",
        )  # fmt: skip
        assert code == 0, stdout + err
        assert json.loads(stdout)["io_dtype"] == "uint8"
        y = model.output_names[0]
        with np.load(out) as got:
            np.testing.assert_array_equal(got[y], model.run({"x": xi})[y])
            assert got[y].dtype == np.uint8


def test_cli_run_refuses_a_float_file_for_int8(work: Path) -> None:
    code, stdout, _ = cli(
        "run", work / "int8.npuc", "--input", f"x={work / 'x.npy'}", "--json"
    )  # fmt: skip
    assert code == 3
    err = json.loads(stdout)
    assert "input 'x'" in err["message"] and "this model takes int8" in err["message"]
    assert "x.npy" in err["message"] and "quantize it first" in err["hint"]


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_verify_still_bit_exact(work: Path, name: str) -> None:
    code, stdout, err = cli("verify", work / f"{name}.npuc")
    assert code == 0, stdout + err
    assert stdout.strip().endswith("bit-exact")


def test_int16_activations_cannot_have_an_int8_interface(work: Path) -> None:
    code, stdout, _ = cli(
        "build", work / "t.onnx", "--target", "npu", "--calib", work / "cal.npy",
        "-o", work / "x16.npuc", "--io-dtype", "int8", "--activation-bits", "16", "--json",
    )  # fmt: skip
    assert code == UnsupportedError.exit_code == 4
    err = json.loads(stdout)
    assert "input 'x' is quantized to int16" in err["message"]
    assert "--io-dtype float" in err["hint"]
    assert not (work / "x16.npuc").exists()


def test_io_dtype_is_refused_for_the_cpu_target(work: Path) -> None:
    code, stdout, _ = cli("build", work / "t.onnx", "--io-dtype", "uint8", "--json")
    assert code == 3
    assert "--io-dtype uint8" in json.loads(stdout)["message"]
