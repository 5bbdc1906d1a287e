"""Lowering of flat ITP ops (element-wise, requant copy, LUT) to chunked instruction steps.

Requires: a validated :class:`NpuElementwise`, :class:`NpuRequant` or :class:`NpuLut`.
Guarantees: the tensors are processed as flat arrays in chunks of equal
element count (the last may be shorter); each chunk is loaded, computed and
stored with double-buffered SRAM buffers; the chunk size is the one with the
least estimated cycles that fits the SRAM budget (UnsupportedError if even
64 elements do not fit). The element-wise result is bit-identical to the
untiled op because every ITP op is element by element.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from npuc.backend.npu import encode
from npuc.backend.npu.allocate import Buffer
from npuc.backend.npu.ops import NpuElementwise, NpuLut, NpuRequant, NpuTensor
from npuc.backend.npu.perf import TileCost, ceil_div, dma_cycles, itp_cycles, pipeline_cycles
from npuc.backend.npu.plan import OpPlan, blob
from npuc.backend.npu.schedule import Step
from npuc.backend.npu.tiling import align
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import HwConfig

FlatOp: TypeAlias = NpuElementwise | NpuRequant | NpuLut
MIN_CHUNK = 64


def _inputs(op: FlatOp) -> tuple[NpuTensor, ...]:
    return (op.ifm, op.ifm2) if isinstance(op, NpuElementwise) else (op.ifm,)


def _table_bytes(op: FlatOp) -> int:
    return align(op.entries * op.ofm.itemsize) if isinstance(op, NpuLut) else 0


def _sram_need(op: FlatOp, chunk: int, chunks: int, resident: frozenset[str]) -> int:
    depth = 2 if chunks > 1 else 1
    moved = [t for t in (*_inputs(op), op.ofm) if t.name not in resident]
    per = sum(align(chunk * t.itemsize) for t in moved)
    return per * depth + _table_bytes(op)


def _estimate(op: FlatOp, hw: HwConfig, chunk: int, resident: frozenset[str]) -> int:
    n = op.ofm.elements
    work_factor = 2 if isinstance(op, NpuLut) and op.ifm.dtype == "int16" else 1

    def tile(c: int, first: bool) -> TileCost:
        load = sum(
            dma_cycles(hw, row_bytes=c * t.itemsize) for t in _inputs(op) if t.name not in resident
        )
        if first:
            load += dma_cycles(hw, row_bytes=max(1, _table_bytes(op))) if _table_bytes(op) else 0
        return TileCost(
            load,
            itp_cycles(hw, work=c * work_factor),
            0 if op.ofm.name in resident else dma_cycles(hw, row_bytes=c * op.ofm.itemsize),
        )

    # chunks of ``chunk`` elements, the last shorter; the first also loads the table
    count, rest = divmod(n, chunk)
    costs = [tile(chunk, False)] * count + ([tile(rest, False)] if rest else [])
    if costs:
        costs[0] = tile(min(chunk, n), True)
    return pipeline_cycles(costs)


def choose_chunk(
    op: FlatOp, hw: HwConfig, sram_budget: int, resident: frozenset[str] = frozenset()
) -> tuple[int, int]:
    """``(chunk elements, estimated cycles)`` with the least estimate that fits
    (``resident``: tensors whole in SRAM, neither moved nor buffered)."""
    n = op.ofm.elements
    best: tuple[int, int] | None = None
    for k in sorted({ceil_div(n, ceil_div(n, c)) for c in range(1, n + 1, max(1, n // 64))}):
        chunk = max(k, min(n, MIN_CHUNK))
        if _sram_need(op, chunk, ceil_div(n, chunk), resident) > sram_budget:
            continue
        est = _estimate(op, hw, chunk, resident)
        if best is None or est < best[1]:
            best = (chunk, est)
    if best is None:
        raise UnsupportedError(
            f"NPU op {op.name!r}: no chunk of {MIN_CHUNK} elements fits the"
            f" {sram_budget} bytes of SRAM"
        )
    return best


def _compute(op: FlatOp, addrs: list[int], y: int, count: int, table: int) -> Step:
    if isinstance(op, NpuElementwise):
        q = encode.Requant(
            ifm_zp=op.ifm.zero_point,
            ifm2_zp=op.ifm2.zero_point,
            ofm_zp=op.ofm.zero_point,
            ifm_multiplier=op.ifm_multiplier,
            ifm2_multiplier=op.ifm2_multiplier,
            ofm_multiplier=op.ofm_multiplier,
            post_shift=op.post_shift,
            act_min=op.act_min,
            act_max=op.act_max,
        )
        return encode.eltwise(
            op.op,
            (addrs[0], op.ifm.dtype),
            (addrs[1], op.ifm2.dtype),
            (y, op.ofm.dtype),
            count,
            q,
            op.name,
        )
    if isinstance(op, NpuRequant):
        q = encode.Requant(
            ifm_zp=op.ifm.zero_point,
            ofm_zp=op.ofm.zero_point,
            ofm_multiplier=op.ofm_multiplier,
            post_shift=op.post_shift,
            act_min=op.act_min,
            act_max=op.act_max,
        )
        return encode.requant((addrs[0], op.ifm.dtype), (y, op.ofm.dtype), count, q, op.name)
    t = encode.LutTable(
        addr=table, entries=op.entries, lut_bits=op.lut_bits, lut_x_min=op.lut_x_min, lut_f=op.lut_f
    )
    return encode.lut((addrs[0], op.ifm.dtype), (y, op.ofm.dtype), count, t, op.name)


def plan_flat(
    op: FlatOp, hw: HwConfig, sram_budget: int, resident: frozenset[str] = frozenset()
) -> OpPlan:
    """Choose the chunk size and return the op's plan (see the module docstring).

    ``resident``: tensors kept whole in SRAM (:mod:`npuc.backend.npu.cascade`),
    addressed in place through ``"@" + name`` in ``make_steps``' SRAM mapping.
    """
    chunk, est = choose_chunk(op, hw, sram_budget, resident)
    n = op.ofm.elements
    chunks = ceil_div(n, chunk)
    depth = 2 if chunks > 1 else 1
    ins = _inputs(op)
    bufs = [
        Buffer(f"in{i}_{d}", align(chunk * t.itemsize), 0, 1)
        for i, t in enumerate(ins)
        if t.name not in resident
        for d in range(depth)
    ]
    if op.ofm.name not in resident:
        bufs += [Buffer(f"out_{d}", align(chunk * op.ofm.itemsize), 0, 1) for d in range(depth)]
    consts: tuple = ()
    if isinstance(op, NpuLut):
        bufs.append(Buffer("table", _table_bytes(op), 0, 1))
        consts = ((f"{op.name}/table", blob(op.table)),)

    def make_steps(dram: Mapping[str, int], sram: Mapping[str, int]) -> list[Step]:
        steps: list[Step] = []
        table = 0
        if isinstance(op, NpuLut):
            table = sram["table"]
            steps += encode.dma(
                True,
                dram[f"{op.name}/table"],
                table,
                encode.contiguous(op.entries * op.ofm.itemsize),
                op.name,
            )
        for k, start in enumerate(range(0, n, chunk)):
            count = min(chunk, n - start)
            d = k % depth
            addrs = []
            for i, t in enumerate(ins):
                if t.name in resident:
                    addrs.append(sram["@" + t.name] + start * t.itemsize)
                    continue
                addr = sram[f"in{i}_{d}"]
                steps += encode.dma(
                    True,
                    dram[t.name] + start * t.itemsize,
                    addr,
                    encode.contiguous(count * t.itemsize),
                    op.name,
                )
                addrs.append(addr)
            if op.ofm.name in resident:
                steps.append(
                    _compute(
                        op, addrs, sram["@" + op.ofm.name] + start * op.ofm.itemsize, count, table
                    )
                )
                continue
            y = sram[f"out_{d}"]
            steps.append(_compute(op, addrs, y, count, table))
            steps += encode.dma(
                False,
                dram[op.ofm.name] + start * op.ofm.itemsize,
                y,
                encode.contiguous(count * op.ofm.itemsize),
                op.name,
            )
        return steps

    return OpPlan(
        op.name,
        type(op).__name__,
        consts,
        tuple(bufs),
        est,
        f"{chunks} chunk(s) of {chunk} element(s)",
        0,
        make_steps,
    )
