"""Exact integer depthwise convolution on the flattened plane: vector strips over the
row-major output grid, rows and columns split into stride phases.

Requires: a :class:`~npuc.backend.cpu.schedules.int_depthwise_stage.DepthwiseSpec` with
the exactness bounds :mod:`npuc.backend.cpu.qlower.depthwise` checks (the tap sums are
exact integers in ``acc``); the kernel's arguments are those of the row kernel
(:mod:`~npuc.backend.cpu.schedules.int_depthwise`): ``X, W, B, M, Y``.

Guarantees: ``Y`` holds the row kernel's integers (the same tap sums, summed in the same
order, and the same :func:`~.int_depthwise_stage.output_stage`).

Layout: each task's plane ``P`` has ``stride_h x stride_w`` phases, each ``hq x wq``
values stored row-major (padded row ``r``, padded column ``c`` at phase ``(r % stride_h,
c % stride_w)``, index ``(r // stride_h) * wq + c // stride_w``), the padding zero. An
output ``(oy, ox)`` sits at flat index ``f = oy * wq + ox``, and tap ``(ky, kx)`` reads
its phase at ``f + (ky * dil_h // stride_h) * wq + kx * dil_w // stride_w``: every tap
of a strip of consecutive ``f`` is one vector load. Flat indices with ``ox >= ow`` are
computed and dropped (``wq - ow`` columns per row, the kernel's width less one for a
3x3 stride-1 kernel with padding 1); the strips are stored to a row-major scratch row
``Q`` of ``oh * wq`` integers (per band, below), and its ``ow`` valid columns per row
copied to ``Y`` in vectors (:func:`copy_vectors`).
This wastes fewer lanes than strips per output row when rows are narrower than a few
vectors (MobileNetV2's 14x14 planes: 2 strips of 8 lanes per row, 222 flat positions in
7 strips of 32; measured 0.79x of the row kernel).

Bands: ``P`` holds the phase rows of ``R`` output rows at a time (:func:`band_rows`: a
plane of at most :data:`BAND_BYTES`, so the fill's stores and the taps' loads stay in
L1), ``hqb = R + (kh - 1) * dil_h // stride_h`` phase rows per phase; band ``b`` covers
output rows ``[top, top + R)``, ``top = min(b * R, oh - R)`` (the last band overlaps the one
before: the same values are written twice), and phase row ``l`` of the band is the
plane's phase row ``top + l``. Per band the fill writes the rows holding input and
zeroes the others (padding rows; in a single band they, and in any band the padding
columns, stay zero from the task's start: no fill writes them), then the strips run over
the band's ``(R - 1) * wq + ow`` flat positions (``f`` band-local), and ``Q`` (``R *
wq``) goes to the band's rows of ``Y``. Small planes (:func:`plane_buffers`) have two
buffers: the task fills (plane, band) ``t`` into buffer ``t % 2``, then runs the strips
of ``t - 1`` from the other, each buffer zero-initialised at the task's start.

Reads stay in ``P``: ``f <= (R - 1) * wq + ow - 1`` and ``ow - 1 + (kw - 1) * dil_w //
stride_w <= wq - 1`` (``wq`` covers the last output's taps), so the last read is at most
``hqb * wq - 1``.
"""

from __future__ import annotations

from typing import Any

from tvm import tirx
from tvm.script import tirx as T

from npuc.backend.cpu.schedules.int_depthwise_stage import (
    SPEC_ATTR,
    DepthwiseSpec,
    PhaseBounds,
    broadcast,
    channels_per_task,
    choose_strip,
    output_stage,
    ramp,
)

#: Bytes of a task's plane ``P`` per band (:func:`band_rows`): with ``Q`` and the input rows,
#: well inside a 48 KB L1 data cache. With a whole 112x112 stride-2 plane (52 KB of
#: float32) the fill took 55% of MobileNetV2's 96 x 112x112 -> 56x56 layer (0.24 ms; in
#: 16 KB bands 0.16 ms, in 4 KB bands 0.18 ms).
BAND_BYTES = 16 * 1024

#: Narrowest vector that copies a band's output rows from ``Q`` to ``Y`` (:func:`copy_vectors`;
#: :data:`npuc.backend.cpu.lut_lanes.PERMUTE_MIN_LANES`: the fused table lookup's narrowest vector).
COPY_MIN_LANES = 16

