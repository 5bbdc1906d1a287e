"""The one schedule of the float layers' kernels (:mod:`.float_kernels`): deterministic,
thread-count independent, shared by the integer executor and the integer CPU library.

Both sides compile the PrimFuncs :func:`schedule_float_kernel` returns, so any
schedule is exact between them; what this one adds is that the result does not
depend on the number of threads either, and that reductions (convolutions,
transposed convolutions, matmuls, pools) run on vectors.

Requires: a PrimFunc from ``LegalizeOps`` + ``FuseTIR`` with static loop
extents (others are returned unchanged, or with the blocks this cannot read
left alone).

Guarantees: blocks that only copy an element into an intermediate buffer
(reshape, transpose, an unpadded pad) are inlined into their readers; then, per
root block:

* a block with a reduction whose innermost spatial loop (the output's last
  axis) has an extent divisible by 4, 8 or 16 gets that loop split by the
  largest such lane count, the lanes moved inside the reduction loops and
  vectorised; when an outer spatial loop indexes no input read along the
  lanes (a convolution's output channel, a matmul's row) and :data:`BLOCK`
  divides it, ``BLOCK`` outputs along it are computed together (unrolled
  just outside the lanes, sharing each loaded input vector); the init is
  split off (``decompose_reduction``) and the remaining outer spatial loops
  are fused into one ``parallel`` loop when the block is big enough. Every
  output element still sums the same terms in the same order (the reduction
  loops keep their nesting), one lane of a vector each;
* any other block gets its outer spatial loops (those no reduction reads)
  fused into one ``parallel`` loop, the innermost loop of a reduction-free
  block kept whole (LLVM vectorises innermost loops only, so the split
  between its vector body and scalar tail does not move with the threads).

Blocks smaller than :data:`PARALLEL_MIN_ELEMENTS` loop iterations stay on the
calling thread. Loops TIR refuses to transform are left as they are.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import tvm
from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis.common_analysis import collect_vars_used_in_prim_expr

#: Loop iterations (of a whole block) below which it stays on the calling thread.
PARALLEL_MIN_ELEMENTS = 4096
#: Vector lane counts tried for a reduction's innermost spatial loop, widest first.
LANES = (16, 8, 4)
#: Outputs along a loop that shares the streamed input computed together (unrolled).
BLOCK = 4


def schedule_float_kernel(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` scheduled as the module docstring says (a new PrimFunc; ``func`` is kept)."""
    sch = s_tir.Schedule(func)
    try:
        names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    except s_tir.ScheduleError:  # a TOPI kernel with its own loops (cumsum, sort, ...)
        return func
    for name in names:
        _inline_copy(sch, name)
    mod = sch.mod
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    for name in names:
        # each block on a fresh schedule of the result so far: a refusal half-way through
        # leaves nothing behind
        for vectorize in (True, False):
            trial = s_tir.Schedule(mod)
            try:
                block = trial.get_sblock(name)
            except s_tir.ScheduleError:  # not a unique name: leave the block alone
                break
            try:
                changed = _schedule_block(trial, block, vectorize)
            except RuntimeError:  # ScheduleError, or TVM refusing a shape it cannot transform
                continue
            if changed:
                mod = trial.mod
            if changed or not vectorize:
                break
    return mod["main"]


def _inline_copy(sch: s_tir.Schedule, name: str) -> None:
    """Inline block ``name`` into its readers when it only copies one buffer's element into
    an intermediate buffer (a reshape, transpose or unpadded pad feeding a consumer): no
    arithmetic moves, the copy pass over memory goes."""
    try:
        block = sch.get_sblock(name)
    except s_tir.ScheduleError:
        return
    sblock = sch.get(block)
    body = sblock.body
    copies = (
        isinstance(body, tirx.BufferStore)
        and isinstance(body.value, tvm.ir.TensorLoad)
        and sblock.init is None
        and all(iv.iter_type == tirx.IterVar.DataPar for iv in sblock.iter_vars)
    )
    if not copies:
        return
    # the function's output, or a reader TIR cannot rewrite, stays
    with contextlib.suppress(s_tir.ScheduleError):
        sch.compute_inline(block)


def _loop_nest(sch: s_tir.Schedule, block: Any) -> tuple[list[Any], list[Any]] | None:
    """The block's loops split into (spatial outer loops, reduction-reading inner loops),
    or None when the block is not the sole body of a perfect static loop nest."""
    loops = list(sch.get_loops(block))
    if not loops:
        return None
    body = sch.get(loops[-1]).body
    sblock = sch.get(block)
    if not (isinstance(body, s_tir.SBlockRealize) and body.block.same_as(sblock)):
        return None
    if not all(isinstance(sch.get(loop).extent, tirx.IntImm) for loop in loops):
        return None
    reduce_vars: set[Any] = set()
    for iv, value in zip(sblock.iter_vars, body.iter_values, strict=True):
        if iv.iter_type != tirx.IterVar.DataPar:
            reduce_vars |= set(collect_vars_used_in_prim_expr(value))
    outer = []
    for loop in loops:
        if sch.get(loop).loop_var in reduce_vars:
            break
        outer.append(loop)
    return outer, loops[len(outer) :]


