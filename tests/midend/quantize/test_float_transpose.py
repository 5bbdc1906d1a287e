"""A non-overlapping transposed convolution is emitted as a 1x1 convolution and a
depth-to-space move, equal to TVM's stock kernel; any other stays the stock call."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.midend.quantize.float_transpose import emit_as_conv, non_overlapping_kernel


def _call(
    weight: np.ndarray | None, x_shape: tuple[int, ...], w_shape: tuple[int, ...], **attrs
) -> tuple[relax.Var, relax.Var | None, relax.Call]:
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    w_var = None if weight is not None else relax.Var("w", relax.TensorType(w_shape, "float32"))
    w = relax.const(weight, "float32") if weight is not None else w_var
    return x, w_var, relax.op.nn.conv2d_transpose(x, w, **attrs)


def _module(x: relax.Var, call: relax.Call, rewrite: bool) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = emit_as_conv(bb, call) if rewrite else bb.emit(call)
            assert y is not None
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return relax.transform.LegalizeOps()(bb.get())


@pytest.mark.parametrize("k", [2, 3])
def test_the_rewrite_equals_the_stock_kernel(k: int) -> None:
    rng = np.random.default_rng(k)
    weight = rng.standard_normal((5, 3, k, k)).astype(np.float32)
    x, _, call = _call(weight, (2, 5, 6, 8), weight.shape, strides=k)
    data = rng.standard_normal((2, 5, 6, 8)).astype(np.float32)
    got, want = (
        relax.VirtualMachine(tvm.compile(_module(x, call, r), "llvm"), tvm.cpu())["main"](
            tvm.runtime.tensor(data)
        ).numpy()
        for r in (True, False)
    )
    assert got.shape == want.shape == (2, 3, 6 * k, 8 * k)
    # the same products summed in the same channel order (the stock kernel adds zeros
    # in between): FMA rounding apart
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "attrs",
    [
        {"strides": 1},  # overlapping taps
        {"strides": 2, "padding": 1},
        {"strides": 2, "output_padding": 1},
        {"strides": 2, "dilation": 2},
        {"strides": 2, "groups": 2},
    ],
    ids=["stride1", "padding", "output_padding", "dilation", "groups"],
)
def test_other_transposed_convolutions_are_left_alone(attrs: dict) -> None:
    groups = int(attrs.get("groups", 1))
    weight = np.ones((4, 4 // groups, 2, 2), np.float32)
    _, _, call = _call(weight, (1, 4, 5, 5), weight.shape, **attrs)
    assert non_overlapping_kernel(call) is None
    bb = relax.BlockBuilder()
    assert emit_as_conv(bb, call) is None


def test_a_kernel_that_is_not_a_constant_is_left_alone() -> None:
    _, _, call = _call(None, (1, 4, 5, 5), (4, 3, 2, 2), strides=2)
    assert non_overlapping_kernel(call) is None
    assert non_overlapping_kernel(relax.op.nn.conv2d(call.args[0], call.args[1])) is None
