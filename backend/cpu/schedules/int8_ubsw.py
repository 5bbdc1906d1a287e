"""Exact ``vpmaddubsw`` for the AVX2 int8 kernels: only on weight pairs that cannot saturate.

:func:`~.int8_kernel.make_kernel` uses this module for an ``avx2`` kernel when
:func:`applies` (uncentred sums, :func:`.int8_avx2.uncentred`). Requires the
caller's :class:`~.int8_spec.ConvKernelSpec` bounds (``-128 <= w <= 127``,
``0 <= u <= 255``). Guarantees: :func:`dot` adds to eight int32 lanes the
exact sums ``u0 w0 + u1 w1 + u2 w2 + u3 w3`` of a step whose weight pairs are
*safe*, and :func:`make_prepare` splits every weight group into a safe main
part and a safe remainder whose sum is the group, so main plus remainder is
the exact sum.

Why it is exact (Intel SDM, PMADDUBSW: per int16 lane ``sat16(u_2i * w_2i +
u_2i+1 * w_2i+1)``, ``u`` unsigned bytes, ``w`` signed bytes; PMADDWD: two
int16 x int16 products added into an int32 lane, exact): a pair ``(a, b)`` is
*safe* when ``a * b <= 0`` (opposite signs or a zero: ``|u a + u' b| <= 255 *
128 = 32640``) or ``|a| + |b| <= 128`` (``|u a + u' b| <= 255 (|a| + |b|) <=
32640``); then the pair sum is within int16 and ``vpmaddubsw`` never
saturates, so its result *is* the exact sum. ``vpmaddwd`` by ones widens the
two pair sums of a position to its exact int32 group sum and ``vpaddd``
accumulates: uncentred, every partial sum is a sum of some of the ``u * w``,
below ``255 * 128 * K < 2^31`` in magnitude, and ``INIT`` is added once at the
end (as in :mod:`.int8_avx2`).

The split (weights are constants: done at compile time, :func:`make_prepare`
is a block tagged :data:`PREPROC_ATTR` that
:class:`~npuc.backend.cpu.prepack_weights.PrepackWeights` folds): for an
unsafe pair ``(a, b)`` (same sign, ``|a| + |b| > 128``) the main weights keep
``(a, 0)`` and the remainder gets ``(0, b)``; safe pairs stay in the main
weights. Every remainder group (a weight group with an unsafe pair) goes into
its output channel's list with its input offset; the kernel runs the list
after the main reduction with the same :func:`dot` (both halves hold a zero:
safe). A tile of :data:`~.int8_spec.TILE_CHANNELS` channels with more than
``TILE_CHANNELS *`` :func:`capacity` remainder groups keeps the original
weights and the ``vpmaddwd`` form (count ``-1``): the light ONNX graphs
(every weight 127) run as before.

Layout of the prepared int32 buffer ``P`` (``(rows, taps, cg)``, :func:`layout`;
it replaces ``W``, so the ``vpmaddwd`` form reads its first rows as before):
the main weights ``(ocps, taps, cg)`` (the original ``W`` for a tile that
declines), then, flattened, per output channel the ``(start, count)`` of its
list, then per tile a pool of ``TILE_CHANNELS * capacity`` entries of two
int32 (the channels' lists one after the other, each from its ``start``):
the remainder group and its input offset (bytes from ``X[n, x0, 0, 0]``:
channel group, tap phase and tap position), zeros after the last.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tvm.script import tirx as T

from npuc.backend.cpu.schedules.int8_avx2 import LANES, uncentred
from npuc.backend.cpu.schedules.int8_spec import GROUP, SPEC_ATTR, TILE_CHANNELS, ConvKernelSpec
from npuc.backend.cpu.schedules.tir_macro import macro

#: The block annotation that makes the compile-time weight preparation a constant.
PREPROC_ATTR = "meta_schedule.layout_rewrite_preproc"

#: The name of :func:`make_prepare`'s block (it also carries the spec as ``SPEC_ATTR``):
#: :mod:`npuc.backend.cpu.fold_ubsw_prepare` computes it with :func:`prepare_numpy`.
PREPARE_BLOCK = "int8_ubsw_prepare"

#: A channel may hold at most ``taps * cg // REMAINDER_DIVISOR`` remainder groups, and
#: :data:`MIN_REMAINDERS` at least (:func:`capacity`).
REMAINDER_DIVISOR = 4
MIN_REMAINDERS = 4

_PMADDUBSW = "llvm.x86.avx2.pmadd.ub.sw"
_PMADDWD = "llvm.x86.avx2.pmadd.wd"

#: Mask of the second byte of each pair of an int32 of four weights (bytes 1 and 3).
_SECOND_BYTES = (0xFF00, -0x1000000)


def applies(s: ConvKernelSpec) -> bool:
    """Whether an ``avx2`` kernel of ``s`` uses ``vpmaddubsw``: uncentred sums, not matvec."""
    return uncentred(s) and not s.matvec


def capacity(s: ConvKernelSpec) -> int:
    """Remainder groups per output channel: a tile of :data:`~.int8_spec.TILE_CHANNELS`
    channels holds ``TILE_CHANNELS * capacity`` in all, shared by its channels."""
    row = s.kh * s.kw * s.cg
    return min(row, max(MIN_REMAINDERS, row // REMAINDER_DIVISOR))


def layout(s: ConvKernelSpec) -> tuple[int, int, int]:
    """``(counts, entries, rows)``: offsets of the ``(start, count)`` pairs and the entries
    in ``P`` flattened, and its rows: ``P`` is ``(rows, taps, cg)``, its first ``ocps``
    rows the main weights."""
    ocps, row = s.groups * s.ocp, s.kh * s.kw * s.cg
    counts = ocps * row
    entries = counts + 2 * ocps
    return counts, entries, -(-(entries + ocps * 2 * capacity(s)) // row)


def count(s: ConvKernelSpec, P: Any, o: Any) -> Any:
    """The remainder count of row ``o`` in ``P`` (-1: its tile declined)."""
    row = s.kh * s.kw * s.cg
    at = layout(s)[0] + 2 * o + 1
    return P[at // row, at // s.cg % (s.kh * s.kw), at % s.cg]


def unsafe_pair(a: Any, b: Any) -> Any:
    """Whether ``vpmaddubsw`` can saturate on the weight pair ``(a, b)`` (module docstring);
    numpy arrays (int64) or TIR int32 expressions."""
    if isinstance(a, np.ndarray):
        return (a * b > 0) & (np.abs(a) + np.abs(b) > 128)
    return T.And(a * b > 0, T.abs(a) + T.abs(b) > 128)


def split_groups(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(main, remainder)`` int32 weight groups of int32 groups ``w`` (the numpy form of
    :func:`make_prepare`'s split): ``main + remainder`` bytewise is ``w``, both safe."""
    b = np.ascontiguousarray(w, "<i4").view(np.int8).reshape(*w.shape, GROUP).astype(np.int64)
    mask = np.zeros(w.shape, np.int64)
    for k in range(2):
        mask |= np.where(unsafe_pair(b[..., 2 * k], b[..., 2 * k + 1]), _SECOND_BYTES[k], 0)
    wi = w.astype(np.int64)
    return (wi & ~mask).astype(np.int32), (wi & mask).astype(np.int32)