#: Largest plane ``P`` (bytes) that gets two buffers (fill one plane while the taps read the
#: other): 7x7 planes 0.70x, 14x14 0.96-0.98x; larger planes were 2-4% slower with two.
DOUBLE_BYTES = 2 * 1024


def flat_strip(flat: int, lanes: int) -> int:
    """Flat positions per strip: 4 or 2 vectors where at most 1/8 of the work is wasted,
    else one vector; below one vector :func:`~.int_depthwise_stage.choose_strip`'s width
    (3-vector strips are avoided: LLVM made float32x48 code 5.8x slower)."""
    if flat < lanes:
        return choose_strip(flat, lanes)
    for k in (4, 2):
        s = k * lanes
        if s <= flat and (-(-flat // s) * s - flat) * 8 <= flat:
            return s
    return lanes


def band_rows(s: DepthwiseSpec, budget_bytes: int = BAND_BYTES) -> int:
    """Output rows per band: the most whose plane ``P`` (all phases, ``rows + (kh - 1) *
    dil_h // stride_h`` phase rows of ``wq`` values each) fits ``budget_bytes``, at least
    one, then evened out over the bands it takes (all ``oh`` rows when the plane fits)."""
    extra = (s.kh - 1) * s.dil_h // s.stride_h
    row_bytes = s.stride_h * s.stride_w * s.wq * (4 if s.acc == "float32" else 8)
    rows = max(1, min(s.oh, budget_bytes // row_bytes - extra))
    bands = -(-s.oh // rows)
    return -(-s.oh // bands)


def plane_buffers(s: DepthwiseSpec, rows: int) -> int:
    """Buffers of ``P`` with bands of ``rows`` output rows: 2 for planes of at most
    :data:`DOUBLE_BYTES` (the fill of the next (plane, band) before the taps of this one, so
    the taps' vector loads do not follow the fill's narrower stores at once: timer samples
    piled up on the first tap load, presumably a failed store forward), else 1."""
    hqb = rows + (s.kh - 1) * s.dil_h // s.stride_h
    size = s.stride_h * s.stride_w * hqb * s.wq * (4 if s.acc == "float32" else 8)
    return 2 if size <= DOUBLE_BYTES else 1


def column_pairs(s: DepthwiseSpec) -> int:
    """Input column pairs each plane row fills from loads of :func:`pair_block` pairs: stride 2,
    8-bit input, float32 sums, at least 4 pairs (0 otherwise). A pair's first byte is column ``2j``
    (phase ``pad_l % 2``, phase column ``j + pad_l // 2``), its second ``2j + 1`` (phase
    ``(pad_l + 1) % 2``, column ``j + (pad_l + 1) // 2``): shifts split them, no byte
    shuffles (LLVM's de-interleaving fill used two per 16 bytes). Only pairs whose both
    phase columns lie in the plane (``< wq``)."""
    if s.stride_w != 2 or s.in_dtype not in ("int8", "uint8") or s.acc != "float32":
        return 0
    pairs = min(s.w // 2, s.wq - (s.pad_l + 1) // 2)
    return pairs if pair_block(pairs) else 0


def pair_block(pairs: int) -> int:
    """Column pairs per load (16, 8 or 4: 32-, 16- or 8-byte loads), the most that ``pairs``
    fills; 0 below 4. Narrow rows (MobileNetV2's 28 and 14 columns) took LLVM's
    de-interleaving fill of 4-lane pieces and scalar tails before."""
    return next((k for k in (16, 8, 4) if pairs >= k), 0)


def copy_vectors(ow: int, rows: int) -> tuple[int, int]:
    """How a band's ``rows`` output rows of ``ow`` values go from ``Q`` to ``Y``: ``(lanes,
    vector_rows)``. The first ``vector_rows`` rows are copied in vectors of ``lanes`` (64, 32
    or 16, the widest that fits the row; a row's last vector overlaps the one before), the
    rest value by value. Rows shorter than 16 take one 16-lane vector each, which runs on
    into the rows below it; they are rewritten next (rows go in order), so only rows whose
    vector ends inside the band are vector rows (the last ``(16 - 1) // ow`` rows or so are not).

    Why: :mod:`npuc.backend.cpu.fuse_lut` looks up a vector store with two ``vpermi2b``,
    but a value-by-value store with one scalar load per byte, which LLVM vectorised into
    an extract, a load and an insert per byte: 59% of the orientation classifier's 16 x
    112x112 depthwise layer with a fused hard-swish table.
    """
    if ow >= COPY_MIN_LANES:
        return next(k for k in (64, 32, 16) if k <= ow), rows
    fit = (rows * ow - COPY_MIN_LANES) // ow + 1 if rows * ow >= COPY_MIN_LANES else 0
    return COPY_MIN_LANES, fit


def make_flat_kernel(spec: DepthwiseSpec, lanes: int, band: int | None = None) -> tirx.PrimFunc:
    """The PrimFunc ``(X, W, B, M, Y)`` of ``spec`` with accumulator vectors of ``lanes``,
    ``band`` output rows at a time (default :func:`band_rows`)."""
    s = spec
    sh, sw, hq, wq = s.stride_h, s.stride_w, s.hq, s.wq
    taps = s.kh * s.kw
    rows_b = band_rows(s) if band is None else min(max(1, band), s.oh)
    bands = -(-s.oh // rows_b)
    hqb = rows_b + (s.kh - 1) * s.dil_h // sh  # phase rows of one band
    flat = (rows_b - 1) * wq + s.ow
    strip = flat_strip(flat, lanes)
    strips = -(-flat // strip)
    cols = PhaseBounds(s.pad_l, s.w, sw, wq)
    rows = PhaseBounds(s.pad_t, s.h, sh, hq)
    q_in, q_in_end = cols.common, cols.common_end
    q_main, q_tail = cols.blocks()
    pairs = column_pairs(s)
    k = pair_block(pairs) or 16  # pairs per load (16: parses, never runs, when no pairs)
    blocks = -(-pairs // k)
    # Input columns [0, 2 * pairs) come from loads of 2k bytes (column_pairs; the last block
    # overlaps the one before); the scalar edge loops then start at the first phase
    # column past them, and the all-phase loops are empty.
    done = PhaseBounds(s.pad_l + 2 * pairs, 1, sw, wq)
    if pairs:
        q_in = q_in_end = q_main = q_tail = -(-(s.pad_l + 2 * pairs) // sw)
    lo_ph, lo_q, hi_ph, hi_q = s.pad_l % 2, s.pad_l // 2, (s.pad_l + 1) % 2, (s.pad_l + 1) // 2
    # Twice the input's width (16 bits for 8-bit inputs; other types parse but never run).
    in_bits = int(s.in_dtype.lstrip("uint"))
    lane_t = f"{'u' if s.in_dtype.startswith('u') else ''}int{2 * in_bits}"
    pair_t = f"{lane_t}x{k}"
    per_task = channels_per_task(s.n * s.c)
    groups = s.n * s.c // per_task
    units = per_task * bands  # (plane, band) pairs of one task
    nbuf = plane_buffers(s, rows_b)
    copy, vec_rows = copy_vectors(s.ow, rows_b)
    span = max(s.ow, copy)  # a row's vectors cover [0, span); past ``ow`` only for short rows
    row_vecs = -(-span // copy)
    lag = nbuf - 1  # units between a fill and its taps

    def job_of(g: Any, jj: Any) -> Any:
        """The (image, input channel) plane ``jj`` of task ``g``: ``image * c + channel``."""
        return g * per_task + jj

    def top(b: Any) -> Any:
        """The first output row of band ``b`` (the last band overlaps the one before)."""
        return T.min(b * rows_b, s.oh - rows_b)

    def lo_row(b: Any, rph: Any) -> Any:
        """The band's first phase row holding input (band-local): the ones above are zero."""
        return T.min(T.max(rows.start(rph) - top(b), 0), hqb)

    def hi_row(b: Any, rph: Any) -> Any:
        """One past the band's last phase row holding input (band-local)."""
        return T.max(T.min(rows.end(rph) - top(b), hqb), lo_row(b, rph))

    def zero_above(b: Any, rph: Any) -> Any:
        """Phase rows the band zeroes above its input (none in one band: zero from the start)."""
        return lo_row(b, rph) if bands > 1 else 0

    def zero_below(b: Any, rph: Any) -> Any:
        """Phase rows the band zeroes below its input."""
        return hqb - hi_row(b, rph) if bands > 1 else 0

    def at(x: Any, job: Any, yq: Any, rph: Any, q: Any, cph: Any) -> Any:
        """``X - zp`` at phase row ``yq`` of row phase ``rph``, phase column ``q`` of ``cph``."""
        value = x[job // s.c, job % s.c, yq * sh + rph - s.pad_t, q * sw + cph - s.pad_l]
        return T.Cast(s.acc, value) - T.FloatImm(s.acc, float(s.zp))

    def first(b: Any) -> Any:
        """The first column pair of block ``b``."""
        return T.min(b * k, pairs - k)

    def pair(x: Any, job: Any, yq: Any, rph: Any, b: Any) -> Any:
        """Input columns ``[2 first(b), 2 first(b) + 2k)`` of a row as k pairs of 16 bits."""
        row = x[job // s.c, job % s.c, yq * sh + rph - s.pad_t, T.ramp(first(b) * 2, 1, 2 * k)]
        return T.reinterpret(pair_t, row)

    def unit_at(x: Any, g: Any, t: Any, yl: Any, rph: Any, q: Any, cph: Any) -> Any:
        """:func:`at` for band-local phase row ``yl`` of fill unit ``t`` of task ``g``."""
        return at(x, job_of(g, t // bands), top(t % bands) + yl, rph, q, cph)

    def unit_pair(x: Any, g: Any, t: Any, yl: Any, rph: Any, b: Any) -> Any:
        """:func:`pair` for band-local phase row ``yl`` of fill unit ``t`` of task ``g``."""
        return pair(x, job_of(g, t // bands), top(t % bands) + yl, rph, b)

    def low(v: Any) -> Any:
        """The pairs' first bytes (even columns), sign- or zero-extended, centred."""
        k8 = T.broadcast(T.Cast(lane_t, 8), k)
        mask = T.broadcast(T.Cast(lane_t, 255), k)
        ext = (v << k8) >> k8 if s.in_dtype == "int8" else T.bitwise_and(v, mask)
        return T.Cast(f"{s.acc}x{k}", ext) - T.broadcast(T.FloatImm(s.acc, float(s.zp)), k)

    def high(v: Any) -> Any:
        """The pairs' second bytes (odd columns), centred."""
        k8 = T.broadcast(T.Cast(lane_t, 8), k)
        return T.Cast(f"{s.acc}x{k}", v >> k8) - T.broadcast(T.FloatImm(s.acc, float(s.zp)), k)

    def tap_sum(plane: Any, d: Any, weights: Any, o: Any, f0: Any) -> Any:
        """Sum over the taps (unrolled here, in Python) of plane vector x broadcast weight."""
        total = None
        for ky in range(s.kh):
            for kx in range(s.kw):
                rph, rsh = divmod(ky * s.dil_h, sh)[::-1]
                cph, csh = divmod(kx * s.dil_w, sw)[::-1]
                term = plane[d, rph, cph, ramp(f0 + rsh * wq + csh, strip)] * broadcast(
                    weights[o, ky * s.kw + kx], strip
                )
                total = term if total is None else total + term
        return total

    @T.prim_func(private=True, s_tir=True)
    def kernel(
        X: T.Buffer((s.n, s.c, s.h, s.w), s.in_dtype),  # type: ignore[valid-type]
        W: T.Buffer((s.c * s.mult, taps), s.acc),  # type: ignore[valid-type]
        B: T.Buffer((s.c * s.mult,), "float64"),  # type: ignore[valid-type]
        M: T.Buffer((s.c * s.mult,), "float64"),  # type: ignore[valid-type]
        Y: T.Buffer((s.n, s.c * s.mult, s.oh, s.ow), s.out_dtype),  # type: ignore[valid-type]
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            for g in T.parallel(groups):
                with T.sblock("int_depthwise_flat"):
                    T.reads(
                        X[0 : s.n, 0 : s.c, 0 : s.h, 0 : s.w],
                        W[0 : s.c * s.mult, 0:taps],
                        B[0 : s.c * s.mult],
                        M[0 : s.c * s.mult],
                    )
                    T.writes(Y[0 : s.n, 0 : s.c * s.mult, 0 : s.oh, 0 : s.ow])
                    P = T.alloc_buffer((nbuf, sh, sw, hqb * wq), s.acc)  # this task's bands
                    Q = T.alloc_buffer((rows_b * wq,), s.out_dtype)  # one band, flat
                    for d, rph, cph, i in T.grid(nbuf, sh, sw, hqb * wq):
                        P[d, rph, cph, i] = T.FloatImm(s.acc, 0.0)
                    for t in range(units + lag):
                        if t < units:  # fill unit t into buffer t % nbuf
                            for rph in T.unroll(sh):
                                for yl, cph, q in T.grid(zero_above(t % bands, rph), sw, wq):
                                    P[t % nbuf, rph, cph, yl * wq + q] = T.FloatImm(s.acc, 0.0)
                                for yl, cph, q in T.grid(zero_below(t % bands, rph), sw, wq):
                                    P[
                                        t % nbuf, rph, cph, (hi_row(t % bands, rph) + yl) * wq + q
                                    ] = T.FloatImm(s.acc, 0.0)
                                for yl in range(lo_row(t % bands, rph), hi_row(t % bands, rph)):
                                    for b in range(blocks):
                                        P[
                                            t % nbuf, rph, lo_ph,
                                            T.ramp(yl * wq + lo_q + first(b), 1, k),
                                        ] = low(unit_pair(X, g, t, yl, rph, b))  # fmt: skip
                                        P[
                                            t % nbuf, rph, hi_ph,
                                            T.ramp(yl * wq + hi_q + first(b), 1, k),
                                        ] = high(unit_pair(X, g, t, yl, rph, b))  # fmt: skip
                                    for q in range(q_in, q_main):
                                        for cph in T.unroll(sw):
                                            P[t % nbuf, rph, cph, yl * wq + q] = unit_at(
                                                X, g, t, yl, rph, q, cph
                                            )
                                    for q in range(q_tail, q_in_end):
                                        for cph in T.unroll(sw):
                                            P[t % nbuf, rph, cph, yl * wq + q] = unit_at(
                                                X, g, t, yl, rph, q, cph
                                            )
                                    for cph in T.unroll(sw):
                                        for q in range(
                                            T.max(cols.start(cph), done.start(cph)),
                                            T.min(q_in, cols.end(cph)),
                                        ):
                                            P[t % nbuf, rph, cph, yl * wq + q] = unit_at(
                                                X, g, t, yl, rph, q, cph
                                            )
                                        for q in range(
                                            T.max(q_in_end, cols.start(cph)), cols.end(cph)
                                        ):
                                            P[t % nbuf, rph, cph, yl * wq + q] = unit_at(
                                                X, g, t, yl, rph, q, cph
                                            )
                        if t >= lag:  # compute unit t - lag from buffer (t - lag) % nbuf
                            for j in range(s.mult):
                                for sx in range(strips):
                                    Q[ramp(T.min(sx * strip, flat - strip), strip)] = output_stage(
                                        s,
                                        strip,
                                        tap_sum(
                                            P,
                                            (t - lag) % nbuf,
                                            W,
                                            (job_of(g, (t - lag) // bands) % s.c) * s.mult + j,
                                            T.min(sx * strip, flat - strip),
                                        ),
                                        B[(job_of(g, (t - lag) // bands) % s.c) * s.mult + j],
                                        M[(job_of(g, (t - lag) // bands) % s.c) * s.mult + j],
                                    )
                                for oy, xv in T.grid(vec_rows, row_vecs):
                                    Y[
                                        job_of(g, (t - lag) // bands) // s.c,
                                        (job_of(g, (t - lag) // bands) % s.c) * s.mult + j,
                                        top((t - lag) % bands) + oy,
                                        T.ramp(T.min(xv * copy, span - copy), 1, copy),
                                    ] = Q[T.ramp(oy * wq + T.min(xv * copy, span - copy), 1, copy)]
                                for oy, ox in T.grid(rows_b - vec_rows, s.ow):
                                    Y[
                                        job_of(g, (t - lag) // bands) // s.c,
                                        (job_of(g, (t - lag) // bands) % s.c) * s.mult + j,
                                        top((t - lag) % bands) + vec_rows + oy,
                                        ox,
                                    ] = Q[(vec_rows + oy) * wq + ox]

    return kernel.with_attr(SPEC_ATTR, s.to_attr()).with_attr("op_pattern", 8)
