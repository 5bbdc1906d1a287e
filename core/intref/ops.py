"""Golden model of the ITP operators (spec section 4): element-wise, pooling, requant copy.

Plain int64 numpy written for clarity. All intermediates are formed exactly;
the element-wise intermediate is a 48-bit value (``sat48``), the
average-pool sum a 32-bit one, and each function returns the overflow flag
alongside the result when such a saturation can happen.

Choices where the spec is silent (documented in docs/npu_sim.md):

- Max/Min element-wise: both inputs are rescaled like Add
  (``(a - ifm_zp) * ifm_multiplier`` and ``(b - ifm2_zp) * ifm2_multiplier``),
  the larger/smaller is kept, then ``rshift_round(., post_shift) + ofm_zp`` --
  rounding is monotonic, so this equals taking max/min after requantizing
  each side.
- Max pool: padded positions never win (they are skipped); a window lying
  entirely in the padding gives the lowest value, ``act_min`` saturated to
  the output type. Average pool:
  padded positions hold ``ifm_zp`` (contribute zero) and ``M`` folds in
  ``1 / (kh * kw)`` (count_include_pad semantics).
"""

from __future__ import annotations

import numpy as np

from npuc.core.intref.arith import (
    INT32_MAX,
    INT32_MIN,
    as_int64,
    clamp_activation,
    rshift_round,
    sat48,
)

ELTWISE_OPS = ("add", "sub", "mul", "max", "min")


def eltwise(
    op: str,
    a: np.ndarray,
    b: np.ndarray,
    *,
    ifm_zp: int,
    ifm2_zp: int,
    ofm_zp: int,
    ifm_multiplier: int = 0,
    ifm2_multiplier: int = 0,
    ofm_multiplier: int = 0,
    post_shift: int,
    act_min: int,
    act_max: int,
    ofm_dtype: str,
) -> tuple[np.ndarray, bool]:
    """Element-wise ``op`` (``add``, ``sub``, ``mul``, ``max``, ``min``); returns ``(y, overflow)``.

    ``a`` is the first input (ifm), ``b`` the second (ifm2), same shape. ``mul``
    uses only ``ofm_multiplier``; the others only ``ifm_multiplier`` and
    ``ifm2_multiplier``.
    """
    da = as_int64(a) - ifm_zp
    db = as_int64(b) - ifm2_zp
    if op == "add":
        inter = da * ifm_multiplier + db * ifm2_multiplier
    elif op == "sub":
        inter = da * ifm_multiplier - db * ifm2_multiplier
    elif op == "mul":
        inter = da * db * ofm_multiplier
    elif op == "max":
        inter = np.maximum(da * ifm_multiplier, db * ifm2_multiplier)
    elif op == "min":
        inter = np.minimum(da * ifm_multiplier, db * ifm2_multiplier)
    else:
        raise ValueError(f"unknown element-wise op {op!r}; expected one of {ELTWISE_OPS}")
    inter, overflow = sat48(inter)
    y = rshift_round(inter, post_shift) + ofm_zp
    return clamp_activation(y, act_min, act_max, ofm_dtype), overflow


def requant(
    x: np.ndarray,
    *,
    ifm_zp: int,
    ofm_zp: int,
    ofm_multiplier: int,
    post_shift: int,
    act_min: int,
    act_max: int,
    ofm_dtype: str,
) -> np.ndarray:
    """Requant copy: ``clamp(rshift_round((x - ifm_zp) * ofm_multiplier, post_shift) + ofm_zp)``."""
    y = rshift_round((as_int64(x) - ifm_zp) * ofm_multiplier, post_shift) + ofm_zp
    return clamp_activation(y, act_min, act_max, ofm_dtype)


def _pool_windows(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    fill: int,
) -> tuple[list[np.ndarray], int, int]:
    """The kernel taps of a pool as a list of ``(oh, ow, c)`` arrays over the padded input."""
    h, w, c = x.shape
    kh, kw = kernel
    sh, sw = stride
    top, left, bottom, right = pads
    out_h = (h + top + bottom - kh) // sh + 1
    out_w = (w + left + right - kw) // sw + 1
    padded = np.full((h + top + bottom, w + left + right, c), fill, dtype=np.int64)
    padded[top : top + h, left : left + w] = x
    taps = []
    for ky in range(kh):
        for kx in range(kw):
            taps.append(
                padded[ky : ky + sh * (out_h - 1) + 1 : sh, kx : kx + sw * (out_w - 1) + 1 : sw]
            )
    return taps, out_h, out_w


def max_pool(
    x: np.ndarray,
    *,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    act_min: int,
    act_max: int,
    ofm_dtype: str,
) -> np.ndarray:
    """Max pool on stored values (same scale in and out); padded positions are skipped."""
    lowest = np.iinfo(np.int64).min
    taps, _, _ = _pool_windows(x, kernel, stride, pads, fill=lowest)
    result = taps[0].copy()
    for tap in taps[1:]:
        result = np.maximum(result, tap)
    return clamp_activation(result, act_min, act_max, ofm_dtype)


def avg_pool(
    x: np.ndarray,
    *,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    ifm_zp: int,
    ofm_zp: int,
    ofm_multiplier: int,
    post_shift: int,
    act_min: int,
    act_max: int,
    ofm_dtype: str,
) -> tuple[np.ndarray, bool]:
    """Average pool: 32-bit sum of ``x - ifm_zp`` per window, then requantize.

    ``rshift_round(sum * ofm_multiplier, post_shift) + ofm_zp``, clamped.

    Returns ``(y, overflow)``; ``overflow`` is set when a sum left the int32 range.
    """
    taps, _, _ = _pool_windows(x, kernel, stride, pads, fill=ifm_zp)
    total = np.zeros_like(taps[0])
    for tap in taps:
        total = total + (tap - ifm_zp)
    overflow = bool(np.any((total < INT32_MIN) | (total > INT32_MAX)))
    total = np.clip(total, INT32_MIN, INT32_MAX)
    y = rshift_round(total * ofm_multiplier, post_shift) + ofm_zp
    return clamp_activation(y, act_min, act_max, ofm_dtype), overflow
