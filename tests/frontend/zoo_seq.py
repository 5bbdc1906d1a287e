"""Operator-zoo cases for sequence models: embedding lookups, attention masks, pooling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.frontend.onnx_graphs import Case, const, ints, node_case, random_feeds

_NP_TYPES = {
    TensorProto.FLOAT: np.float32,
    TensorProto.INT64: np.int64,
    TensorProto.INT32: np.int32,
}


def _graph(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, tuple[int, tuple[int, ...]]],
    consts: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    """A model over typed inputs (``name: (TensorProto type, shape)``) with output ``y``."""
    graph = helper.make_graph(
        list(nodes),
        "seq",
        [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)],
        initializer=[numpy_helper.from_array(v, n) for n, v in (consts or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def _embedding(ids_type: int, axis: int) -> Case:
    """Gather rows (axis 0) or columns (axis 1) of a constant table by run-time ids,
    negative ids included (they count from the end)."""
    table = const((10, 6)) if axis == 0 else const((6, 10))
    ids = np.array([[3, 0, 9, -1, -10], [5, 5, 2, 7, 1]], _NP_TYPES[ids_type])
    nodes = [helper.make_node("Gather", ["table", "ids"], ["y"], axis=axis)]
    model = _graph(nodes, {"ids": (ids_type, ids.shape)}, {"table": table})
    return Case(model, {"ids": ids})


def _attention_mask() -> Case:
    """BERT's mask: ids != 0 (Equal, Not) and a Cast-to-bool attention mask (And),
    or'ed with a comparison of the scores, then Where(mask, scores, -1e4)."""
    nodes = [
        helper.make_node("Cast", ["attn"], ["attn_b"], to=TensorProto.BOOL),
        helper.make_node("Equal", ["ids", "zero"], ["is_pad"]),
        helper.make_node("Not", ["is_pad"], ["not_pad"]),
        helper.make_node("And", ["attn_b", "not_pad"], ["keep"]),
        helper.make_node("Unsqueeze", ["keep", "axes"], ["keep4"]),
        helper.make_node("Expand", ["keep4", "shape"], ["keep_all"]),
        helper.make_node("Greater", ["scores", "big"], ["hot"]),
        helper.make_node("Less", ["scores", "small"], ["cold"]),
        helper.make_node("Or", ["hot", "cold"], ["extreme"]),
        helper.make_node("Not", ["extreme"], ["moderate"]),
        helper.make_node("And", ["keep_all", "moderate"], ["m"]),
        helper.make_node("Where", ["m", "scores", "neg"], ["y"]),
    ]
    consts = {
        "zero": ints([0]),
        "axes": ints([1, 2]),
        "shape": ints([2, 3, 5, 5]),
        "big": np.array(1.5, np.float32),
        "small": np.array(-1.5, np.float32),
        "neg": np.array(-1e4, np.float32),
    }
    inputs = {
        "ids": (TensorProto.INT64, (2, 5)),
        "attn": (TensorProto.INT64, (2, 5)),
        "scores": (TensorProto.FLOAT, (2, 3, 5, 5)),
    }
    feeds = {
        "ids": np.array([[7, 3, 0, 4, 0], [1, 2, 3, 4, 5]], np.int64),
        "attn": np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], np.int64),
        "scores": random_feeds({"s": (2, 3, 5, 5)})["s"],
    }
    return Case(_graph(nodes, inputs, consts), feeds)


def _cast_bool(shape: tuple[int, ...]) -> Case:
    """float -> bool (non-zero is true) -> float; zeros included."""
    nodes = [
        helper.make_node("Cast", ["x"], ["b"], to=TensorProto.BOOL),
        helper.make_node("Cast", ["b"], ["y"], to=TensorProto.FLOAT),
    ]
    feeds = random_feeds({"x": shape})
    feeds["x"][..., ::2] = 0.0
    return Case(_graph(nodes, {"x": (TensorProto.FLOAT, shape)}), feeds)


