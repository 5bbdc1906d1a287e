"""Table-lookup activations (the ITP LUT, docs/npu_spec.md section 5) as Relax ``take``.

Requires: an integer ``unary`` layer with its table ``lut`` (256 entries for
8-bit input, ``2^lut_bits + 1`` for int16) and its input as stored integers.

Guarantees: the stored integers of :func:`npuc.core.intref.lut_lookup`
(8-bit: ``T[x + 128]`` / ``T[x]``; int16: clamp to the table's domain,
``T[i] + rshift_round((T[i + 1] - T[i]) * t, f)`` with ``f = 16 - lut_bits``
and ``x_min = -32768``), saturated to the output type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tvm import relax

from npuc.core.intref.lut import INT16_X_MIN, lut_entries
from npuc.midend.quantize.qparams import QParams

from .intops import centered, clamp_store, clip_i64, i64_const, rshift_round


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
    t = i64_const(table)
    if xq.dtype in ("int8", "uint8"):
        index = bb.emit(centered(x, -128 if xq.dtype == "int8" else 0))
        looked = relax.op.take(t, index, axis=0, mode="clip")
    else:
        frac = 16 - bits
        d = bb.emit(clip_i64(centered(x, INT16_X_MIN), 0, (entries - 1) << frac))
        i = bb.emit(relax.op.right_shift(d, i64_const(frac)))
        frac_part = relax.op.subtract(d, relax.op.left_shift(i, i64_const(frac)))
        nxt = relax.op.minimum(relax.op.add(i, i64_const(1)), i64_const(entries - 1))
        lo = bb.emit(relax.op.take(t, i, axis=0, mode="clip"))
        hi = relax.op.take(t, nxt, axis=0, mode="clip")
        step = relax.op.multiply(relax.op.subtract(hi, lo), frac_part)
        looked = relax.op.add(lo, rshift_round(step, frac))
    return bb.emit(clamp_store(looked, out.qmin, out.qmax, out.dtype))
