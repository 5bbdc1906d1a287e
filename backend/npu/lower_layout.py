"""Lowering of pad, nearest resize and transpose to DMA hops (no compute unit involved).

Requires: a validated :class:`NpuPad`, :class:`NpuResize` or :class:`NpuTranspose`.
Guarantees: the program writes every output byte exactly as the reference
(numpy pad with the zero point, repeat, transpose) using only DMA
descriptors: the pad border is stored from one output row of zero-point
bytes kept in SRAM (SRAM stride 0 repeats it); nearest upsampling reads
each input pixel ``fw`` times (DRAM stride 0) and stores each SRAM row
``fh`` times (SRAM stride 0); a transpose gathers output rows with strided
loads (runs of whole pixels when the channels stay innermost, of single
elements otherwise -- correct, but every short run costs a DMA burst).
"""

from __future__ import annotations

import numpy as np

from npuc.backend.npu import encode
from npuc.backend.npu.lower_move import BoxCopy, Hop, Transfer, box_hops, chunk_rows, plan_hops
from npuc.backend.npu.ops_move import NpuPad, NpuResize, NpuTranspose
from npuc.backend.npu.plan import OpPlan, blob
from npuc.backend.npu.tiling import align
from npuc.core.hw.config import HwConfig

PLANES_MAX = encode.ROW_COUNT_MAX


def plan_pad(op: NpuPad, hw: HwConfig, sram_budget: int) -> OpPlan:
    """Interior as box copies, border from a resident row of zero-point values."""
    isz = op.ofm.itemsize
    (_, h, w, c), (_, _, ow, _) = op.ifm.shape, op.ofm.shape
    top, left, bottom, right = op.padding
    orow = ow * c * isz
    fill_bytes = orow if any(op.padding) else 0
    copy = BoxCopy(
        op.ifm.name, op.ifm.hwc, (0, 0, 0), op.ofm.name, op.ofm.hwc, (top, left, 0), op.ifm.hwc
    )
    rows = chunk_rows(w * c * isz, h, sram_budget, op.name, reserved=align(fill_bytes))
    hops = box_hops([copy], isz, rows)
    constants: tuple[tuple[str, np.ndarray], ...] = ()
    if fill_bytes:
        name = f"{op.name}/fill"
        constants = ((name, blob(np.full(ow * c, op.ofm.zero_point, dtype=op.ofm.dtype))),)
        stores = []
        for start, n in ((0, top), (top + h, bottom)):
            if n:
                stores.append(
                    Transfer(op.ofm.name, start * orow, encode.Box(1, n, orow, orow, 0, 0, 0))
                )
        for col, n in ((0, left), (left + w, right)):
            if n:
                stores.append(
                    Transfer(
                        op.ofm.name,
                        top * orow + col * c * isz,
                        encode.Box(1, h, n * c * isz, orow, 0, 0, 0),
                    )
                )
        load = Transfer(name, 0, encode.contiguous(fill_bytes))
        hops.insert(0, Hop((load,), tuple(stores), fill_bytes, buffer="fill"))
    return plan_hops(
        op, hw, hops, f"border fill + {len(hops) - bool(fill_bytes)} chunk(s)", constants
    )


def plan_resize(op: NpuResize, hw: HwConfig, sram_budget: int) -> OpPlan:
    """Nearest upsampling by ``(fh, fw)``: replicate by DMA strides of 0."""
    isz = op.ofm.itemsize
    (_, h, w, c), (_, _, ow, _) = op.ifm.shape, op.ofm.shape
    fh, fw = op.factors
    px, orow = c * isz, ow * c * isz
    rows = min(chunk_rows(orow, h, sram_budget, op.name), max(1, PLANES_MAX // w))
    hops = []
    for y0 in range(0, h, rows):
        r = min(rows, h - y0)
        load = Transfer(op.ifm.name, y0 * w * px, encode.Box(r * w, fw, px, 0, px, px, fw * px))
        store = Transfer(
            op.ofm.name, y0 * fh * orow, encode.Box(r, fh, orow, orow, fh * orow, 0, orow)
        )
        hops.append(Hop((load,), (store,), r * orow))
    return plan_hops(op, hw, hops, f"{len(hops)} chunk(s) of {rows} input row(s)")


def plan_transpose(op: NpuTranspose, hw: HwConfig, sram_budget: int) -> OpPlan:
    """Gather chunks of output rows with strided loads, store them contiguously."""
    isz = op.ofm.itemsize
    _, _, w, c = op.ifm.shape
    stride = {1: w * c * isz, 2: c * isz, 3: isz}
    _, a, b, cc = op.perm
    _, o1, o2, o3 = op.ofm.shape
    orow = o2 * o3 * isz
    rows = chunk_rows(orow, o1, sram_budget, op.name)
    if cc == 3:
        rows = min(rows, PLANES_MAX)
    hops = []
    for i0 in range(0, o1, rows):
        k = min(rows, o1 - i0)
        loads: tuple[Transfer, ...]
        if cc == 3:  # channels stay innermost: runs of whole pixels
            loads = (
                Transfer(
                    op.ifm.name,
                    i0 * stride[a],
                    encode.Box(k, o2, o3 * isz, stride[b], stride[a], o3 * isz, orow),
                ),
            )
        else:
            loads = tuple(
                Transfer(
                    op.ifm.name,
                    i * stride[a],
                    encode.Box(o2, o3, isz, stride[cc], stride[b], isz, o3 * isz),
                    (i - i0) * orow,
                )
                for i in range(i0, i0 + k)
            )
        store = Transfer(op.ofm.name, i0 * orow, encode.contiguous(k * orow))
        hops.append(Hop(loads, (store,), k * orow))
    return plan_hops(op, hw, hops, f"{len(hops)} chunk(s) of {rows} output row(s)")
