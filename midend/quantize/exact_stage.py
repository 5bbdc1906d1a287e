"""The CONV/FC output stage in float64, bit-exact to the int64 reference where provably exact.

:func:`npuc.core.intref.conv.apply_output_stage` (with ``sat48`` and the
bias before it) is the definition. :func:`output_stage_f64` computes the same
integers on a float64 array holding the accumulator sums (exact integers from
the executor's BLAS), in place and with a few vectorised passes:

1. ``+ (b16 << bias_shift)`` per channel, then ``sat48`` (skipped, with no
   overflow, when ``acc_bound + max|bias| <= 2**47 - 1``);
2. ``rshift_round(v, s)`` as ``floor((v + 2**(s-1)) * 2**-s)``: the sum is an
   integer below 2**53 (exact), scaling by a power of two is exact, and floor
   of the exact quotient is the arithmetic shift;
3. ``sat32`` (skipped when the shifted bound fits), ``* M[c]`` (below
   ``2**31 * 2**15 = 2**46``: exact), the post shift likewise, ``+ ofm_zp``
   (folded into the rounding constant when that stays below 2**52);
4. the clamp ``saturate(clip(y, act_min, act_max), dtype)``, which is one clip
   to ``[f(-inf), f(+inf)]`` of the composed function (a composition of clips
   is a clip).

Every intermediate is an integer of magnitude below 2**53, so float64 holds
it exactly; :func:`fits_f64` says when that is proven (callers fall back to
the int64 reference otherwise). tests/midend/quantize/test_exact_stage.py
checks it against the reference at the extremes (saturation, rounding ties,
the largest shifts and multipliers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuc.core.intref.arith import ACC48_MAX, ACC48_MIN, INT32_MAX, INT32_MIN, dtype_range

#: Largest magnitude of an intermediate the float64 path accepts (2**52 leaves a bit of slack).
F64_EXACT = 1 << 52
_MULTIPLIER_LIMIT = 1 << 16


def fits_f64(
    acc_bound: int, bias: np.ndarray, multipliers: np.ndarray, pre_shift: int, post_shift: int
) -> bool:
    """Whether :func:`output_stage_f64` is exact for sums bounded by ``acc_bound``.

    ``bias`` is ``b16 << bias_shift`` (int64 per channel), ``multipliers`` the
    ``M`` values, and the two shifts; together they bound every intermediate.
    """
    b = int(np.abs(np.asarray(bias, np.int64)).max(initial=0))
    m = np.asarray(multipliers, np.int64)
    m_ok = bool(((m >= 0) & (m < _MULTIPLIER_LIMIT)).all())
    r_pre = (1 << (pre_shift - 1)) if pre_shift else 0
    r_post = (1 << (post_shift - 1)) if post_shift else 0
    pre_ok = acc_bound + b + r_pre < F64_EXACT and (1 << 47) + r_pre < F64_EXACT
    return m_ok and pre_ok and (1 << 47) + r_post < F64_EXACT


def clamp_bounds(act_min: int, act_max: int, dtype: str) -> tuple[int, int]:
    """``(lo, hi)`` with ``clip(v, lo, hi) == saturate(clip(v, act_min, act_max), dtype)``."""
    dlo, dhi = dtype_range(dtype)

    def composed(v: int) -> int:
        return min(max(min(max(v, act_min), act_max), dlo), dhi)

    return composed(-(1 << 62)), composed(1 << 62)


def output_stage_f64(
    acc: np.ndarray,
    bias: np.ndarray,
    *,
    acc_bound: int,
    pre_shift: int,
    post_shift: int,
    multipliers: np.ndarray,
    ofm_zp: int,
    clamp: tuple[int, int] | None,
    dtype: type[np.int64] | type[np.float64] = np.int64,
) -> tuple[np.ndarray, bool]:
    """``(y, overflow)``: the output stage of ``acc[..., cout]`` (module docstring).

    ``y`` is int64, or with ``dtype=np.float64`` the same integers as float64
    (exact; saves a conversion for callers that compute in float64).

    The passes run block by block (:data:`BLOCK_ELEMENTS` at a time) so each
    block stays in cache through all of them.

    Parameters
    ----------
    acc
        float32 or float64 sums ``sum((x - ifm_zp) * w)``, channels last, exact
        integers with ``|acc| <= acc_bound``; not modified.
    bias
        ``b16 << bias_shift`` per output channel (int64 ``(cout,)``).
    multipliers
        ``M`` per output channel or one value, ``0 <= M < 2**16``.
    clamp
        ``(lo, hi)`` from :func:`clamp_bounds`, or None for no clamp (``y`` then
        is the stage before the clamp, with ``ofm_zp`` added).

    Raises
    ------
    ValueError
        If :func:`fits_f64` does not hold (the caller must use the int64 path).
    """
    if not fits_f64(acc_bound, bias, multipliers, pre_shift, post_shift):
        raise ValueError("output stage not provably exact in float64; use the int64 reference")
    b = np.asarray(bias, np.int64).reshape(-1)
    r_pre = (1 << (pre_shift - 1)) if pre_shift else 0
    total_bound = acc_bound + int(np.abs(b).max(initial=0))
    checked = total_bound > ACC48_MAX  # saturation possible: add, check, clip, then round
    if checked:
        total_bound = ACC48_MAX + 1
    r_post = (1 << (post_shift - 1)) if post_shift else 0
    folded = r_post + (ofm_zp << post_shift)
    zp_folded = abs(folded) < F64_EXACT - (1 << 47)
    plan = _Plan(
        first=(b if checked else b + r_pre).astype(np.float64),
        checked=checked,
        r_pre=float(r_pre),
        pre_scale=2.0**-pre_shift if pre_shift else None,
        sat32=((total_bound + r_pre) >> pre_shift) + 1 > INT32_MAX,
        m=np.asarray(multipliers, np.float64).reshape(-1),
        second=float(folded if zp_folded else r_post),
        post_scale=2.0**-post_shift if post_shift else None,
        zp_after=None if zp_folded else float(ofm_zp),
        clamp=clamp,
    )
    cout = acc.shape[-1] if acc.ndim else 1
    src = np.ascontiguousarray(acc).reshape(-1, max(cout, 1))
    out = np.empty(acc.shape, dtype)
    dst = out.reshape(src.shape)
    rows = max(1, BLOCK_ELEMENTS // max(cout, 1))
    buf = np.empty((min(rows, src.shape[0]), src.shape[1]), np.float64)
    overflow = False
    for r0 in range(0, src.shape[0], rows):
        part = src[r0 : r0 + rows]
        a = buf[: part.shape[0]]
        overflow |= _stage_block(part, a, plan)
        np.copyto(dst[r0 : r0 + rows], a, casting="unsafe")  # integers: exact
    return out, overflow


#: Elements per block of :func:`output_stage_f64` (256 KiB of float64).
BLOCK_ELEMENTS = 1 << 15


@dataclass(frozen=True, slots=True)
class _Plan:
    """The constants of one output stage, as float64 (see :func:`output_stage_f64`)."""

    first: np.ndarray
    checked: bool
    r_pre: float
    pre_scale: float | None
    sat32: bool
    m: np.ndarray
    second: float
    post_scale: float | None
    zp_after: float | None
    clamp: tuple[int, int] | None


def _stage_block(part: np.ndarray, a: np.ndarray, plan: _Plan) -> bool:
    """Write the stage of ``part`` into ``a`` (float64, same shape); return the overflow flag."""
    np.add(part, plan.first, out=a)
    overflow = False
    if plan.checked:
        overflow = bool(a.min() < ACC48_MIN or a.max() > ACC48_MAX)
        if overflow:
            np.clip(a, float(ACC48_MIN), float(ACC48_MAX), out=a)
        if plan.r_pre:
            a += plan.r_pre
    if plan.pre_scale is not None:
        a *= plan.pre_scale
        np.floor(a, out=a)
    if plan.sat32:
        np.clip(a, float(INT32_MIN), float(INT32_MAX), out=a)
    a *= plan.m
    a += plan.second
    if plan.post_scale is not None:
        a *= plan.post_scale
        np.floor(a, out=a)
    if plan.zp_after is not None:
        a += plan.zp_after
    if plan.clamp is not None:
        np.clip(a, float(plan.clamp[0]), float(plan.clamp[1]), out=a)
    return overflow
