"""SRAM hazards (spec section 6): unordered accesses by two units, whatever the timing.

The random-program test derives the happens-before relation statically from
the program (same-unit order plus FIFO-matched tokens, then transitive
closure) and checks the simulator reports a hazard exactly when some pair of
conflicting accesses on different units is unordered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core.errors import SimulatorFault
from npuc.core.hw.config import NPU_M
from npuc.core.isa.builder import ProgramBuilder
from npuc.core.isa.types import Unit
from npuc.npu_sim import simulate

DMA_IN, MAC, ITP, DMA_OUT = (1 << int(u) for u in Unit)
SLOT = 64  # bytes per SRAM slot in the random programs
SLOTS = 4


def requant(src: int, dst: int, count: int = SLOT, **kw: int) -> dict[str, int]:
    return dict(
        ifm_addr=src,
        ifm_dtype=0,
        ofm_addr=dst,
        ofm_dtype=0,
        count=count,
        ofm_multiplier=1,
        post_shift=0,
        **kw,
    )


def test_hazard_hidden_by_timing_is_still_reported() -> None:
    """DMA-in writes A long before the ITP reads it, but no token orders the two."""
    b = ProgramBuilder(NPU_M)
    b.emit("dma_load", dram_addr=0, sram_addr=0, row_bytes=SLOT)  # ~104 cycles, signals nobody
    b.emit("requant", **requant(0x1000, 0x20000, count=100_000))  # ~3,000 cycles on the ITP
    b.emit("requant", **requant(0, 0x100))  # reads A at cycle ~3,000: stale on hardware
    with pytest.raises(
        SimulatorFault,
        match=r"data race: instruction 2 \(requant\) input \(read\) and instruction 0 "
        r"\(dma_load\) destination \(write\) touch SRAM byte 0x0 and no chain of tokens",
    ):
        simulate(b.build(), {}, b.hw)


def test_chain_through_a_third_unit_orders_the_accesses() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit("dma_load", dram_addr=0, sram_addr=0, row_bytes=SLOT, signal=MAC)
    b.emit("sync", unit=int(Unit.MAC), wait=DMA_IN, signal=ITP)
    b.emit("requant", **requant(0, 0x100), wait=MAC)
    result = simulate(b.build(), {}, b.hw)
    assert result.hazards == ()


def test_write_after_read_needs_a_token_back() -> None:
    """DMA-out stores A while the ITP overwrites A later without waiting for it."""

    def program(token_back: bool) -> ProgramBuilder:
        b = ProgramBuilder(NPU_M)
        b.emit("requant", **requant(0x1000, 0, signal=DMA_OUT))
        back = dict(signal=ITP) if token_back else {}
        b.emit("dma_store", dram_addr=0x1000, sram_addr=0, row_bytes=SLOT, wait=ITP, **back)
        # overwrites A: without the token back nothing says the store is done
        b.emit("requant", **requant(0x1000, 0, wait=DMA_OUT if token_back else 0))
        return b

    b = program(token_back=False)
    with pytest.raises(SimulatorFault, match=r"instruction 2 \(requant\) output \(write\) and "):
        simulate(b.build(), {}, b.hw)
    b = program(token_back=True)
    assert simulate(b.build(), {}, b.hw).hazards == ()


def test_same_unit_and_disjoint_bytes_are_not_hazards() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit("requant", **requant(0x1000, 0))
    b.emit("requant", **requant(0, 0x100))  # same unit: in order
    # DMA-in writes the odd 16-byte rows, DMA-out reads the even ones at the same time
    b.emit(
        "dma_load",
        dram_addr=0,
        sram_addr=0x2010,
        row_bytes=16,
        row_count=8,
        sram_row_stride_bytes=32,
    )
    b.emit(
        "dma_store",
        dram_addr=0x8000,
        sram_addr=0x2000,
        row_bytes=16,
        row_count=8,
        dram_row_stride_bytes=16,
        sram_row_stride_bytes=32,
    )
    assert simulate(b.build(), {}, b.hw).hazards == ()


def test_report_mode_lists_every_hazard_and_runs_on() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit("dma_load", dram_addr=0, sram_addr=0, row_bytes=SLOT)
    b.emit("requant", **requant(0, 0x100))
    b.emit("dma_store", dram_addr=0x1000, sram_addr=0x100, row_bytes=SLOT)
    result = simulate(b.build(), {}, b.hw, fault_on_hazard=False)
    pairs = {(h.first_index, h.second_index) for h in result.hazards}
    assert pairs == {(0, 1), (1, 2)}
    assert all(h.first_write != h.second_write for h in result.hazards)


def test_many_tokens_stay_cheap_and_ordered() -> None:
    """A long double-buffered pipeline (thousands of tokens) is hazard-free and runs through.

    Load t fills input buffer t % 2 once requant t - 2 has read it; requant t
    writes output buffer t % 2 once store t - 2 has read it.
    """
    b = ProgramBuilder(NPU_M)
    tiles = 300
    for t in range(tiles):
        buf = (t % 2) * 0x1000
        later = t >= 2
        b.emit(
            "dma_load",
            dram_addr=0,
            sram_addr=buf,
            row_bytes=SLOT,
            wait=ITP if later else 0,
            signal=ITP,
        )
        b.emit(
            "requant",
            **requant(
                buf,
                0x4000 + buf,
                wait=DMA_IN | (DMA_OUT if later else 0),
                signal=DMA_IN | DMA_OUT,
            ),
        )
        b.emit(
            "dma_store",
            dram_addr=0x10000 + t * SLOT,
            sram_addr=0x4000 + buf,
            row_bytes=SLOT,
            wait=ITP,
            signal=ITP,
        )
    result = simulate(b.build(), {}, b.hw, fault_on_hazard=False)
    assert result.hazards == ()
    assert result.stats.instructions == 3 * tiles


# ----------------------------------------------------------------------------- random programs


@dataclass(frozen=True)
class Step:
    unit: int
    reads: frozenset[int]
    writes: frozenset[int]
    wait: int
    signal: int


def _emit(b: ProgramBuilder, kind: str, slots: tuple[int, int, int], step: Step, n: int) -> None:
    a, c, d = (s * SLOT for s in slots)
    tokens = dict(wait=step.wait, signal=step.signal)
    if kind == "load":
        b.emit("dma_load", dram_addr=0, sram_addr=a, row_bytes=SLOT, **tokens)
    elif kind == "store":
        b.emit("dma_store", dram_addr=0x1000 + n * SLOT, sram_addr=a, row_bytes=SLOT, **tokens)
    elif kind == "requant":
        b.emit("requant", **requant(a, c, **tokens))
    elif kind == "fc":
        b.emit(
            "fc",
            ifm_addr=a,
            ifm_n=1,
            ifm_k=SLOT,
            ifm_dtype=0,
            ofm_addr=d,
            ofm_c=1,
            ofm_dtype=0,
            w_addr=c,
            post_shift=0,
            **tokens,
        )
    else:
        b.emit("sync", unit=step.unit, **tokens)


KIND_UNIT = {"load": Unit.DMA_IN, "fc": Unit.MAC, "requant": Unit.ITP, "store": Unit.DMA_OUT}


@st.composite
def programs(draw: st.DrawFn) -> tuple[ProgramBuilder, list[Step]]:
    """Random 2-10 instruction programs over 4 SRAM slots with random tokens.

    A unit waits only for tokens already signalled earlier in program order
    (so the programs do not deadlock and the comparison is informative).
    """
    b = ProgramBuilder(NPU_M)
    steps: list[Step] = []
    pending = np.zeros((4, 4), dtype=int)  # pending[p, c]: tokens p -> c not yet waited for
    for n in range(draw(st.integers(2, 10))):
        kind = draw(st.sampled_from(["load", "store", "requant", "fc", "sync"]))
        unit = int(KIND_UNIT[kind]) if kind in KIND_UNIT else draw(st.integers(0, 3))
        others = [u for u in range(4) if u != unit]
        wait = sum(1 << p for p in others if pending[p, unit] and draw(st.booleans()))
        signal = sum(1 << c for c in others if draw(st.booleans()))
        for p in others:
            pending[p, unit] -= wait >> p & 1
        for c in others:
            pending[unit, c] += signal >> c & 1
        slots = tuple(draw(st.permutations(range(SLOTS)))[:3])
        reads, writes = {
            "load": ((), (slots[0],)),
            "store": ((slots[0],), ()),
            "requant": ((slots[0],), (slots[1],)),
            "fc": ((slots[0], slots[1]), (slots[2],)),
            "sync": ((), ()),
        }[kind]
        step = Step(unit, frozenset(reads), frozenset(writes), wait, signal)
        _emit(b, kind, slots, step, n)  # type: ignore[arg-type]
        steps.append(step)
    return b, steps


def happens_before(steps: list[Step]) -> np.ndarray:
    """hb[i, j]: instruction i is ordered before j by unit order and FIFO-matched tokens.

    The k-th wait of unit c for unit p consumes the token of the k-th instruction
    of p (in program order) that signals c.
    """
    n = len(steps)
    hb = np.zeros((n, n), dtype=bool)
    pushed: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(steps):
        for c in range(4):
            if s.signal >> c & 1:
                pushed.setdefault((s.unit, c), []).append(i)
    last_on: dict[int, int] = {}
    consumed: dict[tuple[int, int], int] = {}
    for j, s in enumerate(steps):
        if s.unit in last_on:
            hb[last_on[s.unit], j] = True
        last_on[s.unit] = j
        for p in range(4):
            if s.wait >> p & 1:
                k = consumed.get((p, s.unit), 0)
                consumed[(p, s.unit)] = k + 1
                queue = pushed.get((p, s.unit), [])
                if k < len(queue):  # always, for programs() never waits ahead of a signal
                    hb[queue[k], j] = True
    for k in range(n):  # transitive closure (Warshall)
        hb |= hb[:, k : k + 1] & hb[k : k + 1, :]
    return hb


def expect_hazard(steps: list[Step]) -> bool:
    hb = happens_before(steps)
    for i, a in enumerate(steps):
        for j, c in enumerate(steps):
            if i >= j or a.unit == c.unit:
                continue
            conflict = (a.writes & (c.reads | c.writes)) or (c.writes & a.reads)
            if conflict and not (hb[i, j] or hb[j, i]):
                return True
    return False


@settings(max_examples=300, deadline=None)
@given(programs())
def test_hazard_reported_iff_some_conflicting_pair_is_unordered(
    program: tuple[ProgramBuilder, list[Step]],
) -> None:
    b, steps = program
    result = simulate(b.build(), {}, b.hw, fault_on_hazard=False)
    assert bool(result.hazards) == expect_hazard(steps)
    if result.hazards:
        with pytest.raises(SimulatorFault, match="data race"):
            simulate(b.build(), {}, b.hw)
