"""Operator-zoo cases for convolution, pooling, dense and normalisation operators."""

from __future__ import annotations

import numpy as np
import pytest

from tests.frontend.onnx_graphs import Case, const, node_case


def _conv(x: tuple[int, ...], w: tuple[int, ...], bias: bool = True, **attrs: object) -> Case:
    consts = {"w": const(w)}
    if bias:
        consts["b"] = const((w[0],), seed=2)
    return node_case("Conv", {"x": x}, consts=consts, **attrs)


def _positive(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return (np.abs(const(shape, seed)) + 0.5).astype(np.float32)


CASES: list = [
    # Conv: plain, padded, strided, dilated, grouped, depthwise, auto_pad, no bias, 1x1
    pytest.param(_conv((1, 3, 8, 8), (4, 3, 3, 3)), id="conv-3x3-valid"),
    pytest.param(_conv((2, 3, 9, 7), (5, 3, 3, 3), pads=[1, 1, 1, 1]), id="conv-pad1-batch2"),
    pytest.param(
        _conv((1, 4, 11, 11), (6, 4, 3, 3), strides=[2, 2], pads=[1, 0, 1, 0]),
        id="conv-stride2-asympad",
    ),
    pytest.param(
        _conv((1, 4, 12, 12), (4, 4, 3, 3), dilations=[2, 2], pads=[2, 2, 2, 2]), id="conv-dilated"
    ),
    pytest.param(_conv((1, 8, 8, 8), (8, 2, 3, 3), group=4, pads=[1, 1, 1, 1]), id="conv-grouped"),
    pytest.param(
        _conv((1, 6, 9, 9), (6, 1, 3, 3), group=6, strides=[2, 2], pads=[1, 1, 1, 1]),
        id="conv-depthwise-s2",
    ),
    pytest.param(
        _conv((1, 3, 10, 10), (4, 3, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2]),
        id="conv-same-upper",
    ),
    pytest.param(_conv((1, 3, 10, 10), (4, 3, 4, 4), auto_pad="SAME_LOWER"), id="conv-same-lower"),
    pytest.param(
        _conv((1, 3, 7, 7), (4, 3, 3, 3), auto_pad="VALID", bias=False), id="conv-valid-nobias"
    ),
    pytest.param(_conv((1, 16, 5, 5), (8, 16, 1, 1)), id="conv-1x1"),
    pytest.param(
        _conv((1, 3, 8, 6), (4, 3, 3, 1), pads=[1, 0, 1, 0], opset=11), id="conv-3x1-opset11"
    ),
    pytest.param(_conv((1, 3, 6, 6), (4, 3, 3, 3), pads=[1, 1, 1, 1], opset=22), id="conv-opset22"),
    # ConvTranspose
    pytest.param(
        node_case("ConvTranspose", {"x": (1, 4, 5, 5)}, consts={"w": const((4, 3, 3, 3))}),
        id="convT-3x3",
    ),
    pytest.param(
        node_case(
            "ConvTranspose",
            {"x": (1, 4, 5, 5)},
            consts={"w": const((4, 2, 2, 2)), "b": const((2,))},
            strides=[2, 2],
        ),
        id="convT-s2-k2",
    ),
    pytest.param(
        node_case(
            "ConvTranspose",
            {"x": (1, 3, 4, 6)},
            consts={"w": const((3, 5, 3, 3))},
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            output_padding=[1, 1],
        ),
        id="convT-outpad",
    ),
    # Pools
    pytest.param(
        node_case("MaxPool", {"x": (1, 3, 8, 8)}, kernel_shape=[2, 2], strides=[2, 2]),
        id="maxpool-2x2",
    ),
    pytest.param(
        node_case(
            "MaxPool", {"x": (1, 3, 9, 9)}, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        id="maxpool-3x3-pad",
    ),
    pytest.param(
        node_case(
            "MaxPool", {"x": (1, 2, 10, 10)}, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1
        ),
        id="maxpool-ceil",
    ),
    pytest.param(
        node_case("MaxPool", {"x": (1, 2, 9, 9)}, kernel_shape=[5, 5], auto_pad="SAME_UPPER"),
        id="maxpool-same",
    ),
    pytest.param(
        node_case("AveragePool", {"x": (1, 3, 8, 8)}, kernel_shape=[2, 2], strides=[2, 2]),
        id="avgpool-2x2",
    ),
    pytest.param(
        node_case("AveragePool", {"x": (1, 3, 7, 7)}, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        id="avgpool-pad-exclude",
    ),
    pytest.param(
        node_case(
            "AveragePool",
            {"x": (1, 3, 7, 7)},
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            count_include_pad=1,
        ),
        id="avgpool-pad-include",
    ),
    pytest.param(
        node_case(
            "AveragePool", {"x": (1, 2, 6, 6)}, kernel_shape=[2, 2], strides=[2, 2], opset=22
        ),
        id="avgpool-opset22",
    ),
    pytest.param(
        node_case("MaxPool", {"x": (1, 2, 9, 9)}, kernel_shape=[2, 2], dilations=[2, 2]),
        id="maxpool-dilated",
    ),
    pytest.param(
        node_case(
            "AveragePool", {"x": (1, 2, 10, 10)}, kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1
        ),
        id="avgpool-ceil",
    ),
    pytest.param(node_case("GlobalAveragePool", {"x": (2, 5, 7, 3)}), id="gap"),
    pytest.param(node_case("GlobalMaxPool", {"x": (1, 5, 6, 6)}), id="gmp"),
    pytest.param(
        node_case("LRN", {"x": (1, 8, 5, 5)}, size=5, alpha=1e-4, beta=0.75, bias=1.0, opset=13),
        id="lrn",
    ),
    # Dense
    pytest.param(
        node_case("Gemm", {"a": (3, 5)}, consts={"b": const((5, 4)), "c": const((4,))}), id="gemm"
    ),
    pytest.param(
        node_case(
            "Gemm",
            {"a": (2, 6)},
            consts={"b": const((3, 6)), "c": const((2, 3))},
            transB=1,
            alpha=0.5,
            beta=2.0,
        ),
        id="gemm-transB-alpha",
    ),
    pytest.param(node_case("Gemm", {"a": (6, 2), "b": (6, 3)}, transA=1), id="gemm-transA-dynamic"),
    pytest.param(node_case("MatMul", {"a": (4, 8)}, consts={"b": const((8, 3))}), id="matmul-2d"),
    pytest.param(node_case("MatMul", {"a": (2, 3, 4, 8), "b": (2, 3, 8, 5)}), id="matmul-batched"),
    pytest.param(
        node_case("MatMul", {"a": (2, 3, 4, 8)}, consts={"b": const((8, 5))}), id="matmul-broadcast"
    ),
    # Normalisation
    pytest.param(
        node_case(
            "BatchNormalization",
            {"x": (2, 4, 5, 5)},
            consts={
                "s": const((4,)),
                "b": const((4,), 2),
                "m": const((4,), 3),
                "v": _positive((4,), 4),
            },
            epsilon=1e-3,
        ),
        id="batchnorm",
    ),
    pytest.param(
        node_case(
            "BatchNormalization",
            {"x": (1, 3, 4, 4)},
            consts={
                "s": const((3,)),
                "b": const((3,), 2),
                "m": const((3,), 3),
                "v": _positive((3,), 4),
            },
            opset=9,
        ),
        id="batchnorm-opset9",
    ),
    pytest.param(
        node_case(
            "LayerNormalization",
            {"x": (2, 5, 16)},
            consts={"g": const((16,)), "b": const((16,), 2)},
            axis=-1,
            epsilon=1e-5,
        ),
        id="layernorm-last",
    ),
    pytest.param(
        node_case(
            "LayerNormalization",
            {"x": (2, 4, 6)},
            consts={"g": const((4, 6)), "b": const((4, 6), 2)},
            axis=1,
            opset=17,
        ),
        id="layernorm-axis1-opset17",
    ),
    pytest.param(
        node_case(
            "ReduceMean", {"x": (2, 5, 6)}, consts={"axes": np.array([-1], np.int64)}, keepdims=1
        ),
        id="reducemean-opset18",
    ),
    pytest.param(
        node_case("ReduceMean", {"x": (2, 5, 6, 3)}, axes=[1, 2], keepdims=0, opset=13),
        id="reducemean-attr-opset13",
    ),
]
