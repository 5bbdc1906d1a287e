"""Integer conv2d through exact int8 dot-product kernels (VNNI, AVX-VNNI, AVX2 ``vpmaddwd``).

Requires: an integer ``conv2d`` layer (``groups == 1``, NCHW input stored as
int8 or uint8, OIHW weights within int8) whose accumulator bound
``max_c sum|w[c]| * max|x - zp|`` is below 2^31
(:func:`~.conv.accumulator_dtype` says ``"int32"``), bias shift in [0, 31],
shifts in [0, 62] and multipliers in [0, 2^31). Anything else returns None
from :func:`plan_conv` and keeps the generic lowering of :mod:`.conv`.

Guarantees: :func:`emit_int8_conv` gives the stored output integers of the
integer executor (``conv_output``), bit for bit. How:

- the input is offset to unsigned, ``u = x + 128`` (int8) or ``u = x``
  (uint8), with the unsigned zero point ``zp_u = zp + 128`` (or ``zp``), so
  ``x - zp = u - zp_u``; padding (spatial, and channels up to a multiple of
  4, whose weights are 0) holds ``zp_u``, i.e. contributes 0 (npu-spec
  section 3, step 1: padded positions hold ``ifm_zp``);
- ``sum((u - zp_u) * w) = sum(u * w) - zp_u * sum(w)``: the correction is a
  per-output-channel constant computed here in numpy (``INIT``, modulo
  2^32); the VNNI accumulator wraps modulo 2^32, and the true sum fits int32
  (the bound above), so the wrapped result is the exact sum;
- ``acc48 = sum + (b16 << bias_shift)`` never leaves 48 bits (|sum| < 2^31,
  |bias| <= 2^46), so the 48-bit saturation is the identity; the 32-bit
  saturation after the ahead shift is kept unless the bounds exclude it;
  ``acc32 * M`` < 2^62 in int64.

Layout (kernel side: :mod:`npuc.backend.cpu.schedules.int8_kernel`): the
padded input is split into ``stride_h * stride_w`` phases of ``hq x wq``
positions, four channels per 32-bit group (in the order, and with the
complemented slots, of :mod:`.pair_order` when it gives one; ``INIT`` and the
weights follow), so every kernel tap reads a
contiguous run of positions; outputs are computed on the ``oh x wq`` grid
(padded to whole tiles) and only the ``oh x ow`` real ones are stored. The kernel is
emitted in its ``generic`` form; the schedule rule
:class:`~npuc.backend.cpu.schedules.int8_conv.Int8ConvRule` replaces it
with the target's dot products.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from tvm import relax

from npuc.backend.cpu.schedules.int8_avx2 import uncentred
from npuc.backend.cpu.schedules.int8_kernel import (
    GENERIC,
    GROUP,
    TILE_CHANNELS,
    TILE_POSITIONS,
    ConvKernelSpec,
    make_kernel,
)
from npuc.backend.cpu.schedules.int8_matvec import BLOCK, make_matvec
from npuc.backend.cpu.schedules.int8_pack import PackSpec, make_packer
from npuc.core.intref.arith import INT32_MAX, INT32_MIN, dtype_range
from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qparams import QParams

from .intops import shape_of
from .pair_order import PairOrder, pair_order

#: Activation storage types the int8 kernels read.
INPUT_DTYPES = ("int8", "uint8")


def _ceil_to(v: int, m: int) -> int:
    return -(-v // m) * m


def _rounding(shift: int) -> int:
    """The constant ``rshift_round`` adds before shifting by ``shift``."""
    return 1 << (shift - 1) if shift else 0


def _l1_bound(weights: np.ndarray, q: QParams) -> int:
    """``max_c sum|w[c]| * max|x - zp|``: a bound on every output's centred sum."""
    l1 = np.abs(weights.astype(np.int64)).reshape(weights.shape[0], -1).sum(axis=1)
    return int(l1.max(initial=0)) * max(q.zero_point - q.qmin, q.qmax - q.zero_point)


