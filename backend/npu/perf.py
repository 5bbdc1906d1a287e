"""The compiler's own cycle estimate (what tiling decisions use).

Restates the spec's cost rules (docs/npu_isa.md, section "timing") from the
hardware config alone; it does not import the simulator, so comparing the
two (docs/npu_compiler.md) measures how far the compiler's model is from an
execution.

- DMA: ``dma_latency_cycles + ceil(sum over maximal contiguous DRAM runs of
  max(run, dma_burst_bytes) / dram_bytes_per_cycle)``.
- MAC: ``mac_pipeline_fill_cycles + folds * max(pixels (x2 for int16), mac_rows)``.
- ITP: ``itp_fill_cycles + ceil(work / itp_lanes)``.
- A tiled op runs as a software pipeline over its tiles with double-buffered
  input and output buffers: :func:`pipeline_cycles`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from npuc.core.hw.config import HwConfig


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative ``a`` and positive ``b``."""
    return -(-a // b)


def dma_cycles(
    hw: HwConfig,
    *,
    row_bytes: int,
    row_count: int = 1,
    plane_count: int = 1,
    dram_row_stride_bytes: int = 0,
    dram_plane_stride_bytes: int = 0,
) -> int:
    """Cycles of one DMA descriptor (runs that are adjacent in DRAM merge)."""
    if row_count == 1 or dram_row_stride_bytes == row_bytes:
        plane_run, runs_per_plane = row_bytes * row_count, 1
    else:
        plane_run, runs_per_plane = row_bytes, row_count
    if runs_per_plane == 1 and (plane_count == 1 or dram_plane_stride_bytes == plane_run):
        billed = max(plane_run * plane_count, hw.dma_burst_bytes)
    else:
        billed = plane_count * runs_per_plane * max(plane_run, hw.dma_burst_bytes)
    return hw.dma_latency_cycles + ceil_div(billed, hw.dram_bytes_per_cycle)


def conv_cycles(
    hw: HwConfig,
    *,
    out_pixels: int,
    cout: int,
    cin: int,
    kh: int,
    kw: int,
    depthwise: bool,
    int16_ifm: bool,
) -> int:
    """Cycles of one CONV instruction over ``out_pixels`` output pixels."""
    cin_blocks = 1 if depthwise else ceil_div(cin, hw.mac_cols)
    folds = ceil_div(cout, hw.mac_rows) * cin_blocks * kh * kw
    stream = out_pixels * (2 if int16_ifm else 1)
    return hw.mac_pipeline_fill_cycles + folds * max(stream, hw.mac_rows)


def itp_cycles(hw: HwConfig, *, work: int) -> int:
    """Cycles of one ITP instruction doing ``work`` element operations."""
    return hw.itp_fill_cycles + ceil_div(work, hw.itp_lanes)


@dataclass(frozen=True, slots=True)
class TileCost:
    """Unit cycles of one tile: loads before compute, compute, stores after."""

    load: int
    compute: int
    store: int


def pipeline_cycles(tiles: Sequence[TileCost], *, depth: int = 2) -> int:
    """Makespan of tiles through DMA-in -> compute -> DMA-out with ``depth`` buffers each.

    Tile ``t``'s load reuses the buffer of tile ``t - depth`` (waits for its
    compute); its compute waits for its load and for the store of tile
    ``t - depth`` (output buffer reuse); stores run in order.
    """
    load_end: list[int] = []
    comp_end: list[int] = []
    store_end: list[int] = []
    for t, cost in enumerate(tiles):
        prev_load = load_end[-1] if load_end else 0
        reuse = comp_end[t - depth] if t >= depth else 0
        load_end.append(max(prev_load, reuse) + cost.load)
        prev_comp = comp_end[-1] if comp_end else 0
        out_reuse = store_end[t - depth] if t >= depth else 0
        comp_end.append(max(prev_comp, load_end[t], out_reuse) + cost.compute)
        prev_store = store_end[-1] if store_end else 0
        store_end.append(max(prev_store, comp_end[t]) + cost.store)
    return store_end[-1] if store_end else 0
