"""Operator-zoo cases for element-wise, activation and data-movement operators."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.frontend.onnx_graphs import (
    Case,
    GraphSpec,
    const,
    ints,
    make_model,
    node_case,
    random_feeds,
)


def _binary(op: str, a: tuple[int, ...], b: tuple[int, ...], **kw: object) -> Case:
    feeds = random_feeds({"a": a, "b": b})
    if op == "Div":
        feeds["b"] = (np.abs(feeds["b"]) + 0.5).astype(np.float32)
    return node_case(op, {"a": a, "b": b}, feeds=feeds, **kw)


def _silu(shape: tuple[int, ...]) -> Case:
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    spec = GraphSpec(nodes, {"x": shape})
    return Case(make_model(spec), random_feeds(spec.inputs))


def _gelu_erf(shape: tuple[int, ...]) -> Case:
    """GELU as exporters decompose it: x * 0.5 * (1 + erf(x / sqrt(2)))."""
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["p"]),
        helper.make_node("Mul", ["x", "p"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    consts = {
        k: np.array(v, np.float32) for k, v in (("sqrt2", 2**0.5), ("one", 1.0), ("half", 0.5))
    }
    spec = GraphSpec(nodes, {"x": shape}, consts)
    return Case(make_model(spec), random_feeds(spec.inputs))


def _positive_feeds(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {"x": (np.abs(random_feeds({"x": shape})["x"]) + 0.1).astype(np.float32)}


def _split_outputs(n: int) -> tuple[str, ...]:
    return tuple(f"y{i}" for i in range(n))


def _cast_roundtrip(shape: tuple[int, ...]) -> Case:
    nodes = [
        helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
        helper.make_node("Cast", ["i"], ["y"], to=TensorProto.FLOAT),
    ]
    spec = GraphSpec(nodes, {"x": shape})
    feeds = {"x": (random_feeds(spec.inputs)["x"] * 10).astype(np.float32)}
    return Case(make_model(spec), feeds)


def _resize(
    x: tuple[int, ...],
    *,
    scales: list[float] | None = None,
    sizes: list[int] | None = None,
    opset: int = 18,
    **attrs: object,
) -> Case:
    consts = {"roi": np.array([], np.float32)}
    order = ["x", "roi"]
    if scales is not None:
        consts["scales"] = np.array(scales, np.float32)
        order.append("scales")
    else:
        consts["scales"] = np.array([], np.float32)
        consts["sizes"] = ints(sizes or [])
        order += ["scales", "sizes"]
    return node_case(
        "Resize",
        {"x": x},
        consts=consts,
        input_order=order,
        opset=opset,
        rtol=1e-4,
        atol=1e-5,
        **attrs,
    )


S4 = (2, 3, 5, 4)
CASES: list = [
    # arithmetic with broadcasting
    pytest.param(_binary("Add", S4, S4), id="add"),
    pytest.param(_binary("Add", S4, (3, 1, 1)), id="add-broadcast-channel"),
    pytest.param(_binary("Sub", (4, 6), (6,)), id="sub-broadcast-row"),
    pytest.param(_binary("Mul", S4, (1,)), id="mul-broadcast-scalar"),
    pytest.param(_binary("Mul", (2, 1, 5), (1, 4, 5), opset=13), id="mul-outer-opset13"),
    pytest.param(_binary("Div", S4, S4), id="div"),
    pytest.param(
        node_case("Pow", {"x": (3, 7)}, consts={"p": np.array(2.0, np.float32)}), id="pow-2"
    ),
    pytest.param(
        node_case(
            "Pow",
            {"x": (3, 7)},
            consts={"p": np.array(0.5, np.float32)},
            feeds=_positive_feeds((3, 7)),
        ),
        id="pow-half",
    ),
    pytest.param(node_case("Sqrt", {"x": (4, 5)}, feeds=_positive_feeds((4, 5))), id="sqrt"),
    pytest.param(node_case("Exp", {"x": (4, 5)}), id="exp"),
    pytest.param(node_case("Erf", {"x": (4, 5)}), id="erf"),
    pytest.param(node_case("Sum", {"a": S4, "b": S4, "c": (5, 4)}), id="sum-3-inputs"),
    # activations
    pytest.param(node_case("Relu", {"x": S4}), id="relu"),
    pytest.param(node_case("LeakyRelu", {"x": S4}, alpha=0.1), id="leakyrelu"),
    pytest.param(
        node_case("PRelu", {"x": S4}, consts={"slope": const((3, 1, 1))}), id="prelu-channel"
    ),
    pytest.param(
        node_case(
            "Clip",
            {"x": S4},
            consts={"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)},
        ),
        id="clip-relu6",
    ),
    pytest.param(
        node_case("Clip", {"x": S4}, consts={"lo": np.array(-0.5, np.float32)}, opset=13),
        id="clip-min-only",
    ),
    pytest.param(node_case("Clip", {"x": S4}, min=-1.0, max=1.0, opset=9), id="clip-attr-opset9"),
    pytest.param(node_case("Sigmoid", {"x": S4}), id="sigmoid"),
    pytest.param(node_case("HardSigmoid", {"x": S4}, alpha=0.2, beta=0.5), id="hardsigmoid"),
    pytest.param(node_case("HardSwish", {"x": S4}), id="hardswish"),
    pytest.param(node_case("Tanh", {"x": S4}), id="tanh"),
    pytest.param(_silu(S4), id="silu-as-x-sigmoid"),
    pytest.param(_silu((3, 17)), id="silu-2d"),
    pytest.param(node_case("Gelu", {"x": (2, 9)}, opset=20), id="gelu-erf-opset20"),
    pytest.param(
        node_case("Gelu", {"x": (2, 9)}, opset=20, approximate="tanh"), id="gelu-tanh-opset20"
    ),
    pytest.param(_gelu_erf((2, 4, 8)), id="gelu-decomposed"),
    pytest.param(node_case("Softmax", {"x": (2, 10)}), id="softmax-last"),
    pytest.param(node_case("Softmax", {"x": (2, 3, 4)}, axis=1), id="softmax-axis1"),
    pytest.param(
        node_case("Softmax", {"x": (2, 3, 4)}, axis=1, opset=11), id="softmax-coerced-opset11"
    ),
    # data movement
    pytest.param(
        node_case("Concat", {"a": (1, 2, 4, 4), "b": (1, 3, 4, 4)}, axis=1), id="concat-channels"
    ),
    pytest.param(
        node_case("Concat", {"a": (2, 3), "b": (2, 5), "c": (2, 1)}, axis=-1), id="concat-3"
    ),
    pytest.param(
        node_case("Split", {"x": (2, 6, 4)}, axis=1, num_outputs=3, outputs=_split_outputs(3)),
        id="split-even-opset18",
    ),
    pytest.param(
        node_case(
            "Split",
            {"x": (2, 7)},
            consts={"s": ints([3, 4])},
            axis=1,
            outputs=_split_outputs(2),
            opset=13,
        ),
        id="split-sizes-opset13",
    ),
    pytest.param(
        node_case(
            "Split", {"x": (6, 2)}, axis=0, split=[1, 5], outputs=_split_outputs(2), opset=11
        ),
        id="split-attr-opset11",
    ),
    pytest.param(
        node_case("Slice", {"x": (4, 10)}, consts={"s": ints([1, 2]), "e": ints([3, 9])}),
        id="slice-basic",
    ),
    pytest.param(
        node_case(
            "Slice",
            {"x": (2, 3, 8)},
            consts={"s": ints([7]), "e": ints([-100]), "a": ints([2]), "st": ints([-2])},
        ),
        id="slice-negative-step",
    ),
    pytest.param(
        node_case(
            "Slice",
            {"x": (1, 4, 8, 8)},
            consts={"s": ints([0, 0]), "e": ints([8, 8]), "a": ints([2, 3]), "st": ints([2, 2])},
        ),
        id="slice-stride2",
    ),
    pytest.param(
        node_case("Pad", {"x": (1, 2, 4, 4)}, consts={"p": ints([0, 0, 1, 2, 0, 0, 2, 1])}),
        id="pad-constant-zero",
    ),
    pytest.param(
        node_case(
            "Pad",
            {"x": (1, 2, 4, 4)},
            consts={"p": ints([0, 0, 1, 1, 0, 0, 1, 1]), "v": np.array(1.5, np.float32)},
        ),
        id="pad-constant-value",
    ),
    pytest.param(
        node_case(
            "Pad", {"x": (1, 2, 5, 5)}, consts={"p": ints([0, 0, 2, 1, 0, 0, 1, 2])}, mode="reflect"
        ),
        id="pad-reflect",
    ),
    pytest.param(
        node_case(
            "Pad",
            {"x": (1, 2, 5, 5)},
            consts={"p": ints([0, 0, 1, 1, 0, 0, 1, 1])},
            mode="edge",
            opset=13,
        ),
        id="pad-edge-opset13",
    ),
    pytest.param(
        node_case("Pad", {"x": (1, 2, 3, 3)}, pads=[0, 0, 1, 1, 0, 0, 1, 1], opset=9),
        id="pad-attr-opset9",
    ),
    pytest.param(
        _resize((1, 2, 4, 4), scales=[1, 1, 2, 2], mode="nearest"), id="resize-nearest-x2"
    ),
    pytest.param(
        _resize(
            (1, 2, 4, 6),
            sizes=[1, 2, 8, 9],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        id="resize-nearest-sizes-floor",
    ),
    pytest.param(
        _resize((1, 2, 4, 4), scales=[1, 1, 2, 2], mode="linear"), id="resize-linear-half-pixel"
    ),
    pytest.param(
        _resize(
            (1, 3, 5, 5),
            sizes=[1, 3, 9, 7],
            mode="linear",
            coordinate_transformation_mode="align_corners",
        ),
        id="resize-linear-align-corners",
    ),
    pytest.param(
        _resize(
            (1, 2, 6, 6),
            scales=[1, 1, 0.5, 0.5],
            mode="linear",
            coordinate_transformation_mode="pytorch_half_pixel",
            opset=13,
        ),
        id="resize-linear-down-opset13",
    ),
    pytest.param(
        _resize(
            (1, 2, 3, 3),
            scales=[1, 1, 2, 2],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            opset=11,
        ),
        id="resize-nearest-opset11",
    ),
    pytest.param(node_case("Transpose", {"x": S4}, perm=[0, 2, 3, 1]), id="transpose-nhwc"),
    pytest.param(node_case("Transpose", {"x": (3, 5)}), id="transpose-default"),
    pytest.param(node_case("Reshape", {"x": S4}, consts={"s": ints([2, -1])}), id="reshape-infer"),
    pytest.param(
        node_case("Reshape", {"x": S4}, consts={"s": ints([0, 3, 20])}), id="reshape-copy-dim"
    ),
    pytest.param(node_case("Flatten", {"x": S4}), id="flatten-axis1"),
    pytest.param(node_case("Flatten", {"x": S4}, axis=2), id="flatten-axis2"),
    pytest.param(
        node_case("Squeeze", {"x": (2, 1, 5, 1)}, consts={"a": ints([1, 3])}), id="squeeze"
    ),
    pytest.param(node_case("Squeeze", {"x": (1, 4, 1)}, opset=11), id="squeeze-all-opset11"),
    pytest.param(node_case("Unsqueeze", {"x": (3, 4)}, consts={"a": ints([0, 3])}), id="unsqueeze"),
    pytest.param(
        node_case("Unsqueeze", {"x": (3, 4)}, axes=[1], opset=11), id="unsqueeze-attr-opset11"
    ),
    pytest.param(
        node_case("Gather", {"x": (5, 4)}, consts={"i": ints([4, 0, 2])}), id="gather-rows"
    ),
    pytest.param(
        node_case("Gather", {"x": (2, 6, 3)}, consts={"i": np.array(1, np.int64)}, axis=1),
        id="gather-scalar-axis1",
    ),
    pytest.param(_cast_roundtrip((3, 4)), id="cast-float-int64-float"),
    pytest.param(node_case("Identity", {"x": S4}), id="identity"),
    pytest.param(node_case("Dropout", {"x": S4}), id="dropout-inference"),
    pytest.param(node_case("Dropout", {"x": S4}, ratio=0.3, opset=11), id="dropout-opset11"),
]
