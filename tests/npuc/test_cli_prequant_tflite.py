"""``npuc quantize`` and ``npuc build --target npu`` on full-int8 TFLite models (no --calib),
``npuc verify`` bit-exact, and the quantized TFLite forms npuc refuses (int16x8, dynamic range)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from npuc.cli.main import main
from npuc.midend.quantize.serialize import load_quantized
from tests.tooling.tflite_int8 import Int8Graph, int8_model


def test_quantize_without_calib_says_pre_quantized(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = int8_model(tmp_path / "big_bias.tflite", "big_bias")
    out = tmp_path / "m.npuq"
    assert main(["quantize", str(model), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pre-quantized: scales taken from the model" in text
    assert "forced changes: 1" in text
    assert "conv2d_0 (bias_shift):" in text and "exceed 16 bits" in text
    assert "not found in the source model" not in text
    template = json.loads(Path(str(out) + ".layers.json").read_text())
    assert template["layers"]["conv2d_0"]["display"]["source_nodes"] == ["conv"]
    assert load_quantized(out).calibration["pre_quantized"] is True


def test_build_and_verify_bit_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = int8_model(tmp_path / "residual_add.tflite", "residual_add")
    npuc_path = tmp_path / "m.npuc"
    assert main(["build", str(model), "--target", "npu", "-o", str(npuc_path)]) == 0
    text = capsys.readouterr().out
    assert "pre-quantized: scales taken from the model; forced changes: 0" in text
    assert main(["verify", str(npuc_path)]) == 0
    assert "bit-exact" in capsys.readouterr().out


def test_int16_activations_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = Int8Graph()
    x = g.tensor("x", (1, 8), "int16", scale=0.001, zp=0)
    y = g.tensor("y", (8,), "int16", scale=0.001, zp=0)
    shape = g.tensor("y/shape", (1,), "int32", data=np.asarray([8], np.int32))
    g.ops.append(("RESHAPE", [x, shape], [y], None))
    path = g.save(tmp_path / "a16w8.tflite", [x], [y])
    assert main(["quantize", str(path), "-o", str(tmp_path / "m.npuq")]) == 4
    err = capsys.readouterr().err
    assert "operator #0 RESHAPE (output 'y'): int16 activation 'x' (16x8 quantization)" in err
    assert "TFLITE_BUILTINS_INT8" in err and "--calib" in err


def test_dynamic_range_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = Int8Graph()
    x = g.tensor("x", (1, 8), "float32")
    w = g.tensor("w", (4, 8), data=np.ones((4, 8), np.int8), scale=[0.1] * 4, zp=0)
    y = g.tensor("y", (1, 4), "float32")
    g.ops.append(("FULLY_CONNECTED", [x, w, -1], [y], ("FC", "none")))
    path = g.save(tmp_path / "dynamic.tflite", [x], [y])
    assert main(["quantize", str(path), "-o", str(tmp_path / "m.npuq"), "--calib", "random"]) == 4
    err = capsys.readouterr().err
    assert "operator #0 FULLY_CONNECTED (output 'y'): dynamic-range quantized weights" in err
    assert "representative_dataset" in err


def test_int8_interface_takes_the_files_int8_tensors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--io-dtype int8``: the artifact reads and writes the TFLite file's own int8 tensors
    (same scales and zero points), so TFLite's interpreter and npuc take the same input."""
    from tests.tooling.tflite_int8 import IN_SCALE, IN_ZP, int8_inputs, run_litert

    model = int8_model(tmp_path / "residual_add.tflite", "residual_add")
    npuc_path = tmp_path / "m.npuc"
    rc = main(["build", str(model), "--target", "npu", "--io-dtype", "int8", "-o", str(npuc_path)])
    assert rc == 0
    assert f"interface: x int8 scale {IN_SCALE:g} zero point {IN_ZP}" in capsys.readouterr().out
    q = int8_inputs(1, seed=5)[0]
    np.save(tmp_path / "q.npy", q)
    out = tmp_path / "o.npz"
    rc = main(["run", str(npuc_path), "--input", f"x={tmp_path / 'q.npy'}", "--output", str(out)])
    assert rc == 0
    (ours,) = np.load(out).values()
    ref = run_litert(model, q)
    assert ours.dtype == ref.dtype == np.int8 and ours.shape == ref.shape
    assert np.abs(ours.astype(np.int64) - ref).max() <= 1
