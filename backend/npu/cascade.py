"""Cascading: intermediate tensors kept whole in SRAM between their producer and consumers.

Requires: a validated :class:`NpuGraph`, the SRAM budget, and a planner
``plan(op_index, budget, resident) -> OpPlan`` (``compile.plan_op``) that
plans an op whose SRAM-resident tensors (names in ``resident``) are read and
written in place.

Rule (Vela's "cascading", whole-tensor form): an intermediate tensor (not a
graph input or output) whose producer and every consumer are a convolution,
pool, element-wise, requant or LUT op (the producer may also be a tap-packed
convolution: only its output is resident, its packed input stays in DRAM)
may stay in SRAM from its producer to
its last consumer. Then the producer writes its output tiles straight into
the tensor and the consumers read their bands / chunks from it: no DMA
out, no DMA in, no DRAM scratch. The other ops live in that span get the
largest free SRAM range as their budget. Candidates are tried densest first
(bytes per op of their span; ties in program order: a big tensor used at once
beats a long-lived one), placed first-fit from the top of SRAM down; one is
kept when every op in its span still plans and the span moves fewer DRAM
bytes at no more than CASCADE_TOLERANCE more estimated cycles (or fewer
cycles at no more DRAM).

In place: an element-wise, requant or LUT op whose output has the shape
and element size of an input that is resident and read for the last time by
that op writes its output over that input (``ResidentTensor.alias_of``):
each chunk is read and written at the same bytes by one ITP instruction,
which the ISA allows (eltwise/requant/lut exactly in place). This lets a
residual stream stay in SRAM from block to block: the add's output takes the
slot of the tensor it consumes instead of needing a third slot beside the
two it reads. Candidates that could only be placed that way are tried again
after the first pass, once the tensors they would reuse are resident.

Row-band cascading of residual blocks is :mod:`npuc.backend.npu.band_chain`:
a chain is one op here, whose input and output may be resident (in place).
Not done: row bands between arbitrary ops; a resident output needs all
output channels in one block, because the CONV writes dense HWC tiles (ISA:
no output channel stride).

Guarantees (property-tested): resident tensors live at the same op never
share a byte, except an in-place pair (``alias_of``) at the one op where the
output takes over its input's bytes; every op's own buffers lie in its window, a range no resident
tensor live at that op touches; the scheduler orders every access to a
resident tensor from the SRAM byte ranges (a consumer's band waits only for
the producer's tiles it reads), so programs stay deadlock-free and exact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from npuc.backend.npu.band_chain import NpuBandChain
from npuc.backend.npu.encode import dram_bytes_moved
from npuc.backend.npu.ops import (
    NpuConv2d,
    NpuElementwise,
    NpuGraph,
    NpuLut,
    NpuOp,
    NpuPool,
    NpuRequant,
    NpuTapConv2d,
    op_inputs,
)
from npuc.backend.npu.plan import OpPlan
from npuc.core.errors import UnsupportedError

ALIGN = 64
CASCADE_TOLERANCE = 0.01  # a resident tensor may cost this much more estimated cycles in its span
_IN_PLACE = (NpuConv2d, NpuPool, NpuElementwise, NpuRequant, NpuLut, NpuBandChain)
# may write its output over an input: element by element, or a row-band chain (its add)
_OVERWRITE = (NpuElementwise, NpuRequant, NpuLut, NpuBandChain)

Planner = Callable[[int, int, frozenset[str]], OpPlan]


@dataclass(frozen=True, slots=True)
class ResidentTensor:
    """A tensor whole in SRAM at ``[addr, addr + nbytes)`` from op ``first`` to op ``last``."""

    name: str
    addr: int
    nbytes: int
    first: int
    last: int
    alias_of: str = ""  # the input whose bytes it takes over in place at op ``first``


@dataclass(frozen=True, slots=True)
class Cascade:
    """Resident tensors, each op's window ``[lo, hi)`` for its own buffers, and a note per op."""

    tensors: tuple[ResidentTensor, ...]
    windows: tuple[tuple[int, int], ...]
    notes: tuple[str, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tensors)

    def live_at(self, index: int) -> list[ResidentTensor]:
        """Resident tensors live while op ``index`` runs."""
        return [t for t in self.tensors if t.first <= index <= t.last]

    def live_bytes(self, index: int) -> int:
        """SRAM bytes the resident tensors live at op ``index`` occupy (in-place pairs once)."""
        return sum(nbytes for _, nbytes in {(t.addr, t.nbytes) for t in self.live_at(index)})


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _free(taken: list[tuple[int, int]], top: int) -> list[tuple[int, int]]:
    """Free ranges of ``[0, top)`` outside ``taken``, in address order."""
    out, addr = [], 0
    for lo, hi in sorted(taken):
        if lo > addr:
            out.append((addr, lo))
        addr = max(addr, hi)
    if addr < top:
        out.append((addr, top))
    return out


