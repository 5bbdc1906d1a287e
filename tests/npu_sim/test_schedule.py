"""Property: on random token programs the schedule is exactly the one the token rules define.

Programs are random SYNC/ITP-free instruction streams (SYNCs on random units
with random wait/signal masks, kept deadlock-free by only waiting for tokens
already signalled earlier in program order). From the program alone the test
pairs the k-th wait on (producer -> consumer) with the k-th signal on that
pair, and checks every instruction starts exactly at
``max(previous end on its unit, end of each paired producer)``.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core.hw.config import NPU_M
from npuc.core.isa.builder import ProgramBuilder
from npuc.npu_sim import simulate


@st.composite
def token_programs(draw: st.DrawFn) -> list[tuple[int, int, int, int]]:
    """``(unit, wait, signal, dma_bytes)`` per instruction; DMA instructions have a duration."""
    pending: dict[tuple[int, int], int] = defaultdict(int)
    out = []
    for _ in range(draw(st.integers(1, 25))):
        unit = draw(st.sampled_from([0, 1, 2, 3]))
        wait = 0
        for p in range(4):
            if p != unit and pending[(p, unit)] and draw(st.booleans()):
                wait |= 1 << p
                pending[(p, unit)] -= 1
        signal = 0
        for c in range(4):
            if c != unit and draw(st.integers(0, 3)) == 0:
                signal |= 1 << c
                pending[(unit, c)] += 1
        size = draw(st.sampled_from([0, 64, 640])) if unit in (0, 3) else 0
        out.append((unit, wait, signal, size))
    return out


@settings(max_examples=150, deadline=None)
@given(token_programs())
def test_start_cycles_follow_the_token_rules(spec: list[tuple[int, int, int, int]]) -> None:
    b = ProgramBuilder(NPU_M)
    for i, (unit, wait, signal, size) in enumerate(spec):
        if unit == 0 and size:
            b.emit(
                "dma_load",
                wait=wait,
                signal=signal,
                dram_addr=1 << 20,
                sram_addr=1024 * i,
                row_bytes=size,
            )
        elif unit == 3 and size:
            b.emit(
                "dma_store",
                wait=wait,
                signal=signal,
                dram_addr=1024 * i,
                sram_addr=0x40000,
                row_bytes=size,
            )
        else:
            b.emit("sync", unit=unit, wait=wait, signal=signal)
    result = simulate(b.build(), {}, b.hw, trace=True)
    spans = {e["args"]["index"]: e["args"] for e in result.trace_events if e["ph"] == "X"}
    assert sorted(spans) == list(range(len(spec)))
    signalled: dict[tuple[int, int], list[int]] = defaultdict(list)  # pair -> producer indices
    consumed: dict[tuple[int, int], int] = defaultdict(int)
    last_end = [0, 0, 0, 0]
    for i, (unit, wait, signal, _) in enumerate(spec):
        expected = last_end[unit]
        for p in range(4):
            if wait >> p & 1:
                producer = signalled[(p, unit)][consumed[(p, unit)]]
                consumed[(p, unit)] += 1
                expected = max(expected, spans[producer]["end_cycle"])
        assert spans[i]["start_cycle"] == expected, i
        last_end[unit] = spans[i]["end_cycle"]
        for c in range(4):
            if signal >> c & 1:
                signalled[(unit, c)].append(i)
    assert result.stats.total_cycles == max(last_end)
