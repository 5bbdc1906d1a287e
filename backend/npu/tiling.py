"""Tiling of window ops (conv, pool): spatial tiles x output-channel blocks that fit SRAM.

Requires: a validated op (:mod:`npuc.backend.npu.ops`) and an SRAM budget.

Guarantees: :func:`choose_window_tiling` returns, among the tilings whose
buffers -- input tile and output tile double-buffered, weight blocks resident
or double-buffered (streamed) -- fit the budget and whose estimated cycles
(:mod:`npuc.backend.npu.perf`) are within CYCLE_TOLERANCE of the fastest, the
one that moves the fewest DRAM bytes; or raises UnsupportedError saying what
does not fit. Spatial tiles are bands of output rows, full width; only when
no full-width band fits are the columns split too. Halos: output positions
``[o0, o1)`` along an axis read input ``[o0*s - pad, (o1-1)*s - pad + d*(k-1) + 1)``
clipped to the tensor; the clipped part becomes the tile's own padding, so a
tiled op computes exactly what the untiled one does.

Not tiled: the input channels (the MAC array reduces all input channels in
one instruction and the output stage requantizes at its end, so partial sums
cannot leave the array). Output-channel blocks share the op's one post_shift
(per-op for now), which satisfies the one-post-shift-per-instruction rule for
any block size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from npuc.backend.npu import encode
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
class Span:
    """Along one axis: outputs ``[o0, o1)``, the inputs ``[i0, i1)`` they read, the tile's pads."""

    o0: int
    o1: int
    i0: int
    i1: int
    pad_lo: int
    pad_hi: int


@dataclass(frozen=True, slots=True)
class Region:
    """A spatial tile: a span of rows and a span of columns."""

    h: Span
    w: Span

    @property
    def out_pixels(self) -> int:
        return (self.h.o1 - self.h.o0) * (self.w.o1 - self.w.o0)

    @property
    def in_pixels(self) -> int:
        return (self.h.i1 - self.h.i0) * (self.w.i1 - self.w.i0)


@dataclass(frozen=True, slots=True)
class WindowTiling:
    """Chosen tiling: ``rows`` x ``cols`` output pixels per region, ``cout_block`` channels."""

    rows: int
    cols: int
    cout_block: int
    weights_resident: bool
    regions: tuple[Region, ...]
    blocks: tuple[tuple[int, int], ...]
    sram_bytes: int
    est_cycles: int
    dram_bytes: int

    def describe(self) -> str:
        w = "resident" if self.weights_resident else "streamed"
        n_bands = len({r.h for r in self.regions})
        n_cols = len({r.w for r in self.regions})
        cols = f" x {n_cols} column block(s) of {self.cols}" if n_cols > 1 else ""
        return (
            f"{n_bands} band(s) of {self.rows} row(s){cols} x {len(self.blocks)} block(s)"
            f" of {self.cout_block} channel(s), weights {w}"
        )


WindowOp: TypeAlias = NpuConv2d | NpuPool


def _window(op: WindowOp) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    if isinstance(op, NpuConv2d):
        return op.kernel, op.stride, op.dilation
    return op.kernel, op.stride, (1, 1)


def spans(size: int, out: int, k: int, s: int, d: int, pad: int, per: int) -> tuple[Span, ...]:
    """Spans of ``per`` outputs (the last may be shorter) along an axis, with halos and pads."""
    result = []
    for o0 in range(0, out, per):
        o1 = min(out, o0 + per)
        lo = o0 * s - pad
        hi = (o1 - 1) * s - pad + d * (k - 1) + 1
        result.append(Span(o0, o1, max(lo, 0), min(hi, size), max(0, -lo), max(0, hi - size)))
    return tuple(result)


def regions(op: WindowOp, rows: int, cols: int) -> tuple[Region, ...]:
    """Spatial tiles of ``rows`` x ``cols`` output pixels, row-major."""
    (kh, kw), (sh, sw), (dh, dw) = _window(op)
    _, h, w, _ = op.ifm.shape
    _, oh, ow, _ = op.ofm.shape
    hs = spans(h, oh, kh, sh, dh, op.padding[0], rows)
    ws = spans(w, ow, kw, sw, dw, op.padding[1], cols)
    return tuple(Region(a, b) for a in hs for b in ws)


