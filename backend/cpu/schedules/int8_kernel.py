"""Exact int8 convolution kernels as TIR: a blocked implicit GEMM with the NPU's requantization.

The kernel computes, for one integer conv2d layer lowered by
:mod:`npuc.backend.cpu.qlower.int8_conv` (which packs the operands), the
output ``Y (n, oc, oh * ow)`` (NCHW with the spatial axes flattened). It
works on the output grid flattened over the *phase* width ``wq`` (``ppad``
positions, padded to :data:`TILE_POSITIONS`; ``ocp`` channels, padded to
:data:`TILE_CHANNELS`) and stores only the real outputs (``p % wq < ow``,
``p < oh * wq``, ``o < oc``): whole vectors where their positions are
consecutive outputs, lane by lane elsewhere. A job computes one register tile
(:class:`DotKind`: ``rows`` output channels by ``vectors`` vectors of
positions, smaller at the end of each axis) whose accumulators stay in
registers over the whole reduction (input-channel groups, then taps). Jobs
run in parallel, ordered by image, convolution group, group of channel tiles
whose weights fit in L2 (:func:`channel_groups`), position tile, channel
tile: consecutive jobs reuse the same input rows from L1/L2 and the group's
weights from L2 (:func:`~.int8_spec.plan_tiles`).

A grouped convolution (``spec.groups = G > 1``, ``cg``/``ocp``/``oc`` per
group) is one kernel: group ``g`` reads ``cg`` channel groups of ``X`` from
:meth:`~.int8_spec.ConvKernelSpec.x_base` (the group of 4 holding its first
input channel: the caller gives the other groups' channels in it zero
weights), weight rows ``[g ocp, (g+1) ocp)`` and writes output channels ``[g
oc, (g+1) oc)`` of ``Y``; shapes below are for ``G = 1``.
Operands:

- ``X``: ``uint8 (n, cg, phases, q * 4)``: four consecutive input channels
  per 32-bit group, the input offset to unsigned (``u = x + 128`` for int8,
  ``x`` for uint8), padded with ``zp_u`` (the unsigned zero point), split
  into ``stride_h * stride_w`` phases of ``hq x wq`` flattened positions;
- ``W``: ``int32 (ocp, taps, cg)``: four int8 weights per int32 (channel
  ``4c + g`` in byte ``g``, little endian); a tap's groups contiguous (the AMX
  kernel, :mod:`.int8_amx`, loads 16 of them as one tile row);
- ``INIT``: ``int32 (ocp,)``: ``-(zp_u * sum w)`` modulo 2^32;
- ``WS`` (``avx2`` with several position tiles, a buffer of the kernel): ``W`` staged
  as int16 pairs once per call (:func:`.int8_avx2.make_stage`), or per job into a
  buffer of the job's rows when each job is one channel tile over every position
  tile (:func:`.int8_avx2.stages_per_job`);
- ``BIAS``, ``MUL``: ``int64 (ocp,)``: ``(b16 << bias_shift) + 2^(pre_shift - 1)``
  (the bias with the ahead shift's rounding; just the bias for a shift of 0)
  and ``M``.

Tap ``t = kh * kw_ + kw`` reads phase ``((kh*dh) % sh) * sw + (kw*dw) % sw``
at position ``p + ((kh*dh) // sh) * wq + (kw*dw) // sw``.

Guarantees (for a spec the caller validated: ``|sum((x - zp) * w)| < 2^31``
for every output, see ``int8_conv.plan_conv``): ``sum = sum((u - zp_u) * w)``
exact, then the NPU output stage of npu-spec section 3 (``acc48 = sum +
bias`` -- never beyond 48 bits here, ``acc32 = sat32(rshift_round(acc48,
pre_shift))``, ``y = rshift_round(acc32 * M, post_shift) + ofm_zp``, clamp to
the activation bounds, then to the output type).

Dot products (:class:`DotKind`, chosen by :mod:`.int8_conv`'s rule from the
target's features):

- ``vnni512``: ``vpdpbusd zmm`` (Intel SDM, VPDPBUSD: four u8 x s8 products
  added to each int32 lane, wrapping, no saturation). The accumulator starts
  at ``INIT``, so it holds the exact centred sum modulo 2^32, which is the
  sum itself since that fits in int32.
- ``avxvnni``: the same with ``ymm`` (the VEX form on AVX-VNNI-only CPUs).
- ``avx2``: ``vpmaddwd`` on int16 (SDM, PMADDWD: two i16 x i16 products
  added into each int32 lane, exact for these ranges) of the input bytes split
  into even and odd channels and the weights staged as sign-extended int16
  once per call, tiles of 4 channels x 2 vectors, the taps outside the
  channel groups (:mod:`.int8_avx2`); uncentred, ``vpmaddubsw`` only on the
  weight pairs proven at compile time not to saturate and the rest from
  per-channel remainder lists (:mod:`.int8_ubsw`: ``W`` becomes its prepared
  buffer ``P``; a tile with too many remainders keeps ``vpmaddwd``).
- ``generic``: int32 vector arithmetic (any CPU; the form ``qlower/int8_conv.py``
  emits), from ``INIT`` when :func:`.int8_avx2.uncentred` (complemented slots,
  ``qlower/pair_order.py``, have no single zero point), else centred.
"""

