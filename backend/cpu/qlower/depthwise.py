"""Integer depthwise convolution (one input channel per group) through an exact TIR kernel.

Requires: an integer ``conv2d`` layer with ``groups == in_channels > 1`` and
weights ``(in_channels * mult, 1, kh, kw)``, its input as stored integers
(int8, uint8 or int16). :func:`emit_depthwise` returns ``None`` for any other
layer, and for a layer whose bounds the kernel cannot prove exact (then
:func:`~.conv.emit_conv` lowers it):

- the tap sums: ``max_o sum|w[o]| * max|x - zp|`` below 2^24 (summed in
  float32) or below 2^52 (float64): every partial sum is an exact integer;
- the output stage: :func:`npuc.midend.quantize.exact_stage.fits_f64`
  (every intermediate an integer below 2^52, or its power-of-two scaling).

Guarantees: the stored output integers of the integer executor
(:meth:`~npuc.midend.quantize.int_exec.IntegerExecutor.conv_output`): padded
positions contribute zero, ``acc48 = sat48(sum + (b16 << bias_shift))``,
``acc32 = sat32(rshift_round(acc48, pre_shift))``,
``y = rshift_round(acc32 * M[c], post_shift) + ofm_zp``, clamped to the
activation bounds and the output type. The kernel is
:func:`npuc.backend.cpu.schedules.int_depthwise.make_kernel` (reference
vector width; the ``int_depthwise`` schedule rule re-makes it for the target).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from tvm import relax

from npuc.backend.cpu.schedules.int_depthwise import REFERENCE_LANES, DepthwiseSpec, make_kernel
from npuc.core.intref.arith import ACC48_MAX, INT32_MAX
from npuc.midend.quantize.exact_eltwise import peak
from npuc.midend.quantize.exact_stage import F64_EXACT, clamp_bounds, fits_f64
from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qparams import QParams

from .intops import shape_of

#: Bound on a tap sum below which float32 holds every partial sum exactly.
F32_EXACT = 1 << 24
_IN_DTYPES = ("int8", "uint8", "int16")


def tail_offset(acc_bound: int, m_max: int, post_shift: int, ofm_zp: int) -> int:
    """``K`` of the kernel's integer tail (:class:`DepthwiseSpec` ``tail_k``), or 0 if none fits.

    ``acc_bound`` bounds ``|sum + bias|`` (no pre-shift, no saturation before the
    multiply). ``K`` is a power of two above every ``|floor(x)|``, ``x = (v * M +
    2^(post-1)) * 2^-post + ofm_zp``, so ``x + K`` is positive and below 2^31
    (truncation is the floor) and ``(x + K) * 2^post`` is an integer below 2^52
    (one float64 multiply-add computes ``x + K`` exactly).
    """
    y_max = ((acc_bound * m_max) >> post_shift) + 2 + abs(ofm_zp)
    k = 1 << y_max.bit_length()
    exact = acc_bound * m_max + ((k + abs(ofm_zp) + 1) << post_shift) < F64_EXACT
    return k if k <= 1 << 30 and exact else 0


def _out_size(size: int, pad: int, kernel: int, stride: int, dilation: int) -> int:
    return (size + pad - dilation * (kernel - 1) - 1) // stride + 1


def plan_depthwise(
    node: Node, p: Mapping[str, Any], x_shape: tuple[int, ...], xq: QParams, out: QParams
) -> tuple[DepthwiseSpec, dict[str, np.ndarray]] | None:
    """The kernel's spec and constants ``W``, ``B``, ``M``, or ``None`` (module docstring).

    ``B`` is the first-stage addend per output channel: ``b16 << bias_shift``
    when the 48-bit saturation may clamp, else that plus the pre-shift
    rounding, scaled by ``2^-pre_shift``; ``M`` is ``M[o] * 2^-post_shift``. When the
    spec's ``tail_k`` is set (no pre-shift, nothing saturates before the multiply,
    :func:`tail_offset` finds ``K``), ``B`` is instead the integer tail's addend
    ``(bias * M[o] + 2^(post_shift-1)) * 2^-post_shift + ofm_zp + K``.
    """
    weights = np.asarray(p["weights"])
    groups = int(node.attr("groups"))
    if node.op != "conv2d" or len(x_shape) != 4 or xq.dtype not in _IN_DTYPES:
        return None
    n, c, h, w = x_shape
    if groups != c or groups < 2 or weights.ndim != 4 or weights.shape[1] != 1:
        return None
    if weights.shape[0] % c:
        return None
    co, _, kh, kw = weights.shape
    bound = int(np.abs(weights.astype(np.int64)).reshape(co, -1).sum(axis=1).max()) * peak(xq)
    acc = "float32" if bound < F32_EXACT else "float64" if bound < F64_EXACT else None
    bias = (np.asarray(p["b16"], np.int64) << int(p["bias_shift"])).reshape(-1)
    m = np.broadcast_to(np.asarray(p["ofm_multiplier"], np.int64).reshape(-1), (co,))
    pre, post = int(p["pre_shift"]), int(p["post_shift"])
    if acc is None or bias.shape != (co,) or not fits_f64(bound, bias, m, pre, post):
        return None
    r_pre = (1 << (pre - 1)) if pre else 0
    max_bias = int(np.abs(bias).max(initial=0))
    checked = bound + max_bias > ACC48_MAX
    total = ACC48_MAX + 1 if checked else bound + max_bias
    folded = ((1 << (post - 1)) if post else 0) + (out.zero_point << post)
    sh, sw = (int(v) for v in node.attr("strides"))
    dh, dw = (int(v) for v in node.attr("dilation"))
    pt, pl, pb, pr = (int(v) for v in node.attr("padding"))
    lo, hi = clamp_bounds(int(p["act_min"]), int(p["act_max"]), out.dtype)
    sat32 = ((total + r_pre) >> pre) + 1 > INT32_MAX
    fold = not checked and pre == 0 and not sat32
    tail_k = tail_offset(total, int(m.max(initial=0)), post, out.zero_point) if fold else 0
    spec = DepthwiseSpec(
        n=n, c=c, mult=co // c, h=h, w=w,
        oh=_out_size(h, pt + pb, kh, sh, dh), ow=_out_size(w, pl + pr, kw, sw, dw),
        kh=kh, kw=kw, stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_t=pt, pad_l=pl,
        zp=xq.zero_point, in_dtype=xq.dtype, acc=acc, out_dtype=out.dtype,
        pre_shift=pre, post_shift=post, checked=int(checked),
        sat32=int(sat32), zp_folded=int(abs(folded) < F64_EXACT - (1 << 47)),
        ofm_zp=out.zero_point, lo=lo, hi=hi, tail_k=tail_k,
    )  # fmt: skip
    if spec.oh < 1 or spec.ow < 1:
        return None
    first = bias if checked else (bias + r_pre)
    b = first.astype(np.float64) * (1.0 if checked else 2.0**-pre)
    if tail_k:  # the tail's addend: (bias * M + 2^(post-1)) * 2^-post + ofm_zp + K, exact
        r_post = (1 << (post - 1)) if post else 0
        fixed = (bias * m + r_post).astype(np.float64) * 2.0**-post
        b = fixed + float(out.zero_point + tail_k)
    consts = {
        "W": weights.reshape(co, kh * kw).astype(acc),
        "B": b,
        "M": m.astype(np.float64) * 2.0**-post,
    }
    return spec, consts


def emit_depthwise(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    x: relax.Expr,
    xq: QParams,
    out: QParams,
) -> relax.Expr | None:
    """Stored output integers (``out.dtype``) of a depthwise layer; ``None`` if not ours."""
    planned = plan_depthwise(node, p, shape_of(x), xq, out)
    if planned is None:
        return None
    spec, consts = planned
    name = "int_depthwise_" + re.sub(r"\W", "_", node.name)
    gv = bb.add_func(make_kernel(spec, REFERENCE_LANES), name)
    args = [x] + [relax.const(consts[k], str(consts[k].dtype)) for k in ("W", "B", "M")]
    out_ty = relax.TensorType((spec.n, spec.c * spec.mult, spec.oh, spec.ow), out.dtype)
    return bb.emit(relax.call_tir(gv, args, out_ty))