def load_box(op: WindowOp, r: Region) -> tuple[int, encode.Box]:
    """DRAM byte offset and descriptor box that load region ``r``'s input (all channels)."""
    _, w, c = op.ifm.hwc
    px = c * op.ifm.itemsize
    offset = (r.h.i0 * w + r.w.i0) * px
    run = (r.w.i1 - r.w.i0) * px
    rows = r.h.i1 - r.h.i0
    if run == w * px:
        return offset, encode.contiguous(rows * run)
    return offset, encode.Box(1, rows, run, w * px, 0, run, 0)


def store_box(op: WindowOp, r: Region, c0: int, c1: int) -> tuple[int, encode.Box]:
    """DRAM byte offset and descriptor box that store region ``r``, channels ``[c0, c1)``."""
    _, _, ow, cout = op.ofm.shape
    osz = op.ofm.itemsize
    rows, cols, cb = r.h.o1 - r.h.o0, r.w.o1 - r.w.o0, c1 - c0
    offset = ((r.h.o0 * ow + r.w.o0) * cout + c0) * osz
    if cb == cout:
        run = cols * cout * osz
        if cols == ow:
            return offset, encode.contiguous(rows * run)
        return offset, encode.Box(1, rows, run, ow * cout * osz, 0, run, 0)
    run = cb * osz
    return offset, encode.Box(rows, cols, run, cout * osz, ow * cout * osz, run, cols * run)


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


def order_of(n_regions: int, n_blocks: int, resident: bool) -> list[tuple[int, int]]:
    """(region, block) in emission order: regions outer when weights are resident."""
    if resident:
        return [(r, k) for r in range(n_regions) for k in range(n_blocks)]
    return [(r, k) for k in range(n_blocks) for r in range(n_regions)]


def reloads_input(tiling_regions: int, resident: bool, k: int) -> bool:
    """Whether the tile of block ``k`` loads its input region (else it reuses the last one)."""
    return k == 0 or (not resident and tiling_regions > 1)


def _costs(
    op: WindowOp,
    hw: HwConfig,
    rs: tuple[Region, ...],
    blocks: tuple[tuple[int, int], ...],
    resident: bool,
    io: tuple[bool, bool] = (False, False),
) -> list[TileCost]:
    c = op.ifm.shape[3]
    (kh, kw), _, _ = _window(op)
    wload = [
        dma_cycles(hw, row_bytes=weight_block_bytes(op, c1 - c0))
        if isinstance(op, NpuConv2d)
        else 0
        for c0, c1 in blocks
    ]
    # A tile's costs depend on its region's size and its block's width only: computed
    # once per distinct (rows, cols, channels), since most tiles of a tiling are alike.
    loads: dict[tuple[int, int], int] = {}
    computes: dict[tuple[int, int], int] = {}
    stores: dict[tuple[int, int, int], int] = {}
    tiles = []
    for t, (ri, k) in enumerate(order_of(len(rs), len(blocks), resident)):
        r = rs[ri]
        c0, c1 = blocks[k]
        load = 0
        if reloads_input(len(rs), resident, k) and not io[0]:
            key = (r.h.i1 - r.h.i0, r.w.i1 - r.w.i0)
            if key not in loads:
                loads[key] = encode.box_cycles(hw, load_box(op, r)[1])
            load = loads[key]
        if t == 0:
            load += dma_cycles(hw, row_bytes=lut_bytes(op)) if lut_bytes(op) else 0
            load += sum(wload) if resident else 0
        if not resident and ri == 0:
            load += wload[k]
        pixels = r.out_pixels
        if (pixels, c1 - c0) not in computes:
            computes[pixels, c1 - c0] = (
                conv_cycles(
                    hw,
                    out_pixels=pixels,
                    cout=c1 - c0,
                    cin=c,
                    kh=kh,
                    kw=kw,
                    depthwise=op.depthwise,
                    int16_ifm=op.ifm.itemsize == 2,
                )
                if isinstance(op, NpuConv2d)
                else itp_cycles(hw, work=pixels * c * kh * kw)
            )
        store = 0
        if not io[1]:
            skey = (r.h.o1 - r.h.o0, r.w.o1 - r.w.o0, c1 - c0)
            if skey not in stores:
                stores[skey] = encode.box_cycles(hw, store_box(op, r, c0, c1)[1])
            store = stores[skey]
        tiles.append(TileCost(load, computes[pixels, c1 - c0], store))
    return tiles


