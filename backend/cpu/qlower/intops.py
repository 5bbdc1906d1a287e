"""Integer building blocks in Relax: the integer reference's primitives as graph expressions.

Every helper emits Relax operators whose result equals the matching
:mod:`npuc.core.intref` function element for element. Arithmetic runs in
``int64`` (as the reference does), so no intermediate wraps: the widest
product on the NPU datapath is below 2^48. ``right_shift`` on a signed
integer is an arithmetic shift in TVM's LLVM code generator, so
``(v + 2^(s-1)) >> s`` is exactly the reference's ``rshift_round``.

Boundary conversions follow :class:`~npuc.midend.quantize.qparams.QParams`:
``quantize`` is ``clip(rint(x / scale) + zp, qmin, qmax)`` in float64
(``relax.op.round`` lowers to ``nearbyint``: round half to even, like
``np.rint``); ``dequantize`` is ``((q - zp) * scale)`` in float64, then float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm import relax

from npuc.core.intref.arith import ACC48_MAX, ACC48_MIN, INT32_MAX, INT32_MIN, dtype_range
from npuc.midend.quantize.qparams import QParams

I64 = "int64"


def dtype_of(expr: relax.Expr) -> str:
    """The element type of a tensor-valued expression (``"int8"``, ``"float32"``, ...)."""
    return str(expr.ty.dtype)


def shape_of(expr: relax.Expr) -> tuple[int, ...]:
    """The static shape of a tensor-valued expression."""
    return tuple(int(d) for d in expr.ty.shape.values)


def i64_const(value: Any) -> relax.Constant:
    """A scalar or array constant of type int64."""
    return relax.const(np.asarray(value, np.int64), I64)


def to_i64(x: relax.Expr) -> relax.Expr:
    """``x`` as int64 (no-op when it already is)."""
    return x if dtype_of(x) == I64 else relax.op.astype(x, I64)


def centered(x: relax.Expr, zero_point: int, dtype: str = I64) -> relax.Expr:
    """``x - zero_point`` computed in ``dtype`` (wide enough for the difference)."""
    wide = x if dtype_of(x) == dtype else relax.op.astype(x, dtype)
    if zero_point == 0:
        return wide
    return relax.op.subtract(wide, relax.const(np.asarray(zero_point, dtype), dtype))


def rshift_round(v: relax.Expr, shift: int) -> relax.Expr:
    """The spec's ``rshift_round`` on an int64 expression: ``(v + 2^(s-1)) >> s``, ``v`` for 0.

    Raises ValueError for a shift outside ``[0, 62]`` (as the reference does).
    """
    if not 0 <= shift <= 62:
        raise ValueError(f"rshift_round: shift {shift} is outside [0, 62]")
    if shift == 0:
        return v
    rounded = relax.op.add(v, i64_const(1 << (shift - 1)))
    return relax.op.right_shift(rounded, i64_const(shift))


def clip_i64(v: relax.Expr, lo: int, hi: int) -> relax.Expr:
    """``np.clip(v, lo, hi)`` on int64: ``minimum(maximum(v, lo), hi)``."""
    return relax.op.minimum(relax.op.maximum(v, i64_const(lo)), i64_const(hi))


def sat32(v: relax.Expr) -> relax.Expr:
    """Clamp an int64 expression to the int32 range."""
    return clip_i64(v, INT32_MIN, INT32_MAX)


def sat48(v: relax.Expr) -> relax.Expr:
    """Clamp an int64 expression to the 48-bit accumulator range (no overflow flag)."""
    return clip_i64(v, ACC48_MIN, ACC48_MAX)


def clamp_store(v: relax.Expr, act_min: int, act_max: int, dtype: str) -> relax.Expr:
    """``clamp_activation(v, act_min, act_max, dtype)`` cast to the storage ``dtype``.

    The clamp runs in the reference's order (activation bounds, then the
    type's range), so inverted bounds behave as numpy's ``clip`` does.
    """
    lo, hi = dtype_range(dtype)
    return relax.op.astype(clip_i64(clip_i64(v, act_min, act_max), lo, hi), dtype)


def requant(
    v: relax.Expr,
    multiplier: Any,
    post_shift: int,
    ofm_zp: int,
    bounds: tuple[int, int],
    dtype: str,
) -> relax.Expr:
    """``clamp(rshift_round(v * M, post_shift) + ofm_zp, *bounds)`` stored as ``dtype``.

    ``v`` is int64; ``multiplier`` an int or an int64 array broadcasting against it.
    """
    y = rshift_round(relax.op.multiply(v, i64_const(multiplier)), post_shift)
    if ofm_zp:
        y = relax.op.add(y, i64_const(ofm_zp))
    return clamp_store(y, bounds[0], bounds[1], dtype)


def quantize(x: relax.Expr, q: QParams) -> relax.Expr:
    """Float tensor -> stored integers of ``q.dtype`` (round half to even, saturate)."""
    x64 = relax.op.astype(x, "float64")
    r = relax.op.round(relax.op.divide(x64, relax.const(q.scale, "float64")))
    if q.zero_point:
        r = relax.op.add(r, relax.const(float(q.zero_point), "float64"))
    lo, hi = relax.const(float(q.qmin), "float64"), relax.const(float(q.qmax), "float64")
    return relax.op.astype(relax.op.minimum(relax.op.maximum(r, lo), hi), q.dtype)


def dequantize(x: relax.Expr, q: QParams) -> relax.Expr:
    """Stored integers -> float32 real values, ``(x - zp) * scale`` in float64."""
    x64 = relax.op.astype(x, "float64")
    if q.zero_point:
        x64 = relax.op.subtract(x64, relax.const(float(q.zero_point), "float64"))
    return relax.op.astype(relax.op.multiply(x64, relax.const(q.scale, "float64")), "float32")


def is_stored_int(expr: relax.Expr, name: str, tensors: Any) -> bool:
    """Whether ``expr`` (tensor ``name``) holds stored integers rather than real values."""
    sinfo = expr.ty
    return (
        name in tensors
        and isinstance(sinfo, relax.TensorType)
        and not str(sinfo.dtype).startswith("float")
    )


#: Largest magnitude the int32 and float64 fast paths accept (every intermediate below it).
I32_LIMIT = 1 << 31
F64_LIMIT = 1 << 52


def narrow_type(bound: int, shift: int) -> str:
    """The narrowest exact type for a requantization whose terms are bounded by ``bound``.

    ``"int32"`` when ``bound + 2^(shift-1)`` is below 2^31 (products, sums and the
    rounding constant all fit), ``"float64"`` below 2^52 (every value an integer
    float64 holds exactly; the shift is an exact power-of-two scaling and a floor),
    else ``"int64"`` (the reference arithmetic). AVX2 has no 64-bit vector multiply
    or arithmetic shift, so the first two vectorise where int64 does not.
    """
    total = bound + ((1 << (shift - 1)) if shift else 0)
    if total < I32_LIMIT:
        return "int32"
    return "float64" if total < F64_LIMIT else I64


def typed_const(value: Any, dtype: str) -> relax.Constant:
    """A scalar or array constant of ``dtype`` (exact: the caller checked the range)."""
    return relax.const(np.asarray(value).astype(dtype), dtype)


def shift_round(v: relax.Expr, shift: int, dtype: str) -> relax.Expr:
    """``rshift_round(v, shift)`` in ``dtype``: ``(v + 2^(s-1)) >> s`` for integers,
    ``floor((v + 2^(s-1)) * 2^-s)`` for float64 (exact for integers below 2^52)."""
    if shift == 0:
        return v
    rounded = relax.op.add(v, typed_const(1 << (shift - 1), dtype))
    if dtype == "float64":
        return relax.op.floor(relax.op.multiply(rounded, typed_const(2.0**-shift, dtype)))
    return relax.op.right_shift(rounded, typed_const(shift, dtype))


def clamp_cast(v: relax.Expr, bounds: tuple[int, int], dtype: str, out_dtype: str) -> relax.Expr:
    """``v`` (of ``dtype``) clipped to ``bounds`` and stored as ``out_dtype``."""
    lo, hi = typed_const(bounds[0], dtype), typed_const(bounds[1], dtype)
    return relax.op.astype(relax.op.minimum(relax.op.maximum(v, lo), hi), out_dtype)
