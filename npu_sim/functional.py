"""Bit-exact, vectorised execution of the NPU datapath over whole tiles.

Each function takes numpy arrays (as read from SRAM) and instruction operands
and returns the output array plus the sticky overflow flag where the spec has
one. Nothing loops per element in Python: convolutions run as one GEMM per
instruction, the rest as whole-array int64 numpy expressions.

Exactness of the float64 GEMM
-----------------------------
A convolution's MAC part is formed as ``im2col(x - ifm_zp) @ w.T`` in float64
(BLAS speed). Every product is an integer with ``|p| <= max|x - zp| * max|w|``
and every partial sum of any subset, in any order, is bounded by the sum of
``|p|``; if that bound (``K * max|x - zp| * max|w|``, ``K`` = taps x channels)
is at most ``2**53``, every intermediate is an exactly representable integer,
so the float64 result equals the exact integer sum. The bound is checked per
instruction; beyond it (K above ~2**30 for int16 data, never in practice) the
GEMM falls back to int64 arithmetic. tests/npu_sim/test_blas_exact.py proves
the bound at its worst-case magnitudes against an int64 reference.

This module is an independent implementation of the spec; it shares no code
with ``npuc.core.intref`` (the golden model it is tested against).
"""

from __future__ import annotations

import numpy as np

from npuc.npu_sim.conv_tiles import Geometry, pool_tiles, tiles, windows

FLOAT64_EXACT_LIMIT = 1 << 53
ACC48_LO = -(1 << 47)
ACC48_HI = (1 << 47) - 1
I32_LO = -(1 << 31)
I32_HI = (1 << 31) - 1


def rshift_round(v: np.ndarray, shift: int) -> np.ndarray:
    """The spec's ``rshift_round``: ``v >> shift`` rounding half up (``v`` int64).

    Identity for ``shift == 0``.
    """
    if shift == 0:
        return v
    return (v + np.int64(1 << (shift - 1))) >> np.int64(shift)


