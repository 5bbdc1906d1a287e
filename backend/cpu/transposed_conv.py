"""A direct lowering of float transposed convolutions whose kernel is a multiple of the stride.

TVM's stock legalisation of ``relax.nn.conv2d_transpose`` (NCHW data, IOHW
kernel) writes two zero-filled copies of the input (dilated by the stride,
then padded) and runs a dense convolution over them: with a 2x2 kernel at
stride 2 (the upsampling of segmentation heads such as PP-OCR's detector)
three of every four products are with an inserted zero, and the copies are
four times the input. On PP-OCRv4 det (480x640) its two transposed
convolutions took 72 ms of 177 ms of one-thread CPU time.

Here each output pixel reads only the input pixels and kernel taps that
reach it. Output row ``h`` of a layer with stride ``s``, kernel ``k`` and top
padding ``p`` receives input row ``iy`` through kernel row ``ky`` when
``iy * s + ky = h + p``; with ``k`` a multiple of ``s`` these are, for
``j`` in ``0 .. k/s - 1``, ``ky = (h + p) % s + s * j`` and
``iy = (h + p) // s - j`` (kept when ``0 <= iy < H``). Columns likewise.
So the kernel is one reduction over input channels and the ``k/s`` taps per
dimension: ``O * H_out * W_out * C * (k/s)^2`` multiply-adds, a quarter of the
stock kernel's at ``k = s = 2``, with no copies.

Requires: float32 data and kernel, NCHW data and output, IOHW kernel, one
group, no dilation, static shapes, a batch of one, ``k % s == 0`` in both
dimensions; anything else gets TVM's stock legalisation.

Guarantees: each output is the sum over input channels (then taps) of the
same non-zero products the stock kernel forms, so the two agree within
float32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import relax, te, tirx

F32 = "float32"
OP_NAME = "relax.nn.conv2d_transpose"


def _static(shape: relax.Expr | None) -> tuple[int, ...] | None:
    values = getattr(shape, "values", None)
    if values is None or not all(isinstance(v, tirx.IntImm) for v in values):
        return None
    return tuple(int(v) for v in values)


def _direct_shapes(call: relax.Call) -> tuple[tuple[int, ...], ...] | None:
    """(data, kernel, output) shapes when the direct kernel applies (module docstring)."""
    attrs = call.attrs
    if (
        attrs.data_layout != "NCHW"
        or attrs.kernel_layout != "IOHW"
        or attrs.out_layout != "NCHW"
        or int(attrs.groups) != 1
        or any(int(d) != 1 for d in attrs.dilation)
    ):
        return None
    data_ty, kernel_ty = call.args[0].ty, call.args[1].ty
    if data_ty.dtype != F32 or kernel_ty.dtype != F32 or call.ty.dtype != F32:
        return None
    shapes = (_static(data_ty.shape), _static(kernel_ty.shape), _static(call.ty.shape))
    if any(s is None or len(s) != 4 for s in shapes):
        return None
    data, kernel, _ = shapes
    if data[0] != 1:  # type: ignore[index]
        # Batch >= 2 gave wrong results once the schedule fused image, channel and row
        # (the guard's clamps simplified away by TVM; batch 1 held on 50+ random
        # cases): TVM's stock kernel runs those.
        return None
    strides = [int(s) for s in attrs.strides]
    if kernel[2] % strides[0] or kernel[3] % strides[1]:  # type: ignore[index]
        return None
    return shapes  # type: ignore[return-value]


def conv2d_transpose_direct(
    data: te.Tensor,
    kernel: te.Tensor,
    strides: tuple[int, int],
    pad_top_left: tuple[int, int],
    out_shape: tuple[int, int, int, int],
) -> te.Tensor:
    """The transposed convolution of the module docstring as one TE reduction.

    ``data`` is ``(N, C, H, W)``, ``kernel`` ``(C, O, KH, KW)`` (IOHW) with
    ``KH % strides[0] == 0`` and ``KW % strides[1] == 0``; the result has
    ``out_shape`` ``(N, O, H_out, W_out)``, float32.
    """
    _, channels, height, width = (int(d) for d in data.shape)
    _, _, kh, kw = (int(d) for d in kernel.shape)
    (sh, sw), (pt, pl) = strides, pad_top_left
    taps_h, taps_w = kh // sh, kw // sw
    rc = te.reduce_axis((0, channels), name="rc")
    ry = te.reduce_axis((0, taps_h), name="ry") if taps_h > 1 else None
    rx = te.reduce_axis((0, taps_w), name="rx") if taps_w > 1 else None
    # Bounds checks only where an input index can leave the input.
    check_h = pt < 0 or (taps_h - 1) > pt // sh or (out_shape[2] - 1 + pt) // sh >= height
    check_w = pl < 0 or (taps_w - 1) > pl // sw or (out_shape[3] - 1 + pl) // sw >= width

    def compute(n: tirx.Var, o: tirx.Var, h: tirx.Var, w: tirx.Var) -> tirx.PrimExpr:
        hh, ww = h + pt, w + pl
        iy, ky = hh // sh, hh % sh
        ix, kx = ww // sw, ww % sw
        if ry is not None:
            iy, ky = iy - ry, ky + sh * ry
        if rx is not None:
            ix, kx = ix - rx, kx + sw * rx
        conds = []
        if check_h:
            conds += [iy >= 0, iy < height]
        if check_w:
            conds += [ix >= 0, ix < width]
        zero = tirx.const(0.0, F32)
        cy = tirx.max(tirx.min(iy, height - 1), 0) if check_h else iy
        cx = tirx.max(tirx.min(ix, width - 1), 0) if check_w else ix
        product = data[n, rc, cy, cx] * kernel[rc, o, ky, kx]
        if conds:
            product = tirx.Select(tirx.all(*conds), product, zero)
        axes = [rc] + [a for a in (ry, rx) if a is not None]
        return te.sum(product, axis=axes)

    return te.compute(out_shape, compute, name="conv2d_transpose")


def legalize_conv2d_transpose(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    """``call_tir`` of :func:`conv2d_transpose_direct`, or TVM's stock legalisation."""
    shapes = _direct_shapes(call)
    if shapes is None:
        stock: Callable[[relax.BlockBuilder, relax.Call], relax.Expr] = tvm.ir.Op.get(
            OP_NAME
        ).get_attr("FLegalize")
        return stock(bb, call)
    strides = (int(call.attrs.strides[0]), int(call.attrs.strides[1]))
    pads = (int(call.attrs.padding[0]), int(call.attrs.padding[1]))
    out_shape = shapes[2]
    return bb.call_te(
        lambda data, kernel: conv2d_transpose_direct(data, kernel, strides, pads, out_shape),  # type: ignore[arg-type]
        call.args[0],
        call.args[1],
        primfunc_name_hint="conv2d_transpose",
    )


#: ``LegalizeOps(customize_legalize_map=...)`` entries of the CPU backend.
CUSTOM_LEGALIZE = {OP_NAME: legalize_conv2d_transpose}
