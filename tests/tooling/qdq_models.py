"""QDQ ONNX models made by onnxruntime's ``quantize_static`` from small float graphs.

Two float graphs (seeded random weights, 1x3x8x8 input ``x``):

- ``residual``: Conv+bias -> Relu -> Conv -> Add (residual) -> MaxPool ->
  GlobalAveragePool -> Flatten -> Gemm (transB) -> ``y`` (1x5);
- ``branches``: two Convs reading ``x`` (same shape, different weights) ->
  Sigmoid on one -> Concat -> AveragePool -> ``y``.

:func:`qdq_model` writes the float model and its QDQ version (int8
activations and weights, per-channel weights unless told otherwise) and
returns both paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SHAPE = (1, 3, 8, 8)


def _init(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float) -> Any:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def float_graph(kind: str, *, bias_scale: float = 0.1) -> onnx.ModelProto:
    """The float model ``kind`` (module docstring); ``bias_scale`` scales the first conv's bias."""
    rng = np.random.default_rng(0)
    if kind == "residual":
        inits = [
            _init(rng, "w1", (8, 3, 3, 3), 0.3), _init(rng, "b1", (8,), bias_scale),
            _init(rng, "w2", (8, 8, 3, 3), 0.1), _init(rng, "b2", (8,), 0.1),
            _init(rng, "wf", (5, 8), 0.5), _init(rng, "bf", (5,), 0.1),
        ]  # fmt: skip
        nodes = [
            helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
            helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
            helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
            helper.make_node("Add", ["r1", "c2"], ["a"], name="add"),
            helper.make_node(
                "MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"
            ),
            helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
            helper.make_node("Flatten", ["g"], ["f"], name="flat"),
            helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc"),
        ]
        out_shape: tuple[int, ...] = (1, 5)
    elif kind == "branches":
        inits = [
            _init(rng, "wa", (4, 3, 3, 3), 0.3), _init(rng, "ba", (4,), bias_scale),
            _init(rng, "wb", (4, 3, 3, 3), 0.3), _init(rng, "bb", (4,), 0.1),
        ]  # fmt: skip
        nodes = [
            helper.make_node("Conv", ["x", "wa", "ba"], ["ca"], pads=[1, 1, 1, 1], name="conv_a"),
            helper.make_node("Conv", ["x", "wb", "bb"], ["cb"], pads=[1, 1, 1, 1], name="conv_b"),
            helper.make_node("Sigmoid", ["cb"], ["sb"], name="sig"),
            helper.make_node("Concat", ["ca", "sb"], ["cat"], axis=1, name="cat"),
            helper.make_node(
                "AveragePool", ["cat"], ["y"], kernel_shape=[2, 2], strides=[2, 2], name="avg"
            ),
        ]
        out_shape = (1, 8, 4, 4)
    else:
        raise ValueError(kind)
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def samples(count: int, seed: int = 1) -> list[np.ndarray]:
    """``count`` random 1x3x8x8 float32 inputs."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(count)]


def quantize_qdq(
    float_path: Path, out_path: Path, data: list[np.ndarray], input_name: str = "x", **kw: Any
) -> Path:
    """``quantize_static`` in QDQ format with int8 activations/weights (``kw`` overrides)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items: Iterator[dict[str, np.ndarray]] = iter([{input_name: d} for d in data])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    options: dict[str, Any] = {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "activation_type": QuantType.QInt8,
        "weight_type": QuantType.QInt8,
        **kw,
    }
    quantize_static(str(float_path), str(out_path), _Reader(), **options)
    return out_path


def qdq_model(tmp: Path, kind: str, *, bias_scale: float = 0.1, **kw: Any) -> tuple[Path, Path]:
    """Write ``kind``'s float model and its QDQ version into ``tmp``; return both paths."""
    float_path = tmp / f"{kind}.onnx"
    onnx.save(float_graph(kind, bias_scale=bias_scale), str(float_path))
    qdq_path = tmp / f"{kind}_qdq.onnx"
    quantize_qdq(float_path, qdq_path, samples(16), **kw)
    return float_path, qdq_path


def file_numbers(path: Path) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, int]]]:
    """Read with onnx alone: (Conv/Gemm/MatMul node -> its stored weight integers,
    float tensor -> (scale, zero point) of the QuantizeLinear that reads it)."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            inits[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    dq_source = {
        n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"
    }
    weights = {
        n.name: inits[dq_source[n.input[1]]]
        for n in model.graph.node
        if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] in dq_source
    }
    scales = {
        n.input[0]: (float(inits[n.input[1]]), int(inits[n.input[2]]))
        for n in model.graph.node
        if n.op_type == "QuantizeLinear"
    }
    # A pair whose DequantizeLinear writes a graph output: that name holds the same numbers.
    quantized = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in quantized:
            scales.setdefault(n.output[0], scales[quantized[n.input[0]]])
    return weights, scales
