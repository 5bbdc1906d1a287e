"""The parallel-and-vectorise fallback: a schedule for any PrimFunc no other rule took.

What it does to one fused PrimFunc (each step skipped where TIR refuses it):

1. Inline element-wise blocks into element-wise consumers and epilogues into
   element-wise producers, so a chain ``add -> relu`` becomes one loop nest.
   Nothing is inlined into a reduction (a padded convolution keeps its
   padding block: a conditional load in the inner loop costs more than a copy).
2. Each remaining block of loops ``S...S`` (element-wise, injective): the
   innermost loop is split by the target's vector width (16 float32 lanes with
   AVX-512, 8 with AVX2; fused with its outer neighbour when the width does
   not divide it) and vectorised; all outer loops are fused into one
   ``parallel`` loop. An innermost row of at least :data:`PLAIN_ROW_MIN`
   that no vector width divides stays a plain loop (LLVM vectorises it with
   a scalar tail) and only the loops outside it are fused and parallel.
3. Each block with reduction loops (pooling, mean, the sums and maxima of
   softmax, a convolution no rule took): when the dominant input is contiguous
   along the innermost spatial loop (pooling windows, NCHW convolution, a
   mean over channels), that loop moves inside the reductions and is
   vectorised; otherwise (a row sum, a global average) the reduction stays
   innermost. The outer spatial loops run in ``parallel``.
   An element-wise epilogue is computed inside the reduction's parallel loop.

Small kernels (fewer than :data:`PARALLEL_MIN_ELEMENTS` loop iterations) are
not parallelised: waking the thread pool costs more than the work.
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis.common_analysis import collect_vars_used_in_prim_expr
from tvm.s_tir.schedule import LoopRV
from tvm.s_tir.schedule import SBlockRV as BlockRV

from npuc.backend.cpu.schedules.loops import (
    extent,
    is_spatial,
    iter_kinds,
    root_blocks,
    vector_factor,
    vector_lanes,
    write_dtype,
)
from npuc.core.target import CpuTarget

#: Innermost extent from which a row no vector width divides stays a plain
#: loop (LLVM vectorises it with a scalar tail) instead of being fused with
#: the next loop out: in the fused loop a vector of a row-wise operand (a
#: softmax's row maximum, a bias) is a gather through ``index // row``. PP-OCR
#: rec's 40x6625 softmax: 1.9 -> 0.85-0.93 ms one thread (both with the
#: vectorisable exponential of :mod:`npuc.backend.cpu.fast_exp`).
PLAIN_ROW_MIN = 64

#: Loop iterations (outputs times reduction length) below which a loop nest
#: runs on the calling thread only.
PARALLEL_MIN_ELEMENTS = 4096


class FallbackRule:
    """Parallelise and vectorise every block of a PrimFunc (see the module docstring)."""

    name = "fallback"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``; ``None`` when no block has a loop nest it understands."""
        sch = s_tir.Schedule(func)
        if _runs_nothing(sch):
            return func  # an empty output (ONNX Slice 5:5): no loop runs, nothing to schedule
        inline_elementwise(sch)
        scheduled = 0
        parallel_of: dict[str, LoopRV] = {}
        for block in root_blocks(sch):
            if _attach_epilogue(sch, block, target, parallel_of) or schedule_block(
                sch, block, target, parallel_of
            ):
                scheduled += 1
        return sch.mod["main"] if scheduled else None


def _runs_nothing(sch: s_tir.Schedule) -> bool:
    """Every root block sits in a loop of zero iterations (splitting one divides by zero)."""
    blocks = root_blocks(sch)
    return bool(blocks) and all(
        any(_extent(sch, loop) == 0 for loop in sch.get_loops(block)) for block in blocks
    )


def _extent(sch: s_tir.Schedule, loop: LoopRV) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def inline_elementwise(sch: s_tir.Schedule) -> None:
    """Inline element-wise blocks into element-wise neighbours until none is left."""
    while _inline_one(sch):
        pass


