"""Defects found by random models (breaker session), kept as strict xfails until fixed.

The float transposed convolution (4x4 kernel, stride 2, padding 1) gives a
wrong last output row of every image when the batch is 2 or more: the direct
lowering (:mod:`npuc.backend.cpu.transposed_conv`) is right unscheduled and
with a batch of one, wrong after the fallback schedule fuses (image, channel,
row) into one parallel loop (with TVM's plain ``llvm`` target too); TVM's
stock legalisation of the same layer is right.

The conv2d rule raises TVM's ``InternalError`` (``args.size() ==
initial_indices_orig.size()``) on a strided 1x1 convolution with padding whose
output is one column wide (the strided-1x1 pixel gather); the schedule pass
catches it and runs the fallback, but the rule should schedule or decline.

The integer CPU library of a batch-2 model with a layer the quantizer keeps as
a generic Relax call (a ConvTranspose) fails in calibration with an internal
error: ``RelaxFallback`` runs such a layer one image at a time, but compiled
it for the model's batch of two (``midend/quantize/relax_fallback.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc import runtime
from npuc.backend.cpu import build_library
from npuc.backend.cpu.qlower.library import build_int8_library
from npuc.backend.cpu.schedules.conv2d import Conv2dRule
from tests.backend.cpu.schedules.conv_harness import AVX2, ConvCase, run, schedule_with
from tests.backend.cpu.small_models import import_onnx
from tests.tooling.reference import run_onnxruntime

#: (channels, filters, height, width, kernel, stride, pads) of transposed convolutions wrong at
#: batch 2 (right at batch 1 and with TVM's stock legalisation).
BATCH_TWO_CASES = [(8, 4, 5, 7, 4, 2, (1, 1, 1, 1)), (5, 16, 6, 9, 6, 3, (1, 1, 2, 5))]


@pytest.mark.parametrize("case", BATCH_TWO_CASES, ids=lambda c: f"c{c[0]}o{c[1]}k{c[4]}s{c[5]}")
def test_transposed_conv_with_a_batch_of_two_matches_onnxruntime(
    tmp_path: Path, case: tuple[int, int, int, int, int, int, tuple[int, int, int, int]]
) -> None:
    c, o, h, w, k, s, pads = case
    out_h, out_w = (h - 1) * s + k - pads[0] - pads[2], (w - 1) * s + k - pads[1] - pads[3]
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((c, o, k, k)).astype(np.float32), "w")
    node = helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=list(pads)
    )
    graph = helper.make_graph(
        [node],
        "convt_batch2",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, o, out_h, out_w])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    mod, info = import_onnx(model, source_path="convt_batch2.onnx")
    result = build_library(mod, info, AVX2, tmp_path / "convt.so")
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    got = runtime.load(result.library_path).run({"x": x})["y"]
    want = run_onnxruntime(model, {"x": x})["y"]
    # float32 sums of up to 32 products in another order than onnxruntime's
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv2d_rule_on_a_padded_strided_one_by_one_conv_with_one_output_column() -> None:
    case = ConvCase(
        channels=8, filters=16, size=(11, 1), kernel=(1, 1), stride=2, padding=(1, 0, 0, 0),
        epilogue="none",
    )  # fmt: skip
    want = run(schedule_with(case.module(), AVX2, None)[0], AVX2, case.inputs())
    scheduled, applied = schedule_with(case.module(), AVX2, Conv2dRule())
    assert applied, "conv2d declined"
    got = run(scheduled, AVX2, case.inputs())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.xfail(
    strict=True,
    raises=RuntimeError,
    reason="relax_fallback.py: a batch-2 model's ConvTranspose is compiled for batch 2 "
    "but run one image at a time in calibration (match_cast error 1 vs 2)",
)
def test_int8_library_of_a_batch_of_two_with_a_transposed_conv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("ConvTranspose", ["a", "wt"], ["y"], strides=[2, 2], kernel_shape=[2, 2]),
    ]
    weights = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w0"),
        numpy_helper.from_array(rng.standard_normal((8, 4, 2, 2)).astype(np.float32), "wt"),
    ]
    graph = helper.make_graph(
        nodes,
        "int8_batch2",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 16, 16])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "cal.npy", rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    built = build_int8_library(
        tmp_path / "m.onnx", tmp_path / "m.so", str(tmp_path / "cal.npy"), AVX2
    )
    y = runtime.load(built.result.library_path).run(
        {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}, raw=True
    )["y"]
    assert y.shape == (2, 4, 16, 16)
