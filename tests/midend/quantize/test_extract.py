"""Layer graph extraction folds what the NPU runs as one instruction; the float executor matches
onnxruntime (rtol 1e-5, atol 1e-5) on small real-valued graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc.frontend import load
from npuc.midend.pipeline import Pipeline, graph_passes
from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.float_exec import FloatExecutor


def _model(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], out_shape: list[int],
           in_shape: tuple[int, ...] = (1, 4, 8, 8)) -> onnx.ModelProto:  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


RNG = np.random.default_rng(7)
W = RNG.standard_normal((6, 4, 3, 3)) * 0.3
B = RNG.standard_normal(6) * 0.1
DW = RNG.standard_normal((4, 1, 3, 3)) * 0.3

CASES = {
    "conv_bias_relu6": (
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Clip", ["c", "lo", "hi"], ["y"]),
        ],
        {"w": W, "b": B, "lo": np.array(0.0), "hi": np.array(6.0)},
        [1, 6, 8, 8],
        {"conv2d": 1},
    ),
    "depthwise_strided_silu": (
        [
            helper.make_node(
                "Conv", ["x", "dw"], ["c"], group=4, strides=[2, 2], pads=[1, 1, 1, 1]
            ),
            helper.make_node("Sigmoid", ["c"], ["s"]),
            helper.make_node("Mul", ["c", "s"], ["y"]),
        ],
        {"dw": DW},
        [1, 4, 4, 4],
        {"conv2d": 1, "unary": 1},
    ),
    "residual_pool_concat": (
        [
            helper.make_node("Conv", ["x", "w4"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Add", ["c", "x"], ["a"]),
            helper.make_node("Relu", ["a"], ["r"]),
            helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("AveragePool", ["r"], ["q"], kernel_shape=[2, 2], strides=[2, 2]),
            helper.make_node("Concat", ["p", "q"], ["y"], axis=1),
        ],
        {"w4": RNG.standard_normal((4, 4, 3, 3)) * 0.3},
        [1, 8, 4, 4],
        {"conv2d": 1, "add": 1, "max_pool2d": 1, "avg_pool2d": 1, "concat": 1},
    ),
    "head_gap_gemm_softmax": (
        [
            helper.make_node("GlobalAveragePool", ["x"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("Gemm", ["f", "fc", "fb"], ["l"], transB=1),
            helper.make_node("Softmax", ["l"], ["y"], axis=1),
        ],
        {"fc": RNG.standard_normal((5, 4)), "fb": RNG.standard_normal(5)},
        [1, 5],
        {"global_avg_pool": 1, "dense": 1, "softmax": 1},
    ),
    "conv_affine_hardswish_affine": (
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Mul", ["c", "s1"], ["m"]),
            helper.make_node("Add", ["m", "o1"], ["a"]),
            helper.make_node("HardSwish", ["a"], ["h"]),
            helper.make_node("Mul", ["h", "s2"], ["m2"]),
            helper.make_node("Add", ["m2", "o2"], ["y"]),
        ],
        {
            "w": W,
            "b": B,
            "s1": np.array([1.7]),
            "o1": np.array([0.3]),
            "s2": np.array([0.4]),
            "o2": np.array([-0.2]),
        },
        [1, 6, 8, 8],
        {"conv2d": 1, "unary": 1, "multiply": 0, "add": 0},
    ),
    "nearest_upsample": (
        [
            helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest"),
        ],
        {"sc": np.array([1.0, 1.0, 2.0, 2.0])},
        [1, 4, 16, 16],
        {"resize": 1},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_float_executor_matches_onnxruntime(case: str, tmp_path: Path) -> None:
    nodes, inits, out_shape, expected_ops = CASES[case]
    model = _model(nodes, inits, out_shape)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    mod, _ = load(path)
    graph = extract_graph(Pipeline(graph_passes())(mod))
    for op, count in expected_ops.items():
        assert graph.op_histogram().get(op, 0) == count, graph.op_histogram()
    x = np.random.default_rng(1).standard_normal((1, 4, 8, 8)).astype(np.float32) * 2
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = FloatExecutor(graph).run({"x": x})[graph.outputs[0]]
    np.testing.assert_allclose(got, want[0], rtol=1e-5, atol=1e-5)
    batch = np.concatenate([x, 2 * x], axis=0)
    ex = FloatExecutor(graph)
    if ex.batchable:
        both = ex.run({"x": batch})[graph.outputs[0]]
        np.testing.assert_allclose(both[:1], want[0], rtol=1e-5, atol=1e-5)


def test_conv_clamp_is_folded_into_the_layer(tmp_path: Path) -> None:
    nodes, inits, out_shape, _ = CASES["conv_bias_relu6"]
    path = tmp_path / "m.onnx"
    onnx.save(_model(nodes, inits, out_shape), str(path))
    mod, _ = load(path)
    (conv,) = extract_graph(Pipeline(graph_passes())(mod)).nodes
    assert (conv.attr("act_min"), conv.attr("act_max")) == (0.0, 6.0)
    np.testing.assert_allclose(conv.consts["bias"], B.astype(np.float32))


def test_pipeline_lists_the_quantizer_stages_that_exist() -> None:
    """Every stage midend/pipeline.py lists resolves to the function that runs it."""
    import importlib

    from npuc.midend.pipeline import QUANTIZATION_STAGES

    for _, target in QUANTIZATION_STAGES:
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_a_model_with_two_outputs_keeps_both(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y2"]),
        helper.make_node("Sigmoid", ["c"], ["y"]),
    ]
    model = _model(nodes, {"w": W, "b": B}, [1, 6, 8, 8])
    model.graph.output.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, 6, 8, 8]))
    path = tmp_path / "two.onnx"
    onnx.save(model, str(path))
    mod, _ = load(path)
    graph = extract_graph(Pipeline(graph_passes())(mod))
    assert len(graph.outputs) == 2
    x = np.random.default_rng(2).standard_normal((1, 4, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    env = FloatExecutor(graph).run({"x": x})
    for name, ref in zip(graph.outputs, want, strict=True):
        np.testing.assert_allclose(env[name], ref, rtol=1e-5, atol=1e-5)
