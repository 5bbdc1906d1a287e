"""Table-lookup activations (the ITP LUT, docs/npu_spec.md section 5) as Relax ``take``.

Requires: an integer ``unary`` layer with its table ``lut`` (256 entries for
8-bit input, ``2^lut_bits + 1`` for int16) and its input as stored integers.

Guarantees: the stored integers of :func:`npuc.core.intref.lut_lookup`
(8-bit: ``T[x + 128]`` / ``T[x]``; int16: clamp to the table's domain,
``T[i] + rshift_round((T[i + 1] - T[i]) * t, f)`` with ``f = 16 - lut_bits``
and ``x_min = -32768``), saturated to the output type.

How: an 8-bit lookup is one gather indexed by the stored value itself (int8:
``x mod 256``, the table rotated by 128) from a table already saturated to
the output type and stored in it: one pass, no arithmetic around it, as a
pre-scheduled kernel of its own (:func:`make_lookup`: a flat loop of 32-bit
gathers, parallel in chunks; ``relax.op.take`` in ``wrap`` mode computed a
floor modulo and a 64-bit index per element: MobileNetV3's 200704-element
hardswish table 0.86 -> 0.05 ms at one thread). The
int16 interpolation runs in int32 when ``2 * max|T| * 2^f + 2^(f-1)`` is below
2^31 (every intermediate then fits), else in int64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from tvm import relax, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from npuc.core.intref.lut import INT16_X_MIN, lut_entries
from npuc.midend.quantize.qparams import QParams

from .intops import centered, dtype_of, shape_of

INT32_SAFE = 1 << 31
#: Elements per parallel task of an 8-bit lookup (a smaller tensor runs on one thread).
LOOKUP_CHUNK = 8192


def make_lookup(size: int, in_dtype: str, out_dtype: str) -> tirx.PrimFunc:
    """The PrimFunc ``(X, TBL, Y)``: ``X (size,)`` int8/uint8, ``TBL (256,)`` int32 (values
    within ``out_dtype``), ``Y (size,)`` of ``out_dtype`` with ``Y[i] = TBL[X[i] mod 256]``.

    The table is int32 so that LLVM vectorises the loop with 32-bit gathers
    (``vpgatherdd``; an 8-bit table was vectorised as lane extracts: 3x slower).
    """
    chunks = -(-size // LOOKUP_CHUNK)
    with IRBuilder() as ib, T.prim_func(private=True, s_tir=True):
        x = T.arg("X", T.buffer((size,), in_dtype))
        tbl = T.arg("TBL", T.buffer((256,), "int32"))
        y = T.arg("Y", T.buffer((size,), out_dtype))
        T.func_attr({"tirx.noalias": True})
        loop = T.parallel(0, chunks) if chunks > 1 else T.serial(0, chunks)
        with T.sblock("root"), loop as k, T.sblock("lookup"):
            T.reads(x[0:size], tbl[0:256])
            T.writes(y[0:size])
            count = T.min(LOOKUP_CHUNK, size - k * LOOKUP_CHUNK)
            with T.serial(0, count) as j:
                i = k * LOOKUP_CHUNK + j
                index = tirx.bitwise_and(tirx.Cast("int32", x[i]), 255)
                T.buffer_store(y, tirx.Cast(out_dtype, tbl[index]), [i])
    return (
        ib.get()
        .with_attr("op_pattern", 8)
        .with_attr("tirx.is_scheduled", True)
        .with_attr("npuc.schedule_rule", "lut_lookup")
    )


def emit_lookup(bb: relax.BlockBuilder, x: relax.Expr, table: np.ndarray) -> relax.Expr:
    """``table[x mod 256]`` (``table``: 256 entries, the output type) for int8/uint8 ``x``
    of any shape, through :func:`make_lookup`."""
    shape = shape_of(x)
    size = math.prod(shape)
    out_dtype = str(table.dtype)
    gv = bb.add_func(make_lookup(size, dtype_of(x), out_dtype), "int_lut")
    flat = bb.emit(relax.op.reshape(x, (size,)))
    args = [flat, relax.const(table.astype(np.int32), "int32")]
    y = bb.emit(relax.call_tir(gv, args, relax.TensorType((size,), out_dtype)))
    return bb.emit(relax.op.reshape(y, shape))


def emit_lut(
    bb: relax.BlockBuilder, p: Mapping[str, Any], x: relax.Expr, xq: QParams, out: QParams
) -> relax.Expr:
    """Stored output integers of a table lookup on ``x`` (stored as ``xq.dtype``).

    Raises ValueError when the table's size does not match the input type.
    """
    table = np.asarray(p["lut"], np.int64)
    bits = int(p.get("lut_bits", 8))
    entries = lut_entries(xq.dtype, bits)
    if table.shape != (entries,):
        raise ValueError(f"LUT has shape {table.shape}, expected ({entries},)")
    if xq.dtype in ("int8", "uint8"):
        saturated = np.clip(table, out.qmin, out.qmax).astype(out.dtype)
        if xq.dtype == "int8":  # index the stored value itself: entry x mod 256 is T[x + 128]
            saturated = np.roll(saturated, -128)
        return emit_lookup(bb, x, saturated)
    frac = 16 - bits
    peak = int(np.abs(table).max(initial=0))
    wide = "int32" if 2 * peak * (1 << frac) + (1 << frac) < INT32_SAFE else "int64"
    t = relax.const(table.astype(wide), wide)

    def const(value: int) -> relax.Constant:
        return relax.const(np.asarray(value, wide), wide)

    d = bb.emit(
        relax.op.minimum(
            relax.op.maximum(centered(x, INT16_X_MIN, wide), const(0)),
            const((entries - 1) << frac),
        )
    )
    i = bb.emit(relax.op.right_shift(d, const(frac)))
    frac_part = relax.op.subtract(d, relax.op.left_shift(i, const(frac)))
    nxt = relax.op.minimum(relax.op.add(i, const(1)), const(entries - 1))
    lo = bb.emit(relax.op.take(t, i, axis=0, mode="clip"))
    hi = relax.op.take(t, nxt, axis=0, mode="clip")
    step = relax.op.multiply(relax.op.subtract(hi, lo), frac_part)
    if frac:
        step = relax.op.right_shift(relax.op.add(step, const(1 << (frac - 1))), const(frac))
    looked = relax.op.add(lo, step)
    qlo, qhi = const(max(out.qmin, -(1 << 31))), const(min(out.qmax, (1 << 31) - 1))
    return bb.emit(relax.op.astype(relax.op.minimum(relax.op.maximum(looked, qlo), qhi), out.dtype))