def _inline_one(sch: s_tir.Schedule) -> bool:
    blocks = root_blocks(sch)
    for block in blocks:
        consumers = sch.get_consumers(block)
        if (
            is_spatial(sch, block)
            and consumers
            and all(is_spatial(sch, c) for c in consumers)
            and attempt(sch.compute_inline, block)
        ):
            return True
    for block in blocks:
        producers = sch.get_producers(block)
        if (
            is_spatial(sch, block)
            and len(producers) == 1
            and is_spatial(sch, producers[0])
            and attempt(sch.reverse_compute_inline, block)
        ):
            return True
    return False


def attempt(primitive: object, *args: object) -> bool:
    """Run a schedule primitive; ``False`` (schedule unchanged) when TIR refuses it."""
    try:
        primitive(*args)  # type: ignore[operator]
    except s_tir.ScheduleError:
        return False
    return True


def schedule_block(
    sch: s_tir.Schedule, block: BlockRV, target: CpuTarget, parallel_of: dict[str, LoopRV]
) -> bool:
    """Parallelise and vectorise one root block; ``False`` when its loops are irregular."""
    kinds = iter_kinds(sch, block)
    if not kinds:
        return False
    lanes = vector_lanes(target, write_dtype(sch, block))
    if "R" not in kinds:
        _schedule_spatial(sch, block, lanes)
        return True
    outer = _schedule_reduction(sch, block, kinds, lanes)
    if outer is not None:
        parallel_of[sch.get(block).name_hint] = outer
    return True


def _schedule_spatial(sch: s_tir.Schedule, block: BlockRV, lanes: int) -> None:
    loops = list(sch.get_loops(block))
    total = math.prod(extent(sch, loop) or PARALLEL_MIN_ELEMENTS for loop in loops)
    vector = None if is_gather(sch, block) else _split_vector(sch, loops, lanes)
    outer = loops
    if vector is None and len(loops) > 1 and (extent(sch, loops[-1]) or 0) >= PLAIN_ROW_MIN:
        outer = loops[:-1]  # the plain row stays whole, for LLVM's vectoriser
    if outer and total >= PARALLEL_MIN_ELEMENTS:
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    if vector is not None:
        sch.vectorize(vector)


def _split_vector(sch: s_tir.Schedule, loops: list[LoopRV], lanes: int) -> LoopRV | None:
    """Split a vector-wide loop off the innermost of ``loops`` (updated in place)."""
    if not loops:
        return None
    width = vector_factor(extent(sch, loops[-1]), lanes)
    if width is None and (extent(sch, loops[-1]) or 0) >= PLAIN_ROW_MIN:
        return None  # a long odd row: LLVM vectorises the plain loop, with a scalar tail
    if width is None and len(loops) >= 2:
        trip = (extent(sch, loops[-1]) or 0) * (extent(sch, loops[-2]) or 0)
        if vector_factor(trip, lanes) is not None:
            loops[-2:] = [sch.fuse(loops[-2], loops[-1])]
            width = vector_factor(trip, lanes)
    if width is None:
        return None
    outer, inner = sch.split(loops[-1], factors=[None, width])
    loops[-1] = outer
    return inner


def is_gather(sch: s_tir.Schedule, block: BlockRV) -> bool:
    """``block`` reads a buffer at data-dependent positions (a table lookup, ``take``).

    Such a read's index loads another buffer. x86 has no byte gather, and a
    64-lane "vector" of scalar loads costs more than the scalar loop, so these
    blocks are parallelised but not vectorised.
    """
    sblock = sch.get(block)
    iters = [iv.var for iv in sblock.iter_vars]
    for read in sblock.reads:
        free = [v for r in read.region for v in tirx.analysis.undefined_vars(r.min, [])]
        if any(not any(v.same_as(i) for i in iters) for v in free):
            return True  # the index loads a buffer (its only free variables besides iterators)
        extents = [int(r.extent) if isinstance(r.extent, tirx.IntImm) else 2 for r in read.region]
        if math.prod(extents) > 1 and not any(v.same_as(i) for v in free for i in iters):
            return True  # bounded only by the whole buffer (a wrapped or clipped index)
    return False


