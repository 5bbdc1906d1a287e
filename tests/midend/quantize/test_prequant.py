"""Pre-quantized QDQ models: the file's own numbers on the NPU datapath (prequant.py).

The QDQ files come from onnxruntime's ``quantize_static`` (tests/tooling/qdq_models.py).
What is checked against the file itself (read here with onnx, not through npuc):
every conv/FC layer's int8 weights equal the file's integers bit for bit, and
every layer's output scale and zero point equal the file's QuantizeLinear's.

Integer executor against onnxruntime running the QDQ file: at most 2 output
LSB apart, and at least 95% of the outputs equal. Why not 0: onnxruntime
requantizes in float (``round_half_even(acc * s_x * s_w / s_y)``), the NPU with
a 15-bit multiplier and one shift (``rshift_round(acc * M, shift)``, half up):
the multiplier's relative error (< 2^-15, under 0.004 LSB at 127) and the tie
rule flip a rounding now and then, by 1 LSB; a flipped input LSB moves the
next layer's output by ``sum|w| * s_x * s_w / s_y`` at most, about 1 LSB here
(measured: max 1 LSB, 99% equal). An average pool over 2x2 divides by 4, so a
quarter of its outputs are exact ties that the NPU rounds up and onnxruntime
to even: ``branches`` ends in one, 1 LSB apart on ~1/8 of the outputs
(measured 87.6% equal; every tensor before the pool is equal).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from npuc.frontend import load
from npuc.midend.pipeline import Pipeline, graph_passes
from npuc.midend.quantize.api import quantize_prequantized
from npuc.midend.quantize.int_exec import IntegerExecutor
from npuc.midend.quantize.qmodel import QuantizedModel
from tests.tooling.qdq_models import file_numbers, qdq_model, samples


def _quantize(path: Path) -> QuantizedModel:
    imported = load(path)
    assert imported.source_quant is not None
    return quantize_prequantized(Pipeline(graph_passes())(imported.mod), imported.source_quant)


def _produced(path: Path) -> dict[str, str]:
    """Node name -> the float tensor it writes in the file (the one a QuantizeLinear reads)."""
    return {n.name: n.output[0] for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("kind", ["residual", "branches"])
def test_weights_and_scales_are_the_files(tmp_path: Path, kind: str) -> None:
    _, qdq = qdq_model(tmp_path, kind)
    qm = _quantize(qdq)
    weights, scales = file_numbers(qdq)
    produced = _produced(qdq)
    source_nodes = qm.calibration["source_nodes"]
    assert qm.calibration["pre_quantized"] is True
    assert qm.calibration["unmatched_layers"] == []
    checked_w = checked_s = 0
    for node in qm.graph.nodes:
        layer = qm.layers[node.name]
        assert layer.run_on == "npu", (node.name, layer.reason)
        onnx_nodes = source_nodes[node.name]
        if node.op in ("conv2d", "dense"):
            file_w = weights[onnx_nodes[0]]
            ours = layer.params["weights"]
            expect = file_w if ours.shape == file_w.shape else file_w.T
            np.testing.assert_array_equal(ours, expect.astype(np.int8), strict=True)
            checked_w += 1
        out = produced[onnx_nodes[-1]]
        if out in scales:
            q = qm.tensors[node.name]
            assert (q.scale, q.zero_point, q.dtype) == (*scales[out], "int8"), node.name
            checked_s += 1
    assert checked_w == sum(n.op in ("conv2d", "dense") for n in qm.graph.nodes)
    assert checked_s >= len(qm.graph.nodes) - 1
    q_in = qm.tensors["x"]
    assert (q_in.scale, q_in.zero_point) == scales["x"]


@pytest.mark.parametrize(
    ("kind", "bits", "equal"), [("residual", 8, 0.95), ("branches", 8, 0.8), ("residual", 16, 0.3)]
)
def test_integer_executor_matches_onnxruntime(
    tmp_path: Path, kind: str, bits: int, equal: float
) -> None:
    """int16 activations (QInt16): the 15-bit multiplier's relative error (< 2^-15) is
    up to 1 LSB at 16-bit full scale, so only about half the outputs are equal
    (measured 47.5%), still at most 1 LSB apart."""
    from onnxruntime.quantization import QuantType

    activation = QuantType.QInt16 if bits == 16 else QuantType.QInt8
    _, qdq = qdq_model(tmp_path, kind, activation_type=activation)
    qm = _quantize(qdq)
    session = ort.InferenceSession(str(qdq))
    executor = IntegerExecutor(qm)
    out_name = qm.graph.outputs[0]
    out_q = qm.tensors[out_name]
    diffs = []
    for x in samples(24, seed=9):
        ref = session.run(None, {"x": x})[0]
        ours = executor.run({"x": x})[out_name].values.astype(np.int64)
        diffs.append(np.abs(ours - (np.rint(ref / out_q.scale) + out_q.zero_point)))
    diff = np.concatenate([d.ravel() for d in diffs])
    assert diff.max() <= 2
    assert (diff == 0).mean() >= equal


def test_large_bias_is_a_forced_change(tmp_path: Path) -> None:
    """A bias of ~1e3 at accumulator scale ~1e-4 needs more than 16 bits: bias_shift, reported."""
    _, qdq = qdq_model(tmp_path, "residual", bias_scale=40.0)
    qm = _quantize(qdq)
    changes = [c for c in qm.calibration["forced_changes"] if c["kind"] == "bias_shift"]
    assert [c["layer"] for c in changes] == ["conv2d_0"]
    shift = qm.layers["conv2d_0"].params["bias_shift"]
    assert shift > 0
    assert f"bias_shift {shift}" in changes[0]["detail"]
    assert "exceed 16 bits" in changes[0]["detail"]


def test_uint8_weights_are_requantized_and_reported(tmp_path: Path) -> None:
    """uint8 asymmetric weights: q - zp spans more than int8 holds, so the MAC array's
    int8 weights (zero point 0) are requantized, reported with the numbers; uint8
    activations keep the file's zero points."""
    from onnxruntime.quantization import QuantType

    _, qdq = qdq_model(
        tmp_path,
        "residual",
        weight_type=QuantType.QUInt8,
        activation_type=QuantType.QUInt8,
        per_channel=False,
    )
    qm = _quantize(qdq)
    _, scales = file_numbers(qdq)
    q = qm.tensors["conv2d_0"]
    assert (q.dtype, q.scale, q.zero_point) == ("uint8", *scales["r1"])
    changes = {c["layer"]: c for c in qm.calibration["forced_changes"]}
    assert changes["conv2d_0"]["kind"] == "weight_dtype"
    assert "uint8 weights 'w1_quantized'" in changes["conv2d_0"]["detail"]
    model = onnx.load(str(qdq))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    file_real = (inits["w1_quantized"].astype(np.int64) - int(inits["w1_zero_point"])) * float(
        inits["w1_scale"]
    )
    params = qm.layers["conv2d_0"].params
    ours_real = params["weights"] * params["weight_scales"][:, None, None, None]
    # Requantized to int8 with the range of the file's values: half a step at most.
    assert np.abs(ours_real - file_real).max() <= params["weight_scales"].max() / 2 + 1e-9


def test_tensors_the_file_leaves_float_run_float(tmp_path: Path) -> None:
    """Only Conv quantized: the Add, pools and Gemm have no scales and stay float on the CPU."""
    _, qdq = qdq_model(tmp_path, "residual", op_types_to_quantize=["Conv"])
    qm = _quantize(qdq)
    assert qm.layers["conv2d_0"].run_on == "npu"
    assert qm.layers["add_0"].run_on == "cpu"
    assert "leaves" in qm.layers["add_0"].reason
    session = ort.InferenceSession(str(qdq))
    executor = IntegerExecutor(qm)
    for x in samples(4, seed=5):
        ref = session.run(None, {"x": x})[0]
        ours = executor.run({"x": x})[qm.graph.outputs[0]]
        assert isinstance(ours, np.ndarray)  # the Gemm runs float: a float output
        # Float tail on the same integer conv outputs (up to 1 LSB of r1/c2 apart).
        np.testing.assert_allclose(ours, ref, rtol=0, atol=0.1)
