"""Lowering of data movement (concat, slice, reshape) to DMA box copies through SRAM.

Requires: a validated :class:`NpuConcat`, :class:`NpuSlice` or :class:`NpuReshape`
(same quantization on both sides, so bytes move unchanged).
Guarantees: each piece is a 3-D box ``(rows, w, c)`` copied from one DRAM
tensor to another through double-buffered SRAM chunks of whole rows, with
strided DMA descriptors on both sides (channel slices become strided runs;
whole-row boxes collapse to contiguous runs). Transpose, pad and resize are
not implemented yet (UnsupportedError at planning time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from npuc.backend.npu import encode
from npuc.backend.npu.allocate import Buffer
from npuc.backend.npu.ops import NpuConcat, NpuOp, NpuReshape, NpuSlice
from npuc.backend.npu.perf import TileCost, dma_cycles, pipeline_cycles
from npuc.backend.npu.plan import OpPlan
from npuc.backend.npu.schedule import Step
from npuc.backend.npu.tiling import align
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import HwConfig

MoveOp: TypeAlias = NpuConcat | NpuSlice | NpuReshape


@dataclass(frozen=True, slots=True)
class BoxCopy:
    """Copy box ``(rows, w, c)`` from ``src`` at ``src_at`` to ``dst`` at ``dst_at`` (h, w, c)."""

    src: str
    src_hwc: tuple[int, int, int]
    src_at: tuple[int, int, int]
    dst: str
    dst_hwc: tuple[int, int, int]
    dst_at: tuple[int, int, int]
    box: tuple[int, int, int]


def _flat_view(n: int) -> tuple[int, int, int]:
    r = max(d for d in range(1, min(n, 8192) + 1) if n % d == 0)
    return (n // r, 1, r)


def pieces(op: MoveOp) -> list[BoxCopy]:
    """The box copies implementing ``op``."""
    if isinstance(op, NpuReshape):
        v = _flat_view(op.ifm.elements)
        return [BoxCopy(op.ifm.name, v, (0, 0, 0), op.ofm.name, v, (0, 0, 0), v)]
    if isinstance(op, NpuSlice):
        _, h0, w0, c0 = op.begin
        return [
            BoxCopy(
                op.ifm.name,
                op.ifm.hwc,
                (h0, w0, c0),
                op.ofm.name,
                op.ofm.hwc,
                (0, 0, 0),
                op.ofm.hwc,
            )
        ]
    out = []
    offset = 0
    for t in op.ifms:
        at = [0, 0, 0]
        at[op.axis - 1] = offset
        out.append(BoxCopy(t.name, t.hwc, (0, 0, 0), op.ofm.name, op.ofm.hwc, tuple(at), t.hwc))  # type: ignore[arg-type]
        offset += t.shape[op.axis]
    return out


def _descriptor(
    p: BoxCopy, rows: int, isz: int, r0: int
) -> tuple[int, int, encode.Box, encode.Box]:
    (_, sw, sc), (_, dw, dc) = p.src_hwc, p.dst_hwc
    _, bw, bc = p.box
    s_off = (((p.src_at[0] + r0) * sw + p.src_at[1]) * sc + p.src_at[2]) * isz
    d_off = (((p.dst_at[0] + r0) * dw + p.dst_at[1]) * dc + p.dst_at[2]) * isz
    if bc == sc == dc:  # whole pixels: a box row is one run of bw * bc
        run = bw * bc * isz
        src = encode.Box(1, rows, run, sw * sc * isz, 0, run, 0)
        dst = encode.Box(1, rows, run, dw * dc * isz, 0, run, 0)
    else:
        run = bc * isz
        src = encode.Box(rows, bw, run, sc * isz, sw * sc * isz, run, bw * run)
        dst = encode.Box(rows, bw, run, dc * isz, dw * dc * isz, run, bw * run)
    return s_off, d_off, src, dst


@dataclass(frozen=True, slots=True)
class Transfer:
    """One DMA between DRAM tensor/constant ``dram`` (+ ``offset``) and SRAM (+ ``sram_offset``)."""

    dram: str
    offset: int
    box: encode.Box
    sram_offset: int = 0


@dataclass(frozen=True, slots=True)
class Hop:
    """Loads into one SRAM buffer, then stores out of it.

    ``buffer`` names a fixed buffer (e.g. a fill pattern kept for the whole
    op); ``None`` means the next of the op's double-buffered chunk slots.
    """

    loads: tuple[Transfer, ...]
    stores: tuple[Transfer, ...]
    nbytes: int
    buffer: str | None = None


def _box_cycles(hw: HwConfig, b: encode.Box) -> int:
    return dma_cycles(
        hw,
        row_bytes=b.row_bytes,
        row_count=b.rows,
        plane_count=b.planes,
        dram_row_stride_bytes=b.dram_row_stride,
        dram_plane_stride_bytes=b.dram_plane_stride,
    )


def plan_hops(
    op: NpuOp,
    hw: HwConfig,
    hops: list[Hop],
    tiling: str,
    constants: tuple[tuple[str, np.ndarray], ...] = (),
) -> OpPlan:
    """The plan of a pure data-movement op given as hops (slots alternate: double buffering)."""
    rotating = [h for h in hops if h.buffer is None]
    depth = 2 if len(rotating) > 1 else 1
    bufs = [
        Buffer(f"buf{d}", align(max(h.nbytes for h in rotating)), 0, 1)
        for d in range(depth if rotating else 0)
    ]
    fixed = {h.buffer: align(h.nbytes) for h in hops if h.buffer is not None}
    bufs += [Buffer(name, size, 0, 1) for name, size in sorted(fixed.items())]
    costs = [
        TileCost(
            sum(_box_cycles(hw, t.box) for t in h.loads),
            0,
            sum(_box_cycles(hw, t.box) for t in h.stores),
        )
        for h in hops
    ]

    def make_steps(dram: Mapping[str, int], sram: Mapping[str, int]) -> list[Step]:
        steps: list[Step] = []
        k = 0
        for h in hops:
            if h.buffer is None:
                base = sram[f"buf{k % depth}"]
                k += 1
            else:
                base = sram[h.buffer]
            for t in h.loads:
                steps += encode.dma(
                    True, dram[t.dram] + t.offset, base + t.sram_offset, t.box, op.name
                )
            for t in h.stores:
                steps += encode.dma(
                    False, dram[t.dram] + t.offset, base + t.sram_offset, t.box, op.name
                )
        return steps

    return OpPlan(
        op.name,
        type(op).__name__,
        constants,
        tuple(bufs),
        pipeline_cycles(costs),
        tiling,
        0,
        make_steps,
    )


def chunk_rows(row_bytes: int, rows: int, sram_budget: int, name: str, reserved: int = 0) -> int:
    """Rows per chunk so that two chunk buffers (+ ``reserved``) fit the budget."""
    fit = ((sram_budget - reserved) // 2 - 64) // max(row_bytes, 1)
    if fit < 1:
        raise UnsupportedError(
            f"NPU op {name!r}: one row ({row_bytes} bytes) does not fit SRAM twice",
            hint="use a hardware config with more SRAM",
        )
    return min(fit, rows)


def box_hops(ps: list[BoxCopy], isz: int, rows_per: int) -> list[Hop]:
    """Box copies cut into hops of at most ``rows_per`` box rows."""
    hops = []
    for p in ps:
        for r0 in range(0, p.box[0], rows_per):
            rows = min(rows_per, p.box[0] - r0)
            s_off, d_off, src, dst = _descriptor(p, rows, isz, r0)
            hops.append(
                Hop(
                    (Transfer(p.src, s_off, src),),
                    (Transfer(p.dst, d_off, dst),),
                    rows * p.box[1] * p.box[2] * isz,
                )
            )
    return hops


def plan_move(op: MoveOp, hw: HwConfig, sram_budget: int) -> OpPlan:
    """Split the op into box copies chunked by rows; return the plan."""
    isz = op.ofm.itemsize
    ps = pieces(op)
    row_bytes = max(p.box[1] * p.box[2] * isz for p in ps)
    rows = chunk_rows(row_bytes, max(p.box[0] for p in ps), sram_budget, op.name)
    hops = box_hops(ps, isz, rows)
    return plan_hops(op, hw, hops, f"{len(hops)} box copy chunk(s) of up to {rows} row(s)")
