"""remove_identity: Identity on a Shape result, which stock TVM refuses."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper as h

from npuc.frontend.fixups.remove_identity import remove_identity
from tests.frontend.fixups.graphs import convert_and_run, make_model, reference


def identity_on_shape() -> onnx.ModelProto:
    """Reshape x to z's shape through an Identity alias of Shape(z)."""
    nodes = [
        h.make_node("Shape", ["z"], ["s"]),
        h.make_node("Identity", ["s"], ["s_alias"]),
        h.make_node("Identity", ["s_alias"], ["s_alias2"]),
        h.make_node("Reshape", ["x", "s_alias2"], ["y"]),
    ]
    return make_model(nodes, {"x": [2, 12], "z": [4, 6]}, {"y": [4, 6]})


def test_fails_stock_and_matches_onnxruntime_fixed() -> None:
    model = identity_on_shape()
    rng = np.random.default_rng(0)
    feeds = {
        "x": rng.standard_normal((2, 12)).astype(np.float32),
        "z": rng.standard_normal((4, 6)).astype(np.float32),
    }
    try:
        convert_and_run(model, feeds)
    except ValueError as err:
        assert "cannot handle ShapeExpr inputs" in str(err)
    else:
        raise AssertionError("stock TVM accepted Identity on a Shape: is this fix-up still needed?")
    fixed = remove_identity(model)
    assert [n.op_type for n in fixed.graph.node] == ["Shape", "Reshape"]
    assert list(fixed.graph.node[1].input) == ["x", "s"]  # chained aliases resolved
    (want,) = reference(model, feeds)
    (got,) = convert_and_run(fixed, feeds)
    np.testing.assert_array_equal(got, want, strict=True)  # a reshape: exact


def test_identity_producing_graph_output_kept() -> None:
    nodes = [h.make_node("Relu", ["x"], ["r"]), h.make_node("Identity", ["r"], ["y"])]
    model = make_model(nodes, {"x": [3]}, {"y": [3]})
    fixed = remove_identity(model)
    assert [n.op_type for n in fixed.graph.node] == ["Relu", "Identity"]
    assert [o.name for o in fixed.graph.output] == ["y"]


def test_idempotent() -> None:
    once = remove_identity(identity_on_shape())
    assert remove_identity(once).SerializeToString() == once.SerializeToString()
