"""Functional execution of one decoded instruction against SRAM/DRAM.

For every opcode this module first lists the instruction's memory accesses
(:class:`Access`: which memory, which bytes, read or write), checks them --
inside the memory, aligned to the element size, no write region overlapping
a region the same instruction reads (except ELTWISE/REQUANT/LUT exactly in
place: same address, same size), no DMA write descriptor writing a byte twice --
and only then reads the operands, computes with ``npu_sim.functional`` and
writes the result. A faulting instruction therefore changes no memory.

Semantics: docs/npu_isa.md (generated from npuc.core.isa.definition) and
docs/npu_spec.md. Imports only npuc.core.isa, npuc.core.errors and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuc.core.errors import SimulatorFault
from npuc.core.isa.instructions import Instruction
from npuc.core.isa.types import DTYPE_NAMES
from npuc.npu_sim import functional as fn
from npuc.npu_sim.memory import Memory, StridedRegion, intervals_overlap

MULT_MAX = 32767
IN_PLACE_OPS = ("eltwise", "requant", "lut")


@dataclass(frozen=True, slots=True)
class Access:
    """One operand's bytes: ``memory`` is ``"sram"`` or ``"dram"``."""

    memory: str
    region: StridedRegion
    write: bool
    what: str
    align: int = 1

    @property
    def interval(self) -> tuple[int, int]:
        """Bounding byte interval ``[start, end)``."""
        return self.region.addr, self.region.addr + self.region.extent_bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """What executing one instruction did, for the statistics."""

    accesses: tuple[Access, ...]
    overflow: bool = False
    macs: int = 0
    dram_read_bytes: int = 0
    dram_written_bytes: int = 0


def _np_dtype(ins: Instruction, field: str) -> np.dtype:
    return np.dtype(DTYPE_NAMES[getattr(ins, field)])


def _flat(addr: int, count: int, dtype: np.dtype, *, write: bool, what: str) -> Access:
    region = StridedRegion(addr, count * dtype.itemsize, 1, 0, 1, 0)
    return Access("sram", region, write, what, dtype.itemsize)


def _lut_entries(in_dtype: np.dtype, lut_bits: int) -> int:
    return (1 << lut_bits) + 1 if in_dtype == np.int16 else 256


def fault_prefix(index: int, ins: Instruction) -> str:
    """``"instruction 12 (conv)"``: how faults name an instruction."""
    return f"instruction {index} ({ins.mnemonic})"


def list_accesses(ins: Instruction, where: str) -> tuple[Access, ...]:
    """Every memory access of ``ins`` (reads first, the write last)."""
    v = ins.values()
    m = ins.mnemonic
    if m in ("dma_load", "dma_store"):
        dram = StridedRegion(
            v["dram_addr"],
            v["row_bytes"],
            v["row_count"],
            v["dram_row_stride_bytes"],
            v["plane_count"],
            v["dram_plane_stride_bytes"],
        )
        sram = StridedRegion(
            v["sram_addr"],
            v["row_bytes"],
            v["row_count"],
            v["sram_row_stride_bytes"],
            v["plane_count"],
            v["sram_plane_stride_bytes"],
        )
        if m == "dma_load":
            return (
                Access("dram", dram, False, f"{where} source"),
                Access("sram", sram, True, f"{where} destination"),
            )
        return (
            Access("sram", sram, False, f"{where} source"),
            Access("dram", dram, True, f"{where} destination"),
        )
    if m in ("conv", "fc"):
        return _mac_accesses(ins, v, where)
    if m == "eltwise":
        n = v["count"]
        return (
            _flat(v["ifm_addr"], n, _np_dtype(ins, "ifm_dtype"), write=False, what=f"{where} ifm"),
            _flat(
                v["ifm2_addr"], n, _np_dtype(ins, "ifm2_dtype"), write=False, what=f"{where} ifm2"
            ),
            _flat(v["ofm_addr"], n, _np_dtype(ins, "ofm_dtype"), write=True, what=f"{where} ofm"),
        )
    if m == "pool":
        ifm = v["ifm_h"] * v["ifm_w"] * v["ifm_c"]
        ofm = v["ofm_h"] * v["ofm_w"] * v["ifm_c"]
        return (
            _flat(
                v["ifm_addr"], ifm, _np_dtype(ins, "ifm_dtype"), write=False, what=f"{where} ifm"
            ),
            _flat(v["ofm_addr"], ofm, _np_dtype(ins, "ofm_dtype"), write=True, what=f"{where} ofm"),
        )
    if m in ("requant", "lut"):
        n = v["count"]
        in_dt, out_dt = _np_dtype(ins, "ifm_dtype"), _np_dtype(ins, "ofm_dtype")
        accesses = [_flat(v["ifm_addr"], n, in_dt, write=False, what=f"{where} input")]
        if m == "lut":
            entries = _lut_entries(in_dt, v["lut_bits"])
            accesses.append(
                _flat(v["lut_addr"], entries, out_dt, write=False, what=f"{where} table")
            )
        accesses.append(_flat(v["ofm_addr"], n, out_dt, write=True, what=f"{where} output"))
        return tuple(accesses)
    return ()  # sync, end


