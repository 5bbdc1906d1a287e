"""ChannelsFirst: TFLite-style NHWC convolutions become NCHW, no transposes left between them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from npuc.midend.channels_first import ChannelsFirst, has_channels_last_conv
from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.float_exec import FloatExecutor

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(8, 3, 3, 4)).astype("float32")  # OHWI: 4 -> 8 channels
W2 = RNG.normal(size=(3, 3, 8, 1)).astype("float32")  # HWIO depthwise, 8 groups
B1 = RNG.normal(size=(8,)).astype("float32")


def _nhwc_module() -> tvm.IRModule:
    @I.ir_module
    class Nhwc:
        @R.function
        def main(x: R.Tensor((1, 10, 10, 4), "float32")) -> R.Tensor((1, 8), "float32"):
            with R.dataflow():
                a = R.nn.conv2d(
                    x, R.const(W1), padding=[1, 1, 1, 1], data_layout="NHWC", kernel_layout="OHWI"
                )
                b = R.add(a, R.const(B1))
                c = R.clip(b, R.prim_value(0.0), R.prim_value(6.0))
                d = R.nn.conv2d(
                    c,
                    R.const(W2),
                    padding=[1, 1, 1, 1],
                    groups=8,
                    data_layout="NHWC",
                    kernel_layout="HWOI",
                )
                e = R.nn.relu(d)
                f = R.add(e, c)
                y = R.mean(f, axis=[1, 2], keepdims=False)
                R.output(y)
            return y

    return Nhwc


def _reference(x: np.ndarray) -> np.ndarray:
    """The same network in numpy, NHWC."""

    def conv(x: np.ndarray, w_hwio: np.ndarray, groups: int) -> np.ndarray:
        n, h, wd, _ = x.shape
        kh, kw, cin_g, cout = w_hwio.shape
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        out = np.zeros((n, h, wd, cout), np.float64)
        per = cout // groups
        for g in range(groups):
            xs = xp[..., g * cin_g : (g + 1) * cin_g]
            for i in range(kh):
                for j in range(kw):
                    out[..., g * per : (g + 1) * per] += (
                        xs[:, i : i + h, j : j + wd, :] @ w_hwio[i, j, :, g * per : (g + 1) * per]
                    )
        return out

    a = conv(x, W1.transpose(1, 2, 3, 0), 1) + B1
    c = np.clip(a, 0.0, 6.0)
    d = conv(c, W2.transpose(0, 1, 3, 2), 8)  # HWOI with O=1 -> HW(cin_g=1)(cout=8)
    f = np.maximum(d, 0.0) + c
    return f.mean(axis=(1, 2))


def test_convolutions_become_nchw_with_one_input_transpose() -> None:
    mod = _nhwc_module()
    assert has_channels_last_conv(mod)
    after = ChannelsFirst()(mod)
    assert not has_channels_last_conv(after)
    graph = extract_graph(mod)
    kinds = Counter(node.op for node in graph.nodes)
    # One transpose of the input; the clips/bias fold into the convs; global pooling kept.
    assert kinds["transpose"] == 1
    assert kinds["conv2d"] == 2
    assert kinds["relax"] == 0
    assert kinds["global_avg_pool"] == 1
    x = RNG.normal(size=(1, 10, 10, 4)).astype("float32")
    got = FloatExecutor(graph).run({"x": x})[graph.outputs[0]]
    assert got.shape == (1, 8)
    np.testing.assert_allclose(got, _reference(x.astype(np.float64)), rtol=1e-4, atol=1e-4)


def test_nchw_module_is_returned_unchanged() -> None:
    @I.ir_module
    class Nchw:
        @R.function
        def main(x: R.Tensor((1, 4, 6, 6), "float32")) -> R.Tensor((1, 8, 6, 6), "float32"):
            with R.dataflow():
                y = R.nn.conv2d(x, R.const(W1.transpose(0, 3, 1, 2).copy()), padding=[1, 1, 1, 1])
                R.output(y)
            return y

    assert not has_channels_last_conv(Nchw)
    assert ChannelsFirst()(Nchw).same_as(Nchw)
