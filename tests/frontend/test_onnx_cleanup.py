"""The clean-up step (onnxslim shape inference + constant folding) earns its place.

For each importer failure seen on real exported models, a small graph with
the same pattern: TVM's ``from_onnx`` fails on it as exported (with static
input shapes), succeeds after :func:`clean_up` alone (no model fix-ups), and
npuc's full import matches onnxruntime (rtol=1e-4, atol=1e-5). The clean-up
must also leave the operators of a plain model alone (no fusion).
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from npuc.frontend.onnx.cleanup import clean_up
from tests.frontend.onnx_graphs import (
    Case,
    GraphSpec,
    check_against_onnxruntime,
    const,
    ints,
    make_model,
    random_feeds,
)


def _paddle_reshape() -> onnx.ModelProto:
    """Reshape whose target comes from Shape -> Slice -> Cast -> Concat (Paddle2ONNX style)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Slice", ["shp", "zero", "two"], ["nc"]),
        helper.make_node("Cast", ["nc"], ["nc64"], to=TensorProto.INT64),
        helper.make_node("Concat", ["nc64", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    consts = {"zero": ints([0]), "two": ints([2]), "minus1": ints([-1])}
    return make_model(GraphSpec(nodes, {"x": (1, 3, 4, 5)}, consts))


def _torch_dynamic_pads() -> onnx.ModelProto:
    """Pad whose pads come from Shape -> Gather -> Sub -> Concat (torch.onnx style)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Gather", ["shp", "three"], ["w"], axis=0),
        helper.make_node("Sub", ["eight", "w"], ["extra"]),
        helper.make_node("Concat", ["zeros7", "extra"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["y"]),
    ]
    consts = {"three": ints([3]), "eight": ints([8]), "zeros7": ints([0] * 7)}
    return make_model(GraphSpec(nodes, {"x": (1, 2, 4, 6)}, consts))


def _identity_of_shape() -> onnx.ModelProto:
    """Identity on a Shape result feeding Reshape."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Identity", ["shp"], ["shp2"]),
        helper.make_node("Reshape", ["y0", "shp2"], ["y"]),
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Add", ["r", "y"], ["out"]),
    ]
    spec = GraphSpec(nodes, {"x": (2, 6), "y0": (3, 4)}, outputs=("out",))
    return make_model(spec)


PATTERNS = [
    # TVM 0.27 imports this small form; the real PP-OCR graph failed with "Reshape requires the
    # input new shape to be Shape" (frontend/fixups), so here only folding + results are checked.
    pytest.param(_paddle_reshape, None, id="paddle-reshape"),
    pytest.param(
        _torch_dynamic_pads, "Dynamic pads are not supported yet", id="torch-dynamic-pads"
    ),
    pytest.param(_identity_of_shape, "cannot handle ShapeExpr inputs", id="identity-of-shape"),
]


def _from_onnx(model: onnx.ModelProto) -> None:
    from tvm.relax.frontend.onnx import from_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_onnx(model, sanitize_input_names=False)


@pytest.mark.parametrize(("build", "tvm_error"), PATTERNS)
def test_cleanup_fixes_importer_failure(build, tvm_error: str | None) -> None:
    model = build()
    if tvm_error is not None:
        with pytest.raises(Exception, match=tvm_error):
            _from_onnx(model)
    cleaned = clean_up(model, "test")
    assert "Shape" not in {n.op_type for n in cleaned.graph.node}
    _from_onnx(cleaned)  # no longer raises
    feeds = random_feeds(
        {
            i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
            for i in model.graph.input
        }
    )
    check_against_onnxruntime(Case(model, feeds))


def test_cleanup_keeps_operators_unfused() -> None:
    """Conv + BatchNormalization stays two nodes: fusion is the midend's job."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"]),
    ]
    consts = {
        "w": const((4, 3, 3, 3)),
        "s": const((4,), 2),
        "b": const((4,), 3),
        "m": const((4,), 4),
        "v": (np.abs(const((4,), 5)) + 0.5).astype(np.float32),
    }
    model = make_model(GraphSpec(nodes, {"x": (1, 3, 6, 6)}, consts))
    cleaned = clean_up(model, "test")
    assert [n.op_type for n in cleaned.graph.node] == ["Conv", "BatchNormalization"]
    shapes = {v.name: v for v in [*cleaned.graph.value_info, *cleaned.graph.output]}
    assert [d.dim_value for d in shapes["c"].type.tensor_type.shape.dim] == [1, 4, 6, 6]
    assert cleaned.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
