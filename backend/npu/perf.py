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


def _same(a: TileCost, b: TileCost) -> bool:
    return a is b or a == b


def pipeline_cycles(tiles: Sequence[TileCost], *, depth: int = 2) -> int:
    """Makespan of tiles through DMA-in -> compute -> DMA-out with ``depth`` buffers each.

    Tile ``t``'s load reuses the buffer of tile ``t - depth`` (waits for its
    compute); its compute waits for its load and for the store of tile
    ``t - depth`` (output buffer reuse); stores run in order.

    Runs of equal tiles are skipped over once they reach a steady state: every
    end time here is a max of earlier end times plus a cost, so when the last
    ``depth`` end times of each unit all moved by the same ``c`` over one period
    of ``p`` equal tiles, each further period of those tiles moves them by ``c``
    again. The result is exactly the tile-by-tile one; a long run of equal tiles
    (the usual tiling) costs a few steps instead of one per tile.
    """
    n = len(tiles)
    # End times of the last ``depth`` tiles (oldest first); 0 before the first tile.
    load = [0] * depth
    comp = [0] * depth
    store = [0] * depth
    history: list[tuple[int, ...]] = []  # state after each tile of the current run
    t = 0
    while t < n:
        cost = tiles[t]
        if t and not _same(cost, tiles[t - 1]):
            history.clear()
        ld = max(load[-1], comp[0]) + cost.load
        cp = max(comp[-1], ld, store[0]) + cost.compute
        st = max(store[-1], cp) + cost.store
        load = [*load[1:], ld]
        comp = [*comp[1:], cp]
        store = [*store[1:], st]
        t += 1
        state = (*load, *comp, *store)
        history.append(state)
        for p in range(1, min(len(history) - 1, depth + 1) + 1):
            shift = state[0] - history[-1 - p][0]
            if any(a - b != shift for a, b in zip(state, history[-1 - p], strict=True)):
                continue
            run = t
            while run < n and _same(tiles[run], cost):
                run += 1
            periods = (run - t) // p
            if periods:
                t += periods * p
                moved = periods * shift
                load = [v + moved for v in load]
                comp = [v + moved for v in comp]
                store = [v + moved for v in store]
                history.clear()
            break
    return store[-1] if n else 0