def _byte(w: Any, g: int) -> Any:
    """Signed byte ``g`` of the int32 ``w``."""
    return (w << T.int32(24 - 8 * g)) >> T.int32(24)


def _mask(w: Any) -> Any:
    """The bytes of ``w`` that go to the remainder (0 for a safe group)."""
    first = T.if_then_else(unsafe_pair(_byte(w, 0), _byte(w, 1)), T.int32(0xFF00), T.int32(0))
    second = T.if_then_else(
        unsafe_pair(_byte(w, 2), _byte(w, 3)), T.int32(_SECOND_BYTES[1]), T.int32(0)
    )
    return T.bitwise_or(first, second)


def make_prepare(s: ConvKernelSpec) -> Any:
    """A macro ``prepare(W, P)``: the block (tagged :data:`PREPROC_ATTR`) that writes ``P``
    (module docstring) from ``W`` ``(ocps, taps, cg)``, tile of channels by tile."""
    taps, cg = s.kh * s.kw, s.cg
    ocps = s.groups * s.ocp
    counts, entries, prows = layout(s)
    cap = capacity(s)
    plane = s.phases * s.q * GROUP  # bytes of one channel group of X

    def x_offset(t: Any, c: Any) -> Any:
        ph = (t // s.kw * s.dil_h % s.stride_h) * s.stride_w + (t % s.kw * s.dil_w % s.stride_w)
        off = (t // s.kw * s.dil_h // s.stride_h) * s.wq + (t % s.kw * s.dil_w // s.stride_w)
        return c * plane + ph * (s.q * GROUP) + off * GROUP

    @macro
    def prepare(W: Any, P: Any) -> None:
        with T.sblock(PREPARE_BLOCK):
            T.sblock_attr({PREPROC_ATTR: 1, SPEC_ATTR: s.to_attr()})
            T.reads(W[0:ocps, 0:taps, 0:cg])
            T.writes(P[0:prows, 0:taps, 0:cg])
            Pf = T.decl_buffer((prows * taps * cg,), "int32", data=P.data)
            for i in range(counts, prows * taps * cg):
                Pf[i] = 0
            n = T.decl_buffer((1,), "int32")
            total = T.decl_buffer((1,), "int32")
            for tile in range(ocps // TILE_CHANNELS):
                total[0] = 0
                for r in range(TILE_CHANNELS):
                    for t in range(taps):
                        for c in range(cg):
                            if _mask(W[tile * TILE_CHANNELS + r, t, c]) != 0:
                                total[0] = total[0] + 1
                n[0] = 0  # entries of the tile so far
                for r in range(TILE_CHANNELS):
                    o = tile * TILE_CHANNELS + r
                    start = T.meta_var(tile * TILE_CHANNELS * 2 * cap)
                    Pf[counts + 2 * o] = start + 2 * n[0]
                    for t in range(taps):
                        for c in range(cg):
                            w = W[o, t, c]
                            m = _mask(w)
                            if total[0] <= TILE_CHANNELS * cap and m != 0:
                                Pf[(o * taps + t) * cg + c] = T.bitwise_and(w, T.bitwise_not(m))
                                Pf[entries + start + 2 * n[0]] = T.bitwise_and(w, m)
                                Pf[entries + start + 2 * n[0] + 1] = x_offset(t, c)
                                n[0] = n[0] + 1
                            else:
                                Pf[(o * taps + t) * cg + c] = w
                    Pf[counts + 2 * o + 1] = T.if_then_else(
                        total[0] <= TILE_CHANNELS * cap,
                        n[0] - (Pf[counts + 2 * o] - start) // 2,
                        -1,
                    )

    return prepare


def prepare_numpy(s: ConvKernelSpec, w: np.ndarray) -> np.ndarray:
    """``P`` of :func:`make_prepare` computed with numpy from ``W`` (``(ocps, taps, cg)``
    int32): the same buffer element for element (``tests/.../test_int8_ubsw.py`` checks
    it against the TIR block), without compiling that block."""
    taps, cg = s.kh * s.kw, s.cg
    ocps = s.groups * s.ocp
    counts, entries, prows = layout(s)
    cap = capacity(s)
    plane = s.phases * s.q * GROUP
    main, rem = split_groups(np.asarray(w, np.int32).reshape(ocps, taps, cg))
    unsafe = rem != 0  # a masked byte is never 0: an unsafe pair has a * b > 0
    t_of = np.arange(taps)
    ph = (t_of // s.kw * s.dil_h % s.stride_h) * s.stride_w + (t_of % s.kw * s.dil_w % s.stride_w)
    off = (t_of // s.kw * s.dil_h // s.stride_h) * s.wq + (t_of % s.kw * s.dil_w // s.stride_w)
    x_off = (
        np.arange(cg)[None, :] * plane + (ph * (s.q * GROUP) + off * GROUP)[:, None]
    )  # (taps, cg)
    flat = np.zeros(prows * taps * cg, np.int64)
    flat[:counts] = np.asarray(w, np.int64).reshape(-1)
    for tile in range(ocps // TILE_CHANNELS):
        rows = range(tile * TILE_CHANNELS, (tile + 1) * TILE_CHANNELS)
        fits = int(unsafe[rows.start : rows.stop].sum()) <= TILE_CHANNELS * cap
        start = tile * TILE_CHANNELS * 2 * cap
        n = 0
        for o in rows:
            flat[counts + 2 * o] = start + 2 * n
            if not fits:
                flat[counts + 2 * o + 1] = -1
                continue
            t_idx, c_idx = np.nonzero(unsafe[o])  # row-major: the block's (t, c) order
            k = len(t_idx)
            flat[(o * taps + t_idx) * cg + c_idx] = main[o, t_idx, c_idx]
            at = entries + start + 2 * (n + np.arange(k))
            flat[at] = rem[o, t_idx, c_idx]
            flat[at + 1] = x_off[t_idx, c_idx]
            n += k
            flat[counts + 2 * o + 1] = k
    return flat.astype(np.int32).reshape(prows, taps, cg)


def dot(acc: Any, x: Any, w: Any) -> Any:
    """``acc`` (int32 x 8) plus one step with safe weights: ``x`` the step's 32 input bytes
    (uint8 x 32, eight positions of four channels), ``w`` one channel's int32 group."""
    wb = T.reinterpret(T.broadcast(w, LANES), dtype=f"int8x{LANES * GROUP}")
    pairs = T.call_llvm_pure_intrin(
        T.llvm_lookup_intrinsic_id(_PMADDUBSW), x, wb, dtype=f"int16x{2 * LANES}"
    )
    wide = T.call_llvm_pure_intrin(
        T.llvm_lookup_intrinsic_id(_PMADDWD),
        pairs,
        T.broadcast(T.int16(1), 2 * LANES),
        dtype=f"int32x{LANES}",
    )
    return acc + wide
