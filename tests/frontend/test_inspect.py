"""Model summaries: MAC counts (ResNet-50 and hand-checked graphs), histogram, support listing."""

from __future__ import annotations

from onnx import helper

from npuc.frontend.inspect import summarize
from tests.frontend.onnx_graphs import GraphSpec, const, make_model
from tests.frontend.test_light_models import LIGHT_DIR

PUBLISHED_RESNET50_GMACS = 4.1


def test_resnet50_macs_within_1_percent_of_published() -> None:
    summary = summarize(LIGHT_DIR / "light_resnet50.onnx")
    gmacs = summary.total_macs / 1e9
    assert abs(gmacs - PUBLISHED_RESNET50_GMACS) / PUBLISHED_RESNET50_GMACS < 0.01, gmacs
    assert summary.op_histogram["Conv"] == 53
    assert len(summary.layers) == 54  # 53 Conv + 1 Gemm
    assert abs(summary.parameter_count - 25.5e6) / 25.5e6 < 0.01
    assert summary.unsupported == ()


def test_tiny_conv_model_macs_exact() -> None:
    """Hand count: conv 1x3x8x8 -> 4x8x8 with 3x3 kernel = 4*8*8 * 3*3*3 = 6912 MACs;
    depthwise 4 channels, 3x3, stride 2 -> 4x4x4 = 4*4*4 * 1*3*3 = 576; Gemm 1x64 by 64x10 = 640;
    Relu and Add count 0."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node(
            "Conv", ["r1", "w2"], ["c2"], name="dw", group=4, strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Flatten", ["c2"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["g"], name="fc"),
        helper.make_node("Add", ["g", "b3"], ["y"], name="add"),
    ]
    consts = {
        "w1": const((4, 3, 3, 3)),
        "b1": const((4,)),
        "w2": const((4, 1, 3, 3)),
        "w3": const((64, 10)),
        "b3": const((10,)),
    }
    summary = summarize(make_model(GraphSpec(nodes, {"x": (1, 3, 8, 8)}, consts)))
    assert [(x.node_name, x.op_type, x.macs) for x in summary.layers] == [
        ("conv", "Conv", 6912),
        ("dw", "Conv", 576),
        ("fc", "Gemm", 640),
    ]
    assert summary.total_macs == 6912 + 576 + 640
    assert summary.parameter_count == 108 + 4 + 36 + 640 + 10
    assert summary.op_histogram == {"Conv": 2, "Relu": 1, "Flatten": 1, "Gemm": 1, "Add": 1}
    assert summary.outputs[0].shape == (1, 10)


def test_batched_matmul_and_conv_transpose_macs() -> None:
    """MatMul (2,3,4,8)x(8,5) = 2*3*4*5*8 = 960; ConvTranspose 1x2x3x3 -> 4 ch, 2x2 kernel =
    2*3*3 * 4*2*2 = 288."""
    nodes = [
        helper.make_node("MatMul", ["a", "b"], ["m"], name="mm"),
        helper.make_node("ConvTranspose", ["x", "w"], ["t"], name="up", strides=[2, 2]),
    ]
    spec = GraphSpec(
        nodes,
        {"a": (2, 3, 4, 8), "x": (1, 2, 3, 3)},
        {"b": const((8, 5)), "w": const((2, 4, 2, 2))},
        outputs=("m", "t"),
    )
    summary = summarize(make_model(spec))
    assert {x.node_name: x.macs for x in summary.layers} == {"mm": 960, "up": 288}


def test_unsupported_listed_not_raised() -> None:
    nodes = [
        helper.make_node("Sin", ["x"], ["s"], name="sin"),
        helper.make_node("Relu", ["s"], ["y"]),
    ]
    summary = summarize(make_model(GraphSpec(nodes, {"x": (2, 3)})))
    assert [(u.node_name, u.op_type) for u in summary.unsupported] == [("sin", "Sin")]
    data = summary.to_json()
    assert data["unsupported"][0]["op_type"] == "Sin"
    assert data["total_macs"] == 0


def test_symbolic_input_resolved_in_summary() -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", 1, ["n", 4])],
        [helper.make_tensor_value_info("y", 1, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    summary = summarize(model, {"x": (3, 4)})
    assert summary.declared_inputs[0].shape == ("n", 4)
    assert summary.inputs[0].shape == (3, 4)
    assert summary.outputs[0].shape == (3, 4)
