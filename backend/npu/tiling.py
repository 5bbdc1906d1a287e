"""Tiling of window ops (conv, pool): output-row bands x output-channel blocks that fit SRAM.

Requires: a validated op (:mod:`npuc.backend.npu.ops`) and an SRAM budget.

Guarantees: :func:`choose_window_tiling` returns, among the tilings whose
estimated cycles (:mod:`npuc.backend.npu.perf`) are within CYCLE_TOLERANCE of
the fastest, the one that moves the fewest DRAM bytes, among those whose buffers --
input band and output tile double-buffered, weight blocks resident or
double-buffered (streamed) -- fit the budget, or raises UnsupportedError
saying what does not fit. Halos: a band of output rows ``[oy0, oy1)`` reads
input rows ``[oy0*s - pad_top, (oy1-1)*s - pad_top + d*(k-1) + 1)`` clipped
to the tensor; the clipped part becomes the tile's own top/bottom padding,
so a tiled op computes exactly what the untiled one does.

Not tiled: the width (a band is always full width) and the input channels
(the MAC array reduces all input channels in one instruction and the output
stage requantizes at its end, so partial sums cannot leave the array).
Output-channel blocks share the op's one post_shift (per-op for now), which
satisfies the one-post-shift-per-instruction rule for any block size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from npuc.backend.npu.ops import NpuConv2d, NpuPool
from npuc.backend.npu.perf import (
    TileCost,
    ceil_div,
    conv_cycles,
    dma_cycles,
    itp_cycles,
    pipeline_cycles,
)
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import HwConfig

ALIGN = 64
CYCLE_TOLERANCE = 0.02  # tilings this close to the fastest compete on DRAM traffic


def align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass(frozen=True, slots=True)
class Band:
    """Output rows ``[oy0, oy1)`` and the input rows ``[iy0, iy1)`` they read, with tile pads."""

    oy0: int
    oy1: int
    iy0: int
    iy1: int
    pad_top: int
    pad_bottom: int


@dataclass(frozen=True, slots=True)
class WindowTiling:
    """Chosen tiling: ``rows`` output rows per band, ``cout_block`` channels per block."""

    rows: int
    cout_block: int
    weights_resident: bool
    bands: tuple[Band, ...]
    blocks: tuple[tuple[int, int], ...]
    sram_bytes: int
    est_cycles: int
    dram_bytes: int

    def describe(self) -> str:
        w = "resident" if self.weights_resident else "streamed"
        return (
            f"{len(self.bands)} band(s) of {self.rows} row(s) x {len(self.blocks)} block(s)"
            f" of {self.cout_block} channel(s), weights {w}"
        )


WindowOp: TypeAlias = NpuConv2d | NpuPool


def _window(op: WindowOp) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    if isinstance(op, NpuConv2d):
        return op.kernel, op.stride, op.dilation
    return op.kernel, op.stride, (1, 1)


def bands(op: WindowOp, rows: int) -> tuple[Band, ...]:
    """Row bands of ``rows`` output rows (the last may be shorter), with halos and pads."""
    (kh, _), (sh, _), (dh, _) = _window(op)
    h = op.ifm.shape[1]
    oh = op.ofm.shape[1]
    top = op.padding[0]
    out = []
    for oy0 in range(0, oh, rows):
        oy1 = min(oh, oy0 + rows)
        lo = oy0 * sh - top
        hi = (oy1 - 1) * sh - top + dh * (kh - 1) + 1
        out.append(Band(oy0, oy1, max(lo, 0), min(hi, h), max(0, -lo), max(0, hi - h)))
    return tuple(out)


def cout_blocks(cout: int, block: int) -> tuple[tuple[int, int], ...]:
    return tuple((c0, min(cout, c0 + block)) for c0 in range(0, cout, block))


def weight_block_bytes(op: NpuConv2d, cb: int) -> int:
    """SRAM bytes of one block's weights + bias + multipliers (each 64-byte aligned)."""
    kh, kw = op.kernel
    per = cb * kh * kw * (1 if op.depthwise else op.ifm.shape[3])
    extra = 2 * cb if op.bias is not None else 0
    extra += 2 * cb if op.ofm_multiplier.shape[0] > 1 else 0
    return align(per + extra)


def lut_bytes(op: WindowOp) -> int:
    """SRAM bytes of a convolution's fused table (0 without one)."""
    if not isinstance(op, NpuConv2d) or op.lut is None:
        return 0
    return align(op.lut_entries * op.ofm.itemsize)


def _candidates(n: int) -> list[int]:
    """Distinct ``ceil(n / k)`` for k = 1..n (the sizes giving distinct tile counts)."""
    return sorted({ceil_div(n, k) for k in range(1, n + 1)}, reverse=True)


