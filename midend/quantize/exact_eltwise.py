"""Integer element-wise add/subtract in float64, bit-exact to the int64 reference when provably so.

:func:`npuc.core.intref.ops.eltwise` is the definition: ``(a - ifm_zp) * ifm_multiplier
+- (b - ifm2_zp) * ifm2_multiplier``, ``sat48``, ``rshift_round(., post_shift)``, ``+
ofm_zp``, the clamp. :func:`add_f64` computes the same integers in float64, in cache-sized
blocks (the reference makes a dozen int64 passes with a fresh array each, over tensors
of several MB in a residual network):

- every input is a stored 8- or 16-bit integer, so ``|a - ifm_zp|`` is at most the
  larger distance from the zero point to its type's ends (``peak``); with
  ``peak_a * |M_a| + peak_b * |M_b| + 2**(post_shift - 1)`` below 2**52, every
  intermediate is an integer float64 holds exactly, and below 2**47 ``sat48``
  never clamps (no overflow);
- ``rshift_round(v, s)`` is ``floor((v + 2**(s-1)) * 2**-s)`` (exact: scaling by a
  power of two, floor of an exact quotient is the arithmetic shift);
- the clamp is one clip to :func:`~.exact_stage.clamp_bounds`.

When the bound does not hold (or the operands' shapes differ),
:func:`add_f64` returns None and the caller uses the reference.
tests/midend/quantize/test_exact_eltwise.py checks it against the reference.
"""

from __future__ import annotations

import numpy as np

from npuc.core.intref.arith import ACC48_MAX, dtype_range

from .exact_stage import F64_EXACT, clamp_bounds
from .qparams import QParams

#: Elements per block (256 KiB of float64 per buffer: the passes run in cache).
BLOCK_ELEMENTS = 1 << 15


def peak(q: QParams) -> int:
    """Largest ``|x - zero_point|`` of a stored integer ``x`` of ``q``'s storage type."""
    lo, hi = dtype_range(q.dtype)
    return max(q.zero_point - lo, hi - q.zero_point)


def _order_of(a: np.ndarray) -> tuple[int, ...] | None:
    """An axis order in which ``a`` is C-contiguous (NCHW, or an NCHW view of a
    channels-last array), or None."""
    orders = [tuple(range(a.ndim))] + ([(0, 2, 3, 1)] if a.ndim == 4 else [])
    return next((o for o in orders if a.transpose(o).flags.c_contiguous), None)


def add_f64(
    a: np.ndarray,
    b: np.ndarray,
    qa: QParams,
    qb: QParams,
    *,
    ifm_multiplier: int,
    ifm2_multiplier: int,
    subtract: bool,
    post_shift: int,
    ofm_zp: int,
    act_min: int,
    act_max: int,
    ofm_dtype: str,
) -> np.ndarray | None:
    """``eltwise("add" or "sub", a, b, ...)``'s output (int64, ``a``'s shape and layout;
    it never overflows here), or None when not provably exact (module docstring).

    ``a`` and ``b`` are stored integers of ``qa`` and ``qb`` (any integer dtype).
    """
    r_post = (1 << (post_shift - 1)) if post_shift else 0
    bound = peak(qa) * abs(ifm_multiplier) + peak(qb) * abs(ifm2_multiplier)
    if bound > ACC48_MAX or bound + r_post >= F64_EXACT or not 0 <= post_shift <= 62:
        return None
    order = _order_of(a)
    if order is None or a.shape != b.shape:
        return None
    fa = a.transpose(order).reshape(-1)
    fb = np.ascontiguousarray(b.transpose(order)).reshape(-1)  # a view when b is laid out as a
    out = np.empty(a.transpose(order).shape, np.int64)
    flat = out.reshape(-1)
    lo, hi = clamp_bounds(act_min, act_max, ofm_dtype)
    scale = 2.0**-post_shift
    size = min(BLOCK_ELEMENTS, fa.size)
    x_buf, y_buf = np.empty(size, np.float64), np.empty(size, np.float64)
    for start in range(0, fa.size, BLOCK_ELEMENTS):
        stop = min(start + BLOCK_ELEMENTS, fa.size)
        x, y = x_buf[: stop - start], y_buf[: stop - start]
        np.subtract(fa[start:stop], qa.zero_point, out=x, dtype=np.float64)
        x *= ifm_multiplier
        np.subtract(fb[start:stop], qb.zero_point, out=y, dtype=np.float64)
        y *= ifm2_multiplier
        if subtract:
            x -= y
        else:
            x += y
        if post_shift:
            x += r_post
            x *= scale
            np.floor(x, out=x)
        x += ofm_zp
        np.clip(x, float(lo), float(hi), out=x)
        np.copyto(flat[start:stop], x, casting="unsafe")  # integers: exact
    return out.transpose(np.argsort(order))
