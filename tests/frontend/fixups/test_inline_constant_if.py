"""Control flow: --input-value folds an If to its branch; the support check and inspect
look inside If branches. Compared with onnxruntime at rtol 1e-4 / atol 1e-5 (fp32)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.frontend import load
from npuc.frontend.inspect import summarize
from tests.tooling.cpu import run_relax_on_cpu
from tests.tooling.reference import run_onnxruntime

X_SHAPE = (1, 3, 8, 8)
CONV_MACS = 3 * 8 * 8 * 3 * 9  # 3 filters over 8x8 outputs, each 3 channels x 3x3


def _branch(prefix: str, convs: int, seed: int, extra: str | None = None) -> onnx.GraphProto:
    """``convs`` 3x3 convolutions over the outer ``x``, then ``extra`` (an op) or Relu."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i in range(convs):
        w = f"{prefix}_w{i}"
        inits.append(
            numpy_helper.from_array((rng.standard_normal((3, 3, 3, 3)) * 0.3).astype(np.float32), w)
        )
        nodes.append(
            helper.make_node(
                "Conv", [x, w], [f"{prefix}_c{i}"], pads=[1] * 4, name=f"{prefix}_conv{i}"
            )
        )
        x = f"{prefix}_c{i}"
    nodes.append(helper.make_node(extra or "Relu", [x], ["out"], name=f"{prefix}_last"))
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, list(X_SHAPE))
    return helper.make_graph(nodes, prefix, [], [out], initializer=inits)


def _model(then_branch: onnx.GraphProto, else_branch: onnx.GraphProto) -> onnx.ModelProto:
    """``y = If(rate == 16000, then, else)`` over input x; ``rate`` is an int64 scalar input."""
    nodes = [
        helper.make_node("Equal", ["rate", "r16k"], ["is16k"], name="is_16k"),
        helper.make_node(
            "If", ["is16k"], ["y"], name="by_rate", then_branch=then_branch, else_branch=else_branch
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "m",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, list(X_SHAPE)),
            helper.make_tensor_value_info("rate", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(X_SHAPE))],
        initializer=[numpy_helper.from_array(np.array(16000, np.int64), "r16k")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.mark.parametrize("rate", [16000, 8000])
def test_fixed_input_folds_if_to_the_branch_taken(rate: int) -> None:
    model = _model(_branch("a", 2, seed=1), _branch("b", 3, seed=2))
    x = np.random.default_rng(0).standard_normal(X_SHAPE).astype(np.float32)
    mod, info = load(model, input_values={"rate": str(rate)})
    assert [t.name for t in info.inputs] == ["x"]
    got = run_relax_on_cpu(mod, {"x": x})[0]
    want = run_onnxruntime(model, {"x": x, "rate": np.array(rate, np.int64)})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_nested_if_folds() -> None:
    """then: If(rate > 10000, c, d) inside the outer If on rate == 16000."""
    inner = [
        helper.make_node("Greater", ["rate", "r10k"], ["above"], name="above_10k"),
        helper.make_node(
            "If",
            ["above"],
            ["out"],
            name="inner",
            then_branch=_branch("c", 1, seed=3),
            else_branch=_branch("d", 1, seed=4),
        ),
    ]
    r10k = numpy_helper.from_array(np.array(10000, np.int64), "r10k")
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, list(X_SHAPE))
    then_graph = helper.make_graph(inner, "outer_then", [], [out], initializer=[r10k])
    model = _model(then_graph, _branch("b", 1, seed=2))
    x = np.random.default_rng(0).standard_normal(X_SHAPE).astype(np.float32)
    mod, _ = load(model, input_values={"rate": "16000"})
    want = run_onnxruntime(model, {"x": x, "rate": np.array(16000, np.int64)})["y"]
    np.testing.assert_allclose(run_relax_on_cpu(mod, {"x": x})[0], want, rtol=1e-4, atol=1e-5)


def test_support_check_and_inspect_look_inside_branches() -> None:
    """12 convolutions in the branches (6 + 6) and an unsupported op in one of them."""
    model = _model(_branch("a", 6, seed=1, extra="Sin"), _branch("b", 6, seed=2))
    summary = summarize(model)
    assert summary.op_histogram["Conv"] == 12
    assert summary.total_macs == 12 * CONV_MACS
    assert {u.node_name for u in summary.unsupported} == {"by_rate", "by_rate/then_branch/a_last"}
    if_reason = next(u.reason for u in summary.unsupported if u.op_type == "If")
    assert "--input-value" in if_reason
    with pytest.raises(UnsupportedError, match="by_rate/then_branch/a_last \\(Sin"):
        load(model)
    fixed = summarize(model, input_values={"rate": "8000"})
    assert fixed.unsupported == () and fixed.total_macs == 6 * CONV_MACS
    assert [t.name for t in fixed.inputs] == ["x"]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"sample_rate": "1"}, "not a model input"),
        ({"rate": "fast"}, "not a number"),
        ({"rate": "1,2"}, "has 2 element"),
        ({"rate": "0.5"}, "is not whole"),
        ({"x": "1"}, "has 1 element"),
    ],
)
def test_bad_input_values_name_the_input(values: dict[str, str], needle: str) -> None:
    model = _model(_branch("a", 1, seed=1), _branch("b", 1, seed=2))
    with pytest.raises(InvalidInputError, match=needle):
        load(model, input_values=values)


def test_fixup_inlines_the_branch_with_prefixed_names() -> None:
    from npuc.frontend.fixups.inline_constant_if import inline_constant_if

    model = _model(_branch("a", 2, seed=1), _branch("b", 1, seed=2))
    model.graph.node[0].CopyFrom(helper.make_node("Identity", ["r16k"], ["is16k"], name="is_16k"))
    model.graph.initializer.append(numpy_helper.from_array(np.array(False), "is16k_const"))
    model.graph.node[1].input[0] = "is16k_const"
    out = inline_constant_if(model)
    assert "If" not in {n.op_type for n in out.graph.node}
    assert [n.name for n in out.graph.node if n.op_type == "Conv"] == ["by_rate/b_conv0"]
    assert inline_constant_if(out) is out
