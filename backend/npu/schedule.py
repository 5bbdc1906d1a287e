"""Scheduling: dependencies from memory accesses, then wait/signal tokens (deadlock-free).

Requires: a list of :class:`Step` (one instruction each, without tokens) in a
program order in which every producer comes before its consumers, each
listing the SRAM/DRAM byte ranges it reads and writes (a superset is fine).

Guarantees:

1. **No unordered hazard.** For every pair of steps on different units that
   touch a common byte with at least one write, the later one (in program
   order) is ordered after the earlier one by a chain of tokens (or by the
   in-order queue of one unit). Dependencies are found from the ranges:
   read-after-write, write-after-read and write-after-write.
2. **No deadlock, by construction.** Tokens are assigned with vector clocks:
   step ``j`` on unit ``c`` that must follow step ``i`` on unit ``p`` waits
   for ``p`` only if no earlier token already orders them; then ``i`` signals
   ``c``. Every wait is matched by a signal of an *earlier* step, and for each
   pair ``(p, c)`` the signalling steps and the waiting steps are both
   increasing, so the FIFO token counters pair them exactly as intended.
   Since every matched signal precedes its wait in program order, the first
   unexecuted step in program order can always start: the program never
   deadlocks.
3. No step signals a token nobody consumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from npuc.core.isa.types import Unit

UNITS = len(Unit)


@dataclass(frozen=True, slots=True)
class Access:
    """Bytes ``[lo, hi)`` of ``memory`` (``"sram"`` or ``"dram"``) read or written."""

    memory: str
    lo: int
    hi: int
    write: bool


@dataclass(frozen=True, slots=True)
class Step:
    """One instruction before token assignment: mnemonic, unit, field values, accesses."""

    mnemonic: str
    unit: Unit
    fields: Mapping[str, int]
    accesses: tuple[Access, ...]
    tag: str = ""


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A step with its token masks (bit u = unit u)."""

    step: Step
    wait: int
    signal: int


@dataclass(slots=True)
class _Record:
    access: Access
    index: int


def dependencies(steps: Sequence[Step]) -> list[list[int]]:
    """For each step, per unit, the index of the latest earlier conflicting step (-1: none).

    Same-unit conflicts are left out (a unit's queue is in order). Records are kept
    per memory and unit in program order, so each unit's scan stops at its latest
    conflict.
    """
    records: dict[str, list[list[_Record]]] = {
        "sram": [[] for _ in range(UNITS)],
        "dram": [[] for _ in range(UNITS)],
    }
    out: list[list[int]] = []
    for j, step in enumerate(steps):
        need = [-1] * UNITS
        u = int(step.unit)
        for a in step.accesses:
            for p, recs in enumerate(records[a.memory]):
                if p == u:
                    continue
                for r in reversed(recs):
                    if r.index <= need[p]:
                        break
                    if (a.write or r.access.write) and r.access.lo < a.hi and a.lo < r.access.hi:
                        need[p] = r.index
                        break
        out.append(need)
        for a in step.accesses:
            by_unit = records[a.memory]
            if a.write:
                # a later access that conflicts with a covered record also conflicts with this
                # write, which is ordered after that record: the record can go
                for recs in by_unit:
                    recs[:] = [r for r in recs if not (a.lo <= r.access.lo and r.access.hi <= a.hi)]
            by_unit[u].append(_Record(a, j))
    return out


def assign_tokens(steps: Sequence[Step]) -> list[Scheduled]:
    """Wait/signal masks for ``steps`` (see the module guarantees)."""
    need = dependencies(steps)
    clocks: list[list[int]] = []
    last_on_unit = [-1] * UNITS
    waits = [0] * len(steps)
    signals = [0] * len(steps)
    for j, step in enumerate(steps):
        c = int(step.unit)
        prev = last_on_unit[c]
        clock = list(clocks[prev]) if prev >= 0 else [-1] * UNITS
        if prev >= 0:
            clock[c] = prev
        for p in range(UNITS):
            i = need[j][p]
            if i < 0 or clock[p] >= i:
                continue
            # nothing of unit p after clock[p] signals c yet, so i's token is the next one c takes
            signals[i] |= 1 << c
            waits[j] |= 1 << p
            clock = [max(a, b) for a, b in zip(clock, clocks[i], strict=True)]
            clock[p] = max(clock[p], i)
        clocks.append(clock)
        last_on_unit[c] = j
    return [Scheduled(s, waits[j], signals[j]) for j, s in enumerate(steps)]


def replay(scheduled: Sequence[Scheduled], cycles: Sequence[int]) -> list[tuple[int, int]]:
    """``(start, end)`` of every step under the token rules, given each step's duration.

    A step starts when its unit has finished the previous step of its queue
    and every token it waits for has been pushed (the k-th signal from ``p``
    to ``c`` feeds the k-th wait of ``c`` on ``p``). This is the compiler's
    whole-program estimate when ``cycles`` come from its own cost model.
    """
    unit_free = [0] * UNITS
    pushed: dict[tuple[int, int], list[int]] = {}
    taken: dict[tuple[int, int], int] = {}
    spans = []
    for s, duration in zip(scheduled, cycles, strict=True):
        c = int(s.step.unit)
        start = unit_free[c]
        for p in range(UNITS):
            if s.wait >> p & 1:
                k = taken.get((p, c), 0)
                start = max(start, pushed[(p, c)][k])
                taken[(p, c)] = k + 1
        end = start + duration
        unit_free[c] = end
        for u in range(UNITS):
            if s.signal >> u & 1:
                pushed.setdefault((c, u), []).append(end)
        spans.append((start, end))
    return spans
