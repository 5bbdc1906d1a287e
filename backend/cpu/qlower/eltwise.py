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
int32 and requantize. Computed in int64 throughout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tvm import relax

from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qparams import QParams

from .intops import centered, clamp_store, i64_const, requant, rshift_round, sat32, sat48, shape_of

BINARY = ("add", "subtract", "multiply", "maximum", "minimum")


def emit_binary(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    args: list[tuple[relax.Expr, QParams]],
    out: QParams,
) -> relax.Expr:
    """An element-wise layer; ``args`` holds (stored integers, their QParams) per operand."""
    if len(args) == 1:
        const_q = QParams(p["const_scale"], p["const_zp"], out.dtype)
        const = (i64_const(p["const"]), const_q)
        args = [const, args[0]] if node.attr("const_side") == "lhs" else [args[0], const]
    (a, qa), (b, qb) = args
    da = bb.emit(centered(a, qa.zero_point))
    db = bb.emit(centered(b, qb.zero_point))
    op = node.op
    if op == "multiply":
        inter = relax.op.multiply(
            relax.op.multiply(da, db), i64_const(int(p.get("ofm_multiplier", 0)))
        )
    else:
        sa = relax.op.multiply(da, i64_const(int(p.get("ifm_multiplier", 0))))
        sb = relax.op.multiply(db, i64_const(int(p.get("ifm2_multiplier", 0))))
        combine = {
            "add": relax.op.add,
            "subtract": relax.op.subtract,
            "maximum": relax.op.maximum,
            "minimum": relax.op.minimum,
        }[op]
        inter = combine(sa, sb)
    y = rshift_round(sat48(inter), int(p["post_shift"]))
    if out.zero_point:
        y = relax.op.add(y, i64_const(out.zero_point))
    return bb.emit(clamp_store(y, int(p["act_min"]), int(p["act_max"]), out.dtype))


def emit_requant_layer(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    x: relax.Expr,
    xq: QParams,
    out: QParams,
) -> relax.Expr:
    """``clip``, ``avg_pool2d`` or ``global_avg_pool``: an exact sum (pools), then requant."""
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