from __future__ import annotations

from typing import Any

from tvm import tirx
from tvm.script import tirx as T

from npuc.backend.cpu.schedules import int8_avx2, int8_ubsw
from npuc.backend.cpu.schedules.int8_epilogue import epilogue, output_store
from npuc.backend.cpu.schedules.int8_spec import (
    AVX2,
    AVXVNNI,
    DOT_KINDS,
    GENERIC,
    GROUP,
    SMALL_GRID_VECTORS,
    SPEC_ATTR,
    TILE_CHANNELS,
    TILE_POSITIONS,
    VNNI512,
    WEIGHT_GROUP_BYTES,
    ConvKernelSpec,
    DotKind,
    channel_groups,
    clamp_bounds,
    plan_tiles,
)
from npuc.backend.cpu.schedules.tir_macro import macro

__all__ = [
    "AVX2",
    "AVXVNNI",
    "DOT_KINDS",
    "GENERIC",
    "GROUP",
    "SMALL_GRID_VECTORS",
    "SPEC_ATTR",
    "TILE_CHANNELS",
    "TILE_POSITIONS",
    "VNNI512",
    "WEIGHT_GROUP_BYTES",
    "ConvKernelSpec",
    "DotKind",
    "channel_groups",
    "clamp_bounds",
    "epilogue",
    "make_kernel",
    "vnni_intrinsic",
]


def vnni_intrinsic(kind: DotKind) -> str | None:
    """The LLVM intrinsic of ``kind``'s ``vpdpbusd``, or None for the other kinds."""
    return {
        "vnni512": "llvm.x86.avx512.vpdpbusd.512",
        "avxvnni": "llvm.x86.avx512.vpdpbusd.256",
    }.get(kind.name)


