"""Lowering of window ops (convolution incl. depthwise/FC, pooling) to tiled instruction steps.

Requires: a validated :class:`NpuConv2d` or :class:`NpuPool` and the SRAM budget.
Guarantees: the steps compute exactly the untiled op (tiles follow
:mod:`npuc.backend.npu.tiling`); every weight block's int8 weights, int16
bias and uint16 multipliers form one constant blob loaded by one DMA;
per-tensor multipliers become the immediate ``ofm_multiplier``.
Order: spatial regions outer / blocks inner with resident weights, blocks outer /
regions inner with streamed weights; buffers alternate (double buffering) and
the scheduler's tokens let DMA-in, MAC and DMA-out overlap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from npuc.backend.npu import encode
from npuc.backend.npu.allocate import Buffer
from npuc.backend.npu.ops import NpuConv2d, NpuPool
from npuc.backend.npu.plan import OpPlan, blob
from npuc.backend.npu.schedule import Step
from npuc.backend.npu.tiling import (
    Region,
    WindowTiling,
    align,
    choose_window_tiling,
    load_box,
    lut_bytes,
    order_of,
    reloads_input,
    store_box,
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


def _buffers(op: NpuConv2d | NpuPool, t: WindowTiling, io: tuple[bool, bool]) -> list[Buffer]:
    c = op.ifm.shape[3]
    n_regions = len(t.regions)
    ifm = align(max(r.in_pixels for r in t.regions) * c * op.ifm.itemsize)
    ofm = align(max(r.out_pixels for r in t.regions) * t.cout_block * op.ofm.itemsize)
    bufs = [] if io[0] else [Buffer(f"ifm{i}", ifm, 0, 1) for i in range(2 if n_regions > 1 else 1)]
    if not io[1]:
        n_ofm = 2 if n_regions * len(t.blocks) > 1 else 1
        bufs += [Buffer(f"ofm{i}", ofm, 0, 1) for i in range(n_ofm)]
    if isinstance(op, NpuConv2d):
        wb = weight_block_bytes(op, t.cout_block)
        n_w = len(t.blocks) if t.weights_resident else min(2, len(t.blocks))
        bufs += [Buffer(f"w{i}", wb, 0, 1) for i in range(n_w)]
        if lut_bytes(op):
            bufs.append(Buffer("lut", lut_bytes(op), 0, 1))
    return bufs


def _geometry(
    op: NpuConv2d | NpuPool, r: Region, c0: int, c1: int, ifm_addr: int, ofm_addr: int, w_addr: int
) -> encode.ConvGeometry:
    c = op.ifm.shape[3]
    return encode.ConvGeometry(
        ifm_addr=ifm_addr,
        ifm_hwc=(r.h.i1 - r.h.i0, r.w.i1 - r.w.i0, c),
        ifm_dtype=op.ifm.dtype,
        ofm_addr=ofm_addr,
        ofm_hwc=(r.h.o1 - r.h.o0, r.w.o1 - r.w.o0, c1 - c0),
        ofm_dtype=op.ofm.dtype,
        w_addr=w_addr,
        kernel=op.kernel,
        stride=op.stride,
        dilation=op.dilation if isinstance(op, NpuConv2d) else (1, 1),
        pads=(r.h.pad_lo, r.w.pad_lo, r.h.pad_hi, r.w.pad_hi),
        depthwise=isinstance(op, NpuConv2d) and op.depthwise,
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
    resident: frozenset[str] = frozenset(),
) -> OpPlan:
    """Choose the tiling and return the op's plan (see the module docstring).

    ``cache`` maps :func:`tiling_key` (with the budget and residency) to tilings
    already chosen for this hw; layers of the same geometry (repeated blocks)
    reuse the choice. ``resident``: tensors kept whole in SRAM
    (:mod:`npuc.backend.npu.cascade`); an op reading or writing one addresses
    it in place (SRAM address under ``"@" + name`` in ``make_steps``' SRAM
    mapping) instead of moving tiles by DMA.
    """
    io = (op.ifm.name in resident, op.ofm.name in resident)
    key = (*tiling_key(op), sram_budget, io)
    t = cache.get(key) if cache is not None else None
    if t is None:
        t = choose_window_tiling(op, hw, sram_budget, io)
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
        ifm, ofm = dram.get(op.ifm.name, -1), dram.get(op.ofm.name, -1)
        _, w, c = op.ifm.hwc
        _, ow, cout = op.ofm.hwc
        n_ifm = 2 if len(t.regions) > 1 else 1
        n_ofm = 2 if len(t.regions) * len(t.blocks) > 1 else 1

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
        slot_in = 0
        loads = 0
        n_regions = len(t.regions)
        for tile, (ri, k) in enumerate(order_of(n_regions, len(t.blocks), t.weights_resident)):
            r = t.regions[ri]
            c0, c1 = t.blocks[k]
            if conv and not t.weights_resident and ri == 0:
                load_w(k, k % 2)
            if io[0]:  # full-width band of the resident input: rows [i0, i1) in place
                ifm_addr = sram["@" + op.ifm.name] + r.h.i0 * w * c * op.ifm.itemsize
                # the CONV reads whole rows: columns past the last one the window uses
                # (fewer than one stride) add no output column
                r = Region(r.h, dataclasses.replace(r.w, i1=w))
            elif reloads_input(n_regions, t.weights_resident, k):
                slot_in = loads % n_ifm
                offset, box = load_box(op, r)
                steps += encode.dma(True, ifm + offset, sram[f"ifm{slot_in}"], box, op.name)
                loads += 1
            if not io[0]:
                ifm_addr = sram[f"ifm{slot_in}"]
            if io[1]:  # all channels, full width: rows [o0, o1) of the resident output
                ofm_addr = sram["@" + op.ofm.name] + r.h.o0 * ow * cout * op.ofm.itemsize
            else:
                ofm_addr = sram[f"ofm{tile % n_ofm}"]
            w_slot = k if t.weights_resident else k % 2
            g = _geometry(op, r, c0, c1, ifm_addr, ofm_addr, sram[f"w{w_slot}"] if conv else 0)
            steps.append(_compute(op, g, c0, c1, op.name, table))
            if not io[1]:
                offset, box = store_box(op, r, c0, c1)
                steps += encode.dma(False, ofm + offset, g.ofm_addr, box, op.name)
        return steps

    macs = op.macs if isinstance(op, NpuConv2d) else 0
    return OpPlan(
        op.name,
        type(op).__name__,
        consts,
        tuple(_buffers(op, t, io)),
        t.est_cycles,
        t.describe(),
        macs,
        make_steps,
    )
