"""``compile_npu_graph``: an :class:`NpuGraph` to a validated NPU program, with per-op stats.

Stages, in the order data flows (docs/npu_compiler.md):

1. validate the graph (:meth:`NpuGraph.validate`);
2. lower each op to a plan: tiling chosen by estimated cycles under the SRAM
   budget (:mod:`lower_window`, :mod:`lower_flat`, :mod:`lower_move`);
3. place constants (one blob per weight block / table) in the constant
   section, graph inputs/outputs in the I/O table, and intermediates in a DRAM
   scratch region by liveness (:mod:`allocate`);
4. place each op's SRAM buffers (:mod:`allocate`);
5. generate the steps, derive hazards and assign wait/signal tokens
   (:mod:`schedule`);
6. encode through the ProgramBuilder (every field checked against the ISA table).

Guarantees: the returned program passes ``Program.validate(hw)`` (the
simulator's loader accepts it), never deadlocks and has no unordered SRAM or
DRAM hazard; its outputs equal the integer reference of each op, bit for
bit. Errors: InvalidInputError for a malformed graph, UnsupportedError for
an op the NPU cannot run or that does not fit, each naming the op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from npuc.backend.npu.allocate import Buffer, allocate
from npuc.backend.npu.band_chain import BandMemo, NpuBandChain
from npuc.backend.npu.band_choice import choose_band_chains
from npuc.backend.npu.cascade import Cascade, plan_cascade
from npuc.backend.npu.encode import dram_bytes_moved, emit_all, step_cycles
from npuc.backend.npu.lower_band_chain import plan_band_chain
from npuc.backend.npu.lower_flat import plan_flat
from npuc.backend.npu.lower_layout import plan_pad, plan_resize, plan_transpose
from npuc.backend.npu.lower_move import plan_move
from npuc.backend.npu.lower_tap_conv import plan_tap_conv
from npuc.backend.npu.lower_taps import plan_im2col
from npuc.backend.npu.lower_window import plan_window
from npuc.backend.npu.ops import (
    NpuConcat,
    NpuConv2d,
    NpuElementwise,
    NpuGraph,
    NpuIm2col,
    NpuLut,
    NpuOp,
    NpuPad,
    NpuPool,
    NpuRequant,
    NpuReshape,
    NpuResize,
    NpuSlice,
    NpuTapConv2d,
    NpuTranspose,
    op_inputs,
)
from npuc.backend.npu.plan import OpPlan
from npuc.backend.npu.schedule import Step, assign_tokens, replay
from npuc.backend.npu.tap_pack import pack_graph
from npuc.backend.npu.tiling import WindowTiling
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import HwConfig
from npuc.core.isa.builder import ProgramBuilder
from npuc.core.isa.program import Program

SRAM_ALIGN = 64


def _align(n: int) -> int:
    return (n + SRAM_ALIGN - 1) // SRAM_ALIGN * SRAM_ALIGN


@dataclass(frozen=True, slots=True)
class OpStats:
    """Per-op compile result: kind, MACs, estimates, DRAM bytes, tiling chosen, SRAM used.

    ``est_cycles`` is the tiling model's estimate of the op alone (what chose
    the tiling); ``sched_start`` / ``sched_end`` are the op's first start and
    last end in the replay of the emitted schedule (``CompiledNpuProgram``).
    """

    name: str
    kind: str
    macs: int
    est_cycles: int
    sched_start: int
    sched_end: int
    dram_bytes: int
    tiling: str
    sram_peak_bytes: int
    first_instruction: int
    instructions: int
    sram_resident: str = ""  # cascading: which tensors this op reads/writes in SRAM, and with whom
    # the op's instructions when they interleave with other ops' (a row-band chain's parts);
    # empty: the range first_instruction + [0, instructions)
    instruction_indices: tuple[int, ...] = ()

    def instruction_list(self) -> Sequence[int]:
        """Indices of the program instructions compiled for this op."""
        if self.instruction_indices:
            return self.instruction_indices
        return range(self.first_instruction, self.first_instruction + self.instructions)


@dataclass(frozen=True, slots=True)
class CompiledNpuProgram:
    """The program and what the compiler decided and estimated for each op."""

    program: Program
    ops: tuple[OpStats, ...]
    est_cycles: int  # the whole program: replay of its schedule with the compiler's costs
    sram_peak_bytes: int
    dram_scratch_bytes: int
    cascade: Cascade | None = None  # resident tensors and each op's SRAM window
    sram_buffers: tuple[tuple[int, str, int, int], ...] = ()  # (op index, buffer, addr, bytes)


def plan_op(
    op: NpuOp | NpuBandChain,
    hw: HwConfig,
    sram_budget: int,
    cache: dict[tuple[object, ...], WindowTiling] | None = None,
    resident: frozenset[str] = frozenset(),
    band_memo: BandMemo | None = None,
) -> OpPlan:
    """Lower one op to its plan (tiling chosen here; ``cache``, ``resident``: see
    ``plan_window``; only window and flat ops may touch SRAM-resident tensors, and a
    tap-packed convolution its output)."""
    if isinstance(op, NpuConv2d | NpuPool):
        return plan_window(op, hw, sram_budget, cache, resident)
    if isinstance(op, NpuElementwise | NpuRequant | NpuLut):
        return plan_flat(op, hw, sram_budget, resident)
    if isinstance(op, NpuConcat | NpuSlice | NpuReshape):
        return plan_move(op, hw, sram_budget)
    if isinstance(op, NpuPad):
        return plan_pad(op, hw, sram_budget)
    if isinstance(op, NpuResize):
        return plan_resize(op, hw, sram_budget)
    if isinstance(op, NpuTranspose):
        return plan_transpose(op, hw, sram_budget)
    if isinstance(op, NpuIm2col):
        return plan_im2col(op, hw, sram_budget)
    if isinstance(op, NpuTapConv2d):
        return plan_tap_conv(op, hw, sram_budget, resident)
    if isinstance(op, NpuBandChain):
        return plan_band_chain(op, hw, sram_budget, cache, resident, band_memo)
    raise UnsupportedError(f"NPU op {getattr(op, 'name', op)!r}: no lowering for {type(op)}")


def _dram_intermediates(graph: NpuGraph, in_sram: frozenset[str]) -> list[Buffer]:
    io = {t.name for t in (*graph.inputs, *graph.outputs)} | in_sram
    made: dict[str, tuple[int, int]] = {}
    for i, op in enumerate(graph.ops):
        for t in op_inputs(op):
            if t.name in made:
                made[t.name] = (made[t.name][0], i + 1)
        if op.ofm.name not in io:
            made[op.ofm.name] = (i, i + 1)
    return [
        Buffer(name, op.ofm.nbytes, *made[name])
        for op in graph.ops
        if (name := op.ofm.name) in made
    ]


def compile_npu_graph(
    graph: NpuGraph,
    hw: HwConfig,
    *,
    sram_budget: int | None = None,
    tap_packing: bool = True,
    cascade: bool = True,
    row_bands: bool = True,
    cache: dict[tuple[object, ...], WindowTiling] | None = None,
) -> CompiledNpuProgram:
    """Compile ``graph`` for ``hw`` (``sram_budget`` bytes of SRAM, default all of it).

    ``cascade``: keep intermediates whole in SRAM where the estimate says it
    pays (:mod:`cascade`; False: every intermediate goes through DRAM).

    ``row_bands``: with ``cascade``, compute residual blocks whose feature maps
    are too large to keep whole band by band in SRAM where the estimate says it
    pays (:mod:`band_chain`; False: never, for measuring whole-tensor cascading).

    ``tap_packing``: let :mod:`tap_pack` rewrite low-channel convolutions where
    the estimate says it helps (False: never; for measuring the plain code).

    ``cache``: window tilings already chosen for ``hw`` (see :func:`plan_window`;
    keyed by geometry, budget and residency), shared with earlier planning of
    the same ops so the search does not run twice; filled in place.
    """
    graph.validate()
    budget = hw.sram_bytes if sram_budget is None else min(sram_budget, hw.sram_bytes)
    cache = {} if cache is None else cache
    if tap_packing:
        graph = pack_graph(graph, hw, budget, cache)  # low-channel convs: im2col by DMA
    band_memo: BandMemo = {}  # row-band chains of one geometry plan once
    if cascade and row_bands:  # residual blocks computed band by band in SRAM
        graph = choose_band_chains(
            graph, hw, budget, lambda o: plan_op(o, hw, budget, cache), cache, band_memo
        )
    top = budget // SRAM_ALIGN * SRAM_ALIGN
    ops = graph.ops
    casc, plans = plan_cascade(
        graph,
        top,
        lambda i, b, res: plan_op(ops[i], hw, b, cache, res, band_memo),
        enabled=cascade,
    )
    builder = ProgramBuilder(hw)
    dram: dict[str, int] = {}
    for plan in plans:
        for name, data in plan.constants:
            dram[name] = builder.constant(name, data, dtype="uint8").addr
    for t in graph.inputs:
        dram[t.name] = builder.input(
            t.name, t.shape, t.dtype, scale=t.scale, zero_point=t.zero_point
        ).addr
    for t in graph.outputs:
        dram[t.name] = builder.output(
            t.name, t.shape, t.dtype, scale=t.scale, zero_point=t.zero_point
        ).addr
    inter = _dram_intermediates(graph, casc.names)
    scratch_bytes = 0
    if inter:
        placed = allocate(inter, capacity=hw.dram_bytes, memory="DRAM")
        scratch_bytes = placed.peak_bytes
        base = builder.scratch("scratch", scratch_bytes).addr
        dram.update({name: base + off for name, off in placed.addresses.items()})
    steps: list[Step] = []
    ranges: list[tuple[int, int]] = []
    peaks: list[int] = []
    sram_map: list[tuple[int, str, int, int]] = []
    in_sram = {"@" + t.name: t.addr for t in casc.tensors}
    for index, plan in enumerate(plans):
        lo, hi = casc.windows[index]  # [0, top) unless resident tensors are live here
        sram = allocate(plan.sram, capacity=hi, base=lo, memory="SRAM")
        addresses = dict(sram.addresses)
        if index % 2:  # odd ops from the top: the next op's first loads can overlap this tail
            sizes = {buf.name: buf.nbytes for buf in plan.sram}
            addresses = {n: lo + hi - a - _align(sizes[n]) for n, a in addresses.items()}
        sram_map += [(index, b.name, addresses[b.name], b.nbytes) for b in plan.sram]
        first = len(steps)
        steps += plan.make_steps(dram, {**addresses, **in_sram})
        peaks.append(sram.peak_bytes - lo + casc.live_bytes(index))
        ranges.append((first, len(steps)))
    scheduled = assign_tokens(steps)
    cycles = [step_cycles(s, hw) for s in steps]
    spans = replay(scheduled, cycles)
    stats: list[OpStats] = []
    for index, (plan, (a, b), peak, note) in enumerate(
        zip(plans, ranges, peaks, casc.notes, strict=True)
    ):
        op = graph.ops[index]
        parts = op.parts if isinstance(op, NpuBandChain) else (None,)
        for part in parts:  # a row-band chain: one row per part, from its steps' tags
            idx = [i for i in range(a, b) if part is None or steps[i].tag == part.name]
            share = sum(cycles[i] for i in idx) / max(1, sum(cycles[a:b]))
            stats.append(
                OpStats(
                    plan.name if part is None else part.name,
                    plan.kind if part is None else type(part).__name__,
                    plan.macs if part is None else getattr(part, "macs", 0),
                    round(plan.est_cycles * share),
                    min((spans[i][0] for i in idx), default=0),
                    max((spans[i][1] for i in idx), default=0),
                    sum(dram_bytes_moved(steps[i]) for i in idx),
                    plan.tiling,
                    peak,
                    idx[0] if idx else a,
                    len(idx),
                    note if part is None or part.name == op.name else "",
                    () if part is None else tuple(idx),
                )
            )
    emit_all(builder, scheduled)
    program = builder.build()
    return CompiledNpuProgram(
        program=program,
        ops=tuple(stats),
        est_cycles=max((end for _, end in spans), default=0),
        sram_peak_bytes=max((s.sram_peak_bytes for s in stats), default=0),
        dram_scratch_bytes=scratch_bytes,
        cascade=casc,
        sram_buffers=tuple(sram_map),
    )
