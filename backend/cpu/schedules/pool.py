"""Schedule rule for 2-D max and average pooling, NCHW and NHWC, and global average pools.

Float pools of either kind; integer max pools (the int8 library's: a maximum
of stored integers, exact in any order).

LegalizeOps writes a pool as up to three blocks: an optional padded copy of
the input (``pad_temp``, filled with the reduction's identity), the window
reduction (``pool_max``, or ``pool_sum`` for an average, loops ``SSSSRR``)
and, for an average, a division by the window size (``pool_avg``; with
``count_include_pad=False`` the divisor depends on the position). Fused
element-wise consumers (an activation) follow. Any kernel, stride, dilation,
padding and ``ceil_mode`` give this same form; the global average pool
(``adaptive_avg_pool2d`` to 1x1, or a ``mean`` over H and W) is the same
reduction with one window.

The kernel:

* The element-wise blocks after the reduction are inlined into one output
  block; without any (a max pool), a write-back block is made so that the
  window reduction accumulates in a local buffer that LLVM keeps in vector
  registers, and the output is written once.
* NCHW (float32): the separable row kernel of :mod:`.pool_rows`, built as
  TIR: the window's rows reduced column by column straight from the input
  into a row buffer, then the buffer's column taps, one plane per task, no
  padded copy of the plane. Measured one thread, AVX-512, against the nest
  scheduled below: Inception v2's 64x112x112 3x3/2 max pool (padding bottom
  and right) 0.29 -> 0.13 ms, 192x56x56 0.23 -> 0.08 ms, 576x14x14 3x3
  average 0.068 -> 0.034 ms; ResNet-50's 3x3/2 0.20 -> 0.13 ms; ShuffleNet's
  0.065 -> 0.025 ms; YOLOv8n's 5x5 SPPF 0.018 -> 0.008 ms.
* NCHW pools the row kernel declines (another dtype, a padded copy of
  another form): every (image, channel) plane is one parallel task, and its padded
  input plane is built inside the task (still in cache when read). Each
  output row is computed in strips of ``strip`` columns (:func:`choose_strip`:
  a power of two, else a divisor of the width, up to two float vectors of
  the target); the window taps
  are unrolled around the strip. With stride 1 the strip is one contiguous
  vector per tap; with a larger stride its loads are strided, so the strip
  is one vector's worth of columns and LLVM builds the vector with shuffles,
  unless the output row is at least ``MIN_DEINTERLEAVE_WIDTH`` wide and the
  pool is padded: then the padded plane is stored de-interleaved by column
  phase (as in :mod:`.depthwise`) and every tap loads contiguous strips.
  ShuffleNet's 24x112x112 3x3/2 max pool 0.30 -> 0.22 ms, its 24x56x56 3x3/2
  average pool 0.077 -> 0.053 ms (one thread).
* NHWC: every (image, output row) is one parallel task that builds the padded
  rows it reads; each output pixel's channels are cut into vectors of the
  target's float lanes, and each vector accumulates over the window taps.
* A global pool (one output per plane) sums each plane's contiguous
  ``H * W`` values in parallel over planes; it is vectorised by LLVM.

Vector widths come from the :class:`~npuc.core.target.CpuTarget` and the
pooled type (16 float32 or 64 int8 lanes with AVX-512, 8 or 32 with AVX2),
never from the build machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis.common_analysis import collect_vars_used_in_prim_expr
from tvm.s_tir.schedule import LoopRV
from tvm.s_tir.schedule import SBlockRV as BlockRV

from npuc.backend.cpu.schedules.conv_match import loops_by_iter
from npuc.backend.cpu.schedules.depthwise import MIN_DEINTERLEAVE_WIDTH, deinterleave_columns
from npuc.backend.cpu.schedules.fallback import PARALLEL_MIN_ELEMENTS, inline_elementwise
from npuc.backend.cpu.schedules.loops import (
    extent,
    is_spatial,
    iter_kinds,
    root_blocks,
    vector_factor,
    vector_lanes,
)
from npuc.backend.cpu.schedules.pool_rows import INT_TYPES, build_row_kernel
from npuc.core.target import CpuTarget

#: Window extents up to which a tap loop is unrolled (a 7x7 pool unrolls 49 loads).
UNROLL_TAPS = 7
#: Output columns per strip when the stride is above one (unrolled scalar code).
SCALAR_STRIP = 4


@dataclass(frozen=True, slots=True)
class PoolNest:
    """The blocks of one pooling PrimFunc (names, as found before scheduling).

    ``layout`` is ``"NCHW"`` (the window slides along the innermost axis) or
    ``"NHWC"`` (the channels are innermost); ``pad`` is the padded copy's
    block, if any; ``window`` is the number of taps per output; ``dtype`` the
    pooled (and output) element type.
    """

    reduction: str
    pad: str | None
    layout: str
    window: int
    stride_w: int
    global_pool: bool
    is_max: bool
    dtype: str


def _is_float(buffer: tirx.Buffer) -> bool:
    return str(buffer.dtype).startswith(("float", "bfloat"))


def _types_ok(read: tirx.Buffer, write: tirx.Buffer, is_max: bool) -> bool:
    """Float in and out, or (a max pool) one integer type in and out."""
    if _is_float(read) and _is_float(write):
        return True
    return is_max and str(read.dtype) == str(write.dtype) and str(read.dtype) in INT_TYPES


def _combiner_ok(block: tirx.SBlock) -> bool:
    """The reduction's update is ``max(acc, in)`` or ``acc + in`` (pooling, not a product)."""
    value = block.body.value if isinstance(block.body, tirx.BufferStore) else None
    return isinstance(value, tirx.Max | tirx.Add)