def make_kernel(spec: ConvKernelSpec, kind: DotKind) -> tirx.PrimFunc:
    """The PrimFunc ``(X, W, INIT, BIAS, MUL, Y)`` of ``spec`` using ``kind``'s dot products.

    Jobs (parallel, :func:`~.int8_spec.plan_tiles`): per image and convolution group,
    groups of output-channel tiles, then position tiles, then the channel tiles of the
    group. Raises ValueError for a ``matvec`` spec (:func:`.int8_matvec.make_matvec`
    builds those) and when ``kind``'s vectors do not divide the position padding.
    """
    s = spec
    if s.matvec:
        raise ValueError(f"int8 conv kernel: a matvec spec needs make_matvec: {s}")
    plan = plan_tiles(s, kind)
    lanes, rows, vecs = plan.lanes, plan.rows, plan.vecs
    ob, pb, per, row_tail, vec_tail = plan.ob, plan.pb, plan.per, plan.row_tail, plan.vec_tail
    per_group = plan.wgroups * pb * per  # jobs of one convolution group of one image
    taps = s.kh * s.kw
    avx2 = kind.name == "avx2"
    staged = avx2 and int8_avx2.stages_weights(pb)
    resident = plan.per == 1 and plan.wgroups == ob and row_tail == 0
    by_job = staged and int8_avx2.stages_per_job(resident, s.n * s.groups * ob)
    acc_t = f"int32x{lanes}"
    i8v = f"int8x{lanes * GROUP}"
    zp_u = s.zp_u
    vnni = vnni_intrinsic(kind)
    from_init = vnni is not None or (not avx2 and int8_avx2.uncentred(s))
    cgs, ocps, ocs = s.x_groups, s.groups * s.ocp, s.groups * s.oc

    def group_of(job: Any) -> Any:
        """The convolution group of ``job`` (0, not an expression, for one group)."""
        return job // per_group % s.groups if s.groups > 1 else 0

    def phase(t: Any) -> Any:
        return (t // s.kw * s.dil_h % s.stride_h) * s.stride_w + (t % s.kw * s.dil_w % s.stride_w)

    def offset(t: Any) -> Any:
        return (t // s.kw * s.dil_h // s.stride_h) * s.wq + (t % s.kw * s.dil_w // s.stride_w)

    def dot(
        acc: Any, xbuf: Any, n: Any, xc: Any, t: Any, W: Any, WS: Any, o: Any, c: Any, pos: Any,
        ub: bool,
    ) -> Any:  # fmt: skip
        """One step: ``acc`` (``lanes`` int32) += channel ``o``'s products with the group
        of 4 input channels ``xc`` (weights group ``c``) of tap ``t`` at ``pos`` (``ub``:
        ``vpmaddubsw`` on the safe main weights, :mod:`.int8_ubsw`)."""

        def load(start: Any, stride: int, count: int) -> Any:
            return xbuf[n, xc, phase(t), T.ramp(start, stride, count)]

        if ub:
            return int8_ubsw.dot(acc, load(pos * GROUP, 1, lanes * GROUP), W[o, t, c])
        if avx2:
            x = load(pos * GROUP, 1, lanes * GROUP)
            if staged:
                wo = o % rows if by_job else o  # a job's buffer holds its own rows
                w02, w13 = T.broadcast(WS[0, wo, t, c], lanes), T.broadcast(WS[1, wo, t, c], lanes)
            else:
                w02, w13 = int8_avx2.weight_pairs(W[o, t, c])
            return int8_avx2.dot(s, acc, x, w02, w13)
        wv = W[o, t, c]
        if vnni is not None:
            xv = T.reinterpret(load(pos * GROUP, 1, lanes * GROUP), dtype=i8v)
            wb = T.reinterpret(T.broadcast(wv, lanes), dtype=i8v)
            return T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(vnni), acc, xv, wb, dtype=acc_t
            )
        total = acc
        for g in range(GROUP):
            xg = T.Cast(acc_t, load(pos * GROUP + g, GROUP, lanes))
            if not from_init:
                xg = xg - T.broadcast(T.int32(zp_u), lanes)
            wg = (wv << T.int32(24 - 8 * g)) >> T.int32(24)
            total = total + xg * T.broadcast(wg, lanes)
        return total

    def init(value: Any) -> Any:
        return T.broadcast(value if from_init else T.int32(0), lanes)

    def finish(acc: Any, start: Any) -> Any:
        """The ``lanes`` exact sums of a tile row (avx2 adds ``INIT`` here)."""
        return int8_avx2.finish(s, acc, start) if avx2 else acc

    store = output_store(s, lanes)
    ws_shape = int8_avx2.staged_shape(s) if staged and not by_job else (2, 1, 1, 1)
    js_shape = (2, rows, taps, s.cg) if by_job else (2, 1, 1, 1)
    jobs = s.n * s.groups * ob if by_job else plan.jobs
    stage_rows = int8_avx2.make_stage_rows(s, rows)
    # the prepared weights decide per TILE_CHANNELS rows: a tile must be exactly those
    ubsw = avx2 and rows == TILE_CHANNELS and int8_ubsw.applies(s)
    counts, entries, p_rows = int8_ubsw.layout(s) if ubsw else (0, 0, ocps)
    stage = int8_avx2.make_stage(s, (lambda W, o: int8_ubsw.count(s, W, o) < 0) if ubsw else None)
    prepare = int8_ubsw.make_prepare(s)
    x_size = s.n * cgs * s.phases * s.q * GROUP
    plane = s.phases * s.q * GROUP

    @macro
    def remainder(
        X: Any, P: Any, acc: Any, n: Any, x0: Any, w0: Any, p0: Any, nr: int, nv: int
    ) -> None:
        """Each row's remainder groups (:mod:`.int8_ubsw`) added to its accumulators."""
        Xf = T.decl_buffer((x_size,), "uint8", data=X.data)
        Pf = T.decl_buffer((p_rows * taps * s.cg,), "int32", data=P.data)
        for r in T.unroll(nr):
            for e in range(Pf[counts + 2 * (w0 + r) + 1]):
                at = T.meta_var(entries + Pf[counts + 2 * (w0 + r)] + 2 * e)
                for v in T.unroll(nv):
                    acc[r, T.ramp(v * lanes, 1, lanes)] = int8_ubsw.dot(
                        acc[r, T.ramp(v * lanes, 1, lanes)],
                        Xf[T.ramp((n * cgs + x0) * plane + Pf[at + 1] + (p0 + v * lanes) * GROUP,
                                  1, lanes * GROUP)],
                        Pf[at],
                    )  # fmt: skip

    @macro
    def step(
        X: Any, W: Any, WS: Any, acc: Any, n: Any, xc: Any, c: Any, w0: Any, t: Any, p0: Any,
        nr: int, nv: int, ub: bool,
    ) -> None:  # fmt: skip
        """One reduction step of the ``nr x nv`` tile: input group ``xc``, tap ``t``."""
        for r in T.unroll(nr):
            for v in T.unroll(nv):
                acc[r, T.ramp(v * lanes, 1, lanes)] = dot(
                    acc[r, T.ramp(v * lanes, 1, lanes)], X, n, xc, t, W, WS, w0 + r, c,
                    p0 + v * lanes + offset(t), ub,
                )  # fmt: skip

    @macro
    def tile(
        X: Any, W: Any, WS: Any, P: Any, INIT: Any, BIAS: Any, MUL: Any, Y: Any, acc: Any,
        out: Any, n: Any, o0: Any, grp: Any, p0: Any, nr: int, nv: int, ub: bool,
    ) -> None:  # fmt: skip
        """``nr`` channels from ``o0`` of group ``grp`` by ``nv`` vectors of positions
        from ``p0`` (``ub``: main weights by ``vpmaddubsw``, then the remainders)."""
        w0 = T.meta_var(grp * s.ocp + o0)
        y0 = T.meta_var(grp * s.oc + o0)
        x0 = T.meta_var(s.x_base(grp))
        for r in T.unroll(nr):
            for v in T.unroll(nv):
                acc[r, T.ramp(v * lanes, 1, lanes)] = init(INIT[w0 + r])
        if avx2:  # taps outside: the inner loop walks W and WS contiguously
            for t in range(taps):
                for c in range(s.cg):
                    step(X, W, WS, acc, n, x0 + c, c, w0, t, p0, nr, nv, ub)
            if ub:
                remainder(X, P, acc, n, x0, w0, p0, nr, nv)
        else:
            for c in range(s.cg):
                for t in T.unroll(taps):
                    step(X, W, WS, acc, n, x0 + c, c, w0, t, p0, nr, nv, False)
        for r in T.unroll(nr):
            for v in T.unroll(nv):
                if o0 + r < s.oc:
                    value = T.meta_var(
                        epilogue(
                            s,
                            lanes,
                            finish(acc[r, T.ramp(v * lanes, 1, lanes)], INIT[w0 + r]),
                            T.broadcast(BIAS[w0 + r], lanes),
                            T.broadcast(T.Cast("int32", MUL[w0 + r]), lanes),
                        )
                    )
                    store(Y, out, n, y0 + r, p0 + v * lanes, value)

    @macro
    def tile_rows(
        X: Any, W: Any, WS: Any, P: Any, INIT: Any, BIAS: Any, MUL: Any, Y: Any, acc: Any,
        out: Any, n: Any, o0: Any, grp: Any, pblk: Any, nr: int, ub: bool,
    ) -> None:  # fmt: skip
        """The position tile ``pblk`` (the last one may hold fewer vectors)."""
        p0 = T.meta_var(pblk * (vecs * lanes))
        # vec_tail == 0 is decided while parsing (no tail code); pblk at run time
        if vec_tail == 0:  # noqa: SIM114
            tile(X, W, WS, P, INIT, BIAS, MUL, Y, acc, out, n, o0, grp, p0, nr, vecs, ub)
        elif pblk < pb - 1:
            tile(X, W, WS, P, INIT, BIAS, MUL, Y, acc, out, n, o0, grp, p0, nr, vecs, ub)
        else:
            tile(X, W, WS, P, INIT, BIAS, MUL, Y, acc, out, n, o0, grp, p0, nr, vec_tail, ub)

    @macro
    def rows_of(
        X: Any, W: Any, WS: Any, P: Any, INIT: Any, BIAS: Any, MUL: Any, Y: Any, acc: Any,
        out: Any, n: Any, o0: Any, grp: Any, pblk: Any, nr: int,
    ) -> None:  # fmt: skip
        """:func:`tile_rows` in the tile's form: ``vpmaddubsw`` unless the tile declined
        (count -1, :mod:`.int8_ubsw`) or the kernel does not use it."""
        if ubsw:
            if int8_ubsw.count(s, P, grp * s.ocp + o0) >= 0:
                tile_rows(X, W, WS, P, INIT, BIAS, MUL, Y, acc, out, n, o0, grp, pblk, nr, True)
            else:
                tile_rows(X, W, WS, P, INIT, BIAS, MUL, Y, acc, out, n, o0, grp, pblk, nr, False)
        else:
            tile_rows(X, W, WS, P, INIT, BIAS, MUL, Y, acc, out, n, o0, grp, pblk, nr, False)

    @macro
    def channel_tile(
        X: Any, W: Any, WS: Any, P: Any, INIT: Any, BIAS: Any, MUL: Any, Y: Any, acc: Any,
        out: Any, n: Any, o0: Any, grp: Any, ub: bool,
    ) -> None:  # fmt: skip
        """A job that runs one channel tile over every position tile (staging its rows)."""
        if not ub:
            stage_rows(W, WS, grp * s.ocp + o0)
        for pblk in range(pb):
            tile_rows(X, W, WS, P, INIT, BIAS, MUL, Y, acc, out, n, o0, grp, pblk, rows, ub)

    @macro
    def body(X: Any, W: Any, WS: Any, P: Any, INIT: Any, BIAS: Any, MUL: Any, Y: Any) -> None:
        """Every job (``W`` the weights the jobs read: ``P``'s main weights with ``ubsw``)."""
        if staged and not by_job:
            stage(W, WS)
        for job in T.parallel(jobs):
            acc = T.decl_buffer((rows, vecs * lanes), "int32")
            out = T.decl_buffer((lanes,), s.out_dtype)
            JS = T.decl_buffer(js_shape, "int32")
            with T.sblock("int8_conv"):
                T.reads(
                    X[0 : s.n, 0:cgs, 0 : s.phases, 0 : s.q * GROUP],
                    W[0:p_rows, 0:taps, 0 : s.cg],  # W is P with ubsw
                    INIT[0:ocps],
                    BIAS[0:ocps],
                    MUL[0:ocps],
                )
                T.writes(Y[0 : s.n, 0:ocs, 0 : s.oh * s.ow])
                if by_job:  # one channel tile over every position tile
                    n = T.meta_var(job // (s.groups * ob))
                    grp = T.meta_var(job // ob % s.groups if s.groups > 1 else 0)
                    o0 = T.meta_var(job % ob * rows)
                    args1 = T.meta_var((X, W, JS, P, INIT, BIAS, MUL, Y, acc, out, n, o0, grp))
                    if ubsw:
                        if int8_ubsw.count(s, P, grp * s.ocp + o0) >= 0:
                            channel_tile(*args1, True)
                        else:
                            channel_tile(*args1, False)
                    else:
                        channel_tile(*args1, False)
                else:
                    n = T.meta_var(job // (s.groups * per_group))
                    grp = T.meta_var(group_of(job))
                    pblk = T.meta_var(job // per % pb)
                    oblk = T.meta_var(job // (pb * per) % plan.wgroups * per + job % per)
                    o0 = T.meta_var(oblk * rows)
                    args = T.meta_var((X, W, WS, P, INIT, BIAS, MUL, Y, acc, out, n, o0, grp, pblk))
                    if oblk < ob:
                        if row_tail == 0:  # noqa: SIM114 (parse time, as vec_tail)
                            rows_of(*args, rows)
                        elif oblk < ob - 1:
                            rows_of(*args, rows)
                        else:
                            rows_of(*args, row_tail)

    @T.prim_func(private=True, s_tir=True)
    def kernel(
        X: T.Buffer((s.n, cgs, s.phases, s.q * GROUP), "uint8"),  # type: ignore[valid-type]
        W: T.Buffer((ocps, taps, s.cg), "int32"),  # type: ignore[valid-type]
        INIT: T.Buffer((ocps,), "int32"),  # type: ignore[valid-type]
        BIAS: T.Buffer((ocps,), "int64"),  # type: ignore[valid-type]
        MUL: T.Buffer((ocps,), "int64"),  # type: ignore[valid-type]
        Y: T.Buffer((s.n, ocs, s.oh * s.ow), s.out_dtype),  # type: ignore[valid-type]
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            WS = T.sblock_alloc_buffer(ws_shape, "int32")
            if ubsw:  # compile time: the split weights (a constant once folded)
                P = T.sblock_alloc_buffer((p_rows, taps, s.cg), "int32")
                prepare(W, P)
                body(X, P, WS, P, INIT, BIAS, MUL, Y)
            else:
                body(X, W, WS, W, INIT, BIAS, MUL, Y)

    return kernel.with_attr(SPEC_ATTR, s.to_attr()).with_attr("op_pattern", 8)
