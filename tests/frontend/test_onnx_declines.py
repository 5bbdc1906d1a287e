"""Regression tests for the ONNX conformance findings: declines, the clean-up fallback,
the error class of valid-but-uncompilable inputs, the opset range and the one-line message.

Each decline test builds the smallest graph the conformance case exercises and checks the
error names the node and the reason; each "still compiles" twin runs through the CPU path
against onnxruntime (rtol 1e-4, atol 1e-5, the zoo's tolerances).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.frontend import load
from tests.frontend.onnx_graphs import (
    Case,
    GraphSpec,
    check_against_onnxruntime,
    const,
    make_model,
    node_case,
    random_feeds,
)


def _declined(model: onnx.ModelProto, node: str, reason: str) -> UnsupportedError:
    with pytest.raises(UnsupportedError) as info:
        load(model)
    assert info.value.exit_code == 4
    assert node in info.value.message
    assert reason in info.value.message
    return info.value


@pytest.mark.parametrize("training", [True, False])
def test_dropout_training_mode(training: bool) -> None:
    consts = {"ratio": np.array(0.5, np.float32), "train": np.array(training)}
    case = node_case("Dropout", {"x": (2, 3)}, consts=consts)
    if training:
        _declined(case.model, "dropout_0 (Dropout", "training_mode=1 is not supported")
    else:
        check_against_onnxruntime(case)


def test_dropout_training_mode_computed_at_run_time_is_declined() -> None:
    nodes = [
        helper.make_node("Not", ["flag"], ["train"], name="flip"),
        helper.make_node("Dropout", ["x", "", "train"], ["y"], name="drop"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3)),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, ()),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 3))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    _declined(model, "drop (Dropout", "training_mode ('train') must be a constant false")


def _resize_axes_model() -> onnx.ModelProto:
    node = helper.make_node(
        "Resize", ["x", "", "scales"], ["y"], name="rs_axes", axes=[2, 3], mode="nearest"
    )
    scales = np.array([2.0, 2.0], np.float32)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 1, 2, 2))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(scales, "scales")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    return model


def test_resize_axes_is_declined_not_invalid() -> None:
    """onnxslim crashes on this graph; the rule's decline must still reach the user."""
    _declined(_resize_axes_model(), "rs_axes (Resize, opset 19)", "the axes attribute")


def test_cleanup_falls_back_when_onnxslim_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxslim

    calls: list[int] = []

    def crash(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise IndexError("list index out of range")

    monkeypatch.setattr(onnxslim, "slim", crash)
    # Shape -> Reshape: the fix-ups must fold the shape sub-graph without onnxslim.
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Reshape", ["x", "s"], ["r"]),
        helper.make_node("Conv", ["r", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inputs = {"x": (1, 3, 5, 5)}
    model = make_model(GraphSpec(nodes, inputs, {"w": const((2, 3, 3, 3))}))
    check_against_onnxruntime(Case(model, random_feeds(inputs)))
    assert calls, "onnxslim.slim was not called, so the fallback was not exercised"


@pytest.mark.parametrize(
    ("base", "exponent"),
    [(np.float32, np.int64), (np.int32, np.float32), (np.int64, np.int64)],
)
def test_pow_needs_float32_operands(base: type, exponent: type) -> None:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(base))
    node = helper.make_node("Pow", ["x", "e"], ["y"], name="pw")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", elem, (3,))],
        [helper.make_tensor_value_info("y", elem, (3,))],
        initializer=[numpy_helper.from_array(np.array([2, 1, 3], exponent), "e")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    _declined(model, "pw (Pow, opset 15)", "only float32 Pow is supported")


def test_pow_float32_still_compiles() -> None:
    exponent = {"e": np.array([2.0, 3.0, 0.5], np.float32)}
    case = node_case("Pow", {"x": (2, 3)}, consts=exponent)
    feeds = {"x": np.abs(case.feeds["x"]) + np.float32(0.1)}
    check_against_onnxruntime(Case(case.model, feeds))


@pytest.mark.parametrize(
    ("scales", "ok"),
    [((1.0, 1.0, 0.6, 0.6), False), ((1.0, 1.0, 2.0, 0.5), True), ((1.0, 1.0, 1.5, 1.0), True)],
)
def test_resize_scales_must_match_sizes(scales: tuple[float, ...], ok: bool) -> None:
    consts = {"scales": np.array(scales, np.float32)}
    case = node_case(
        "Resize", {"x": (1, 1, 2, 4)}, consts=consts, input_order=["x", "", "scales"], mode="linear"
    )
    if ok:
        check_against_onnxruntime(case)
    else:
        _declined(
            case.model, "resize_0 (Resize", "scale 0.6 on axis 2 is not output size / input size"
        )


def test_zero_sized_input_is_unsupported() -> None:
    case = node_case("Relu", {"x": (2, 3)})
    with pytest.raises(UnsupportedError, match=r"input 'x' has a 0-sized dimension"):
        load(case.model, {"x": (0, 3)})
    with pytest.raises(InvalidInputError, match="negative dimension"):
        load(case.model, {"x": (-1, 3)})
    with pytest.raises(InvalidInputError, match="has fixed size 3 on axis 1"):
        load(case.model, {"x": (2, 4)})


def test_sequence_and_optional_inputs_are_unsupported() -> None:
    seq = helper.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, (2,))
    opt = helper.make_value_info(
        "o", helper.make_optional_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2]))
    )
    for value, node, kind in (
        (seq, helper.make_node("SequenceAt", ["xs", "i"], ["y"]), "sequence"),
        (opt, helper.make_node("OptionalGetElement", ["o"], ["y"]), "optional"),
    ):
        graph = helper.make_graph(
            [node],
            "g",
            [value],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2,))],
            initializer=[numpy_helper.from_array(np.array(0, np.int64), "i")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        with pytest.raises(UnsupportedError, match=rf"input '{value.name}' is a {kind} value"):
            load(model)


def test_newest_opset_compiles() -> None:
    case = node_case("Relu", {"x": (2, 3)}, opset=28)
    case.model.ir_version = 13
    check_against_onnxruntime(case)


def test_unsupported_message_is_one_line_with_structured_nodes() -> None:
    nodes = [
        helper.make_node("Sin", ["x"], ["s"], name="bad_sin"),
        helper.make_node("Cos", ["s"], ["y"], name="bad_cos"),
    ]
    model = make_model(GraphSpec(nodes, {"x": (2, 3)}))
    error = _declined(model, "bad_sin (Sin, opset 18)", "operator not supported")
    assert "\n" not in error.message
    assert "2 node(s) cannot be compiled (operators: Cos, Sin): bad_sin (Sin" in error.message
    assert "; bad_cos (Cos, opset 18)" in error.message
    assert [n.node_name for n in error.nodes] == ["bad_sin", "bad_cos"]
    assert error.nodes[1].to_json()["op_type"] == "Cos"
