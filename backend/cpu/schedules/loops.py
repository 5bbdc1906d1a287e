"""Small helpers shared by the schedule rules: loop extents, vector lanes, block kinds.

Nothing here schedules a whole function; the rules (:mod:`.fallback`,
:mod:`.matmul`, ...) compose these steps. Every helper works on a
:class:`tvm.s_tir.Schedule` and leaves it unchanged when it raises.
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx

from npuc.core.target import CpuTarget

#: Smallest vector worth emitting (lanes): below this the loop stays scalar.
MIN_LANES = 4

#: Multiply-adds below which a register-tiled kernel (the NHWC convolutions) runs on the
#: calling thread only. The fallback's ``PARALLEL_MIN_ELEMENTS`` (4096 loop iterations)
#: counts scalar iterations; these kernels do 16-32 multiply-adds per cycle, so the same
#: few microseconds are 32 x 4096. BlazeFace's 8x8 layers (2.4-10 us one thread, AVX-512)
#: took 1.3-2x as long split over two threads on a loaded 2-core host.
PARALLEL_MIN_MACS = 32 * 4096


def vector_lanes(target: CpuTarget, dtype: str) -> int:
    """Elements of ``dtype`` in one of the target's widest vector registers (at least 1).

    ``target.vector_bits`` is 512 with AVX-512, 256 with AVX2, else 128; a
    float32 vector therefore has 16, 8 or 4 lanes.
    """
    bits = tvm.DataType(dtype).bits
    return max(target.vector_bits // max(bits, 8), 1)


def extent(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV) -> int | None:
    """The constant trip count of ``loop``, or ``None`` when it is symbolic."""
    value = sch.get(loop).extent
    return int(value) if isinstance(value, tirx.IntImm) else None


def vector_factor(trip_count: int | None, lanes: int) -> int | None:
    """The widest vector length, a power of two in ``[MIN_LANES, lanes]``, dividing ``trip_count``.

    ``None`` when the trip count is symbolic, zero (an empty slice: nothing to split;
    splitting it divided by zero in TVM) or no such length divides it: a split with a
    tail would leave a predicated (scalarised) body.
    """
    if trip_count is None or trip_count <= 0:
        return None
    width = lanes
    while width >= MIN_LANES:
        if trip_count % width == 0:
            return width
        width //= 2
    return None


def iter_kinds(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> str | None:
    """One letter per loop around ``block``: ``S`` spatial, ``R`` reduction.

    ``None`` unless every loop binds exactly one block iterator directly
    (the form LegalizeOps and FuseTIR produce); the rules only reorder and
    split loops whose kind they know.
    """
    loops = sch.get_loops(block)
    sblock = sch.get(block)
    loop_vars = [sch.get(loop).loop_var for loop in loops]
    bindings = _bindings(sch, block)
    if bindings is None or len(bindings) != len(sblock.iter_vars):
        return None
    kind_of: dict[tirx.Var, str] = {}
    for iv, value in zip(sblock.iter_vars, bindings, strict=True):
        if isinstance(value, tirx.IntImm) and int(iv.dom.extent) == 1:
            continue  # unit iterator bound to a constant
        if not isinstance(value, tirx.Var) or value in kind_of:
            return None
        if iv.iter_type == tirx.IterVar.DataPar:
            kind_of[value] = "S"
        elif iv.iter_type == tirx.IterVar.CommReduce:
            kind_of[value] = "R"
        else:
            return None
    if set(kind_of) != set(loop_vars):
        return None
    return "".join(kind_of[v] for v in loop_vars)


def _bindings(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> list[tirx.Expr] | None:
    """The iterator values of ``block``'s realize, if it is the body of its innermost loop."""
    loops = sch.get_loops(block)
    if not loops:
        return None
    body = sch.get(loops[-1]).body
    if isinstance(body, s_tir.SBlockRealize) and body.block.same_as(sch.get(block)):
        return list(body.iter_values)
    return None


def is_spatial(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> bool:
    """Every iterator of ``block`` is spatial (an injective/elementwise block)."""
    return all(iv.iter_type == tirx.IterVar.DataPar for iv in sch.get(block).iter_vars)


def write_dtype(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> str:
    """The dtype of the first buffer ``block`` writes."""
    return str(sch.get(block).writes[0].source.dtype)


def root_blocks(sch: s_tir.Schedule) -> list[s_tir.schedule.SBlockRV]:
    """The blocks directly under the function's root block, in program order."""
    return list(sch.get_child_blocks(sch.get_sblock("root")))
