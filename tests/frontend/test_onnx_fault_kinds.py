"""Each fault kind of issue 15's ONNX section, reproduced with generated models.

Every model is built here (none of the handed case files is read) and goes
through npuc's CPU path and onnxruntime (:func:`run_case`: shapes equal,
values within rtol/atol 1e-4, or a refusal by a support rule naming the
node). Kinds: auto_pad SAME_UPPER/SAME_LOWER/VALID sizing for every pooling
and convolution op at any stride; LayerNormalization with lower-rank
scale/bias; reflect pads wider than the axis; empty slices with negative
steps; even LRN sizes; Resize scales that do not divide the size; and the
import guard itself (a converter that computes a wrong shape, or raises).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from npuc.core.errors import UnsupportedError
from npuc.frontend import load
from tests.frontend.onnx_random_graphs import GenCase, run_case, single_input_model


def _case(nodes: list[onnx.NodeProto], shape: tuple[int, ...], consts=None) -> GenCase:
    model, feeds = single_input_model(nodes, shape, dict(consts or {}), seed=7)
    return GenCase(model, feeds, nodes[0].op_type)


def _declined(case: GenCase, node: str, reason: str) -> None:
    with pytest.raises(UnsupportedError) as info:
        load(case.model)
    assert info.value.nodes, "refused by a support rule"
    assert f"{node} (" in str(info.value) and reason in str(info.value), str(info.value)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "Conv"])
@pytest.mark.parametrize("auto_pad", ["SAME_LOWER", "SAME_UPPER", "VALID"])
@pytest.mark.parametrize(("size", "kernel", "stride"), [(5, 3, 2), (8, 3, 3), (7, 2, 2)])
def test_auto_pad_sizes_like_onnx(
    op: str, auto_pad: str, size: int, kernel: int, stride: int
) -> None:
    attrs = {"strides": [stride, stride], "auto_pad": auto_pad}
    consts = {}
    inputs = ["x"]
    if op == "Conv":
        consts["w"] = (
            np.random.default_rng(1).standard_normal((2, 2, kernel, kernel)).astype(np.float32)
        )
        inputs.append("w")
    else:
        attrs["kernel_shape"] = [kernel, kernel]
    case = _case(
        [helper.make_node(op, inputs, ["y"], name="n0", **attrs)], (1, 2, size, size), consts
    )
    assert run_case(case) == "match"
    out = load(case.model).info.outputs[0].shape
    want = -(-size // stride) if auto_pad != "VALID" else (size - kernel) // stride + 1
    assert out == (1, 2, want, want)


def test_auto_pad_needing_negative_padding_is_declined() -> None:
    node = helper.make_node(
        "MaxPool",
        ["x"],
        ["y"],
        name="n0",
        kernel_shape=[1, 1],
        strides=[2, 2],
        auto_pad="SAME_UPPER",
    )
    _declined(_case([node], (1, 1, 4, 4)), "n0", "needs negative padding")


@pytest.mark.parametrize(
    ("shape", "axis", "scale_shape"),
    [((1, 4, 4, 4), 1, (4,)), ((2, 3, 5), 0, (5,)), ((2, 3, 5), -2, (1, 5)), ((3, 6), 0, (6,))],
)
@pytest.mark.parametrize("with_bias", [True, False])
def test_layer_norm_with_lower_rank_scale(
    shape: tuple[int, ...], axis: int, scale_shape: tuple[int, ...], with_bias: bool
) -> None:
    rng = np.random.default_rng(2)
    consts = {"scale": rng.standard_normal(scale_shape).astype(np.float32)}
    if with_bias:
        consts["bias"] = rng.standard_normal(scale_shape).astype(np.float32)
    node = helper.make_node("LayerNormalization", ["x", *consts], ["y"], name="n0", axis=axis)
    assert run_case(_case([node], shape, consts)) == "match"


@pytest.mark.parametrize(
    ("shape", "pads"), [((3, 2), [0, 2, 0, 0]), ((2, 5), [2, 0, 0, 0]), ((4, 4), [0, 0, 0, 4])]
)
def test_reflect_pad_wider_than_axis_is_declined(shape: tuple[int, int], pads: list[int]) -> None:
    node = helper.make_node("Pad", ["x", "pads"], ["y"], name="n0", mode="reflect")
    case = _case([node], shape, {"pads": np.asarray(pads, np.int64)})
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    from tests.tooling.reference import run_onnxruntime

    with pytest.raises(InvalidArgument, match="Pad reflect"):  # onnxruntime refuses it too
        run_onnxruntime(case.model, case.feeds)
    _declined(case, "n0", "is wider than the axis allows")


def test_reflect_pad_of_axis_minus_one_compiles() -> None:
    node = helper.make_node("Pad", ["x", "pads"], ["y"], name="n0", mode="reflect")
    assert run_case(_case([node], (3, 4), {"pads": np.asarray([2, 3, 2, 3], np.int64)})) == "match"


@pytest.mark.parametrize(("start", "end", "step"), [(0, 5, -1), (2, 4, -2), (2, 5, -1), (1, 1, -3)])
@pytest.mark.parametrize("as_output", [True, False])
def test_empty_slice_with_negative_step(start: int, end: int, step: int, as_output: bool) -> None:
    consts = {
        k: np.asarray([v], np.int64) for k, v in (("s", start), ("e", end), ("a", 1), ("p", step))
    }
    nodes = [
        helper.make_node("Slice", ["x", "s", "e", "a", "p"], ["y" if as_output else "t"], name="n0")
    ]
    if not as_output:
        nodes.append(helper.make_node("Concat", ["t", "x"], ["y"], name="n1", axis=1))
    case = _case(nodes, (3, 6), consts)
    assert run_case(case) == "match"
    assert load(case.model).info.outputs[0].shape == ((3, 0) if as_output else (3, 6))


@pytest.mark.parametrize("size", [2, 4, 6])
def test_even_lrn_is_declined(size: int) -> None:
    node = helper.make_node("LRN", ["x"], ["y"], name="n0", size=size)
    _declined(_case([node], (1, 7, 3, 3)), "n0", f"size={size} is even")


@pytest.mark.parametrize("size", [1, 3, 5])
def test_odd_lrn_matches(size: int) -> None:
    node = helper.make_node("LRN", ["x"], ["y"], name="n0", size=size, alpha=0.5, beta=0.75)
    assert run_case(_case([node], (1, 7, 3, 3))) == "match"


@pytest.mark.parametrize(("size", "scale"), [(2, 0.6), (5, 1.5), (3, 0.75), (6, 0.7)])
def test_uneven_resize_scale_refusal_says_what_differs(size: int, scale: float) -> None:
    scales = np.asarray([1, 1, scale, scale], np.float32)
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="n0", mode="linear")
    case = _case([node], (1, 1, size, size), {"scales": scales})
    with pytest.raises(UnsupportedError) as info:
        load(case.model)
    message = str(info.value) + str(info.value.hint)
    assert "n0 (Resize" in message and "values would differ" in message
    assert "give sizes" not in message  # a hint that would change the model's meaning


def test_guard_names_the_node_when_a_converter_computes_another_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import npuc.frontend.fixups as fixups

    kept = tuple(f for f in fixups.ONNX_FIXUPS if f.__name__ != "explicit_auto_pad")
    monkeypatch.setattr(fixups, "ONNX_FIXUPS", kept)  # TVM's own SAME_LOWER sizing again
    nodes = [
        helper.make_node(
            "MaxPool",
            ["x"],
            ["p"],
            name="pool",
            kernel_shape=[3, 3],
            strides=[2, 2],
            auto_pad="SAME_LOWER",
        ),
        helper.make_node("Relu", ["p"], ["y"], name="relu"),
    ]
    with pytest.raises(
        UnsupportedError,
        match=r"node 'pool' \(MaxPool\) computes tensor 'p' with shape 1x1x2x2 after import, "
        r"but ONNX gives it shape 1x1x3x3",
    ):
        load(_case(nodes, (1, 1, 5, 5)).model)


def test_guard_names_the_node_when_tvm_raises() -> None:
    from npuc.frontend.onnx.guard import import_graph

    node = helper.make_node("LRN", ["x"], ["y"], name="lrn_even", size=4)
    model = _case([node], (1, 6, 3, 3)).model
    with pytest.raises(
        UnsupportedError, match=r"node 'lrn_even' \(LRN\) cannot be imported"
    ) as info:
        import_graph(model, {"x": (1, 6, 3, 3)}, {"x": "float32"}, 18, "m.onnx")
    assert str(info.value).startswith("m.onnx: node 'lrn_even'")


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize(
    ("size", "kernel", "stride", "begin", "end"),
    [(6, 3, 2, 2, 2), (5, 1, 3, 0, 0), (7, 3, 3, 2, 1), (8, 3, 2, 1, 1)],
)
def test_ceil_mode_drops_windows_starting_in_the_end_padding(
    op: str, size: int, kernel: int, stride: int, begin: int, end: int
) -> None:
    """ONNX's ceil_mode rule (onnxruntime follows it; onnx's shape inference and TVM do not)."""
    node = helper.make_node(
        op,
        ["x"],
        ["y"],
        name="n0",
        kernel_shape=[kernel, kernel],
        strides=[stride, stride],
        pads=[begin, begin, end, end],
        ceil_mode=1,
    )
    assert run_case(_case([node], (1, 2, size, size))) == "match"


def test_ceil_mode_average_counting_padding_in_an_added_window_is_declined() -> None:
    node = helper.make_node(
        "AveragePool",
        ["x"],
        ["y"],
        name="n0",
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[0, 0, 0, 0],
        ceil_mode=1,
        count_include_pad=1,
    )
    _declined(_case([node], (1, 1, 6, 6)), "n0", "count_include_pad=1")


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("op", ["MaxPool", "Conv"])
def test_dilated_same_auto_pad_is_declined(op: str, auto_pad: str) -> None:
    """onnxruntime refuses dilated SAME Conv and sizes dilated SAME MaxPool without the dilation."""
    attrs: dict[str, object] = {"dilations": [2, 2], "auto_pad": auto_pad}
    consts = {}
    inputs = ["x"]
    if op == "Conv":
        consts["w"] = np.ones((1, 1, 2, 2), np.float32)
        inputs.append("w")
    else:
        attrs["kernel_shape"] = [2, 2]
    node = helper.make_node(op, inputs, ["y"], name="n0", **attrs)
    _declined(_case([node], (1, 1, 5, 5), consts), "n0", "with dilations [2, 2]")


def test_layer_norm_with_lower_rank_scale_computed_at_run_time() -> None:
    """A run-time Scale of lower rank goes through an Expand to the normalised shape."""
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "scale"], ["y"], name="n0", axis=1)],
        "g",
        [
            helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 4, 4]),
            helper.make_tensor_value_info("scale", onnx.TensorProto.FLOAT, [4]),
        ],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    rng = np.random.default_rng(5)
    feeds = {
        "x": rng.standard_normal((1, 4, 4, 4)).astype(np.float32),
        "scale": rng.standard_normal(4).astype(np.float32),
    }
    assert run_case(GenCase(model, feeds, "LayerNormalization run-time scale")) == "match"
