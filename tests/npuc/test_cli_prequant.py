"""``npuc quantize`` and ``npuc build --target npu`` on pre-quantized QDQ models (no --calib),
``npuc verify`` bit-exact, and the QDQ forms still refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from npuc.cli.main import main
from npuc.midend.quantize.int_exec import IntegerExecutor
from npuc.midend.quantize.serialize import load_quantized
from tests.tooling.qdq_models import float_graph, qdq_model, quantize_qdq, samples


@pytest.fixture(scope="module")
def qdq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The residual graph with a first-conv bias too large for 16 bits (one forced change)."""
    _, path = qdq_model(tmp_path_factory.mktemp("qdq"), "residual", bias_scale=40.0)
    return path


def test_quantize_without_calib_says_pre_quantized(
    qdq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.npuq"
    assert main(["quantize", str(qdq), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pre-quantized: scales taken from the model" in text
    assert "forced changes: 1" in text
    assert "conv2d_0 (bias_shift):" in text and "exceed 16 bits" in text
    template = json.loads(Path(str(out) + ".layers.json").read_text())
    display = template["layers"]["conv2d_0"]["display"]
    assert display["pre_quantized"] == "pre-quantized: scales taken from the model"
    assert display["source_nodes"] == ["conv1"]
    assert len(display["forced_changes"]) == 1
    assert template["layers"]["add_0"]["display"]["forced_changes"] == []
    assert main(["quantize", str(qdq), "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["calibration"]["pre_quantized"] is True
    assert [c["layer"] for c in data["calibration"]["forced_changes"]] == ["conv2d_0"]
    assert load_quantized(out).calibration["pre_quantized"] is True


def test_build_and_verify_bit_exact(
    qdq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulator equals the integer executor on the file's numbers (npuc verify), and a
    fresh input run on the simulator equals the integer executor of the same .npuq."""
    npuc_path = tmp_path / "m.npuc"
    assert main(["build", str(qdq), "--target", "npu", "-o", str(npuc_path)]) == 0
    assert (
        "pre-quantized: scales taken from the model; forced changes: 1" in capsys.readouterr().out
    )
    assert main(["verify", str(npuc_path)]) == 0
    assert "bit-exact" in capsys.readouterr().out
    x = samples(1, seed=33)[0]
    np.save(tmp_path / "x.npy", x)
    sim_out = tmp_path / "sim.npz"
    rc = main(
        [
            "run",
            str(npuc_path),
            "--engine",
            "sim",
            "--input",
            f"x={tmp_path / 'x.npy'}",
            "--output",
            str(sim_out),
        ]
    )
    assert rc == 0
    npuq = tmp_path / "m.npuq"
    assert main(["quantize", str(qdq), "-o", str(npuq)]) == 0
    qm = load_quantized(npuq)
    ref = IntegerExecutor(qm).run({"x": x})[qm.graph.outputs[0]].dequantize()
    got = np.load(sim_out)[onnx.load(str(qdq)).graph.output[0].name]  # the model's own name
    np.testing.assert_array_equal(got, ref.astype(got.dtype), strict=True)


def test_qoperator_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from onnxruntime.quantization import QuantFormat

    float_path = tmp_path / "f.onnx"
    onnx.save(float_graph("residual"), str(float_path))
    qop = quantize_qdq(
        float_path, tmp_path / "qop.onnx", samples(4), quant_format=QuantFormat.QOperator
    )
    assert main(["quantize", str(qop), "-o", str(tmp_path / "m.npuq")]) == 4
    err = capsys.readouterr().err
    assert "QOperator format" in err and "QuantFormat.QDQ" in err


def test_float_model_still_needs_calib(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "f.onnx"
    onnx.save(float_graph("residual"), str(path))
    assert main(["quantize", str(path), "-o", str(tmp_path / "m.npuq")]) == 3
    assert "needs calibration data" in capsys.readouterr().err
