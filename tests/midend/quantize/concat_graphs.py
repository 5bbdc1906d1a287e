"""Small ONNX graphs joining a 0..1 branch and a 0..300 branch in one concat, quantized.

``x (1, 4, 8, 8)`` in [0, 1] -> ``Sigmoid(Conv1x1(x))`` (scores, 0..1) and
``Relu(Conv1x1(x))`` scaled to about 0..300 (boxes), joined along channels,
then a tail: ``"output"`` (the concat is the graph output), ``"slice"``
(reshape, then a slice of the scores fed to a sigmoid), or ``"conv"`` (a
1x1 convolution reads the joined tensor).
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
from npuc.midend.quantize.config import QuantConfig
from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.graph import Graph
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.midend.quantize.quantize import quantize_model

SHAPE = (1, 4, 8, 8)
SCORES = 3  # channels 0..2 of the concat: the 0..1 branch
BOXES = 5  # channels 3..7: the 0..300 branch


def _onnx_model(tail: str) -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def init(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(value.astype(np.float32), name)

    inits = [
        init("ws", rng.standard_normal((SCORES, 4, 1, 1)) * 2.0),
        init("wb", np.abs(rng.standard_normal((BOXES, 4, 1, 1))) * 75.0),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "ws"], ["cs"]),
        helper.make_node("Sigmoid", ["cs"], ["scores"]),
        helper.make_node("Conv", ["x", "wb"], ["cb"]),
        helper.make_node("Relu", ["cb"], ["boxes"]),
        helper.make_node("Concat", ["scores", "boxes"], ["joined"], axis=1),
    ]
    out_shape: tuple[int, ...] = (1, SCORES + BOXES, 8, 8)
    if tail == "slice":
        inits += [
            numpy_helper.from_array(np.asarray([1, SCORES + BOXES, 64], np.int64), "shape"),
            numpy_helper.from_array(np.asarray([0], np.int64), "start"),
            numpy_helper.from_array(np.asarray([SCORES], np.int64), "end"),
            numpy_helper.from_array(np.asarray([1], np.int64), "axes"),
        ]
        nodes += [
            helper.make_node("Reshape", ["joined", "shape"], ["flat"]),
            helper.make_node("Slice", ["flat", "start", "end", "axes"], ["picked"]),
            helper.make_node("Sigmoid", ["picked"], ["y"]),
        ]
        out_shape = (1, SCORES, 64)
    elif tail == "conv":
        inits.append(init("wy", rng.standard_normal((2, SCORES + BOXES, 1, 1))))
        nodes.append(helper.make_node("Conv", ["joined", "wy"], ["y"]))
        out_shape = (1, 2, 8, 8)
    else:
        nodes.append(helper.make_node("Identity", ["joined"], ["y"]))
    graph = helper.make_graph(
        nodes,
        f"coarse_concat_{tail}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


@functools.cache
def concat_graph(tail: str) -> tuple[Graph, FloatExecutor]:
    """The layer graph of the model with ``tail`` and its float executor."""
    mod, _ = load(_onnx_model(tail))
    graph = extract_graph(Pipeline(graph_passes())(mod))
    return graph, FloatExecutor(graph)


def samples(count: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
    """``count`` inputs ``{"x": float32 (1, 4, 8, 8)}`` uniform in [0, 1]."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield {"x": rng.random(SHAPE).astype(np.float32)}


def quantized(tail: str, config: QuantConfig) -> QuantizedModel:
    """The model with ``tail`` calibrated on 8 samples and quantized with ``config``."""
    graph, fx = concat_graph(tail)
    observers, _ = calibrate(graph, samples(8, seed=1), config, executor=fx)
    return quantize_model(graph, observers, config)