def _mac_accesses(ins: Instruction, v: dict[str, int], where: str) -> tuple[Access, ...]:
    in_dt, out_dt = _np_dtype(ins, "ifm_dtype"), _np_dtype(ins, "ofm_dtype")
    if ins.mnemonic == "conv":
        cin_pg = 1 if v["depthwise"] else v["ifm_c"]
        ifm = v["ifm_h"] * v["ifm_w"] * v["ifm_c"]
        ofm = v["ofm_h"] * v["ofm_w"] * v["ofm_c"]
        weights = v["ofm_c"] * v["kh"] * v["kw"] * cin_pg
    else:
        ifm = v["ifm_n"] * v["ifm_k"]
        ofm = v["ifm_n"] * v["ofm_c"]
        weights = v["ofm_c"] * v["ifm_k"]
    cout = v["ofm_c"]
    accesses = [
        _flat(v["ifm_addr"], ifm, in_dt, write=False, what=f"{where} ifm"),
        _flat(v["w_addr"], weights, np.dtype(np.int8), write=False, what=f"{where} weights"),
    ]
    if v["has_bias"]:
        accesses.append(
            _flat(v["bias_addr"], cout, np.dtype(np.int16), write=False, what=f"{where} bias")
        )
    if v["ofm_multiplier_per_channel"]:
        accesses.append(
            _flat(
                v["ofm_multiplier_addr"],
                cout,
                np.dtype(np.uint16),
                write=False,
                what=f"{where} multipliers",
            )
        )
    if v["lut_en"]:
        entries = _lut_entries(_np_dtype(ins, "lut_in_dtype"), v["lut_bits"])
        accesses.append(_flat(v["lut_addr"], entries, out_dt, write=False, what=f"{where} table"))
    accesses.append(_flat(v["ofm_addr"], ofm, out_dt, write=True, what=f"{where} ofm"))
    return tuple(accesses)


def check_accesses(
    ins: Instruction, accesses: tuple[Access, ...], sram: Memory, dram: Memory
) -> None:
    """Fault on out-of-range, misaligned or illegally overlapping accesses (before any effect)."""
    memories = {"sram": sram, "dram": dram}
    for a in accesses:
        memories[a.memory].check(a.region.addr, a.region.extent_bytes, align=a.align, what=a.what)
    for w in (a for a in accesses if a.write):
        if w.region.self_overlapping():
            raise SimulatorFault(
                f"{w.what}: the strided {w.memory.upper()} write region writes some bytes twice",
                hint="strides must be at least the run length so that runs do not overlap",
            )
        for r in (a for a in accesses if not a.write and a.memory == w.memory):
            if not intervals_overlap(w.interval, r.interval):
                continue
            if ins.mnemonic in IN_PLACE_OPS and w.interval == r.interval:
                continue  # exactly in place: allowed
            raise SimulatorFault(
                f"{w.what} [{w.interval[0]:#x}, {w.interval[1]:#x}) overlaps {r.what} "
                f"[{r.interval[0]:#x}, {r.interval[1]:#x}) which it reads",
                hint="place the output elsewhere; only eltwise/requant/lut may work in place",
            )