def match_pool(sch: s_tir.Schedule) -> PoolNest | None:
    """The pooling nest of the function scheduled by ``sch``, or ``None`` if it is not one.

    A pool is: exactly one reduction block, with loops ``SSSSRR`` over a 4-D
    buffer (float, or an integer type for ``max``), combining with ``max`` or
    ``+``, reading one 4-D buffer whose
    every index is a spatial iterator plus (for the two window axes) reduction
    iterators; every other block is element-wise.
    """
    blocks = root_blocks(sch)
    reductions = [b for b in blocks if not is_spatial(sch, b)]
    if len(reductions) != 1:
        return None
    block = reductions[0]
    if iter_kinds(sch, block) != "SSSSRR":
        return None
    sblock = sch.get(block)
    if len(sblock.reads) != 1 or len(sblock.writes) != 1:
        return None  # the update reads the accumulator through writes, plus one input
    read, write = sblock.reads[0], sblock.writes[0]
    if len(read.region) != 4 or len(write.region) != 4:
        return None
    if not _combiner_ok(sblock):
        return None
    is_max = isinstance(sblock.body.value, tirx.Max)
    if not _types_ok(read.source, write.source, is_max):
        return None
    layout = _layout(sblock, read)
    if layout is None:
        return None
    window = 1
    for iv in sblock.iter_vars:
        if iv.iter_type == tirx.IterVar.CommReduce:
            window *= int(iv.dom.extent)
    producers = sch.get_producers(block)
    pad = None
    if producers:
        if len(producers) != 1 or not is_spatial(sch, producers[0]):
            return None
        pad = sch.get(producers[0]).name_hint
    column = read.region[3 if layout == "NCHW" else 2].min
    x_var = [iv.var for iv in sblock.iter_vars][3 if layout == "NCHW" else 2]
    stride = _coefficient(column, x_var, [iv.var for iv in sblock.iter_vars])
    if stride is None or stride < 1:
        return None
    rows, cols = sblock.iter_vars[2:4] if layout == "NCHW" else sblock.iter_vars[1:3]
    global_pool = _unit(rows) and _unit(cols)
    dtype = str(write.source.dtype)
    return PoolNest(sblock.name_hint, pad, layout, window, stride, global_pool, is_max, dtype)


def _unit(iv: tirx.IterVar) -> bool:
    return isinstance(iv.dom.extent, tirx.IntImm) and int(iv.dom.extent) == 1


def _coefficient(expr: tirx.PrimExpr, var: tirx.Var, all_vars: list[tirx.Var]) -> int | None:
    """The constant factor of ``var`` in the affine index ``expr``; ``None`` if not affine."""
    terms = _affine(expr)
    if terms is None:
        return None
    return sum(coef for v, coef in terms if v is not None and v.same_as(var))


