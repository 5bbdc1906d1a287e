"""1-D Conv/ConvTranspose/pools run as 2-D over a height of 1, against onnxruntime (fp32)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from npuc.core.errors import UnsupportedError
from npuc.frontend import load
from npuc.frontend.fixups.lift_1d_to_2d import lift_1d_to_2d
from tests.frontend.onnx_graphs import (
    Case,
    GraphSpec,
    check_against_onnxruntime,
    const,
    make_model,
    node_case,
)
from tests.frontend.torch_onnx import export_onnx

X = {"x": (2, 4, 19)}

CASES = {
    "conv": node_case("Conv", X, consts={"w": const((6, 4, 3))}, pads=[1, 2], strides=[2]),
    "conv_bias_dilated": node_case(
        "Conv", X, consts={"w": const((6, 4, 3)), "b": const((6,))}, dilations=[2]
    ),
    "conv_depthwise_same_upper": node_case(
        "Conv", X, consts={"w": const((4, 1, 4))}, group=4, auto_pad="SAME_UPPER", strides=[2]
    ),
    "conv_same_lower": node_case(
        "Conv", X, consts={"w": const((6, 4, 4))}, auto_pad="SAME_LOWER", strides=[2]
    ),
    "conv_transpose": node_case(
        "ConvTranspose",
        X,
        consts={"w": const((4, 3, 4)), "b": const((3,))},
        strides=[2],
        pads=[1, 1],
        output_padding=[1],
    ),
    "maxpool": node_case("MaxPool", X, kernel_shape=[3], strides=[2], pads=[1, 1]),
    "maxpool_ceil_dilated": node_case(
        "MaxPool", X, kernel_shape=[2], strides=[2], dilations=[2], ceil_mode=1
    ),
    "maxpool_same_lower": node_case(
        "MaxPool", X, kernel_shape=[3], strides=[2], auto_pad="SAME_LOWER"
    ),
    "avgpool_exclude_pad": node_case("AveragePool", X, kernel_shape=[3], pads=[1, 1]),
    "avgpool_include_pad": node_case(
        "AveragePool", X, kernel_shape=[4], strides=[3], pads=[2, 1], count_include_pad=1
    ),
    "global_avg": node_case("GlobalAveragePool", X),
    "global_max": node_case("GlobalMaxPool", X),
    "conv_opset11": node_case("Conv", X, consts={"w": const((6, 4, 3))}, opset=11),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_1d_op_matches_onnxruntime(name: str) -> None:
    check_against_onnxruntime(CASES[name])


def test_rewrite_keeps_names_and_is_idempotent() -> None:
    model = CASES["conv"].model
    lifted = lift_1d_to_2d(model)
    ops = [n.op_type for n in lifted.graph.node]
    assert ops == ["Unsqueeze", "Conv", "Squeeze"]
    assert lifted.graph.node[1].name == "conv_0" and lifted.graph.node[2].output[0] == "y"
    assert [i.name for i in lifted.graph.initializer if i.dims == [6, 4, 1, 3]]
    assert lift_1d_to_2d(lifted) is lifted


def test_computed_weight_and_maxpool_indices() -> None:
    """A weight computed at run time gets its own Unsqueeze (and the support check still
    declines it by the node's name); MaxPool with Indices is left for the check to decline."""
    nodes = [
        helper.make_node("Relu", ["wr"], ["w"]),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    model = make_model(GraphSpec(nodes, {"x": (1, 4, 9), "wr": (2, 4, 3)}))
    assert [n.op_type for n in lift_1d_to_2d(model).graph.node] == [
        "Relu",
        "Unsqueeze",
        "Unsqueeze",
        "Conv",
        "Squeeze",
    ]
    with pytest.raises(UnsupportedError, match=r"conv \(Conv.*weight .* must be a constant"):
        load(model)
    pool = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2])
    graph = helper.make_graph(
        [pool],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 9])],
        [
            helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None),
            helper.make_tensor_value_info("i", onnx.TensorProto.INT64, None),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert lift_1d_to_2d(model) is model


def test_torch_conv1d_audio_block() -> None:
    """Conv1d / depthwise / MaxPool1d / AvgPool1d(ceil) / ConvTranspose1d as torch exports them."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(4, 8, 5, stride=2, padding=2)
            self.dw = nn.Conv1d(8, 8, 3, padding=1, groups=8)
            self.pool = nn.MaxPool1d(3, 2, padding=1)
            self.avg = nn.AvgPool1d(2, 2, ceil_mode=True)
            self.up = nn.ConvTranspose1d(8, 3, 4, stride=2, padding=1, output_padding=1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = self.avg(self.pool(self.dw(torch.relu(self.conv(x)))))
            return self.up(y), y.mean(-1)

    torch.manual_seed(0)
    x = torch.randn(2, 4, 37)
    model = export_onnx(Block(), (x,))
    feeds = {model.graph.input[0].name: x.numpy().astype(np.float32)}
    check_against_onnxruntime(Case(model, feeds))