def execute(index: int, ins: Instruction, sram: Memory, dram: Memory) -> Outcome:
    """Check and execute one instruction; raise SimulatorFault (memory untouched) on a fault."""
    where = fault_prefix(index, ins)
    accesses = list_accesses(ins, where)
    check_accesses(ins, accesses, sram, dram)
    m = ins.mnemonic
    if m == "dma_load":
        src, dst = accesses
        sram.strided_view(dst.region, what=dst.what)[...] = dram.strided_view(
            src.region, what=src.what
        )
        return Outcome(accesses, dram_read_bytes=src.region.total_bytes)
    if m == "dma_store":
        src, dst = accesses
        dram.strided_view(dst.region, what=dst.what)[...] = sram.strided_view(
            src.region, what=src.what
        )
        return Outcome(accesses, dram_written_bytes=src.region.total_bytes)
    if m in ("conv", "fc"):
        return _execute_mac(ins, accesses, sram, where)
    if m in ("eltwise", "pool", "requant", "lut"):
        return _execute_itp(ins, accesses, sram)
    return Outcome(accesses)


def _read(sram: Memory, access: Access, dtype: np.dtype) -> np.ndarray:
    return sram.read(
        access.region.addr, access.region.total_bytes // dtype.itemsize, dtype, what=access.what
    )


def _execute_mac(
    ins: Instruction, accesses: tuple[Access, ...], sram: Memory, where: str
) -> Outcome:
    v = ins.values()
    in_dt, out_dt = _np_dtype(ins, "ifm_dtype"), _np_dtype(ins, "ofm_dtype")
    by_name = {a.what.rsplit(" ", 1)[1]: a for a in accesses}
    cout = v["ofm_c"]
    x = _read(sram, by_name["ifm"], in_dt)
    w = _read(sram, by_name["weights"], np.dtype(np.int8))
    bias = (
        _read(sram, by_name["bias"], np.dtype(np.int16))
        if v["has_bias"]
        else np.zeros(cout, np.int16)
    )
    if v["ofm_multiplier_per_channel"]:
        mults = _read(sram, by_name["multipliers"], np.dtype(np.uint16))
        if int(mults.max()) > MULT_MAX:
            raise SimulatorFault(
                f"{where}: multiplier {int(mults.max())} exceeds the 15-bit maximum {MULT_MAX}",
                hint="per-channel multipliers are unsigned 15-bit values",
            )
    else:
        mults = np.array([v["ofm_multiplier"]], dtype=np.uint16)
    if ins.mnemonic == "conv":
        cin_pg = 1 if v["depthwise"] else v["ifm_c"]
        acc, overflow = fn.conv_accumulate(
            x.reshape(v["ifm_h"], v["ifm_w"], v["ifm_c"]),
            w.reshape(cout, v["kh"], v["kw"], cin_pg),
            bias,
            bias_shift=v["bias_shift"],
            ifm_zp=v["ifm_zp"],
            stride=(v["stride_h"], v["stride_w"]),
            dilation=(v["dilation_h"], v["dilation_w"]),
            pads=(v["pad_top"], v["pad_left"], v["pad_bottom"], v["pad_right"]),
            depthwise=bool(v["depthwise"]),
        )
        macs = v["ofm_h"] * v["ofm_w"] * cout * v["kh"] * v["kw"] * cin_pg
    else:
        n, k = v["ifm_n"], v["ifm_k"]
        acc, overflow = fn.conv_accumulate(
            x.reshape(n, 1, k),
            w.reshape(cout, 1, 1, k),
            bias,
            bias_shift=v["bias_shift"],
            ifm_zp=v["ifm_zp"],
            stride=(1, 1),
            dilation=(1, 1),
            pads=(0, 0, 0, 0),
            depthwise=False,
        )
        macs = n * cout * k
    y = fn.output_stage(
        acc,
        pre_shift=v["pre_shift"],
        multipliers=mults,
        post_shift=v["post_shift"],
        ofm_zp=v["ofm_zp"],
    )
    if v["lut_en"]:
        lut_dt = _np_dtype(ins, "lut_in_dtype")
        table = _read(sram, by_name["table"], out_dt)
        info = np.iinfo(lut_dt)
        index = fn.clip_to(y, int(info.min), int(info.max))
        out = fn.store_as(
            fn.lut_apply(
                index,
                table,
                in_dtype=lut_dt,
                lut_bits=v["lut_bits"],
                x_min=v["lut_x_min"],
                f=v["lut_f"],
            ),
            int(np.iinfo(out_dt).min),
            int(np.iinfo(out_dt).max),
            out_dt,
        )
    else:
        out = fn.store_as(y, v["act_min"], v["act_max"], out_dt)
    sram.write(by_name["ofm"].region.addr, out, what=by_name["ofm"].what)
    return Outcome(accesses, overflow=overflow, macs=macs)


