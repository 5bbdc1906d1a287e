"""Integer arithmetic primitives of the NPU datapath (spec sections 2-3).

Everything here is plain int64 numpy, written for clarity: this is the golden
model the compiler's quantizer and the simulator are checked against. All
values the hardware can produce fit in int64 (the widest intermediate is the
48-bit accumulator; ``rshift_round`` adds its rounding constant in int64, i.e.
as a wider adder would, so it never wraps).

Guarantees
----------
- ``rshift_round(v, s)`` is ``v`` for ``s == 0`` and ``(v + 2**(s-1)) >> s``
  (arithmetic shift, round half up) otherwise, exactly as the spec writes it.
- ``saturate(v, dtype)`` clamps to the range of ``dtype`` and returns int64.
- ``sat48(v)`` clamps to [-2**47, 2**47 - 1] and says whether any
  element had to be clamped (the sticky overflow flag).
"""

from __future__ import annotations

import numpy as np

ACC48_MIN = -(1 << 47)
ACC48_MAX = (1 << 47) - 1
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

# Storage types the datapath reads and writes, by name.
DTYPES: dict[str, np.dtype] = {
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
}


def dtype_range(dtype: str | np.dtype | type) -> tuple[int, int]:
    """Return ``(min, max)`` of an integer storage type (``"int8"``, ``np.int16``, ...)."""
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def as_int64(values: np.ndarray | int) -> np.ndarray:
    """Return ``values`` as an int64 array (a copy; never a view of the input)."""
    return np.array(values, dtype=np.int64)


def rshift_round(values: np.ndarray | int, shift: int) -> np.ndarray:
    """Arithmetic right shift with round-half-up: the spec's ``rshift_round``.

    Parameters
    ----------
    values
        Integers (any int dtype); computed in int64.
    shift
        Shift amount, ``0 <= shift <= 62``.
    """
    if not 0 <= shift <= 62:
        raise ValueError(f"rshift_round: shift {shift} is outside [0, 62]")
    v = as_int64(values)
    if shift == 0:
        return v
    return (v + (1 << (shift - 1))) >> shift


def saturate(values: np.ndarray | int, dtype: str | np.dtype | type) -> np.ndarray:
    """Clamp to the range of an integer ``dtype``; the result stays int64."""
    lo, hi = dtype_range(dtype)
    return np.clip(as_int64(values), lo, hi)


def sat32(values: np.ndarray | int) -> np.ndarray:
    """Clamp to the int32 range (the ahead shift's output), as int64."""
    return np.clip(as_int64(values), INT32_MIN, INT32_MAX)


def sat48(values: np.ndarray | int) -> tuple[np.ndarray, bool]:
    """The spec's ``sat48``: clamp to the signed 48-bit accumulator range.

    Returns
    -------
    (clamped, overflowed)
        ``overflowed`` is True when at least one element was outside the
        range: the value of the sticky overflow flag for this operation.
    """
    v = as_int64(values)
    overflowed = bool(np.any((v < ACC48_MIN) | (v > ACC48_MAX)))
    return np.clip(v, ACC48_MIN, ACC48_MAX), overflowed


def clamp_activation(
    values: np.ndarray, act_min: int, act_max: int, dtype: str | np.dtype | type
) -> np.ndarray:
    """Clamp to ``[act_min, act_max]`` (ReLU/ReLU6/Clip), then to ``dtype``'s range."""
    return saturate(np.clip(as_int64(values), act_min, act_max), dtype)