def clip_to(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Clamp int64 values to ``[lo, hi]`` in place-free form."""
    return np.minimum(np.maximum(v, np.int64(lo)), np.int64(hi))


def store_as(v: np.ndarray, act_min: int, act_max: int, dtype: np.dtype) -> np.ndarray:
    """Clamp to ``[act_min, act_max]`` and the range of ``dtype``; return ``dtype`` values."""
    info = np.iinfo(dtype)
    lo = max(int(act_min), int(info.min))
    hi = min(int(act_max), int(info.max))
    if lo > hi:  # an empty activation range: everything saturates to one bound
        lo = hi = min(max(int(act_min), int(info.min)), int(info.max))
    return clip_to(v, lo, hi).astype(dtype)


def sat48(acc: np.ndarray) -> tuple[np.ndarray, bool]:
    """The spec's ``sat48``: clamp to the 48-bit accumulator range; ``(clamped, overflowed)``."""
    overflowed = bool(acc.size) and bool(acc.min() < ACC48_LO or acc.max() > ACC48_HI)
    return (clip_to(acc, ACC48_LO, ACC48_HI) if overflowed else acc), overflowed


def sat32(v: np.ndarray) -> np.ndarray:
    """The spec's ``sat32``: clamp int64 values to the int32 range."""
    return clip_to(v, I32_LO, I32_HI)


def gemm_exact(a: np.ndarray, b: np.ndarray, *, max_abs_a: int, max_abs_b: int) -> np.ndarray:
    """Exact integer ``a @ b`` (int64 result) via float64 BLAS when provably exact.

    ``a`` is ``(m, k)`` and ``b`` ``(k, n)``, both already float64 holding
    integers with magnitudes at most ``max_abs_a`` / ``max_abs_b``.
    """
    k = a.shape[1]
    if k * max_abs_a * max_abs_b <= FLOAT64_EXACT_LIMIT:
        return (a @ b).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def conv_out_hw(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> tuple[int, int]:
    """Output height and width of a convolution or pool window sweep."""
    top, left, bottom, right = pads
    oh = (in_hw[0] + top + bottom - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (in_hw[1] + left + right - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    return oh, ow


def conv_accumulate(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    *,
    bias_shift: int,
    ifm_zp: int,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pads: tuple[int, int, int, int],
    depthwise: bool,
) -> tuple[np.ndarray, bool]:
    """Accumulators ``(oh, ow, cout)`` int64 of a conv (HWC ``x``, OHWI ``w``) and the flag.

    Working memory is bounded (about 32 MiB beyond the operands, whatever the
    kernel and padding) by tiling the output (:mod:`npuc.npu_sim.conv_tiles`).
    Padded positions hold ``ifm_zp``. Depthwise weights are ``(cout, kh, kw, 1)``
    with output channel ``o`` reading input channel ``o // (cout // cin)``.
    """
    cout, kh, kw, _ = w.shape
    cin = x.shape[2]
    out_hw = conv_out_hw(x.shape[:2], (kh, kw), stride, dilation, pads)
    geo = Geometry(x.shape[:2], out_hw, (kh, kw), stride, dilation, pads)
    centred = x.astype(np.float64) - ifm_zp  # padding reads 0 (conv_tiles.windows)
    max_x = max(abs(int(x.min()) - ifm_zp), abs(int(x.max()) - ifm_zp)) if x.size else 0
    max_w = max(abs(int(w.min())), abs(int(w.max()))) if w.size else 0
    acc = np.zeros((*out_hw, cout), dtype=np.int64)  # positions no tile covers see only padding
    if depthwise:
        channel_of = np.arange(cout) // (cout // cin)
        exact = kh * kw * max_x * max_w <= FLOAT64_EXACT_LIMIT
        acc_dtype = np.float64 if exact else np.int64
        w_taps = w[..., 0].astype(acc_dtype)
        for t in tiles(geo, max(cout, cin), cin):
            view = windows(centred, geo, t)
            taps: np.ndarray = np.zeros((*view.shape[:2], cout), dtype=acc_dtype)
            for a, ky in enumerate(range(*t.ky)):
                for b, kx in enumerate(range(*t.kx)):
                    plane = view[:, :, a, b, :]
                    plane = plane if cout == cin else plane[..., channel_of]
                    taps += plane.astype(acc_dtype, copy=False) * w_taps[:, ky, kx]
            acc[slice(*t.oy), slice(*t.ox)] = taps.astype(np.int64)
    else:
        # im2col per tile: one copy of its windows (free for an unpadded 1x1 stride-1 conv)
        whole_kernel = w.reshape(cout, -1).astype(np.float64).T
        for t in tiles(geo, kh * kw * cin, cin):
            view = windows(centred, geo, t)
            cols = view.reshape(t.positions, -1)
            taps_used = w[:, slice(*t.ky), slice(*t.kx), :]
            w_t = (
                whole_kernel
                if taps_used.shape == w.shape
                else taps_used.reshape(cout, -1).astype(np.float64).T
            )
            part = gemm_exact(cols, w_t, max_abs_a=max_x, max_abs_b=max_w)
            acc[slice(*t.oy), slice(*t.ox)] = part.reshape(*view.shape[:2], cout)
    acc += bias.astype(np.int64) << np.int64(bias_shift)
    return sat48(acc)


def output_stage(
    acc48: np.ndarray,
    *,
    pre_shift: int,
    multipliers: np.ndarray,
    post_shift: int,
    ofm_zp: int,
) -> np.ndarray:
    """Ahead shift with sat32, then ``rshift_round(acc32 * M[c], post_shift) + ofm_zp`` (int64)."""
    acc32 = sat32(rshift_round(acc48, pre_shift))
    return rshift_round(acc32 * multipliers.astype(np.int64), post_shift) + np.int64(ofm_zp)


def lut_apply(
    x: np.ndarray,
    table: np.ndarray,
    *,
    in_dtype: np.dtype,
    lut_bits: int,
    x_min: int = -32768,
    f: int = 8,
) -> np.ndarray:
    """Table lookup (spec section 5) of stored values ``x``; returns int64.

    int16 input: entry ``j`` is the function at ``x_min + j * 2**f``; inputs are
    clamped to ``[x_min, x_min + 2**(lut_bits + f)]`` and interpolated.
    """
    t = table.astype(np.int64)
    xi = x.astype(np.int64)
    if in_dtype == np.int8:
        return t[xi + 128]
    if in_dtype == np.uint8:
        return t[xi]
    last = (1 << lut_bits) << f
    offset = clip_to(xi - np.int64(x_min), 0, last)
    lo = offset >> np.int64(f)
    frac = offset & np.int64((1 << f) - 1)
    hi = np.minimum(lo + 1, np.int64(1 << lut_bits))
    return t[lo] + rshift_round((t[hi] - t[lo]) * frac, f)


def eltwise(
    op: str,
    a: np.ndarray,
    b: np.ndarray,
    *,
    ifm_zp: int,
    ifm2_zp: int,
    ofm_zp: int,
    ifm_multiplier: int,
    ifm2_multiplier: int,
    ofm_multiplier: int,
    post_shift: int,
) -> tuple[np.ndarray, bool]:
    """Element-wise add/sub/mul/max/min before the clamp: ``(y int64, overflow)``."""
    d1 = a.astype(np.int64) - np.int64(ifm_zp)
    d2 = b.astype(np.int64) - np.int64(ifm2_zp)
    if op == "mul":
        inter = d1 * d2 * np.int64(ofm_multiplier)
    else:
        s1, s2 = d1 * np.int64(ifm_multiplier), d2 * np.int64(ifm2_multiplier)
        combine = {"add": np.add, "sub": np.subtract, "max": np.maximum, "min": np.minimum}[op]
        inter = combine(s1, s2)
    inter, overflow = sat48(inter)
    return rshift_round(inter, post_shift) + np.int64(ofm_zp), overflow


def requant(
    x: np.ndarray, *, ifm_zp: int, ofm_zp: int, ofm_multiplier: int, post_shift: int
) -> np.ndarray:
    """Requant copy before the clamp: ``rshift_round((x - ifm_zp) * M, post_shift) + ofm_zp``."""
    scaled = (x.astype(np.int64) - np.int64(ifm_zp)) * np.int64(ofm_multiplier)
    return rshift_round(scaled, post_shift) + np.int64(ofm_zp)


def pool(
    kind: str,
    x: np.ndarray,
    *,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
    ifm_zp: int,
    ofm_zp: int,
    ofm_multiplier: int,
    post_shift: int,
) -> tuple[np.ndarray, bool]:
    """Max or average pool over HWC ``x`` before the clamp: ``(y int64, overflow)``.

    Max: padded positions are skipped, values pass unchanged (an all-padding
    window gives the lowest int64, which the clamp turns into ``act_min``).
    Avg: padded positions hold ``ifm_zp``; the window sum saturates to int32
    (flagged), then ``rshift_round(sum * ofm_multiplier, post_shift) + ofm_zp``.
    Time and memory stay bounded whatever the padding: the output is tiled and
    each tile uses only the taps that can reach real input
    (:func:`npuc.npu_sim.conv_tiles.pool_tiles`); taps that see only padding
    change nothing (max skips them, avg adds 0).
    """
    out_hw = conv_out_hw(x.shape[:2], kernel, stride, (1, 1), pads)
    geo = Geometry(x.shape[:2], out_hw, kernel, stride, (1, 1), pads)
    c = x.shape[2]
    if kind == "max":
        lowest = np.iinfo(np.int64).min
        best = np.full((*out_hw, c), lowest, dtype=np.int64)  # untiled: all padding
        values = x.astype(np.int64)
        for t in pool_tiles(geo, c):
            view = windows(values, geo, t, fill=lowest, dtype=np.int64)
            best[slice(*t.oy), slice(*t.ox)] = view.max(axis=(2, 3))
        return best, False
    centred = x.astype(np.int64) - np.int64(ifm_zp)  # padding holds ifm_zp: reads 0
    total = np.zeros((*out_hw, c), dtype=np.int64)
    for t in pool_tiles(geo, c):
        view = windows(centred, geo, t, fill=0, dtype=np.int64)
        total[slice(*t.oy), slice(*t.ox)] = view.sum(axis=(2, 3))
    overflow = bool(total.size) and bool(total.min() < I32_LO or total.max() > I32_HI)
    total = sat32(total)
    return rshift_round(total * np.int64(ofm_multiplier), post_shift) + np.int64(ofm_zp), overflow
