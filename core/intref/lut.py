"""Golden model of the ITP table lookup (spec section 5, docs/npu_spec.md).

- int8 / uint8 input: 256 entries indexed by the stored value
  (``x + 128`` for int8, ``x`` for uint8).
- int16 input: ``2**k + 1`` entries (``k = lut_bits``, 1..10); entry ``j``
  holds the function at input ``x_min + j * 2**f``. The input is clamped to
  the table's domain, ``d = clip(x - x_min, 0, 2**(k + f))``, then
  ``i = d >> f``, ``t = d & (2**f - 1)``,
  ``y = T[i] + rshift_round((T[i + 1] - T[i]) * t, f)`` (``t = 0`` at the last
  entry, so ``T[2**k + 1]`` is never read). ``x_min = -32768, f = 16 - k``
  spans the whole int16 range.

The result is the table value (or interpolation) as int64; the caller
saturates it to the output type.
"""

from __future__ import annotations

import numpy as np

from npuc.core.intref.arith import as_int64, rshift_round

INT16_X_MIN = -32768
MAX_LUT_BITS = 10
MAX_LUT_F = 16


def lut_entries(in_dtype: str, lut_bits: int) -> int:
    """Number of table entries for an input type (and ``lut_bits`` for int16)."""
    if in_dtype in ("int8", "uint8"):
        return 256
    if in_dtype == "int16":
        if not 1 <= lut_bits <= MAX_LUT_BITS:
            raise ValueError(f"lut_bits {lut_bits} is outside [1, {MAX_LUT_BITS}]")
        return (1 << lut_bits) + 1
    raise ValueError(f"LUT input type {in_dtype!r} is not int8, uint8 or int16")


def lut_lookup(
    x: np.ndarray,
    table: np.ndarray,
    *,
    in_dtype: str,
    lut_bits: int = 8,
    x_min: int = INT16_X_MIN,
    f: int | None = None,
) -> np.ndarray:
    """Look ``x`` up in ``table`` per spec section 5; returns int64 values.

    Parameters
    ----------
    x
        Stored input values of ``in_dtype``.
    table
        ``lut_entries(in_dtype, lut_bits)`` entries.
    lut_bits, x_min, f
        int16 input only: table size ``2**lut_bits + 1``, input of entry 0,
        log2 of the input step between entries (``None``: ``16 - lut_bits``,
        the whole int16 range). Ignored for 8-bit input.

    Raises
    ------
    ValueError
        Wrong table shape, input type, ``lut_bits`` or ``f`` out of range.
    """
    entries = lut_entries(in_dtype, lut_bits)
    if table.shape != (entries,):
        raise ValueError(f"LUT has shape {table.shape}, expected ({entries},)")
    t64 = as_int64(table)
    x64 = as_int64(x)
    if in_dtype == "int8":
        return t64[x64 + 128]
    if in_dtype == "uint8":
        return t64[x64]
    frac_bits = 16 - lut_bits if f is None else f
    if not 0 <= frac_bits <= MAX_LUT_F:
        raise ValueError(f"LUT f {frac_bits} is outside [0, {MAX_LUT_F}]")
    d = np.clip(x64 - x_min, 0, (entries - 1) << frac_bits)
    i = d >> frac_bits
    t = d & ((1 << frac_bits) - 1)
    nxt = np.minimum(i + 1, entries - 1)
    return t64[i] + rshift_round((t64[nxt] - t64[i]) * t, frac_bits)
