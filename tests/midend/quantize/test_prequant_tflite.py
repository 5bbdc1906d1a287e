"""Full-int8 TFLite models: the file's own numbers on the NPU datapath (no calibration).

The files are built in memory (tests/tooling/tflite_int8.py) as TFLite's
converter writes them. Checked against the file itself (read here with the
``tflite`` package, not through npuc): every conv/FC layer's int8 weights and
per-channel scales equal the file's, and every layer's output scale and zero
point equal the file's tensor's.

Integer executor against TFLite's interpreter (ai_edge_litert) on the int8
output: at most 1 LSB apart, and at least 99% equal (85% after an average
pool). Why not 0: TFLite requantizes with a 31-bit multiplier
(``SaturatingRoundingDoublingHighMul`` then a rounding right shift, ties away
from zero), the NPU with a 15-bit multiplier and one shift
(``rshift_round(acc * M, shift)``, ties up): the multipliers differ by less
than 2^-15 relative (under 0.004 LSB at 127) and the tie rules differ on
negative values, so a rounding flips now and then by 1 LSB. Measured
(8 random inputs each): conv_relu max 1, mean 0.0002; depthwise max 0;
residual_add max 1, mean 0.0005; per_tensor max 1, mean 0.0007; big_bias
max 1, mean 0.0012; pad_conv max 1, mean 0.0001; pool_fc max 1, mean 0.1
(its average pool runs float on the CPU here: a 2x2 mean is an exact tie on
a quarter of the outputs, which npuc rounds to even and TFLite away from
zero).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tflite

from npuc.frontend import load
from npuc.midend.pipeline import Pipeline, graph_passes
from npuc.midend.quantize.api import quantize_prequantized
from npuc.midend.quantize.int_exec import IntegerExecutor
from npuc.midend.quantize.qmodel import QuantizedModel
from tests.tooling.tflite_int8 import (
    IN_SCALE,
    IN_ZP,
    edge_model,
    int8_inputs,
    int8_model,
    run_litert,
)

EQUAL = {
    "conv_relu": 0.99,
    "depthwise": 0.99,
    "residual_add": 0.99,
    "pool_fc": 0.85,
    "per_tensor": 0.99,
    "big_bias": 0.99,
    "pad_conv": 0.99,
}


def _quantize(path: Path) -> QuantizedModel:
    imported = load(path)
    assert imported.source_quant is not None and imported.source_quant.format == "tflite-int8"
    return quantize_prequantized(Pipeline(graph_passes())(imported.mod), imported.source_quant)


def _file(path: Path) -> dict[str, Any]:
    """Output tensor name -> (op, weight ints OIHW/(N,K), weight scales) and tensor scales."""
    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    sg = model.Subgraphs(0)
    scales: dict[str, tuple[float, int]] = {}
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        q = t.Quantization()
        if q is not None and q.ScaleLength() == 1:
            scales[t.Name().decode()] = (float(q.Scale(0)), int(q.ZeroPoint(0)))
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        ins = op.InputsAsNumpy()
        if len(ins) < 3:
            continue
        w = sg.Tensors(int(ins[1]))
        data = model.Buffers(w.Buffer()).DataAsNumpy().view(np.int8).reshape(w.ShapeAsNumpy())
        if data.ndim == 4:  # OHWI -> OIHW, or depthwise 1HWC -> C1HW
            data = data.transpose(3, 0, 1, 2) if data.shape[0] == 1 else data.transpose(0, 3, 1, 2)
        out = sg.Tensors(int(op.OutputsAsNumpy()[0])).Name().decode()
        weights[out] = (data, w.Quantization().ScaleAsNumpy())
    return {"scales": scales, "weights": weights}


@pytest.mark.parametrize(
    "kind", ["conv_relu", "depthwise", "residual_add", "pool_fc", "per_tensor", "pad_conv"]
)
def test_weights_and_scales_are_the_files(tmp_path: Path, kind: str) -> None:
    path = int8_model(tmp_path / f"{kind}.tflite", kind)
    qm = _quantize(path)
    numbers = _file(path)
    assert qm.calibration["pre_quantized"] is True
    assert qm.calibration["forced_changes"] == []
    # Every layer has a source operator (the midend's layout transposes aside).
    assert qm.calibration["unmatched_layers"] == []
    checked_w = checked_s = 0
    for node in qm.graph.nodes:
        layer = qm.layers[node.name]
        sources = qm.calibration["source_nodes"].get(node.name)
        if node.op in ("conv2d", "dense"):
            assert layer.run_on == "npu", (node.name, layer.reason)
            file_w, file_s = numbers["weights"][sources[0]]
            ours = layer.params["weights"]
            np.testing.assert_array_equal(
                ours, file_w if ours.shape == file_w.shape else file_w.T, strict=True
            )
            ws = np.broadcast_to(file_s, np.shape(layer.params["weight_scales"]))
            np.testing.assert_array_equal(
                np.asarray(layer.params["weight_scales"], np.float32), ws.astype(np.float32)
            )
            checked_w += 1
        if sources and sources[-1] in numbers["scales"]:
            q = qm.tensors[node.name]
            scale, zp = numbers["scales"][sources[-1]]
            assert (np.float32(q.scale), q.zero_point, q.dtype) == (np.float32(scale), zp, "int8")
            checked_s += 1
    assert checked_w == sum(n.op in ("conv2d", "dense") for n in qm.graph.nodes) > 0
    assert checked_s >= checked_w
    q_in = qm.tensors["x"]
    assert (np.float32(q_in.scale), q_in.zero_point) == (np.float32(IN_SCALE), IN_ZP)


@pytest.mark.parametrize("kind", sorted(EQUAL))
def test_integer_executor_matches_litert(tmp_path: Path, kind: str) -> None:
    path = int8_model(tmp_path / f"{kind}.tflite", kind)
    qm = _quantize(path)
    executor = IntegerExecutor(qm)
    out = qm.graph.outputs[0]
    diffs = []
    for q in int8_inputs(8):
        ref = run_litert(path, q).astype(np.int64)
        x = np.float32(IN_SCALE) * (q.astype(np.float32) - np.float32(IN_ZP))
        ours = executor.run({"x": x})[out].values.astype(np.int64)
        assert ours.shape == ref.shape
        diffs.append(np.abs(ours - ref).ravel())
    diff = np.concatenate(diffs)
    assert diff.max() <= 1
    assert (diff == 0).mean() >= EQUAL[kind]


def test_bias_beyond_16_bits_is_a_forced_change(tmp_path: Path) -> None:
    qm = _quantize(int8_model(tmp_path / "b.tflite", "big_bias"))
    (change,) = qm.calibration["forced_changes"]
    assert change["kind"] == "bias_shift" and change["layer"] == "conv2d_0"
    assert "exceed 16 bits" in change["detail"]
    assert qm.layers["conv2d_0"].params["bias_shift"] > 0


@pytest.mark.parametrize("kind", ["float_io", "uint8_io"])
def test_model_edges_match_litert(tmp_path: Path, kind: str) -> None:
    """QUANTIZE/DEQUANTIZE at a float interface, and uint8 <-> int8 requantize ops at a
    uint8 one: npuc's float interface takes ``scale * (q - zp)`` and its output integers
    are TFLite's (within 1 LSB as above; uint8 outputs keep the file's uint8 parameters)."""
    path = edge_model(tmp_path / f"{kind}.tflite", kind)
    qm = _quantize(path)
    assert all(layer.run_on == "npu" for layer in qm.layers.values())
    assert qm.calibration["unmatched_layers"] == [] and qm.calibration["forced_changes"] == []
    executor = IntegerExecutor(qm)
    out = qm.graph.outputs[0]
    out_q = qm.tensors[out]
    assert out_q.dtype == ("uint8" if kind == "uint8_io" else "int8")
    diffs = []
    for q in int8_inputs(4):
        x = np.float32(IN_SCALE) * (q.astype(np.float32) - np.float32(IN_ZP))
        if kind == "float_io":
            ref = np.rint(run_litert(path, x) / out_q.scale) + out_q.zero_point
        else:
            ref = run_litert(path, (q.astype(np.int16) + 128).astype(np.uint8))
        ours = executor.run({"x": x})[out].values.astype(np.int64)
        diffs.append(np.abs(ours - ref.astype(np.int64)).ravel())
    diff = np.concatenate(diffs)
    assert diff.max() <= 1
    assert (diff == 0).mean() >= 0.99