def plan_conv(
    node: Node, p: Mapping[str, Any], x_shape: tuple[int, ...], xq: QParams, out: QParams
) -> ConvKernelSpec | None:
    """The kernel spec of this layer, or None when it is outside the module's requirements."""
    w = np.asarray(p["weights"])
    if node.op != "conv2d" or int(node.attr("groups")) != 1 or xq.dtype not in INPUT_DTYPES:
        return None
    if w.ndim != 4 or len(x_shape) != 4 or w.size == 0:
        return None
    if int(w.min()) < -128 or int(w.max()) > 127 or _l1_bound(w, xq) >= 2**31:
        return None
    pre, post, bias_shift = int(p["pre_shift"]), int(p["post_shift"]), int(p["bias_shift"])
    mul = np.asarray(p["ofm_multiplier"], np.int64)
    b16 = np.asarray(p["b16"], np.int64)
    if not (0 <= pre <= 62 and 0 <= post <= 62 and 0 <= bias_shift <= 31):
        return None
    if (
        mul.size == 0
        or int(mul.min()) < 0
        or int(mul.max()) >= 2**31
        or np.abs(b16).max(initial=0) > 2**15
    ):
        return None
    n, c, h, wd = x_shape
    oc, _, kh, kw = w.shape
    sh, sw = (int(s) for s in node.attr("strides"))
    dh, dw = (int(d) for d in node.attr("dilation"))
    pt, pl, pb, pr = (int(v) for v in node.attr("padding"))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if oh < 1 or ow < 1:
        return None
    hq, wq = -(-(h + pt + pb) // sh), -(-(wd + pl + pr) // sw)
    ppad = _ceil_to(oh * wq, TILE_POSITIONS)
    max_off = ((kh - 1) * dh // sh) * wq + (kw - 1) * dw // sw
    bound = _l1_bound(w, xq)
    bias = (b16 << bias_shift) + _rounding(pre)
    lo32 = (-bound + int(bias.min())) >> pre
    hi32 = (bound + int(bias.max())) >> pre
    narrow = -bound + int(bias.min()) >= INT32_MIN and bound + int(bias.max()) <= INT32_MAX
    lo, hi = dtype_range(out.dtype)
    sat32 = lo32 < INT32_MIN or hi32 > INT32_MAX
    v32 = 2**31 if sat32 else max(-lo32, hi32)
    y_max = ((v32 * int(mul.max()) + (1 << post)) >> post) + abs(out.zero_point) + 1
    return ConvKernelSpec(
        n=n, cg=-(-c // GROUP), phases=sh * sw, q=max(hq * wq, ppad + max_off),
        ocp=_ceil_to(oc, TILE_CHANNELS), ppad=ppad, oc=oc, oh=oh, ow=ow, kh=kh, kw=kw,
        stride_h=sh, stride_w=sw,
        dil_h=dh, dil_w=dw, wq=wq, zp_u=unsigned_zero_point(xq), pre_shift=pre, post_shift=post,
        ofm_zp=out.zero_point, act_min=int(p["act_min"]), act_max=int(p["act_max"]), lo=lo,
        hi=hi, need_sat32=int(sat32), narrow=int(narrow), fits32=int(y_max <= INT32_MAX),
        out_signed=int(out.dtype.startswith("int")), out_bits=np.dtype(out.dtype).itemsize * 8,
    )  # fmt: skip


def unsigned_zero_point(q: QParams) -> int:
    """The zero point of ``u`` (``x + 128`` for int8 storage, ``x`` for uint8)."""
    return q.zero_point + 128 if q.dtype == "int8" else q.zero_point


def matvec_spec(spec: ConvKernelSpec) -> ConvKernelSpec:
    """The spec of a one-row dense layer's :mod:`~npuc.backend.cpu.schedules.int8_matvec`
    kernel from its 1x1-convolution spec (``n == 1``, one position): ``X`` holds one
    position, channels padded to whole weight blocks."""
    return replace(spec, q=1, ocp=_ceil_to(spec.oc, BLOCK), matvec=1)


def pack_constants(
    spec: ConvKernelSpec, p: Mapping[str, Any], order: PairOrder | None = None
) -> list[np.ndarray]:
    """``W`` (int32 ``(ocp, taps, cg)``, 4 int8 channels each), ``INIT``, ``BIAS``, ``MUL`` in
    the kernel's layout
    (``W`` of a matvec spec in blocks of ``BLOCK`` output channels); with an ``order``
    (:mod:`.pair_order`), slot ``k`` holds input channel ``order.order[k]``, its weights
    negated where ``order.flip[k]`` (the packed input holds ``255 - u`` there, so the
    kernel's sum lacks ``255`` times those weights' sum: ``INIT`` adds it back)."""
    w = np.asarray(p["weights"]).astype(np.int8)
    oc, c, kh, kw = w.shape
    # -(zp_u * sum w) for every output channel (the padded channels' weights are 0)
    corr = np.zeros(spec.ocp, np.int64)
    corr[:oc] = spec.zp_u * w.astype(np.int64).sum(axis=(1, 2, 3))
    if order is not None:
        w = w[:, order.order]
        if (w[:, order.flip] == -128).any():
            raise ValueError("pair order: a complemented slot holds a weight of -128")
        corr[:oc] -= 255 * w[:, order.flip].astype(np.int64).sum(axis=(1, 2, 3))
        w = np.where(order.flip[None, :, None, None], -w, w).astype(np.int8)
    wp = np.zeros((spec.ocp, spec.cg * GROUP, kh, kw), np.int8)
    wp[:oc, :c] = w
    wp = wp.reshape(spec.ocp, spec.cg, GROUP, kh * kw).transpose(0, 3, 1, 2)
    packed = np.ascontiguousarray(wp).view("<i4").reshape(spec.ocp, kh * kw, spec.cg)
    init = ((-corr + 2**31) % 2**32 - 2**31).astype(np.int32)
    bias = np.zeros(spec.ocp, np.int64)
    bias[:oc] = (np.asarray(p["b16"], np.int64) << int(p["bias_shift"])) + _rounding(spec.pre_shift)
    mul = np.zeros(spec.ocp, np.int64)
    mul[:oc] = np.broadcast_to(np.asarray(p["ofm_multiplier"], np.int64).reshape(-1), (oc,))
    if spec.matvec:
        packed = packed.reshape(spec.ocp // BLOCK, BLOCK, spec.cg).transpose(0, 2, 1)
    return [np.ascontiguousarray(packed, np.int32), init, bias, mul]


def _pack_input(
    bb: relax.BlockBuilder,
    x: relax.Expr,
    xq: QParams,
    node: Node,
    spec: ConvKernelSpec,
    order: PairOrder | None,
) -> relax.Expr:
    """``X`` of the kernel (:func:`~npuc.backend.cpu.schedules.int8_pack.make_packer`), its
    channels in ``order`` when given."""
    n, c, h, w = shape_of(x)
    pt, pl, pb, _ = (int(v) for v in node.attr("padding"))
    pack = PackSpec(
        n=n, c=c, h=h, w=w, dtype=xq.dtype, pt=pt, pl=pl, sh=spec.stride_h, sw=spec.stride_w,
        cg=spec.cg, hq=-(-(h + pt + pb) // spec.stride_h), wq=spec.wq, q=spec.q, zp_u=spec.zp_u,
        ordered=order is not None,
    )  # fmt: skip
    gv = bb.add_func(make_packer(pack), f"int8_pack_{node.name}")
    ty = relax.TensorType((n, spec.cg, spec.phases, spec.q * GROUP), "uint8")
    args = [x]
    if order is not None:
        xor = np.where(order.flip, 255, 0).astype(np.uint8)
        args += [relax.const(order.order.astype(np.int32), "int32"), relax.const(xor, "uint8")]
    return bb.emit(relax.call_tir(gv, relax.Tuple(args), ty))


def emit_int8_conv(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    x: relax.Expr,
    xq: QParams,
    out: QParams,
) -> relax.Expr | None:
    """Stored output integers of the layer through the int8 kernel, or None (not eligible)."""
    spec = plan_conv(node, p, shape_of(x), xq, out)
    return None if spec is None else _emit(bb, node, p, x, xq, spec, out)


def _pack_row(
    bb: relax.BlockBuilder, x: relax.Expr, xq: QParams, spec: ConvKernelSpec
) -> relax.Expr:
    """``X`` of a matvec kernel: the row ``x`` (``K`` values) as ``u``, padded with ``zp_u``
    to ``cg * 4`` values, shape ``(1, cg, 1, 4)`` (element-wise, no packing kernel)."""
    k = int(np.prod(shape_of(x)))
    u = relax.op.reshape(x, (k,))
    if xq.dtype == "int8":
        wide = relax.op.add(relax.op.astype(u, "int16"), relax.const(128, "int16"))
        u = relax.op.astype(wide, "uint8")
    if spec.cg * GROUP > k:
        pad = np.full(spec.cg * GROUP - k, spec.zp_u, np.uint8)
        u = relax.op.concat([u, relax.const(pad, "uint8")], axis=0)
    return bb.emit(relax.op.reshape(u, (1, spec.cg, 1, GROUP)))


def _emit(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    x: relax.Expr,
    xq: QParams,
    spec: ConvKernelSpec,
    out: QParams,
) -> relax.Expr:
    """The packing and kernel calls of ``spec`` (a convolution or matvec spec)."""
    if spec.matvec:
        order, xp = None, _pack_row(bb, x, xq, spec)
    else:
        order = pair_order(np.asarray(p["weights"])) if uncentred(spec) else None
        xp = _pack_input(bb, x, xq, node, spec, order)
    consts = [relax.const(a, str(a.dtype)) for a in pack_constants(spec, p, order)]
    kernel = (make_matvec if spec.matvec else make_kernel)(spec, GENERIC)
    gv = bb.add_func(kernel, f"int8_conv_{node.name}")
    ty = relax.TensorType((spec.n, spec.oc, spec.oh * spec.ow), out.dtype)
    y = bb.emit(relax.call_tir(gv, relax.Tuple([xp, *consts]), ty))
    return bb.emit(relax.op.reshape(y, (spec.n, spec.oc, spec.oh, spec.ow)))


def emit_int8_dense(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    x: relax.Expr,
    xq: QParams,
    out: QParams,
) -> relax.Expr | None:
    """A ``dense`` layer (``x (..., K) @ weights (K, N)``) as a 1x1 convolution over the
    ``M`` rows of ``x`` (channels ``K``, positions ``M``), or None (not eligible); one
    row (``M == 1``) runs the matrix-vector kernel (:func:`matvec_spec`).

    Same integers as the layer: each output is one channel's dot product over
    ``K`` and its output stage, whatever the positions are.
    """
    shape = shape_of(x)
    weights = np.asarray(p["weights"])
    if len(shape) < 2 or weights.ndim != 2:
        return None
    k, n = weights.shape
    rows = int(np.prod(shape[:-1]))
    conv = Node(
        name=node.name, op="conv2d", inputs=node.inputs, out=node.out,
        attrs={"strides": [1, 1], "padding": [0, 0, 0, 0], "dilation": [1, 1], "groups": 1},
    )  # fmt: skip
    conv_p = {**p, "weights": np.ascontiguousarray(weights.T).reshape(n, k, 1, 1)}
    spec = plan_conv(conv, conv_p, (1, k, 1, rows), xq, out)
    if spec is None:
        return None
    xt = relax.op.permute_dims(relax.op.reshape(x, (rows, k)), [1, 0])
    xc = bb.emit(relax.op.reshape(xt, (1, k, 1, rows)))
    y = _emit(bb, conv, conv_p, xc, xq, matvec_spec(spec) if rows == 1 else spec, out)
    yt = relax.op.permute_dims(relax.op.reshape(y, (n, rows)), [1, 0])
    return bb.emit(relax.op.reshape(yt, (*shape[:-1], n)))