def _extent(sch: s_tir.Schedule, loop: Any) -> int:
    return int(sch.get(loop).extent)


def _schedule_block(sch: s_tir.Schedule, block: Any, vectorize: bool) -> bool:
    """Schedule one block; False when nothing applies. May raise ``ScheduleError``."""
    nest = _loop_nest(sch, block)
    if nest is None:
        return False
    outer, inner = nest
    work = int(np.prod([_extent(sch, loop) for loop in outer + inner]))
    if vectorize:
        return bool(inner and outer) and _vectorize_reduction(sch, block, outer, inner, work)
    if not inner and outer:  # no reduction: the innermost loop stays whole
        outer = outer[:-1]
    if not outer or work < PARALLEL_MIN_ELEMENTS:
        return False
    sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    return True


def _writes_last_axis(sch: s_tir.Schedule, block: Any, loop: Any) -> bool:
    """Whether ``loop``'s variable indexes the last axis of the block's (one) output."""
    sblock = sch.get(block)
    if len(sblock.writes) != 1:
        return False
    region = sblock.writes[0].region
    if not region:
        return False
    loops = list(sch.get_loops(block))
    realize = sch.get(loops[-1]).body
    var = sch.get(loop).loop_var
    last = region[-1].min
    for iv, value in zip(sblock.iter_vars, realize.iter_values, strict=True):
        if value.same_as(var) and last.same_as(iv.var):
            return True
    return False


def _shared_loop(sch: s_tir.Schedule, block: Any, rows: list[Any], lane: Any) -> int | None:
    """Index in ``rows`` of the innermost loop that no input streamed along the lanes
    reads (a convolution's output channel, a matmul's row): outputs along it share
    those vector loads. None when there is none."""
    sblock = sch.get(block)
    realize = sch.get(sch.get_loops(block)[-1]).body
    block_var: dict[Any, set[Any]] = {}
    for iv, value in zip(sblock.iter_vars, realize.iter_values, strict=True):
        for loop_var in collect_vars_used_in_prim_expr(value):
            block_var.setdefault(loop_var, set()).add(iv.var)
    lane_vars = block_var.get(sch.get(lane).loop_var, set())
    written = sblock.writes[0].source
    streamed = [
        {v for r in read.region for v in collect_vars_used_in_prim_expr(r.min)}
        for read in sblock.reads
        if not read.source.same_as(written)
        and read.region
        and lane_vars & set(collect_vars_used_in_prim_expr(read.region[-1].min))
    ]
    if not streamed:
        return None
    for index in range(len(rows) - 1, -1, -1):
        own = block_var.get(sch.get(rows[index]).loop_var, set())
        if own and all(not (own & used) for used in streamed):
            return index
    return None


def _vectorize_reduction(
    sch: s_tir.Schedule, block: Any, outer: list[Any], inner: list[Any], work: int
) -> bool:
    """Lanes of the innermost spatial loop inside the reduction; False when the loop is
    not the output's last axis or no lane count divides its extent. With a loop along
    which outputs share the streamed input (:func:`_shared_loop`) whose extent
    :data:`BLOCK` divides, ``BLOCK`` outputs along it are computed together, unrolled
    just outside the lanes."""
    last = outer[-1]
    extent = _extent(sch, last)
    lanes = next((n for n in LANES if extent % n == 0), None)
    if lanes is None or not _writes_last_axis(sch, block, last):
        return False
    rows = outer[:-1]
    shared = _shared_loop(sch, block, rows, last)
    lane_outer, lane = sch.split(last, [extent // lanes, lanes])
    if shared is not None and _extent(sch, rows[shared]) % BLOCK == 0:
        chan = rows[shared]
        chan_outer, chan_inner = sch.split(chan, [_extent(sch, chan) // BLOCK, BLOCK])
        rows = [*rows[:shared], chan_outer, *rows[shared + 1 :]]
        sch.reorder(*rows[shared + 1 :], lane_outer, *inner, chan_inner, lane)
        sch.unroll(chan_inner)
    else:
        sch.reorder(lane_outer, *inner, lane)
    sch.vectorize(lane)
    if rows and work >= PARALLEL_MIN_ELEMENTS:
        sch.parallel(sch.fuse(*rows) if len(rows) > 1 else rows[0])
    # split the init off last: TIR checks the dataflow of a vectorised or parallel loop,
    # and an update block without its init is neither complete nor a reduction
    init = sch.decompose_reduction(block, inner[0])
    init_lane = sch.get_loops(init)[-1]
    if sch.get(init_lane).kind != tirx.ForKind.VECTORIZED:
        sch.vectorize(init_lane)
    return True
