"""fold_static_shapes: exporter shape arithmetic that stock TVM rejects, folded to constants.

Each pattern test shows the tiny graph failing in TVM 0.27's importer or VM
codegen as exported, then matching onnxruntime exactly once folded (the
folded graph does the same float operations as the original, so the results
are bit-identical: atol=0).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto
from onnx import helper as h

from npuc.frontend.fixups import apply_onnx_fixups
from npuc.frontend.fixups.fold_static_shapes import MAX_FOLDED_ELEMENTS, fold_static_shapes
from tests.frontend.fixups.graphs import convert_and_run, make_model, reference


def _i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def paddle_reshape() -> onnx.ModelProto:
    """Paddle2ONNX: Reshape target from Shape -> Cast -> Slice -> Cast -> Concat."""
    nodes = [
        h.make_node("Shape", ["x"], ["s"]),
        h.make_node("Cast", ["s"], ["s32"], to=TensorProto.INT32),
        h.make_node("Slice", ["s32", "start", "end"], ["b32"]),
        h.make_node("Cast", ["b32"], ["b"], to=TensorProto.INT64),
        h.make_node("Concat", ["b", "rest"], ["shape"], axis=0),
        h.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    consts = {"start": np.array([0], np.int32), "end": np.array([1], np.int32), "rest": _i64(24)}
    return make_model(nodes, {"x": [2, 4, 6]}, {"y": [2, 24]}, consts)


def torch_dynamic_pad() -> onnx.ModelProto:
    """torch.onnx.export of F.pad to a fixed width: pads = [0]*7 + [8 - W]."""
    nodes = [
        h.make_node("Shape", ["x"], ["s"]),
        h.make_node("Gather", ["s", "three"], ["w"]),
        h.make_node("Sub", ["eight", "w"], ["pad_w"]),
        h.make_node("Concat", ["zeros", "pad_w"], ["pads"], axis=0),
        h.make_node("Pad", ["x", "pads"], ["y"]),
    ]
    consts = {"three": _i64(3), "eight": _i64(8), "zeros": np.zeros(7, np.int64)}
    return make_model(nodes, {"x": [1, 2, 3, 5]}, {"y": [1, 2, 3, 8]}, consts)


def yolo_range_grid() -> onnx.ModelProto:
    """YOLOv8 anchor grid: Range(0, float(W), 1) + 0.5 broadcast against a feature map."""
    nodes = [
        h.make_node("Shape", ["x"], ["s"]),
        h.make_node("Gather", ["s", "three"], ["w"]),
        h.make_node("Cast", ["w"], ["w_f"], to=TensorProto.FLOAT),
        h.make_node("Range", ["zero", "w_f", "one"], ["r"]),
        h.make_node("Add", ["r", "half"], ["centres"]),
        h.make_node("Sub", ["x", "centres"], ["y"]),
    ]
    consts = {
        "three": np.array(3, np.int64),
        "zero": np.array(0, np.float32),
        "one": np.array(1, np.float32),
        "half": np.array(0.5, np.float32),
    }
    return make_model(nodes, {"x": [1, 2, 4, 5]}, {"y": [1, 2, 4, 5]}, consts)


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(
            np.float32
        )
        for i in model.graph.input
    }


PATTERNS = [
    pytest.param(paddle_reshape, TypeError, "Reshape requires the input new shape", id="paddle"),
    pytest.param(torch_dynamic_pad, ValueError, "Dynamic pads are not supported", id="torch_pad"),
    pytest.param(yolo_range_grid, tvm.error.InternalError, "CodeGenVM cannot emit", id="yolo"),
]


@pytest.mark.parametrize(("build", "error", "message"), PATTERNS)
def test_pattern_fails_stock_and_matches_onnxruntime_folded(
    build: object, error: type[Exception], message: str
) -> None:
    model = build()  # type: ignore[operator]
    feeds = _feeds(model)
    with pytest.raises(error, match=message):
        convert_and_run(model, feeds)
    folded = fold_static_shapes(model)
    assert not any(n.op_type in ("Shape", "Range", "Concat") for n in folded.graph.node)
    onnx.checker.check_model(folded, full_check=True)
    (want,) = reference(model, feeds)
    (got,) = convert_and_run(folded, feeds)
    np.testing.assert_allclose(got, want, rtol=0, atol=0)
    (got_ort,) = reference(folded, feeds)  # the rewrite itself changes nothing
    np.testing.assert_array_equal(got_ort, want, strict=True)


def test_apply_onnx_fixups_includes_folding() -> None:
    model = paddle_reshape()
    assert [n.op_type for n in apply_onnx_fixups(model).graph.node] == ["Reshape"]


def test_idempotent() -> None:
    once = fold_static_shapes(yolo_range_grid())
    twice = fold_static_shapes(once)
    assert twice.SerializeToString() == once.SerializeToString()


def test_symbolic_shape_left_alone() -> None:
    model = paddle_reshape()
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_param = "batch"
    folded = fold_static_shapes(model)
    assert [n.op_type for n in folded.graph.node][:1] == ["Shape"]


def test_graph_output_never_replaced() -> None:
    """A static graph output stays computed by its node (its name and producer survive)."""
    nodes = [h.make_node("Shape", ["x"], ["s"]), h.make_node("Cast", ["s"], ["y"], to=1)]
    model = make_model(nodes, {"x": [2, 3]}, {"y": [2]})
    folded = fold_static_shapes(model)
    assert [n.op_type for n in folded.graph.node] == ["Cast"]
    assert [i.name for i in folded.graph.initializer] == ["s"]
    np.testing.assert_array_equal(
        reference(folded, _feeds(model))[0], np.array([2, 3], np.float32), strict=True
    )


def test_large_results_not_folded() -> None:
    """A constant sub-graph with a result over MAX_FOLDED_ELEMENTS stays a node."""
    side = int(np.sqrt(MAX_FOLDED_ELEMENTS)) + 1
    nodes = [
        h.make_node("ConstantOfShape", ["shape"], ["big"]),
        h.make_node("Add", ["x", "big"], ["y"]),
    ]
    model = make_model(nodes, {"x": [side, side]}, {"y": [side, side]}, {"shape": _i64(side, side)})
    folded = fold_static_shapes(model)
    assert [n.op_type for n in folded.graph.node] == ["ConstantOfShape", "Add"]


def test_sequence_results_not_folded() -> None:
    """Only plain tensors are folded: a constant sequence stays a node, the model still runs."""
    nodes = [
        h.make_node("SequenceConstruct", ["a", "b"], ["seq"]),
        h.make_node("SequenceAt", ["seq", "one"], ["picked"]),
        h.make_node("Add", ["x", "picked"], ["y"]),
    ]
    consts = {"a": np.zeros(3, np.float32), "b": np.ones(3, np.float32), "one": _i64(1)[0]}
    model = make_model(nodes, {"x": [3]}, {"y": [3]}, consts)
    folded = fold_static_shapes(model)
    assert [n.op_type for n in folded.graph.node] == ["SequenceConstruct", "SequenceAt", "Add"]
    feeds = {"x": np.arange(3, dtype=np.float32)}
    np.testing.assert_array_equal(
        reference(folded, feeds)[0], np.arange(1, 4, dtype=np.float32), strict=True
    )
