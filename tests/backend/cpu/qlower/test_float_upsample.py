"""A float ``ConvTranspose`` (the quantizer keeps it float) between integer layers: the
int8 library's every tensor equals the integer executor's, the float32 ones bit for bit.

Both sides run the same float kernel (:mod:`npuc.midend.quantize.float_kernels`: a
2x2 stride-2 transposed convolution as a vectorised 1x1 convolution and a
depth-to-space move, a 3x3 stride-2 one as TVM's stock kernel, both scheduled by
:mod:`npuc.midend.quantize.float_schedule`), and an integer convolution quantizes
its result, so a float32 difference would move a stored code.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc.midend.quantize.config import QuantConfig
from tests.backend.cpu.qlower.test_models import check_every_tensor, quantize


def _upsample_net(kernel: int, padding: int, output_padding: int) -> onnx.ModelProto:
    rng = np.random.default_rng(kernel)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node(
            "ConvTranspose", ["r", "wt", "bt"], ["u"], strides=[2, 2],
            kernel_shape=[kernel, kernel], pads=[padding] * 4,
            output_padding=[output_padding] * 2,
        ),
        helper.make_node("Conv", ["u", "w1", "b1"], ["y"], pads=[1, 1, 1, 1]),
    ]  # fmt: skip
    inits = [
        weight("w0", (8, 3, 3, 3)),
        weight("b0", (8,)),
        weight("wt", (8, 4, kernel, kernel)),
        weight("bt", (4,)),
        weight("w1", (2, 4, 3, 3)),
        weight("b1", (2,)),
    ]
    graph = helper.make_graph(
        nodes,
        "upsample",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("kernel", "padding", "output_padding"),
    [(2, 0, 0), pytest.param(3, 1, 1, marks=pytest.mark.slow)],
    ids=["k2s2_depth_to_space", "k3s2_stock"],
)
def test_float_transposed_conv_between_integer_layers_is_bit_exact(
    kernel: int, padding: int, output_padding: int
) -> None:
    qm, feeds = quantize(_upsample_net(kernel, padding, output_padding), QuantConfig())
    floats = [n for n, layer in qm.layers.items() if layer.run_on == "cpu"]
    assert any(qm.graph.node(n).op == "relax" for n in floats), floats
    assert check_every_tensor(qm, feeds) >= 2
