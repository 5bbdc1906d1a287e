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

from npuc.backend.npu import encode
from npuc.backend.npu.allocate import Buffer
from npuc.backend.npu.ops import NpuConcat, NpuReshape, NpuSlice
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


def plan_move(op: MoveOp, hw: HwConfig, sram_budget: int) -> OpPlan:
    """Split the op into box copies chunked by rows; return the plan."""
    isz = op.ofm.itemsize
    ps = pieces(op)
    row_bytes = max(p.box[1] * p.box[2] * isz for p in ps)
    rows_fit = (sram_budget // 2 - 64) // row_bytes
    if rows_fit < 1:
        raise UnsupportedError(
            f"NPU op {op.name!r}: one row ({row_bytes} bytes) does not fit SRAM twice"
        )
    chunk_rows = min(rows_fit, max(p.box[0] for p in ps))
    chunks = [
        (p, r0, min(chunk_rows, p.box[0] - r0)) for p in ps for r0 in range(0, p.box[0], chunk_rows)
    ]
    costs = []
    for p, r0, rows in chunks:
        _, _, src, dst = _descriptor(p, rows, isz, r0)
        costs.append(
            TileCost(
                dma_cycles(
                    hw,
                    row_bytes=src.row_bytes,
                    row_count=src.rows,
                    plane_count=src.planes,
                    dram_row_stride_bytes=src.dram_row_stride,
                    dram_plane_stride_bytes=src.dram_plane_stride,
                ),
                0,
                dma_cycles(
                    hw,
                    row_bytes=dst.row_bytes,
                    row_count=dst.rows,
                    plane_count=dst.planes,
                    dram_row_stride_bytes=dst.dram_row_stride,
                    dram_plane_stride_bytes=dst.dram_plane_stride,
                ),
            )
        )
    depth = 2 if len(chunks) > 1 else 1
    size = align(chunk_rows * row_bytes)
    bufs = tuple(Buffer(f"buf{d}", size, 0, 1) for d in range(depth))

    def make_steps(dram: Mapping[str, int], sram: Mapping[str, int]) -> list[Step]:
        steps: list[Step] = []
        for k, (p, r0, rows) in enumerate(chunks):
            s_off, d_off, src, dst = _descriptor(p, rows, isz, r0)
            buf = sram[f"buf{k % depth}"]
            steps += encode.dma(True, dram[p.src] + s_off, buf, src, op.name)
            steps += encode.dma(False, dram[p.dst] + d_off, buf, dst, op.name)
        return steps

    return OpPlan(
        op.name,
        type(op).__name__,
        (),
        bufs,
        pipeline_cycles(costs),
        f"{len(chunks)} box copy chunk(s) of up to {chunk_rows} row(s)",
        0,
        make_steps,
    )
