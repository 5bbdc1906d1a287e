"""Golden model of the ITP table lookup (spec section 5).

- int8 / uint8 input: 256 entries indexed by the stored value
  (``x + 128`` for int8, ``x`` for uint8).
- int16 input: ``2**k + 1`` entries (``k = lut_bits``, 1..10), ``x_min = -32768``,
  ``f = 16 - k``: ``i = (x - x_min) >> f``, ``t = (x - x_min) & (2**f - 1)``,
  ``y = T[i] + rshift_round((T[i + 1] - T[i]) * t, f)``.

The result is the table value (or interpolation) as int64; the caller
saturates it to the output type.
"""

from __future__ import annotations

import numpy as np

from npuc.core.intref.arith import as_int64, rshift_round

INT16_X_MIN = -32768
MAX_LUT_BITS = 10


def lut_entries(in_dtype: str, lut_bits: int) -> int:
    """Number of table entries for an input type (and ``lut_bits`` for int16)."""
    if in_dtype in ("int8", "uint8"):
        return 256
    if in_dtype == "int16":
        if not 1 <= lut_bits <= MAX_LUT_BITS:
            raise ValueError(f"lut_bits {lut_bits} is outside [1, {MAX_LUT_BITS}]")
        return (1 << lut_bits) + 1
    raise ValueError(f"LUT input type {in_dtype!r} is not int8, uint8 or int16")


def lut_lookup(x: np.ndarray, table: np.ndarray, *, in_dtype: str, lut_bits: int = 8) -> np.ndarray:
    """Look ``x`` up in ``table`` per spec section 5; returns int64 values."""
    entries = lut_entries(in_dtype, lut_bits)
    if table.shape != (entries,):
        raise ValueError(f"LUT has shape {table.shape}, expected ({entries},)")
    t64 = as_int64(table)
    x64 = as_int64(x)
    if in_dtype == "int8":
        return t64[x64 + 128]
    if in_dtype == "uint8":
        return t64[x64]
    f = 16 - lut_bits
    offset = x64 - INT16_X_MIN
    i = offset >> f
    frac = offset & ((1 << f) - 1)
    return t64[i] + rshift_round((t64[i + 1] - t64[i]) * frac, f)