def _windows(tensors: list[ResidentTensor], n_ops: int, top: int) -> list[tuple[int, int]]:
    """Per op, the largest SRAM range no live resident tensor touches."""
    wins = []
    for i in range(n_ops):
        live = [(t.addr, t.addr + t.nbytes) for t in tensors if t.first <= i <= t.last]
        wins.append(max(_free(live, top), key=lambda r: (r[1] - r[0], r[0]), default=(0, 0)))
    return wins


def _place(tensors: list[ResidentTensor], nbytes: int, first: int, last: int, top: int) -> int:
    """Highest address where ``nbytes`` fit beside the tensors live in ``[first, last]`` (-1)."""
    live = [(t.addr, t.addr + t.nbytes) for t in tensors if t.first <= last and first <= t.last]
    gaps = [g for g in _free(live, top) if g[1] - g[0] >= nbytes]
    return gaps[-1][1] - nbytes if gaps else -1


def _alias_slots(
    graph: NpuGraph, tensors: list[ResidentTensor], size: int, first: int, last: int
) -> list[tuple[int, str]]:
    """``(addr, input)``: slots of resident inputs of op ``first`` its output may take over.

    The input must be read for the last time by that op, have the output's
    shape and element size (so each chunk is exactly in place), and no other
    resident tensor live in ``[first, last]`` may touch its bytes.
    """
    op = graph.ops[first]
    if not isinstance(op, _OVERWRITE):
        return []
    slots = []
    for t in op_inputs(op):
        if t.shape != op.ofm.shape or t.itemsize != op.ofm.itemsize:
            continue
        for r in tensors:
            if r.name != t.name or r.last != first or r.nbytes != size:
                continue
            clash = any(
                o.name != r.name
                and o.first <= last
                and first <= o.last
                and o.addr < r.addr + size
                and r.addr < o.addr + o.nbytes
                for o in tensors
            )
            if not clash:
                slots.append((r.addr, r.name))
    return slots


def candidates(graph: NpuGraph) -> list[tuple[str, int, int, int]]:
    """``(tensor, nbytes, producer, last consumer)`` of the tensors that may stay in SRAM."""
    io = {t.name for t in (*graph.inputs, *graph.outputs)}
    made: dict[str, int] = {}
    users: dict[str, list[int]] = {}
    for i, op in enumerate(graph.ops):
        for t in op_inputs(op):
            users.setdefault(t.name, []).append(i)
        made[op.ofm.name] = i
    out = []
    for i, op in enumerate(graph.ops):
        name = op.ofm.name
        uses = users.get(name, [])
        if name in io or not uses or not isinstance(op, (*_IN_PLACE, NpuTapConv2d)):
            continue
        if all(isinstance(graph.ops[j], _IN_PLACE) for j in uses):
            out.append((name, op.ofm.nbytes, i, max(uses)))
    return out


def plan_dram_bytes(plan: OpPlan) -> int:
    """DRAM bytes every DMA of ``plan`` moves (its steps made with every address 0)."""
    zero: Mapping[str, int] = _Zero()
    return sum(dram_bytes_moved(s) for s in plan.make_steps(zero, zero))


