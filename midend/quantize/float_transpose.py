"""A non-overlapping transposed convolution as a 1x1 convolution and a depth-to-space move.

TVM's stock ``conv2d_transpose`` (NCHW) dilates its input with zeros and runs a
dense convolution over it: with a 2x2 kernel at stride 2 (the upsampling of
segmentation heads such as PP-OCR's detector) three of every four products are
with an inserted zero, and two zero-filled copies of the input are written
first. When the stride equals the kernel size and nothing is padded, each
output pixel ``(h, w)`` reads exactly one input pixel ``(h // s, w // s)``
through the kernel tap ``(h % s, w % s)``, so the layer is a 1x1 convolution
to ``O * kh * kw`` channels followed by a depth-to-space reshape/transpose.

Requires: a ``relax.nn.conv2d_transpose`` call, NCHW data, IOHW kernel, NCHW
output, one group, no dilation, no padding nor output padding, strides equal
to the kernel's spatial size, a float32 constant kernel and float32 data.

Guarantees: each output element is the sum over input channels, in channel
order, of the same products the stock kernel forms (the stock kernel adds, in
the same order, products with zeros in between, which change no value), so
the two agree within float32 rounding of fused multiply-adds only; whatever
calls this (:mod:`.float_relax`) gives the integer executor and the integer
CPU library the same rewrite, so they stay bit-exact with each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relax

F32 = "float32"


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def _static_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    ty = getattr(expr, "ty", None)
    shape = getattr(ty, "shape", None)
    values = getattr(shape, "values", None)
    if values is None or getattr(ty, "dtype", None) != F32:
        return None
    try:
        return _ints(values)
    except TypeError:  # a symbolic dimension
        return None


def non_overlapping_kernel(call: relax.Expr) -> np.ndarray | None:
    """The IOHW float32 kernel of ``call`` when it is a transposed convolution this module
    rewrites (see the module docstring), else None."""
    if not isinstance(call, relax.Call) or getattr(call.op, "name", None) != (
        "relax.nn.conv2d_transpose"
    ):
        return None
    attrs = call.attrs
    data, weight = call.args[0], call.args[1]
    if not isinstance(weight, tvm.ir.GenericConst) or _static_shape(data) is None:
        return None
    kernel = np.asarray(weight.value.numpy())
    if kernel.dtype != np.float32 or kernel.ndim != 4:
        return None
    layouts = (str(attrs.data_layout), str(attrs.kernel_layout), str(attrs.out_layout))
    out_dtype = str(attrs.out_dtype) if attrs.out_dtype is not None else ""
    if (
        layouts != ("NCHW", "IOHW", "NCHW")
        or int(attrs.groups) != 1
        or _ints(attrs.dilation) != (1, 1)
        or any(_ints(attrs.padding))
        or any(_ints(attrs.output_padding))
        or _ints(attrs.strides) != kernel.shape[2:]
        or out_dtype not in ("", "void", F32)
    ):
        return None
    return kernel


def emit_as_conv(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr | None:
    """Emit ``call`` (a ``conv2d_transpose``) as a 1x1 convolution and a depth-to-space
    move into ``bb``; None (nothing emitted) when it is not one
    :func:`non_overlapping_kernel` accepts.

    Shapes: data ``(N, I, H, W)``, kernel ``(I, O, kh, kw)`` -> output
    ``(N, O, H * kh, W * kw)``, float32.
    """
    kernel = non_overlapping_kernel(call)
    if kernel is None:
        return None
    data = call.args[0]
    n, _, h, w = _static_shape(data) or ()
    cin, cout, kh, kw = kernel.shape
    # (I, O, kh, kw) -> (O, kh, kw, I) -> one output channel per (o, tap)
    taps = np.ascontiguousarray(kernel.transpose(1, 2, 3, 0).reshape(cout * kh * kw, cin, 1, 1))
    y = bb.emit(relax.op.nn.conv2d(data, relax.const(taps, F32)))
    y = relax.op.reshape(y, (n, cout, kh, kw, h, w))
    y = relax.op.permute_dims(y, (0, 1, 4, 2, 5, 3))
    return bb.emit(relax.op.reshape(y, (n, cout, h * kh, w * kw)))
