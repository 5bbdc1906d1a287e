"""Input shapes: symbolic dims are fixed by input_shapes; every inconsistency is a clear error."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.frontend import load
from tests.frontend.onnx_graphs import Case, check_against_onnxruntime, const, random_feeds


def _dynamic_conv(dims: list) -> onnx.ModelProto:
    """Conv over an input whose declared shape is ``dims`` (ints and/or names)."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[onnx.numpy_helper.from_array(const((4, 3, 3, 3)), "w")],
    )
    graph.input.append(helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, (4, 3, 3, 3)))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


DYNAMIC = ["batch", 3, "height", "width"]


def test_symbolic_dims_fixed_by_input_shapes() -> None:
    model = _dynamic_conv(DYNAMIC)
    mod, info = load(model, {"x": (2, 3, 10, 7)})
    assert info.inputs[0].shape == (2, 3, 10, 7)
    assert info.outputs[0].shape == (2, 4, 10, 7)
    assert info.layout == "NCHW"
    assert info.opset == 17
    assert [p.name for p in mod["main"].params] == [
        "x"
    ]  # the initializer listed as input is not one
    feeds = random_feeds({"x": (2, 3, 10, 7)})
    check_against_onnxruntime(Case(model, feeds, input_shapes={"x": (2, 3, 10, 7)}))


def test_missing_shape_names_input_dims_and_flag() -> None:
    with pytest.raises(InvalidInputError) as info:
        load(_dynamic_conv(DYNAMIC))
    msg = info.value.message
    assert "'x'" in msg and "batch, height, width" in msg
    assert "--input-shape x=Nx3xNxN" in msg
    assert "--input-shape" in (info.value.hint or "")


def test_unknown_dim_without_name() -> None:
    with pytest.raises(InvalidInputError, match=r"symbolic dims \?"):
        load(_dynamic_conv([1, 3, None, 8]))


def test_wrong_rank() -> None:
    with pytest.raises(InvalidInputError, match=r"'x' has rank 4 .* gives rank 3"):
        load(_dynamic_conv(DYNAMIC), {"x": (3, 8, 8)})


def test_conflict_with_fixed_dim() -> None:
    with pytest.raises(
        InvalidInputError, match=r"fixed size 3 on axis 1, but --input-shape gives 4"
    ):
        load(_dynamic_conv(DYNAMIC), {"x": (1, 4, 8, 8)})


def test_unknown_input_name() -> None:
    with pytest.raises(InvalidInputError, match=r"names 'images', but the model's inputs are 'x'"):
        load(_dynamic_conv(DYNAMIC), {"images": (1, 3, 8, 8), "x": (1, 3, 8, 8)})


def test_initializer_is_not_an_input() -> None:
    with pytest.raises(InvalidInputError, match=r"names 'w'"):
        load(_dynamic_conv(DYNAMIC), {"x": (1, 3, 8, 8), "w": (4, 3, 3, 3)})


def test_negative_dim_is_invalid_and_zero_dim_unsupported() -> None:
    with pytest.raises(InvalidInputError, match="negative dimension"):
        load(_dynamic_conv(DYNAMIC), {"x": (-1, 3, 8, 8)})
    # An empty tensor is valid ONNX that npuc cannot compile: exit 4, not 3.
    with pytest.raises(UnsupportedError, match="0-sized dimension"):
        load(_dynamic_conv(DYNAMIC), {"x": (0, 3, 8, 8)})


def test_static_model_accepts_matching_shape() -> None:
    _mod, info = load(_dynamic_conv([1, 3, 5, 5]), {"x": (1, 3, 5, 5)})
    assert info.inputs[0].shape == (1, 3, 5, 5)