class _Zero(dict[str, int]):
    """Every address 0: enough to count the bytes a plan's DMAs move."""

    def __missing__(self, key: str) -> int:
        return 0

    def get(self, key: str, default: object = None) -> int:
        return 0


def _note(op: NpuOp, graph: NpuGraph, tensors: tuple[ResidentTensor, ...]) -> str:
    resident = frozenset(t.name for t in tensors)
    parts = []
    producers = {o.ofm.name: o.name for o in graph.ops}
    for t in op_inputs(op):
        if t.name in resident:
            parts.append(f"reads {t.name} from SRAM (cascaded with {producers[t.name]})")
    alias = {t.name: t.alias_of for t in tensors}.get(op.ofm.name, "")
    if alias:
        parts.append(f"writes its output in place over {alias}")
    if op.ofm.name in resident:
        users = [o.name for o in graph.ops if op.ofm.name in {t.name for t in op_inputs(o)}]
        parts.append(f"output stays in SRAM for {', '.join(users)}")
    return "; ".join(parts)


def plan_cascade(
    graph: NpuGraph, top: int, plan: Planner, *, enabled: bool = True
) -> tuple[Cascade, list[OpPlan]]:
    """Choose the resident tensors (module rule) and plan every op accordingly.

    ``top``: SRAM bytes usable (64-byte aligned). With ``enabled`` False no
    tensor is resident and every op's window is ``[0, top)``. Raises what
    ``plan`` raises for an op that does not fit even without cascading.
    """
    n = len(graph.ops)
    memo: dict[tuple[int, int, frozenset[str]], tuple[OpPlan, int]] = {}

    def planned(i: int, budget: int, resident: frozenset[str]) -> tuple[OpPlan, int]:
        op = graph.ops[i]
        mine = frozenset(t.name for t in (*op_inputs(op), op.ofm) if t.name in resident)
        key = (i, budget, mine)
        if key not in memo:
            p = plan(i, budget, mine)
            memo[key] = (p, plan_dram_bytes(p))
        return memo[key]

    tensors: list[ResidentTensor] = []
    current = [planned(i, top, frozenset()) for i in range(n)]

    def keep(name: str, size: int, first: int, last: int, addr: int, alias: str) -> bool:
        """Make the tensor resident at ``addr`` if its span still plans and it pays (rule)."""
        nonlocal tensors
        trial = [*tensors, ResidentTensor(name, addr, size, first, last, alias)]
        wins = _windows(trial, n, top)
        names = frozenset(t.name for t in trial)
        span = range(first, last + 1)
        try:
            new = {i: planned(i, wins[i][1] - wins[i][0], names) for i in span}
        except UnsupportedError:
            return False
        old_c = sum(current[i][0].est_cycles for i in span)
        new_c = sum(new[i][0].est_cycles for i in span)
        old_d = sum(current[i][1] for i in span)
        new_d = sum(new[i][1] for i in span)
        if (new_d < old_d and new_c <= old_c * (1 + CASCADE_TOLERANCE)) or (
            new_c < old_c and new_d <= old_d
        ):
            tensors = trial
            for i in span:
                current[i] = new[i]
            return True
        return False

    def attempt(name: str, nbytes: int, first: int, last: int) -> bool:
        size = _align(nbytes)
        for addr, alias in _alias_slots(graph, tensors, size, first, last):
            if keep(name, size, first, last, addr, alias):
                return True
        addr = _place(tensors, size, first, last, top)
        return addr >= 0 and keep(name, size, first, last, addr, "")

    # densest first: most bytes per op of span (a big tensor used at once beats a long-lived one)
    cands = sorted(candidates(graph) if enabled else [], key=lambda c: -c[1] / (c[3] - c[2] + 1))
    rejected = [c for c in cands if not attempt(*c)]
    for c in rejected:  # second chance, in place over inputs made resident after it was tried
        if _alias_slots(graph, tensors, _align(c[1]), c[2], c[3]):
            attempt(*c)
    wins = _windows(tensors, n, top)
    notes = tuple(_note(op, graph, tuple(tensors)) for op in graph.ops)
    return Cascade(tuple(tensors), tuple(wins), notes), [p for p, _ in current]
