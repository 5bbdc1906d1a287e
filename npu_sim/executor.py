"""Event-driven execution of an instruction stream on the four units.

Model (docs/npu_sim.md): the dispatcher sends every instruction, in program
order, to its unit's in-order queue (queues are unbounded, so dispatch never
blocks). Tokens are counters per ordered (producer, consumer) unit pair; each
token remembers the cycle it was pushed. A unit's head instruction can start
once every unit named in its ``wait`` mask has pushed a token it has not yet
consumed; it starts at ``max(unit free, arrival of the tokens it consumes)``
and occupies the unit for ``timing.instruction_cycles`` cycles, then pushes
its ``signal`` tokens.

The loop always executes the ready instruction with the smallest start cycle
(ties: lowest program index), so start cycles are non-decreasing and memory
effects happen in time order. Guarantees, each a :class:`SimulatorFault`:

- deadlock: some queue is non-empty but no head instruction has its tokens;
  the message lists every blocked instruction and the tokens it waits for;
- step limit: more than ``max_steps`` instructions executed;
- data race (SRAM hazard, ``npu_sim.hazards``): two instructions on different
  units access a common SRAM byte, at least one writing, and no chain of
  tokens orders them -- whatever the simulated timing. With
  ``fault_on_hazard=False`` each such pair is recorded instead;
- data race (DRAM): two DMA instructions whose execution intervals overlap in
  time access a common DRAM byte, at least one writing;
- the per-instruction faults of ``npu_sim.ops`` (range, alignment, overlap),
  and, with ``fault_on_overflow``, the first saturation (otherwise each
  saturating instruction is recorded and reported: the sticky flag).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from npuc.core.errors import SimulatorFault
from npuc.core.hw.config import HwConfig
from npuc.core.isa.instructions import Instruction
from npuc.core.isa.types import Unit
from npuc.npu_sim import ops, timing
from npuc.npu_sim.hazards import Hazard, HazardTracker, extended, new_clock
from npuc.npu_sim.memory import Memory, regions_intersect
from npuc.npu_sim.trace import TraceRecord

UNIT_COUNT = len(Unit)


@dataclass(frozen=True, slots=True)
class OverflowRecord:
    """An instruction that saturated (accumulator, element-wise intermediate or pool sum)."""

    index: int
    mnemonic: str


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    """Raw outcome of a run: per-instruction records and totals."""

    records: tuple[TraceRecord, ...]
    overflows: tuple[OverflowRecord, ...]
    total_cycles: int
    macs: int
    dram_read_bytes: int
    dram_written_bytes: int
    hazards: tuple[Hazard, ...] = ()


@dataclass(slots=True)
class _InFlight:
    end_cycle: int
    unit: int
    index: int
    mnemonic: str
    accesses: tuple[ops.Access, ...]


def _race_check(new: _InFlight, start: int, in_flight: list[_InFlight]) -> None:
    """DRAM races: concurrent DMA instructions touching a common DRAM byte, one writing."""
    in_flight[:] = [f for f in in_flight if f.end_cycle > start]
    for other in in_flight:
        if other.unit == new.unit:
            continue
        for a in new.accesses:
            for b in other.accesses:
                if a.memory != "dram" or b.memory != "dram" or not (a.write or b.write):
                    continue
                if regions_intersect(a.region, b.region):
                    raise SimulatorFault(
                        f"data race: {a.what} ({'write' if a.write else 'read'}) and {b.what} "
                        f"({'write' if b.write else 'read'}) touch the same {a.memory.upper()} "
                        f"bytes while both run (from cycle {start}); no token orders them",
                        hint="make the later instruction wait for a token the earlier one signals",
                    )


def _rw(write: bool) -> str:
    return "write" if write else "read"


def hazard_fault(h: Hazard, instructions: tuple[Instruction, ...]) -> SimulatorFault:
    """The fault for an SRAM hazard, naming both instructions and their operands."""

    def what(index: int, write: bool) -> str:
        ins = instructions[index]
        for a in ops.list_accesses(ins, ops.fault_prefix(index, ins)):
            lo, hi = a.interval
            if a.memory == "sram" and a.write == write and lo <= h.sram_addr < hi:
                return a.what
        return ops.fault_prefix(index, ins)

    return SimulatorFault(
        f"data race: {what(h.second_index, h.second_write)} ({_rw(h.second_write)}) and "
        f"{what(h.first_index, h.first_write)} ({_rw(h.first_write)}) touch SRAM byte "
        f"{h.sram_addr:#x} and no chain of tokens orders them",
        hint="make the later instruction wait (directly or through other units) for a token "
        "the earlier one signals",
    )


def _bits(mask: int) -> tuple[int, ...]:
    """Units named by a 4-bit wait/signal mask."""
    return tuple(u for u in range(UNIT_COUNT) if mask >> u & 1)


def _deadlock(
    queues: list[deque[int]], instructions: tuple[Instruction, ...], tokens: list[list[deque[int]]]
) -> SimulatorFault:
    blocked = []
    for u, queue in enumerate(queues):
        if not queue:
            continue
        index = queue[0]
        ins = instructions[index]
        wait_mask: int = ins.wait  # type: ignore[attr-defined]  # a field of every instruction
        missing = [
            Unit(p).name for p in range(UNIT_COUNT) if wait_mask >> p & 1 and not tokens[p][u]
        ]
        blocked.append(
            f"instruction {index} ({ins.mnemonic}) on {Unit(u).name} waits for a token from "
            f"{', '.join(missing)}"
        )
    return SimulatorFault(
        "deadlock: no unit can start; " + "; ".join(blocked),
        hint="every wait needs a matching signal earlier in the producer's queue",
    )


def run_schedule(
    instructions: tuple[Instruction, ...],
    hw: HwConfig,
    sram: Memory,
    dram: Memory,
    *,
    max_steps: int,
    fault_on_overflow: bool = False,
    fault_on_hazard: bool = True,
) -> ScheduleResult:
    """Execute ``instructions`` (ending with END) functionally and in time; see module docstring."""
    queues: list[deque[int]] = [deque() for _ in range(UNIT_COUNT)]
    for index, ins in enumerate(instructions):
        unit = ins.unit
        if unit is None:
            break  # END: the program finishes when every queue has drained
        queues[int(unit)].append(index)
    waits = [_bits(ins.wait) for ins in instructions]  # type: ignore[attr-defined]
    signals = [_bits(ins.signal) for ins in instructions]  # type: ignore[attr-defined]
    # tokens[p][c]: push cycles of the tokens producer p sent consumer c, not yet consumed;
    # token_clocks[p][c]: the vector clock each of those tokens carries (npu_sim.hazards).
    tokens: list[list[deque[int]]] = [
        [deque() for _ in range(UNIT_COUNT)] for _ in range(UNIT_COUNT)
    ]
    token_clocks: list[list[deque[np.ndarray]]] = [
        [deque() for _ in range(UNIT_COUNT)] for _ in range(UNIT_COUNT)
    ]
    unit_clock = [new_clock() for _ in range(UNIT_COUNT)]
    tracker = HazardTracker(
        np.array([int(ins.unit) if ins.unit is not None else 0 for ins in instructions])
    )
    hazards: list[Hazard] = []
    unit_free = [0] * UNIT_COUNT
    records: list[TraceRecord] = []
    overflows: list[OverflowRecord] = []
    in_flight: list[_InFlight] = []
    macs = dram_read = dram_written = 0
    steps = 0
    while any(queues):
        best: tuple[int, int, int] | None = None  # (start, index, unit)
        for u, queue in enumerate(queues):
            if not queue:
                continue
            producers = waits[queue[0]]
            if any(not tokens[p][u] for p in producers):
                continue
            start = max([unit_free[u], *(tokens[p][u][0] for p in producers)])
            if best is None or (start, queue[0]) < best[:2]:
                best = (start, queue[0], u)
        if best is None:
            raise _deadlock(queues, instructions, tokens)
        steps += 1
        if steps > max_steps:
            raise SimulatorFault(
                f"step limit: more than {max_steps} instructions executed "
                f"(next: instruction {best[1]})",
                hint="raise max_steps (--max-steps) if the program is really this long",
            )
        start, index, u = best
        ins = instructions[index]
        queues[u].popleft()
        clock = unit_clock[u].copy()
        for p in waits[index]:
            tokens[p][u].popleft()
            np.maximum(clock, token_clocks[p][u].popleft(), out=clock)
        clock[u] = index
        outcome = ops.execute(index, ins, sram, dram)
        end = start + timing.instruction_cycles(ins, hw)
        sram_accesses = [a for a in outcome.accesses if a.memory == "sram"]
        clock_ext = extended(clock)
        for a in sram_accesses:
            hazard = tracker.check(index, u, clock_ext, a.region, a.write)
            if hazard is not None:
                if fault_on_hazard:
                    raise hazard_fault(hazard, instructions)
                hazards.append(hazard)
        for a in sram_accesses:
            tracker.record(index, u, a.region, a.write)
        dram_accesses = tuple(a for a in outcome.accesses if a.memory == "dram")
        if dram_accesses and end > start:
            current = _InFlight(end, u, index, ins.mnemonic, dram_accesses)
            _race_check(current, start, in_flight)
            in_flight.append(current)
        if outcome.overflow:
            if fault_on_overflow:
                raise SimulatorFault(
                    f"{ops.fault_prefix(index, ins)}: saturation (sticky overflow flag set)",
                    hint="an accumulator or intermediate left its range; check the quantization",
                )
            overflows.append(OverflowRecord(index, ins.mnemonic))
        records.append(TraceRecord(index, ins.mnemonic, u, start, end, start - unit_free[u]))
        unit_free[u] = end
        unit_clock[u] = clock
        for c in signals[index]:
            tokens[u][c].append(end)
            token_clocks[u][c].append(clock)
        macs += outcome.macs
        dram_read += outcome.dram_read_bytes
        dram_written += outcome.dram_written_bytes
    return ScheduleResult(
        records=tuple(records),
        overflows=tuple(overflows),
        total_cycles=max(unit_free),
        macs=macs,
        dram_read_bytes=dram_read,
        dram_written_bytes=dram_written,
        hazards=tuple(hazards),
    )
