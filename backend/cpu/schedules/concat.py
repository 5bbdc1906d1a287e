"""Schedule rule for concatenate, split and one-axis slices: contiguous span copies.

Matches: a PrimFunc whose every root block is a *shifted copy* along one axis
``a``: ``Y[v] = X[v']`` where ``v'`` equals ``v`` except ``v'[a] = v[a] + c``
(split, ``strided_slice`` of stride 1 along one axis), or a select chain
``Y[v] = if_then_else(lo_k <= v[a], X_k[.., v[a] - lo_k, ..], ...)`` (what
LegalizeOps makes of ``concat``). ``X``, ``Y`` are parameters of one dtype whose
shapes agree on every axis but ``a``, and every block's loops cover its output
exactly. All blocks share ``a``'s outer extent.

Requires: the loop nests of LegalizeOps/FuseOps (one loop per block iterator).

Guarantees: the same values, bit for bit (a copy, any dtype). The function is
rebuilt as plain copies on flat views of its parameters: with ``outer`` the
product of the axes before ``a`` and ``inner`` that of the axes after it,
each (input, output) pair copies ``outer`` rows of ``extent_a * inner``
elements, contiguous in both. A row is copied in vectors of the target's
width (:func:`~.loops.vector_lanes`: 16 float32 or 64 int8 lanes with
AVX-512, 8/32 with AVX2, 4/16 otherwise), then a scalar tail. Rows, and
pieces of rows when there are few, are the iterations of one ``parallel``
loop, so the thread pool is woken once per call; copies of fewer than
:data:`PARALLEL_MIN_BYTES` run on the calling thread.

Declines (the fallback schedules them): fused element-wise producers or
epilogues (``concat -> relu``, a batch norm feeding a concat), reshapes or
resizes fused into the copy, slices along two axes or with a stride,
symbolic shapes, and blocks that read a parameter another block writes or
write the same output (the copies run sorted, not in block order).

Why: the fallback fuses a concat's loops and vectorises them through a
select and per-lane ``//`` and ``%`` of the fused index (SqueezeNet's
1x64x55x55 concat ran at ~11 GB/s).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tvm import ir, s_tir, tirx
from tvm.ir import TensorLoad
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from npuc.backend.cpu.schedules.loops import extent, iter_kinds, root_blocks, vector_lanes
from npuc.core.target import CpuTarget

#: Bytes copied below which the copy runs on the calling thread (about 3-6 us
#: of copying in cache: waking the thread pool costs a few microseconds).
PARALLEL_MIN_BYTES = 64 * 1024
#: Bytes per iteration of the parallel loop when rows are split into pieces.
TASK_BYTES = 16 * 1024

_IF_THEN_ELSE = ir.Op.get("prim.if_then_else")


@dataclass(frozen=True, slots=True)
class SpanCopy:
    """``rows`` copies of ``length`` contiguous elements, parameter ``src`` to ``dst``.

    Row ``o`` reads ``src`` from flat element ``o * src_row + src_offset`` and
    writes ``dst`` from ``o * dst_row + dst_offset``.
    """

    src: int
    dst: int
    rows: int
    length: int
    src_row: int
    src_offset: int
    dst_row: int
    dst_offset: int


@dataclass(frozen=True, slots=True)
class _Branch:
    """``Y[v] = X[v with v[axis] + shift]`` for ``lo <= v[axis] < hi``."""

    load: TensorLoad
    lo: int
    hi: int
    shift: int


def _shape(buffer: tirx.Buffer) -> tuple[int, ...] | None:
    dims = [d for d in buffer.shape]
    if not all(isinstance(d, tirx.IntImm) for d in dims):
        return None
    return tuple(int(d) for d in dims)


def _select_chain(
    value: tirx.PrimExpr,
) -> list[tuple[tirx.Var | None, int, TensorLoad]] | None:
    """``[(var, lo, load), ...]`` of ``if_then_else(lo <= var, load, rest)`` chains, outermost
    first; the last entry (a plain load) has ``var`` ``None`` and ``lo`` 0."""
    chain: list[tuple[tirx.Var | None, int, TensorLoad]] = []
    while isinstance(value, ir.Call) and value.op.same_as(_IF_THEN_ELSE):
        cond, then, rest = value.args
        if not (
            isinstance(cond, tirx.LE)
            and isinstance(cond.a, tirx.IntImm)
            and isinstance(cond.b, tirx.Var)
            and isinstance(then, TensorLoad)
        ):
            return None
        chain.append((cond.b, int(cond.a), then))
        value = rest
    if not isinstance(value, TensorLoad):
        return None
    chain.append((None, 0, value))
    return chain


def _shift_of(index: tirx.PrimExpr, var: tirx.Var) -> int | None:
    """``c`` when ``index`` is ``var``, ``var + c`` or ``var - c``; else ``None``."""
    if isinstance(index, tirx.Var) and index.same_as(var):
        return 0
    if (
        isinstance(index, tirx.Add | tirx.Sub)
        and isinstance(index.b, tirx.IntImm)
        and isinstance(index.a, tirx.Var)
        and index.a.same_as(var)
    ):
        return int(index.b) if isinstance(index, tirx.Add) else -int(index.b)
    return None


def _block_copies(
    sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, params: Sequence[tirx.Buffer]
) -> list[SpanCopy] | None:
    """The span copies one root block performs, or ``None`` when it is not a shifted copy."""
    sblock = sch.get(block)
    kinds = iter_kinds(sch, block)
    store = sblock.body
    if kinds is None or "R" in kinds or not isinstance(store, tirx.BufferStore):
        return None
    iters = [iv.var for iv in sblock.iter_vars]
    out_shape = _shape(store.buffer)
    loops = [extent(sch, loop) for loop in sch.get_loops(block)]
    realize = sch.get(sch.get_loops(block)[-1]).body if loops else None
    if (
        not isinstance(realize, s_tir.SBlockRealize)
        or not (isinstance(realize.predicate, tirx.IntImm) and int(realize.predicate) == 1)
        or sblock.init is not None
        or sblock.match_buffers
        or sblock.alloc_buffers
        or out_shape is None
        or len(store.indices) != len(iters)
        or not all(i.same_as(v) for i, v in zip(store.indices, iters, strict=True))
        or [int(iv.dom.extent) for iv in sblock.iter_vars] != list(out_shape)
        or math.prod(e or 0 for e in loops) != math.prod(out_shape)
    ):
        return None
    chain = _select_chain(store.value)
    if chain is None:
        return None
    branches = _branches(chain, iters, out_shape)
    if branches is None:
        return None
    axis, found = branches
    return _spans(axis, found, out_shape, store.buffer, params)


def _branches(
    chain: list[tuple[tirx.Var | None, int, TensorLoad]],
    iters: list[tirx.Var],
    out_shape: tuple[int, ...],
) -> tuple[int, list[_Branch]] | None:
    """The shifted axis and one branch per load of the chain (validated)."""
    if any(len(load.indices) != len(iters) for _var, _lo, load in chain):
        return None
    axes = {
        i
        for _var, _lo, load in chain
        for i, (x, v) in enumerate(zip(load.indices, iters, strict=True))
        if not (isinstance(x, tirx.Var) and x.same_as(v))
    }
    for var, _lo, _load in chain[:-1]:
        axis_of_var = [i for i, v in enumerate(iters) if v.same_as(var)]
        if not axis_of_var:
            return None
        axes.add(axis_of_var[0])
    if len(axes) > 1:
        return None
    if not axes:  # no shift, no select: the axis whose extents differ, else a whole copy
        load_shape = _shape(chain[0][2].source)
        differ = (
            []
            if load_shape is None
            else [i for i, (s, d) in enumerate(zip(load_shape, out_shape, strict=True)) if s != d]
        )
        axes = {differ[0] if len(differ) == 1 else 0}
    (axis,) = axes
    branches, hi = [], out_shape[axis]
    for _var, lo, load in chain:
        if str(load.source.dtype) != str(chain[0][2].source.dtype):
            return None
        shift = _shift_of(load.indices[axis], iters[axis])
        if shift is None or not lo < hi:
            return None
        branches.append(_Branch(load, lo, hi, shift))
        hi = lo
    return axis, branches


def _spans(
    axis: int,
    branches: list[_Branch],
    out_shape: tuple[int, ...],
    out: tirx.Buffer,
    params: Sequence[tirx.Buffer],
) -> list[SpanCopy] | None:
    dst = _param_index(out, params)
    outer, inner = math.prod(out_shape[:axis]), math.prod(out_shape[axis + 1 :])
    copies = []
    for branch in branches:
        src = _param_index(branch.load.source, params)
        shape = _shape(branch.load.source)
        if (
            src is None
            or dst is None
            or src == dst
            or shape is None
            or len(shape) != len(out_shape)
        ):
            return None
        others_equal = all(
            s == o for i, (s, o) in enumerate(zip(shape, out_shape, strict=True)) if i != axis
        )
        first, last = branch.lo + branch.shift, branch.hi + branch.shift
        if not others_equal or first < 0 or last > shape[axis]:
            return None
        copies.append(
            SpanCopy(
                src=src,
                dst=dst,
                rows=outer,
                length=(branch.hi - branch.lo) * inner,
                src_row=shape[axis] * inner,
                src_offset=first * inner,
                dst_row=out_shape[axis] * inner,
                dst_offset=branch.lo * inner,
            )
        )
    return copies


def _param_index(buffer: tirx.Buffer, params: Sequence[tirx.Buffer]) -> int | None:
    return next((i for i, p in enumerate(params) if p.same_as(buffer)), None)


def span_copies(func: tirx.PrimFunc) -> list[SpanCopy] | None:
    """What ``func`` copies, when it is made of shifted copies only (module docstring)."""
    sch = s_tir.Schedule(func)
    if sch.get(sch.get_sblock("root")).alloc_buffers:
        return None  # an intermediate: something else is fused in
    params = list(func.params)
    if any(_shape(p) is None for p in params):
        return None
    copies: list[SpanCopy] = []
    written: list[int] = []
    for block in root_blocks(sch):
        found = _block_copies(sch, block, params)
        if found is None:
            return None
        copies += found
        written += sorted({c.dst for c in found})
    if not copies or len({c.rows for c in copies}) != 1:
        return None
    # The copies run in one loop, sorted, not in block order: a block reading a parameter
    # another block writes, or two blocks writing one output, would see another order.
    if len(set(written)) != len(written) or set(written) & {c.src for c in copies}:
        return None
    dtypes = {str(params[i].dtype) for c in copies for i in (c.src, c.dst)}
    if len(dtypes) != 1:
        return None
    return sorted(copies, key=lambda c: (c.dst, c.dst_offset, c.src, c.src_offset))


def make_copy_func(
    func: tirx.PrimFunc, copies: Sequence[SpanCopy], target: CpuTarget
) -> tirx.PrimFunc:
    """``func``'s parameters and attributes, its body the span ``copies`` (module docstring)."""
    params = list(func.params)
    dtype = str(params[copies[0].src].dtype)
    itemsize = np.dtype(dtype).itemsize
    lanes = vector_lanes(target, dtype)
    rows = copies[0].rows
    total_bytes = sum(c.rows * c.length for c in copies) * itemsize
    parallel = total_bytes >= PARALLEL_MIN_BYTES
    pieces = max(1, math.ceil(total_bytes / TASK_BYTES / rows)) if parallel else 1
    parallel = parallel and rows * pieces > 1
    with IRBuilder() as ib, T.prim_func(private=True, s_tir=True):
        args = [
            T.arg(str(p.name), T.buffer([int(d) for d in p.shape], str(p.dtype))) for p in params
        ]
        # Passes after scheduling (PrepackWeights) expect a root block over blocks only.
        with T.sblock("root"), T.sblock("copy"):
            T.reads(*(_whole(args[i]) for i in sorted({c.src for c in copies})))
            T.writes(*(_whole(args[i]) for i in sorted({c.dst for c in copies})))
            flat = [
                T.decl_buffer((math.prod(int(d) for d in p.shape),), str(p.dtype), data=a.data)
                for p, a in zip(params, args, strict=True)
            ]
            tasks = T.parallel(0, rows * pieces) if parallel else T.serial(0, rows * pieces)
            with tasks as t:
                row, piece = (t, 0) if pieces == 1 else (t // pieces, t % pieces)
                for c in copies:
                    _copy_piece(flat[c.src], flat[c.dst], c, row, piece, pieces, lanes)
    built = ib.get()
    return built.with_attrs(func.attrs) if func.attrs is not None else built


def _whole(buffer: tirx.Buffer) -> object:
    """The region of all of ``buffer``."""
    return buffer[tuple(slice(0, d) for d in buffer.shape)]


def _copy_piece(
    src: tirx.Buffer,
    dst: tirx.Buffer,
    c: SpanCopy,
    row: tirx.PrimExpr,
    piece: tirx.PrimExpr | int,
    pieces: int,
    lanes: int,
) -> None:
    """Piece ``piece`` of ``pieces`` of row ``row`` of ``c``: whole vectors, then the tail."""
    step = math.ceil(math.ceil(c.length / pieces) / lanes) * lanes
    start = piece * step
    count = c.length if pieces == 1 else tirx.max(tirx.min(step, c.length - start), 0)
    src_at = row * c.src_row + c.src_offset + start
    dst_at = row * c.dst_row + c.dst_offset + start
    vectors, tail = (count // lanes, count % lanes)
    if lanes > 1 and (not isinstance(vectors, int) or vectors > 0):
        with T.serial(0, vectors) as v:
            load = src[tirx.Ramp(src_at + v * lanes, 1, lanes)]
            T.buffer_store(dst, load, [tirx.Ramp(dst_at + v * lanes, 1, lanes)])
    else:
        vectors, tail = 0, count
    if not isinstance(tail, int) or tail > 0:
        with T.serial(0, tail) as j:
            done = vectors * lanes
            T.buffer_store(dst, src[src_at + done + j], [dst_at + done + j])


class ConcatRule:
    """Contiguous parallel vector copies for concat, split and one-axis slices."""

    name = "concat"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The copy kernel for ``func``, or ``None`` unless it is made of shifted copies."""
        copies = span_copies(func)
        return None if copies is None else make_copy_func(func, copies, target)