def _sram_need(
    op: WindowOp,
    rs: tuple[Region, ...],
    blocks: tuple[tuple[int, int], ...],
    resident: bool,
    io: tuple[bool, bool] = (False, False),
) -> int:
    c = op.ifm.shape[3]
    cb = max(c1 - c0 for c0, c1 in blocks)
    tiles = len(rs) * len(blocks)
    ifm = align(max(r.in_pixels for r in rs) * c * op.ifm.itemsize) * (2 if len(rs) > 1 else 1)
    ofm = align(max(r.out_pixels for r in rs) * cb * op.ofm.itemsize) * (2 if tiles > 1 else 1)
    ifm, ofm = (0 if io[0] else ifm), (0 if io[1] else ofm)  # SRAM-resident: no tile buffers
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


def _column_candidates(ow: int) -> list[int]:
    """Column-block widths tried when no full-width band fits: ``ceil(ow / n)``, n <= 32."""
    return sorted({ceil_div(ow, n) for n in range(2, min(ow, 32) + 1)}, reverse=True)


def choose_window_tiling(
    op: WindowOp, hw: HwConfig, sram_budget: int, io: tuple[bool, bool] = (False, False)
) -> WindowTiling:
    """The tiling chosen as the module docstring says.

    ``io = (ifm_resident, ofm_resident)``: the input / output tensor is whole in
    SRAM (:mod:`npuc.backend.npu.cascade`), so its tiles are neither loaded nor
    stored, need no tile buffers, and regions are full width (a band of a
    resident tensor is one dense block); a resident output also takes all
    output channels in one block (the CONV writes dense HWC tiles).
    """
    oh, ow, cout = op.ofm.shape[1], op.ofm.shape[2], op.ofm.shape[3]
    if io[1]:
        block_sizes = [cout]
    elif isinstance(op, NpuConv2d) and not op.depthwise:
        units = ceil_div(cout, hw.mac_rows)
        block_sizes = sorted(
            {min(cout, ceil_div(units, k) * hw.mac_rows) for k in range(1, units + 1)}, reverse=True
        )
    else:
        block_sizes = [cout]  # depthwise / pool: a block needs its own input channels
    fitting: list[WindowTiling] = []
    tiles: dict[tuple[int, int], tuple[Region, ...]] = {}  # the same regions for every block
    for cols_options in ([ow], [] if any(io) else _column_candidates(ow)):
        for cb in block_sizes:
            blocks = cout_blocks(cout, cb)
            for rows in _candidates(oh):
                for cols in cols_options:
                    rs = tiles.get((rows, cols))
                    if rs is None:
                        rs = tiles[rows, cols] = regions(op, rows, cols)
                    for resident in (True, False) if len(blocks) > 1 else (True,):
                        need = _sram_need(op, rs, blocks, resident, io)
                        if need > sram_budget:
                            continue
                        est = pipeline_cycles(_costs(op, hw, rs, blocks, resident, io))
                        traffic = dram_bytes(op, rs, blocks, resident, io)
                        fitting.append(
                            WindowTiling(rows, cols, cb, resident, rs, blocks, need, est, traffic)
                        )
        if fitting:
            break
    if not fitting:
        smallest = _sram_need(
            op,
            regions(op, 1, 1 if not any(io) else ow),
            cout_blocks(cout, block_sizes[-1]),
            False,
            io,
        )
        raise UnsupportedError(
            f"NPU op {op.name!r}: even one output pixel needs {smallest} bytes of SRAM, more"
            f" than the {sram_budget} available",
            hint="use a hardware config with more SRAM",
        )
    fastest = min(t.est_cycles for t in fitting)
    near = [t for t in fitting if t.est_cycles <= fastest * (1 + CYCLE_TOLERANCE)]
    return min(near, key=lambda t: (t.dram_bytes, t.est_cycles, -t.rows * t.cols, -t.cout_block))


def dram_bytes(
    op: WindowOp,
    rs: tuple[Region, ...],
    blocks: tuple[tuple[int, int], ...],
    resident: bool,
    io: tuple[bool, bool] = (False, False),
) -> int:
    """DRAM bytes a tiling moves: input regions (reloaded per block when streaming several),
    weight blocks once, the output once (``io``: SRAM-resident input / output move none)."""
    per_pass = 0 if io[0] else sum(r.in_pixels for r in rs) * op.ifm.shape[3] * op.ifm.itemsize
    loads = per_pass * (1 if resident or len(rs) == 1 else len(blocks))
    if isinstance(op, NpuConv2d):
        loads += sum(weight_block_bytes(op, c1 - c0) for c0, c1 in blocks)
    return loads + lut_bytes(op) + (0 if io[1] else op.ofm.nbytes)
