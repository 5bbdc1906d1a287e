"""Table-lookup activations (the ITP LUT, docs/npu_spec.md section 5) as Relax ``take``.

Requires: an integer ``unary`` layer with its table ``lut`` (256 entries for
8-bit input, ``2^lut_bits + 1`` for int16) and its input as stored integers.

Guarantees: the stored integers of :func:`npuc.core.intref.lut_lookup`
(8-bit: ``T[x + 128]`` / ``T[x]``; int16: clamp to the table's domain,
``T[i] + rshift_round((T[i + 1] - T[i]) * t, f)`` with ``f = 16 - lut_bits``
and ``x_min = -32768``), saturated to the output type.

How: an 8-bit lookup is one gather indexed by the stored value itself (int8:
``x mod 256``, the table rotated by 128) from a table already saturated to
the output type and stored in it: one pass, no arithmetic around it. The
int16 interpolation runs in int32 when ``2 * max|T| * 2^f + 2^(f-1)`` is below
2^31 (every intermediate then fits), else in int64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tvm import relax

from npuc.core.intref.lut import INT16_X_MIN, lut_entries
from npuc.midend.quantize.qparams import QParams

from .intops import centered

INT32_SAFE = 1 << 31


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
        return bb.emit(relax.op.take(relax.const(saturated, out.dtype), x, axis=0, mode="wrap"))
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
