"""DMA billing by maximal contiguous DRAM runs (spec section 6): hand numbers, brute force.

npu-m: 16 B/cycle, latency 100, 64-byte bursts.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core.hw.config import NPU_M, NPU_S
from npuc.core.isa.instructions import make
from npuc.npu_sim.memory import StridedRegion
from npuc.npu_sim.timing import instruction_cycles


def dma(**kw: int) -> int:
    """npu-m cycles of a dma_load with the given descriptor fields (SRAM side dense by default)."""
    fields = dict(dram_addr=0, sram_addr=0, sram_row_stride_bytes=kw["row_bytes"])
    fields.update(kw)
    return instruction_cycles(make("dma_load", **fields), NPU_M)


@pytest.mark.parametrize(
    ("fields", "cycles"),
    [
        # 4 adjacent 16-byte rows = one 64-byte run: 100 + 64/16
        (dict(row_bytes=16, row_count=4, dram_row_stride_bytes=16), 104),
        # 64 adjacent 1-byte rows = one 64-byte run
        (dict(row_bytes=1, row_count=64, dram_row_stride_bytes=1), 104),
        # the same 4 rows 32 bytes apart: 4 runs, each a full burst: 100 + 4*64/16
        (dict(row_bytes=16, row_count=4, dram_row_stride_bytes=32), 116),
        # 4 planes of one 16-byte row, planes adjacent: one 64-byte run
        (dict(row_bytes=16, plane_count=4, dram_plane_stride_bytes=16), 104),
        # 2 planes x 2 rows of 16 at row stride 32; plane stride 48 puts plane 1's first row
        # right after plane 0's last: runs [0,16) [32,64) [80,96): 100 + 3*64/16
        (
            dict(
                row_bytes=16,
                row_count=2,
                dram_row_stride_bytes=32,
                plane_count=2,
                dram_plane_stride_bytes=48,
            ),
            112,
        ),
        # a row read twice (stride 0) is two runs, not one
        (dict(row_bytes=64, row_count=2, dram_row_stride_bytes=0), 108),
        # long runs are billed by their bytes: 3 planes of 2 adjacent 100-byte rows, planes
        # 1000 apart: 3 runs of 200 bytes: 100 + ceil(600/16)
        (
            dict(
                row_bytes=100,
                row_count=2,
                dram_row_stride_bytes=100,
                plane_count=3,
                dram_plane_stride_bytes=1000,
            ),
            138,
        ),
    ],
)
def test_dma_cycles_by_maximal_runs(fields: dict[str, int], cycles: int) -> None:
    assert dma(**fields) == cycles


def test_the_sram_side_does_not_change_the_bill() -> None:
    adjacent = dict(row_bytes=16, row_count=4, dram_row_stride_bytes=16)
    assert dma(**adjacent, sram_row_stride_bytes=100) == dma(**adjacent) == 104


def test_burst_and_bandwidth_come_from_the_config() -> None:
    ins = make(
        "dma_load",
        dram_addr=0,
        sram_addr=0,
        row_bytes=1,
        row_count=64,
        dram_row_stride_bytes=1,
        sram_row_stride_bytes=1,
    )
    hw = NPU_S  # 8 B/cycle, latency 100
    assert instruction_cycles(ins, hw) == hw.dma_latency_cycles + 64 // hw.dram_bytes_per_cycle


def brute_force_runs(r: StridedRegion) -> list[int]:
    """Lengths of the maximal runs, merging rows one by one in copy order."""
    runs: list[list[int]] = []  # [start, end)
    for p in range(r.plane_count):
        for i in range(r.row_count):
            start = r.addr + p * r.plane_stride + i * r.row_stride
            if runs and runs[-1][1] == start:
                runs[-1][1] = start + r.row_bytes
            else:
                runs.append([start, start + r.row_bytes])
    return sorted(end - start for start, end in runs)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 6),
    st.integers(0, 80),
    st.integers(1, 6),
    st.integers(0, 300),
)
def test_maximal_runs_match_brute_force(
    row_bytes: int, row_count: int, row_stride: int, plane_count: int, plane_stride: int
) -> None:
    # bias strides towards the adjacent cases, which random draws rarely hit
    region = StridedRegion(7, row_bytes, row_count, row_stride, plane_count, plane_stride)
    for r in (
        region,
        StridedRegion(7, row_bytes, row_count, row_bytes, plane_count, plane_stride),
        StridedRegion(7, row_bytes, row_count, row_bytes, plane_count, row_bytes * row_count),
        StridedRegion(
            7,
            row_bytes,
            row_count,
            row_stride,
            plane_count,
            (row_count - 1) * row_stride + row_bytes,
        ),
    ):
        got = sorted(length for length, n in r.maximal_runs() for _ in range(n))
        assert got == brute_force_runs(r)