def _execute_itp(ins: Instruction, accesses: tuple[Access, ...], sram: Memory) -> Outcome:
    v = ins.values()
    m = ins.mnemonic
    overflow = False
    if m == "eltwise":
        a_acc, b_acc, y_acc = accesses
        a = _read(sram, a_acc, _np_dtype(ins, "ifm_dtype"))
        b = _read(sram, b_acc, _np_dtype(ins, "ifm2_dtype"))
        y, overflow = fn.eltwise(
            ins.choice("op"),
            a,
            b,
            ifm_zp=v["ifm_zp"],
            ifm2_zp=v["ifm2_zp"],
            ofm_zp=v["ofm_zp"],
            ifm_multiplier=v["ifm_multiplier"],
            ifm2_multiplier=v["ifm2_multiplier"],
            ofm_multiplier=v["ofm_multiplier"],
            post_shift=v["post_shift"],
        )
        out = fn.store_as(y, v["act_min"], v["act_max"], _np_dtype(ins, "ofm_dtype"))
    elif m == "pool":
        x_acc, y_acc = accesses
        x = _read(sram, x_acc, _np_dtype(ins, "ifm_dtype")).reshape(
            v["ifm_h"], v["ifm_w"], v["ifm_c"]
        )
        y, overflow = fn.pool(
            ins.choice("op"),
            x,
            kernel=(v["kh"], v["kw"]),
            stride=(v["stride_h"], v["stride_w"]),
            pads=(v["pad_top"], v["pad_left"], v["pad_bottom"], v["pad_right"]),
            ifm_zp=v["ifm_zp"],
            ofm_zp=v["ofm_zp"],
            ofm_multiplier=v["ofm_multiplier"],
            post_shift=v["post_shift"],
        )
        out = fn.store_as(y, v["act_min"], v["act_max"], _np_dtype(ins, "ofm_dtype"))
    elif m == "requant":
        x_acc, y_acc = accesses
        x = _read(sram, x_acc, _np_dtype(ins, "ifm_dtype"))
        y = fn.requant(
            x,
            ifm_zp=v["ifm_zp"],
            ofm_zp=v["ofm_zp"],
            ofm_multiplier=v["ofm_multiplier"],
            post_shift=v["post_shift"],
        )
        out = fn.store_as(y, v["act_min"], v["act_max"], _np_dtype(ins, "ofm_dtype"))
    else:  # lut
        x_acc, t_acc, y_acc = accesses
        in_dt, out_dt = _np_dtype(ins, "ifm_dtype"), _np_dtype(ins, "ofm_dtype")
        x = _read(sram, x_acc, in_dt)
        table = _read(sram, t_acc, out_dt)
        y = fn.lut_apply(
            x, table, in_dtype=in_dt, lut_bits=v["lut_bits"], x_min=v["lut_x_min"], f=v["lut_f"]
        )
        info = np.iinfo(out_dt)
        out = fn.store_as(y, int(info.min), int(info.max), out_dt)
    sram.write(y_acc.region.addr, out, what=y_acc.what)
    return Outcome(accesses, overflow=overflow)