def _mean_pool_l2() -> Case:
    """Sentence-embedding pooling: sum(h * mask) / sum(mask), then x / ReduceL2(x)."""
    nodes = [
        helper.make_node("Mul", ["h", "mask"], ["hm"]),
        helper.make_node("ReduceSum", ["hm", "axis1"], ["s"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "axis1"], ["n"], keepdims=0),
        helper.make_node("Div", ["s", "n"], ["mean"]),
        helper.make_node("ReduceL2", ["mean"], ["norm"], axes=[-1], keepdims=1),
        helper.make_node("Div", ["mean", "norm"], ["y"]),
    ]
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.float32)[:, :, None]
    inputs = {"h": (TensorProto.FLOAT, (2, 4, 6)), "mask": (TensorProto.FLOAT, (2, 4, 1))}
    feeds = {"h": random_feeds({"h": (2, 4, 6)})["h"], "mask": mask}
    return Case(_graph(nodes, inputs, {"axis1": ints([1])}), feeds)


X = {"x": (2, 3, 4)}
CASES: list = [
    pytest.param(_embedding(TensorProto.INT64, 0), id="gather-runtime-ids"),
    pytest.param(_embedding(TensorProto.INT32, 1), id="gather-runtime-ids-axis1-int32"),
    pytest.param(_attention_mask(), id="attention-mask"),
    pytest.param(_cast_bool((3, 4)), id="cast-bool"),
    pytest.param(_mean_pool_l2(), id="mean-pool-l2"),
    pytest.param(node_case("Expand", {"x": (3, 1)}, consts={"s": ints([2, 3, 4])}), id="expand"),
    pytest.param(
        node_case(
            "Where",
            {"x": (2, 3)},
            consts={"c": np.array([True, False, True]), "z": const((1,))},
            input_order=["c", "x", "z"],
        ),
        id="where-const-cond",
    ),
    pytest.param(node_case("ReduceSum", X, consts={"a": ints([0, 2])}), id="reducesum"),
    pytest.param(node_case("ReduceSum", X, keepdims=0), id="reducesum-all"),
    pytest.param(node_case("ReduceMax", X, opset=17, axes=[1], keepdims=0), id="reducemax-attr"),
    pytest.param(node_case("ReduceMax", X, consts={"a": ints([-1])}), id="reducemax-input"),
    pytest.param(node_case("ReduceL2", X, opset=17, axes=[2]), id="reducel2-attr"),
    pytest.param(
        node_case("ReduceL2", X, consts={"a": ints([1])}, keepdims=0), id="reducel2-input"
    ),
]


def recurrent_case(
    op: str, *, layout: int = 0, direction: str = "forward", **attrs: object
) -> Case:
    """One LSTM/GRU node with constant W, R, B and run-time initial states (forms torch
    does not emit: reverse, GRU linear_before_reset=0, layout=1 which onnxruntime refuses)."""
    gates, hidden, size, seq, batch = (4 if op == "LSTM" else 3), 5, 3, 4, 2
    dirs = 2 if direction == "bidirectional" else 1
    x_shape = (batch, seq, size) if layout else (seq, batch, size)
    state = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    consts = {
        "w": const((dirs, gates * hidden, size), seed=2, scale=0.5),
        "r": const((dirs, gates * hidden, hidden), seed=3, scale=0.5),
        "b": const((dirs, 2 * gates * hidden), seed=4, scale=0.5),
    }
    inputs = {"x": x_shape, "h0": state, **({"c0": state} if op == "LSTM" else {})}
    names = ["x", "w", "r", "b", "", "h0", *(["c0"] if op == "LSTM" else [])]
    outputs = ["y", "y_h", *(["y_c"] if op == "LSTM" else [])]
    node = helper.make_node(
        op, names, outputs, hidden_size=hidden, layout=layout, direction=direction, **attrs
    )
    graph = helper.make_graph(
        [node],
        "rnn",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=[numpy_helper.from_array(v, n) for n, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return Case(onnx.shape_inference.infer_shapes(model, strict_mode=True), random_feeds(inputs))


CASES += [
    pytest.param(recurrent_case("LSTM", direction="bidirectional"), id="lstm-bidi-initial-states"),
    pytest.param(recurrent_case("LSTM", direction="reverse"), id="lstm-reverse"),
    pytest.param(recurrent_case("GRU", direction="reverse"), id="gru-reverse-reset-after"),
    pytest.param(
        recurrent_case("GRU", direction="bidirectional", linear_before_reset=1),
        id="gru-bidi-linear-before-reset",
    ),
]