def _contiguous_in_last_spatial(sch: s_tir.Schedule, block: BlockRV) -> bool:
    """Vectors along the last spatial iterator load contiguously (or broadcast).

    True when some read's innermost index moves with that iterator (NCHW
    convolution and pooling along the width, NHWC along the channels, a
    weight ``[.., k, j]``) and no larger read needs it in an outer index
    (which would make each vector a strided gather).
    """
    sblock = sch.get(block)
    spatial = [iv.var for iv in sblock.iter_vars if iv.iter_type == tirx.IterVar.DataPar]
    if not spatial:
        return False
    last = spatial[-1]
    contiguous, strided = [0], [0]
    for read in sblock.reads:
        if not read.region:
            continue
        size = math.prod(int(d) if isinstance(d, tirx.IntImm) else 1 for d in read.source.shape)
        if last in collect_vars_used_in_prim_expr(read.region[-1].min):
            contiguous.append(size)
        elif any(last in collect_vars_used_in_prim_expr(r.min) for r in read.region[:-1]):
            strided.append(size)
    return max(contiguous) > max(strided)


def _schedule_reduction(
    sch: s_tir.Schedule, block: BlockRV, kinds: str, lanes: int
) -> LoopRV | None:
    """Schedule a block with reduction loops; return its parallel loop, if any."""
    loops = list(sch.get_loops(block))
    spatial = [loop for loop, k in zip(loops, kinds, strict=True) if k == "S"]
    reduction = [loop for loop, k in zip(loops, kinds, strict=True) if k == "R"]
    # Work, not outputs: a softmax over 40 rows of 6625 classes is worth two threads.
    total = math.prod(extent(sch, loop) or PARALLEL_MIN_ELEMENTS for loop in loops)
    vector = None
    if spatial and _contiguous_in_last_spatial(sch, block):
        width = vector_factor(extent(sch, spatial[-1]), lanes)
        if width is not None:
            outer, vector = sch.split(spatial[-1], factors=[None, width])
            spatial[-1] = outer
            sch.reorder(*spatial, *reduction, vector)
        else:  # odd width: innermost anyway, for LLVM's vectoriser (with a tail)
            last = spatial.pop()
            sch.reorder(*spatial, *reduction, last)
    elif spatial:  # reduction innermost (a row sum, a global average)
        sch.reorder(*spatial, *reduction)
    outer_loop = None
    if spatial:
        outer_loop = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
        if total >= PARALLEL_MIN_ELEMENTS:
            sch.parallel(outer_loop)
    if vector is not None:
        sch.vectorize(vector)
    if reduction:
        attempt(sch.decompose_reduction, block, reduction[0])
    return outer_loop


def _attach_epilogue(
    sch: s_tir.Schedule, block: BlockRV, target: CpuTarget, parallel_of: dict[str, LoopRV]
) -> bool:
    """Compute an element-wise ``block`` inside its reduction producer's outer loop."""
    producers = sch.get_producers(block)
    if len(producers) != 1 or not is_spatial(sch, block):
        return False
    loop = parallel_of.get(sch.get(producers[0]).name_hint)
    if loop is None or not attempt(sch.reverse_compute_at, block, loop):
        return False
    inner = list(sch.get_loops(block))
    attached = inner[_loop_index(sch, inner, loop) + 1 :]
    vector = _split_vector(sch, attached, vector_lanes(target, write_dtype(sch, block)))
    if vector is not None:
        sch.vectorize(vector)
    return True


def _loop_index(sch: s_tir.Schedule, loops: list[LoopRV], loop: LoopRV) -> int:
    target_stmt = sch.get(loop)
    for i, candidate in enumerate(loops):
        if sch.get(candidate).same_as(target_stmt):
            return i
    raise ValueError("loop not found around block")
