"""Lowering of window ops (convolution incl. depthwise/FC, pooling) to tiled instruction steps.

Requires: a validated :class:`NpuConv2d` or :class:`NpuPool` and the SRAM budget.
Guarantees: the steps compute exactly the untiled op (tiles follow
:mod:`npuc.backend.npu.tiling`); every weight block's int8 weights, int16
bias and uint16 multipliers form one constant blob loaded by one DMA;
per-tensor multipliers become the immediate ``ofm_multiplier``.
Order: bands outer / blocks inner with resident weights, blocks outer /
bands inner with streamed weights; buffers alternate (double buffering) and
the scheduler's tokens let DMA-in, MAC and DMA-out overlap.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from npuc.backend.npu import encode
from npuc.backend.npu.allocate import Buffer
from npuc.backend.npu.ops import NpuConv2d, NpuPool
from npuc.backend.npu.plan import OpPlan, blob
from npuc.backend.npu.schedule import Step
from npuc.backend.npu.tiling import (
    Band,
    WindowTiling,
    align,
    choose_window_tiling,
    lut_bytes,
    tiling_key,
    weight_block_bytes,
)
from npuc.core.hw.config import HwConfig


def _weight_blob(op: NpuConv2d, c0: int, c1: int) -> np.ndarray:
    parts = [op.weights[c0:c1]]
    if op.bias is not None:
        parts.append(op.bias[c0:c1])
    if op.ofm_multiplier.shape[0] > 1:
        parts.append(op.ofm_multiplier[c0:c1])
    return blob(*parts)


def _weight_offsets(op: NpuConv2d, cb: int) -> tuple[int | None, int | None]:
    """Byte offsets of bias and multipliers inside a block blob (None when absent)."""
    kh, kw = op.kernel
    off = cb * kh * kw * (1 if op.depthwise else op.ifm.shape[3])
    off += off % 2
    bias = None
    if op.bias is not None:
        bias, off = off, off + 2 * cb
    mult = off if op.ofm_multiplier.shape[0] > 1 else None
    return bias, mult


def _buffers(op: NpuConv2d | NpuPool, t: WindowTiling) -> list[Buffer]:
    _, w, c = op.ifm.hwc
    ow = op.ofm.shape[2]
    in_rows = max(b.iy1 - b.iy0 for b in t.bands)
    n_tiles = len(t.bands) * len(t.blocks)
    ifm = align(in_rows * w * c * op.ifm.itemsize)
    ofm = align(t.rows * ow * t.cout_block * op.ofm.itemsize)
    bufs = [Buffer(f"ifm{i}", ifm, 0, 1) for i in range(2 if len(t.bands) > 1 else 1)]
    bufs += [Buffer(f"ofm{i}", ofm, 0, 1) for i in range(2 if n_tiles > 1 else 1)]
    if isinstance(op, NpuConv2d):
        wb = weight_block_bytes(op, t.cout_block)
        n_w = len(t.blocks) if t.weights_resident else min(2, len(t.blocks))
        bufs += [Buffer(f"w{i}", wb, 0, 1) for i in range(n_w)]
        if lut_bytes(op):
            bufs.append(Buffer("lut", lut_bytes(op), 0, 1))
    return bufs


def _geometry(
    op: NpuConv2d | NpuPool, band: Band, c0: int, c1: int, ifm_addr: int, ofm_addr: int, w_addr: int
) -> encode.ConvGeometry:
    _, w, c = op.ifm.hwc
    ow = op.ofm.shape[2]
    pads = (band.pad_top, op.padding[1], band.pad_bottom, op.padding[3])
    conv = isinstance(op, NpuConv2d)
    return encode.ConvGeometry(
        ifm_addr=ifm_addr,
        ifm_hwc=(band.iy1 - band.iy0, w, c),
        ifm_dtype=op.ifm.dtype,
        ofm_addr=ofm_addr,
        ofm_hwc=(band.oy1 - band.oy0, ow, c1 - c0),
        ofm_dtype=op.ofm.dtype,
        w_addr=w_addr,
        kernel=op.kernel,
        stride=op.stride,
        dilation=op.dilation if isinstance(op, NpuConv2d) else (1, 1),
        pads=pads,
        depthwise=conv and op.depthwise,  # type: ignore[union-attr]
    )


def _store(
    op: NpuConv2d | NpuPool, band: Band, c0: int, c1: int, dram: int, sram: int, tag: str
) -> list[Step]:
    _, _, ow, cout = op.ofm.shape
    osz = op.ofm.itemsize
    pixels = (band.oy1 - band.oy0) * ow
    base = dram + (band.oy0 * ow * cout + c0) * osz
    cb = c1 - c0
    box = (
        encode.contiguous(pixels * cb * osz)
        if cb == cout
        else encode.Box(1, pixels, cb * osz, cout * osz, 0, cb * osz, 0)
    )
    return encode.dma(False, base, sram, box, tag)


def _load_band(op: NpuConv2d | NpuPool, band: Band, dram: int, sram: int, tag: str) -> list[Step]:
    _, w, c = op.ifm.hwc
    row = w * c * op.ifm.itemsize
    return encode.dma(
        True, dram + band.iy0 * row, sram, encode.contiguous((band.iy1 - band.iy0) * row), tag
    )


def _compute(
    op: NpuConv2d | NpuPool,
    g: encode.ConvGeometry,
    c0: int,
    c1: int,
    tag: str,
    table: encode.LutTable | None = None,
) -> Step:
    if isinstance(op, NpuPool):
        avg = op.op == "avg"
        q = encode.Requant(
            ifm_zp=op.ifm.zero_point if avg else 0,
            ofm_zp=op.ofm.zero_point if avg else 0,
            ofm_multiplier=op.ofm_multiplier,
            post_shift=op.post_shift,
            act_min=op.act_min,
            act_max=op.act_max,
        )
        return encode.pool(op.op, g, q, tag)
    bias_off, mult_off = _weight_offsets(op, c1 - c0)
    stage = encode.OutputStage(
        bias_addr=None if bias_off is None else g.w_addr + bias_off,
        bias_shift=op.bias_shift,
        multiplier_addr=None if mult_off is None else g.w_addr + mult_off,
        multiplier=int(op.ofm_multiplier[0]),
        pre_shift=op.pre_shift,
        post_shift=op.post_shift,
        ifm_zp=op.ifm.zero_point,
        ofm_zp=op.ofm.zero_point,
        act_min=op.act_min,
        act_max=op.act_max,
        lut=table,
        lut_in_dtype=op.lut_in_dtype,
    )
    return encode.conv(g, stage, tag)


def plan_window(
    op: NpuConv2d | NpuPool,
    hw: HwConfig,
    sram_budget: int,
    cache: dict[tuple[object, ...], WindowTiling] | None = None,
) -> OpPlan:
    """Choose the tiling and return the op's plan (see the module docstring).

    ``cache`` maps :func:`tiling_key` to tilings already chosen for this hw and
    budget; layers of the same geometry (repeated blocks) reuse the choice.
    """
    key = tiling_key(op)
    t = cache.get(key) if cache is not None else None
    if t is None:
        t = choose_window_tiling(op, hw, sram_budget)
        if cache is not None:
            cache[key] = t
    conv = isinstance(op, NpuConv2d)
    consts: tuple[tuple[str, np.ndarray], ...] = ()
    if isinstance(op, NpuConv2d):
        consts = tuple(
            (f"{op.name}/w{k}", _weight_blob(op, c0, c1)) for k, (c0, c1) in enumerate(t.blocks)
        )
        if op.lut is not None:
            consts += ((f"{op.name}/lut", blob(op.lut)),)

    def make_steps(dram: Mapping[str, int], sram: Mapping[str, int]) -> list[Step]:
        steps: list[Step] = []
        ifm, ofm = dram[op.ifm.name], dram[op.ofm.name]
        n_ifm = 2 if len(t.bands) > 1 else 1
        n_ofm = 2 if len(t.bands) * len(t.blocks) > 1 else 1

        def load_w(k: int, slot: int) -> None:
            name = f"{op.name}/w{k}"
            steps.extend(
                encode.dma(
                    True,
                    dram[name],
                    sram[f"w{slot}"],
                    encode.contiguous(len(consts[k][1])),
                    op.name,
                )
            )

        table = None
        if isinstance(op, NpuConv2d) and op.lut is not None:
            lut_name = f"{op.name}/lut"
            steps.extend(
                encode.dma(
                    True, dram[lut_name], sram["lut"], encode.contiguous(op.lut.nbytes), op.name
                )
            )
            table = encode.LutTable(
                addr=sram["lut"],
                entries=op.lut_entries,
                lut_bits=op.lut_bits,
                lut_x_min=op.lut_x_min,
                lut_f=op.lut_f,
            )
        if conv and t.weights_resident:
            for k in range(len(t.blocks)):
                load_w(k, k)
        order = (
            [(b, k) for b in range(len(t.bands)) for k in range(len(t.blocks))]
            if t.weights_resident
            else [(b, k) for k in range(len(t.blocks)) for b in range(len(t.bands))]
        )
        loads = 0
        for tile, (b, k) in enumerate(order):
            band = t.bands[b]
            c0, c1 = t.blocks[k]
            if conv and not t.weights_resident and b == 0:
                load_w(k, k % 2)
            if k == 0 or (not t.weights_resident and len(t.bands) > 1):
                slot_in = loads % n_ifm
                steps.extend(_load_band(op, band, ifm, sram[f"ifm{slot_in}"], op.name))
                loads += 1
            w_slot = k if t.weights_resident else k % 2
            g = _geometry(
                op,
                band,
                c0,
                c1,
                sram[f"ifm{slot_in}"],
                sram[f"ofm{tile % n_ofm}"],
                sram[f"w{w_slot}"] if conv else 0,
            )
            steps.append(_compute(op, g, c0, c1, op.name, table))
            steps.extend(_store(op, band, c0, c1, ofm, g.ofm_addr, op.name))
        return steps

    macs = op.macs if isinstance(op, NpuConv2d) else 0
    return OpPlan(
        op.name,
        type(op).__name__,
        consts,
        tuple(_buffers(op, t)),
        t.est_cycles,
        t.describe(),
        macs,
        make_steps,
    )