def _costs(
    op: WindowOp,
    hw: HwConfig,
    bs: tuple[Band, ...],
    blocks: tuple[tuple[int, int], ...],
    resident: bool,
) -> list[TileCost]:
    _, w, c = op.ifm.hwc
    _, _, ow, cout = op.ofm.shape
    (kh, kw), _, _ = _window(op)
    isz, osz = op.ifm.itemsize, op.ofm.itemsize
    tiles = []
    wload = [
        dma_cycles(hw, row_bytes=weight_block_bytes(op, c1 - c0))
        if isinstance(op, NpuConv2d)
        else 0
        for c0, c1 in blocks
    ]
    order = [(b, k) for b in range(len(bs)) for k in range(len(blocks))]
    if not resident:
        order = [(b, k) for k in range(len(blocks)) for b in range(len(bs))]
    for t, (b, k) in enumerate(order):
        band = bs[b]
        c0, c1 = blocks[k]
        first_of_band = k == 0 if resident or len(bs) == 1 else True
        load = dma_cycles(hw, row_bytes=(band.iy1 - band.iy0) * w * c * isz) if first_of_band else 0
        if t == 0 and lut_bytes(op):
            load += dma_cycles(hw, row_bytes=lut_bytes(op))
        if resident and t == 0:
            load += sum(wload)
        if not resident and b == 0:
            load += wload[k]
        pixels = (band.oy1 - band.oy0) * ow
        if isinstance(op, NpuConv2d):
            compute = conv_cycles(
                hw,
                out_pixels=pixels,
                cout=c1 - c0,
                cin=c,
                kh=kh,
                kw=kw,
                depthwise=op.depthwise,
                int16_ifm=op.ifm.itemsize == 2,
            )
        else:
            compute = itp_cycles(hw, work=pixels * c * kh * kw)
        cb = c1 - c0
        row = pixels * cb * osz
        store = (
            dma_cycles(hw, row_bytes=row)
            if cb == cout
            else dma_cycles(
                hw, row_bytes=cb * osz, row_count=pixels, dram_row_stride_bytes=cout * osz
            )
        )
        tiles.append(TileCost(load, compute, store))
    return tiles


def _sram_need(
    op: WindowOp, bs: tuple[Band, ...], blocks: tuple[tuple[int, int], ...], resident: bool
) -> int:
    _, w, c = op.ifm.hwc
    ow = op.ofm.shape[2]
    in_rows = max(b.iy1 - b.iy0 for b in bs)
    rows = max(b.oy1 - b.oy0 for b in bs)
    cb = max(c1 - c0 for c0, c1 in blocks)
    tiles = len(bs) * len(blocks)
    ifm = align(in_rows * w * c * op.ifm.itemsize) * (2 if len(bs) > 1 else 1)
    ofm = align(rows * ow * cb * op.ofm.itemsize) * (2 if tiles > 1 else 1)
    if not isinstance(op, NpuConv2d):
        return ifm + ofm
    if resident:
        wts = sum(weight_block_bytes(op, c1 - c0) for c0, c1 in blocks)
    else:
        wts = weight_block_bytes(op, cb) * (2 if len(blocks) > 1 else 1)
    return ifm + ofm + wts + lut_bytes(op)


def tiling_key(op: WindowOp) -> tuple[object, ...]:
    """Everything :func:`choose_window_tiling` depends on besides hw and budget (cache key)."""
    common = (
        type(op).__name__,
        op.ifm.shape,
        op.ifm.dtype,
        op.ofm.shape,
        op.ofm.dtype,
        op.stride,
        op.padding,
        op.kernel,
    )
    if isinstance(op, NpuPool):
        return common
    return (
        *common,
        op.dilation,
        op.groups,
        op.bias is None,
        op.ofm_multiplier.shape,
        lut_bytes(op),
    )


def choose_window_tiling(op: WindowOp, hw: HwConfig, sram_budget: int) -> WindowTiling:
    """The fitting tiling with the least estimated cycles (see the module docstring)."""
    oh, cout = op.ofm.shape[1], op.ofm.shape[3]
    if isinstance(op, NpuConv2d) and not op.depthwise:
        units = ceil_div(cout, hw.mac_rows)
        block_sizes = sorted(
            {min(cout, ceil_div(units, k) * hw.mac_rows) for k in range(1, units + 1)}, reverse=True
        )
    else:
        block_sizes = [cout]  # depthwise / pool: a block needs its own input channels
    fitting: list[WindowTiling] = []
    for cb in block_sizes:
        blocks = cout_blocks(cout, cb)
        for rows in _candidates(oh):
            bs = bands(op, rows)
            for resident in (True, False) if len(blocks) > 1 else (True,):
                need = _sram_need(op, bs, blocks, resident)
                if need > sram_budget:
                    continue
                est = pipeline_cycles(_costs(op, hw, bs, blocks, resident))
                traffic = dram_bytes(op, bs, blocks, resident)
                fitting.append(WindowTiling(rows, cb, resident, bs, blocks, need, est, traffic))
    if not fitting:
        smallest = _sram_need(op, bands(op, 1), cout_blocks(cout, block_sizes[-1]), False)
        raise UnsupportedError(
            f"NPU op {op.name!r}: even one output row needs {smallest} bytes of SRAM, more than"
            f" the {sram_budget} available",
            hint="use a hardware config with more SRAM (width tiling is not implemented yet)",
        )
    fastest = min(t.est_cycles for t in fitting)
    near = [t for t in fitting if t.est_cycles <= fastest * (1 + CYCLE_TOLERANCE)]
    return min(near, key=lambda t: (t.dram_bytes, t.est_cycles, -t.rows, -t.cout_block))


def dram_bytes(
    op: WindowOp, bs: tuple[Band, ...], blocks: tuple[tuple[int, int], ...], resident: bool
) -> int:
    """DRAM bytes a tiling moves: input bands (reloaded per block when streaming several), weight
    blocks once, the output once."""
    _, w, c = op.ifm.hwc
    per_band = sum((b.iy1 - b.iy0) * w * c * op.ifm.itemsize for b in bs)
    loads = per_band * (1 if resident or len(bs) == 1 else len(blocks))
    if isinstance(op, NpuConv2d):
        loads += sum(weight_block_bytes(op, c1 - c0) for c0, c1 in blocks)
    return loads + lut_bytes(op) + op.ofm.nbytes
