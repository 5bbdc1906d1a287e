"""A tiny real-valued ONNX model through the whole quantizer, shared by the analysis tests.

conv 3x3 + ReLU -> depthwise conv 3x3 -> sigmoid (LUT) -> add (residual) ->
max pool -> global average pool -> flatten (reshape) -> MatMul + bias (dense),
on a 1x3x16x16 input, with random normal weights (seeded).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from npuc.frontend import load
from npuc.midend.pipeline import Pipeline, graph_passes
from npuc.midend.quantize.calibrate import calibrate
from npuc.midend.quantize.config import LayerQuantConfig, QuantConfig
from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.graph import Graph
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.midend.quantize.quantize import quantize_model

SHAPE = (1, 3, 16, 16)


def _onnx_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def init(name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name
        )

    inits = [
        init("w1", (8, 3, 3, 3), 0.3), init("b1", (8,), 0.1),
        init("w2", (8, 1, 3, 3), 0.3), init("b2", (8,), 0.1),
        init("w3", (8, 5), 0.3), init("b3", (5,), 0.1),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Sigmoid", ["c2"], ["s2"]),
        helper.make_node("Add", ["r1", "s2"], ["a"]),
        helper.make_node("MaxPool", ["a"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["m"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "w3"], ["mm"]),
        helper.make_node("Add", ["mm", "b3"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_analysis",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 5))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


@functools.cache
def tiny_graph() -> tuple[Graph, FloatExecutor]:
    """The tiny model's layer graph and a float executor for it."""
    mod, _ = load(_onnx_model())
    graph = extract_graph(Pipeline(graph_passes())(mod))
    return graph, FloatExecutor(graph)


def samples(count: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """``count`` random inputs ``{"x": float32 (1, 3, 16, 16)}``."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield {"x": rng.standard_normal(SHAPE).astype(np.float32)}


@functools.cache
def tiny_quantized(bits: int = 8, is_random: bool = False) -> QuantizedModel:
    """The tiny model calibrated on 8 samples with ``bits``-bit activations."""
    graph, fx = tiny_graph()
    config = QuantConfig(default=LayerQuantConfig(q_bits_activation=bits))
    observers, seen = calibrate(graph, samples(8, seed=1), config, executor=fx)
    return quantize_model(
        graph, observers, config, calibration={"samples": seen, "is_random": is_random}
    )
