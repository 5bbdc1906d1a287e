"""Integer element-wise, clamp and average-pool layers in Relax (the ITP formulas).

Requires: an integer layer of kind ``add``/``subtract``/``multiply``/``maximum``/
``minimum`` (two operands with numpy broadcasting, or one and the layer's
quantized constant ``const``), ``clip``, ``avg_pool2d`` (count_include_pad)
or ``global_avg_pool``; its inputs as stored integers.

Guarantees: the stored integers of
:func:`npuc.core.intref.eltwise` (48-bit intermediate, ``rshift_round``,
``ofm_zp``, clamp) and of the executor's requant copy
``clamp(rshift_round((x - zp) * M, post_shift) + ofm_zp)``; pools sum
``x - zp`` exactly in int64 (padding contributes zero), saturate the sum to
int32 and requantize.

Arithmetic: each layer runs in the narrowest exact type for its bounds
(:func:`~.intops.narrow_type`: ``|x - zp|`` is at most the distance from the
zero point to its type's ends, a constant operand's at most its own largest):
int32 when every product, sum and rounding constant stays below 2^31, else
float64 (every intermediate an integer below 2^52; ``sat48`` never clamps
below 2^47), else the int64 reference form. An average pool is an all-ones
depthwise convolution with no bias and no ahead shift
(:mod:`.depthwise`: the same sum, ``sat32`` and requantization).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from tvm import relax

from npuc.core.intref.arith import ACC48_MAX
from npuc.midend.quantize.exact_eltwise import peak
from npuc.midend.quantize.exact_stage import clamp_bounds
from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qparams import QParams

from .depthwise import emit_depthwise
from .intops import (
    I64,
    centered,
    clamp_cast,
    clamp_store,
    i64_const,
    narrow_type,
    requant,
    rshift_round,
    sat32,
    sat48,
    shape_of,
    shift_round,
    typed_const,
)

BINARY = ("add", "subtract", "multiply", "maximum", "minimum")


def emit_binary(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    args: list[tuple[relax.Expr, QParams]],
    out: QParams,
) -> relax.Expr:
    """An element-wise layer; ``args`` holds (stored integers, their QParams) per operand."""
    peaks = [peak(q) for _, q in args]
    if len(args) == 1:
        const_q = QParams(p["const_scale"], p["const_zp"], out.dtype)
        const = (i64_const(p["const"]), const_q)
        values = np.asarray(p["const"], np.int64) - const_q.zero_point
        lhs = node.attr("const_side") == "lhs"
        args = [const, args[0]] if lhs else [args[0], const]
        const_peak = int(np.abs(values).max(initial=0))
        peaks = [const_peak, *peaks] if lhs else [*peaks, const_peak]
    (a, qa), (b, qb) = args
    ma, mb = int(p.get("ifm_multiplier", 0)), int(p.get("ifm2_multiplier", 0))
    m = int(p.get("ofm_multiplier", 0))
    op = node.op
    bound = (
        peaks[0] * peaks[1] * abs(m)
        if op == "multiply"
        else peaks[0] * abs(ma) + peaks[1] * abs(mb)
    )
    shift = int(p["post_shift"])
    wide = narrow_type(bound, shift) if bound <= ACC48_MAX else I64
    da = bb.emit(centered(a, qa.zero_point, wide))
    db = bb.emit(centered(b, qb.zero_point, wide))
    if op == "multiply":
        inter = relax.op.multiply(relax.op.multiply(da, db), typed_const(m, wide))
    else:
        sa = relax.op.multiply(da, typed_const(ma, wide))
        sb = relax.op.multiply(db, typed_const(mb, wide))
        combine = {
            "add": relax.op.add,
            "subtract": relax.op.subtract,
            "maximum": relax.op.maximum,
            "minimum": relax.op.minimum,
        }[op]
        inter = combine(sa, sb)
    if wide == I64:
        y = rshift_round(sat48(inter), shift)
        if out.zero_point:
            y = relax.op.add(y, i64_const(out.zero_point))
        return bb.emit(clamp_store(y, int(p["act_min"]), int(p["act_max"]), out.dtype))
    return bb.emit(_finish(shift_round(inter, shift, wide), p, out, wide))


def _finish(y: relax.Expr, p: Mapping[str, Any], out: QParams, wide: str) -> relax.Expr:
    """``y + ofm_zp`` clamped to the activation bounds and the output type, stored."""
    if out.zero_point:
        y = relax.op.add(y, typed_const(out.zero_point, wide))
    bounds = clamp_bounds(int(p["act_min"]), int(p["act_max"]), out.dtype)
    return clamp_cast(y, bounds, wide, out.dtype)


def emit_requant_layer(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    x: relax.Expr,
    xq: QParams,
    out: QParams,
) -> relax.Expr:
    """``clip``, ``avg_pool2d`` or ``global_avg_pool``: an exact sum (pools), then requant."""
    m, shift = int(p["ofm_multiplier"]), int(p["post_shift"])
    if node.op == "avg_pool2d":
        pooled = _avg_pool_as_depthwise(bb, node, p, x, xq, out)
        if pooled is not None:
            return pooled
    if node.op in ("clip", "global_avg_pool"):
        area = 1 if node.op == "clip" else math.prod(shape_of(x)[2:])
        total = area * peak(xq)  # bounds the (pool) sum: below 2^31 it needs no sat32
        wide = narrow_type(total * abs(m), shift) if total < (1 << 31) else I64
        if wide != I64:
            sum_type = "int32" if wide == "int32" else "float64"
            xc = bb.emit(centered(x, xq.zero_point, sum_type))
            if node.op == "global_avg_pool":
                xc = bb.emit(relax.op.sum(xc, axis=[2, 3], keepdims=True))
            scaled = relax.op.multiply(xc, typed_const(m, wide))
            return bb.emit(_finish(shift_round(scaled, shift, wide), p, out, wide))
    xc = bb.emit(centered(x, xq.zero_point))
    if node.op == "clip":
        total = xc
    elif node.op == "global_avg_pool":
        total = bb.emit(sat32(relax.op.sum(xc, axis=[2, 3], keepdims=True)))
    elif node.op == "avg_pool2d":
        channels = shape_of(x)[1]
        kh, kw = node.attr("kernel")
        ones = i64_const(np.ones((channels, 1, kh, kw)))
        window = relax.op.nn.conv2d(
            xc,
            ones,
            strides=tuple(node.attr("strides")),
            padding=tuple(node.attr("padding")),
            dilation=tuple(node.attr("dilation")),
            groups=channels,
            out_dtype="int64",
        )
        total = bb.emit(sat32(window))
    else:
        raise KeyError(node.op)
    bounds = (int(p["act_min"]), int(p["act_max"]))
    return bb.emit(
        requant(
            total, int(p["ofm_multiplier"]), int(p["post_shift"]), out.zero_point, bounds, out.dtype
        )
    )


def _avg_pool_as_depthwise(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    x: relax.Expr,
    xq: QParams,
    out: QParams,
) -> relax.Expr | None:
    """An average pool as :func:`~.depthwise.emit_depthwise` of an all-ones kernel, or ``None``."""
    channels = shape_of(x)[1]
    kh, kw = node.attr("kernel")
    conv = dataclasses.replace(node, op="conv2d", attrs={**node.attrs, "groups": channels})
    params = {
        "weights": np.ones((channels, 1, kh, kw), np.int8),
        "b16": np.zeros(channels, np.int16),
        "bias_shift": 0,
        "ofm_multiplier": np.asarray(p["ofm_multiplier"]),
        "pre_shift": 0,
        "post_shift": int(p["post_shift"]),
        "act_min": int(p["act_min"]),
        "act_max": int(p["act_max"]),
    }
    return emit_depthwise(bb, conv, params, x, xq, out)