def _affine(expr: tirx.PrimExpr) -> list[tuple[tirx.Var | None, int]] | None:
    """``expr`` as ``[(var or None for the constant, factor)]``, or ``None`` if not affine."""
    if isinstance(expr, tirx.IntImm):
        return [(None, int(expr.value))]
    if isinstance(expr, tirx.Var):
        return [(expr, 1)]
    if isinstance(expr, tirx.Add | tirx.Sub):
        a, b = _affine(expr.a), _affine(expr.b)
        if a is None or b is None:
            return None
        sign = 1 if isinstance(expr, tirx.Add) else -1
        return a + [(v, sign * c) for v, c in b]
    if isinstance(expr, tirx.Mul):
        for scaled, factor in ((expr.a, expr.b), (expr.b, expr.a)):
            if isinstance(factor, tirx.IntImm):
                inner = _affine(scaled)
                return None if inner is None else [(v, c * int(factor.value)) for v, c in inner]
    return None


def _layout(sblock: tirx.SBlock, read: tirx.BufferRegion) -> str | None:
    """``"NCHW"`` or ``"NHWC"`` from where the reduction iterators index the input."""
    spatial = [iv.var for iv in sblock.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    reduce = [iv.var for iv in sblock.iter_vars if iv.iter_type == tirx.IterVar.CommReduce]
    used = [collect_vars_used_in_prim_expr(r.min) for r in read.region]
    if any(int(r.extent) != 1 for r in read.region if isinstance(r.extent, tirx.IntImm)):
        return None
    with_reduction = [i for i, u in enumerate(used) if any(v in u for v in reduce)]
    if with_reduction == [2, 3] and spatial[1] in used[1]:
        return "NCHW" if all(spatial[i] in used[i] for i in (2, 3)) else None
    if with_reduction == [1, 2] and spatial[3] in used[3]:
        return "NHWC" if all(spatial[i] in used[i] for i in (1, 2)) else None
    return None


def choose_strip(width: int, target: CpuTarget, dtype: str = "float32") -> int:
    """Output columns per accumulator strip (contiguous loads): the widest power of two
    from 8 up to two of the target's ``dtype`` vectors that divides ``width``, else the
    widest divisor up to two vectors (LLVM splits a strip that is not a whole number
    of registers)."""
    limit = 2 * vector_lanes(target, dtype)
    for pow2 in (128, 64, 32, 16, 8):
        if pow2 <= limit and width % pow2 == 0:
            return pow2
    return max(d for d in range(1, min(width, limit) + 1) if width % d == 0)


class PoolRule:
    """Plane- or row-parallel, register-accumulated, vectorised 2-D pooling."""

    name = "pool"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it is one float pooling nest."""
        sch = s_tir.Schedule(func)
        nest = match_pool(sch)
        if nest is None:
            return None
        if nest.layout == "NCHW" and nest.global_pool:
            return None  # one sum per contiguous plane: the fallback's row reduction is faster
        if nest.layout == "NCHW":
            rows = build_row_kernel(func, nest.reduction, nest.pad, nest.is_max)
            if rows is not None:
                return rows
        out = _output_block(sch, sch.get_sblock(nest.reduction))
        if out is None:
            return None
        if nest.layout == "NCHW":
            _schedule_nchw(sch, nest, out, target)
        else:
            _schedule_nhwc(sch, nest, out, target)
        return sch.mod["main"]


def _output_block(sch: s_tir.Schedule, reduction: BlockRV) -> BlockRV | None:
    """One element-wise block after the reduction that writes the output (made if none)."""
    inline_elementwise(sch)
    consumers = sch.get_consumers(reduction)
    if not consumers:
        return sch.cache_write(reduction, 0, "global")
    if len(consumers) != 1 or sch.get_consumers(consumers[0]):
        return None
    out = consumers[0]
    if iter_kinds(sch, out) != "SSSS":
        return None
    return out


def _schedule_nchw(sch: s_tir.Schedule, nest: PoolNest, out: BlockRV, target: CpuTarget) -> None:
    """Planes in parallel; stride 1: padded plane built in the task, strips of vector columns.

    With a stride the column loads are strided: a padded plane at least
    ``MIN_DEINTERLEAVE_WIDTH`` outputs wide is stored de-interleaved (contiguous
    strips again); otherwise the padding is inlined (a conditional load costs
    less than a copy nobody reads contiguously) and the strip is left to LLVM's
    vectoriser, which deinterleaves with permutes.
    """
    reduction = sch.get_sblock(nest.reduction)
    pad = sch.get_sblock(nest.pad) if nest.pad is not None else None
    n, c, y, x = sch.get_loops(out)
    width = extent(sch, x) or 1
    work = (extent(sch, n) or 1) * (extent(sch, c) or 1) * (extent(sch, y) or 1) * width
    plane = sch.fuse(n, c)
    if work * nest.window >= PARALLEL_MIN_ELEMENTS:
        sch.parallel(plane)
    deinterleaved = nest.stride_w > 1 and pad is not None and width >= MIN_DEINTERLEAVE_WIDTH
    contiguous = nest.stride_w == 1 or deinterleaved
    strip = choose_strip(width, target, nest.dtype) if contiguous else SCALAR_STRIP
    strip = math.gcd(strip, width)
    xo, xi = sch.split(x, [None, strip])
    sch.compute_at(reduction, xo)
    sch.set_scope(reduction, 0, "local")
    roles = loops_by_iter(sch, reduction, first=3)
    taps = [roles[i] for i in (4, 5) if i in roles]
    columns = [roles[3]] if 3 in roles else []  # absent when the strip is one column
    _accumulate(sch, reduction, taps, columns if contiguous else [])
    if strip > 1 and contiguous:
        sch.vectorize(xi)
    if pad is None:
        return
    if not contiguous:
        sch.compute_inline(pad)
        return
    sch.compute_at(pad, plane)
    if deinterleaved:
        deinterleave_columns(sch, pad, nest.stride_w)
        return
    first = sch.get_loops(pad)[1]
    if sch.can_decompose_padding(pad, first):
        fill = sch.decompose_padding(pad, first)
        sch.vectorize(sch.get_loops(fill)[-1])


def _accumulate(
    sch: s_tir.Schedule, reduction: BlockRV, taps: list[LoopRV], columns: list[LoopRV]
) -> None:
    """Taps outside the vector of columns, small taps unrolled, the accumulator initialised once."""
    sch.reorder(*taps, *columns)
    for tap in taps:
        if (extent(sch, tap) or UNROLL_TAPS + 1) <= UNROLL_TAPS:
            sch.unroll(tap)
    if columns:
        sch.vectorize(columns[-1])
    if taps:
        init = sch.decompose_reduction(reduction, taps[0])
        if columns:
            sch.vectorize(sch.get_loops(init)[-1])


def _schedule_nhwc(sch: s_tir.Schedule, nest: PoolNest, out: BlockRV, target: CpuTarget) -> None:
    """Output rows in parallel; per pixel, vectors of channels accumulate over the window.

    The padding is inlined: its condition depends on the pixel, not on the
    channel, so each vector load is guarded by one scalar test.
    """
    reduction = sch.get_sblock(nest.reduction)
    n, y, x, c = sch.get_loops(out)
    work = math.prod(extent(sch, loop) or 1 for loop in (n, y, x, c))
    row = sch.fuse(n, y)
    if work * nest.window >= PARALLEL_MIN_ELEMENTS:
        sch.parallel(row)
    lanes = vector_factor(extent(sch, c), vector_lanes(target, nest.dtype))
    if lanes is None:  # odd channel count: a scalar channel loop, left to LLVM
        sch.compute_at(reduction, x)
        first = 2
    else:
        co, ci = sch.split(c, [None, lanes])
        sch.compute_at(reduction, co)
        sch.vectorize(ci)
        first = 3
    sch.set_scope(reduction, 0, "local")
    roles = loops_by_iter(sch, reduction, first=first)
    taps = [roles[i] for i in (4, 5) if i in roles]
    channels = [roles[3]] if 3 in roles and lanes is not None else []
    _accumulate(sch, reduction, taps, channels)
    if nest.pad is not None:
        sch.compute_inline(sch.get_sblock(nest.pad))
