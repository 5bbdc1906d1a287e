"""Instruction steps with the ISA's field names: the one place code generation spells them.

Each function returns a :class:`npuc.backend.npu.schedule.Step` (fields by
name, without tokens) together with the SRAM/DRAM byte ranges it touches, so
the scheduler can derive hazards. The ProgramBuilder validates the fields
against the ISA table when the step is emitted (:func:`emit_all`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from npuc.backend.npu import perf
from npuc.backend.npu.schedule import Access, Scheduled, Step
from npuc.core.hw.config import HwConfig
from npuc.core.isa.builder import ProgramBuilder
from npuc.core.isa.types import DTYPE_BYTES, DTYPE_NAMES, Unit

ROW_COUNT_MAX = 65535


def dtype_code(dtype: str) -> int:
    """ISA code of a storage type name."""
    return DTYPE_NAMES.index(dtype)


@dataclass(frozen=True, slots=True)
class Box:
    """A strided byte box: ``planes x rows x row_bytes`` with per-side row/plane strides."""

    planes: int
    rows: int
    row_bytes: int
    dram_row_stride: int
    dram_plane_stride: int
    sram_row_stride: int
    sram_plane_stride: int


def _extent(addr: int, planes: int, rows: int, row_bytes: int, rs: int, ps: int) -> Access:
    hi = addr + (planes - 1) * ps + (rows - 1) * rs + row_bytes
    return Access("", addr, hi, False)


def dma(load: bool, dram_addr: int, sram_addr: int, box: Box, tag: str = "") -> list[Step]:
    """DMA_LOAD (``load``) or DMA_STORE steps moving ``box`` (split if rows exceed the field)."""
    steps = []
    rows_per = min(box.rows, ROW_COUNT_MAX)
    for r0 in range(0, box.rows, rows_per):
        rows = min(rows_per, box.rows - r0)
        d = dram_addr + r0 * box.dram_row_stride
        s = sram_addr + r0 * box.sram_row_stride
        fields = {
            "dram_addr": d,
            "sram_addr": s,
            "row_bytes": box.row_bytes,
            "row_count": rows,
            "plane_count": box.planes,
            "dram_row_stride_bytes": box.dram_row_stride if rows > 1 else 0,
            "dram_plane_stride_bytes": box.dram_plane_stride if box.planes > 1 else 0,
            "sram_row_stride_bytes": box.sram_row_stride if rows > 1 else 0,
            "sram_plane_stride_bytes": box.sram_plane_stride if box.planes > 1 else 0,
        }
        de = _extent(d, box.planes, rows, box.row_bytes, box.dram_row_stride, box.dram_plane_stride)
        se = _extent(s, box.planes, rows, box.row_bytes, box.sram_row_stride, box.sram_plane_stride)
        accesses = (
            Access("dram", de.lo, de.hi, not load),
            Access("sram", se.lo, se.hi, load),
        )
        mnemonic, unit = ("dma_load", Unit.DMA_IN) if load else ("dma_store", Unit.DMA_OUT)
        steps.append(Step(mnemonic, unit, fields, accesses, tag))
    return steps


def contiguous(nbytes: int) -> Box:
    """A single run of ``nbytes`` bytes."""
    return Box(1, 1, nbytes, 0, 0, 0, 0)


def _flat(addr: int, count: int, dtype: str, write: bool) -> Access:
    return Access("sram", addr, addr + count * DTYPE_BYTES[dtype], write)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputStage:
    """Output-stage operands of one CONV instruction (addresses are SRAM, 0 when absent)."""

    bias_addr: int | None
    bias_shift: int
    multiplier_addr: int | None
    multiplier: int
    pre_shift: int
    post_shift: int
    ifm_zp: int
    ofm_zp: int
    act_min: int
    act_max: int
    lut: LutTable | None = None
    lut_in_dtype: str = "int8"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvGeometry:
    """One CONV instruction's tensors and window (SRAM addresses, dense HWC)."""

    ifm_addr: int
    ifm_hwc: tuple[int, int, int]
    ifm_dtype: str
    ofm_addr: int
    ofm_hwc: tuple[int, int, int]
    ofm_dtype: str
    w_addr: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]
    depthwise: bool


def conv(g: ConvGeometry, o: OutputStage, tag: str = "") -> Step:
    """A CONV step."""
    (ih, iw, ic), (oh, ow, oc) = g.ifm_hwc, g.ofm_hwc
    fields = {
        "ifm_addr": g.ifm_addr,
        "ifm_h": ih,
        "ifm_w": iw,
        "ifm_c": ic,
        "ifm_dtype": dtype_code(g.ifm_dtype),
        "ofm_addr": g.ofm_addr,
        "ofm_h": oh,
        "ofm_w": ow,
        "ofm_c": oc,
        "ofm_dtype": dtype_code(g.ofm_dtype),
        "w_addr": g.w_addr,
        "kh": g.kernel[0],
        "kw": g.kernel[1],
        "stride_h": g.stride[0],
        "stride_w": g.stride[1],
        "dilation_h": g.dilation[0],
        "dilation_w": g.dilation[1],
        "pad_top": g.pads[0],
        "pad_left": g.pads[1],
        "pad_bottom": g.pads[2],
        "pad_right": g.pads[3],
        "depthwise": int(g.depthwise),
        "has_bias": int(o.bias_addr is not None),
        "bias_addr": o.bias_addr or 0,
        "bias_shift": o.bias_shift if o.bias_addr is not None else 0,
        "ifm_zp": o.ifm_zp,
        "ofm_zp": o.ofm_zp,
        "pre_shift": o.pre_shift,
        "ofm_multiplier_per_channel": int(o.multiplier_addr is not None),
        "ofm_multiplier_addr": o.multiplier_addr or 0,
        "ofm_multiplier": 0 if o.multiplier_addr is not None else o.multiplier,
        "post_shift": o.post_shift,
        "act_min": o.act_min,
        "act_max": o.act_max,
    }
    if o.lut is not None:
        fields.update(
            lut_en=1,
            lut_addr=o.lut.addr,
            lut_in_dtype=dtype_code(o.lut_in_dtype),
            lut_bits=o.lut.lut_bits,
            lut_x_min=o.lut.lut_x_min,
            lut_f=o.lut.lut_f,
        )
    cin_pg = 1 if g.depthwise else ic
    accesses = [
        _flat(g.ifm_addr, ih * iw * ic, g.ifm_dtype, False),
        _flat(g.w_addr, oc * g.kernel[0] * g.kernel[1] * cin_pg, "int8", False),
    ]
    if o.bias_addr is not None:
        accesses.append(_flat(o.bias_addr, oc, "int16", False))
    if o.multiplier_addr is not None:
        accesses.append(_flat(o.multiplier_addr, oc, "int16", False))
    if o.lut is not None:
        accesses.append(_flat(o.lut.addr, o.lut.entries, g.ofm_dtype, False))
    accesses.append(_flat(g.ofm_addr, oh * ow * oc, g.ofm_dtype, True))
    return Step("conv", Unit.MAC, fields, tuple(accesses), tag)


@dataclass(frozen=True, slots=True, kw_only=True)
class Requant:
    """Zero points, multipliers, shift and clamp of an ITP instruction."""

    ifm_zp: int = 0
    ifm2_zp: int = 0
    ofm_zp: int = 0
    ifm_multiplier: int = 0
    ifm2_multiplier: int = 0
    ofm_multiplier: int = 0
    post_shift: int = 0
    act_min: int
    act_max: int


def eltwise(
    op: str,
    a: tuple[int, str],
    b: tuple[int, str],
    y: tuple[int, str],
    count: int,
    q: Requant,
    tag: str = "",
) -> Step:
    """An ELTWISE step over ``count`` elements; operands are ``(sram_addr, dtype)``."""
    fields = {
        "op": ("add", "sub", "mul", "max", "min").index(op),
        "ifm_addr": a[0],
        "ifm_dtype": dtype_code(a[1]),
        "ifm2_addr": b[0],
        "ifm2_dtype": dtype_code(b[1]),
        "ofm_addr": y[0],
        "ofm_dtype": dtype_code(y[1]),
        "count": count,
        "ifm_zp": q.ifm_zp,
        "ifm2_zp": q.ifm2_zp,
        "ofm_zp": q.ofm_zp,
        "ifm_multiplier": q.ifm_multiplier,
        "ifm2_multiplier": q.ifm2_multiplier,
        "ofm_multiplier": q.ofm_multiplier,
        "post_shift": q.post_shift,
        "act_min": q.act_min,
        "act_max": q.act_max,
    }
    accesses = (
        _flat(a[0], count, a[1], False),
        _flat(b[0], count, b[1], False),
        _flat(y[0], count, y[1], True),
    )
    return Step("eltwise", Unit.ITP, fields, accesses, tag)


def _unary_operands(x: tuple[int, str], y: tuple[int, str], count: int) -> dict[str, int]:
    """The operand fields of a one-input ITP step (REQUANT, LUT) over ``count`` elements."""
    return {
        "ifm_addr": x[0],
        "ifm_dtype": dtype_code(x[1]),
        "ofm_addr": y[0],
        "ofm_dtype": dtype_code(y[1]),
        "count": count,
    }


def requant(x: tuple[int, str], y: tuple[int, str], count: int, q: Requant, tag: str = "") -> Step:
    """A REQUANT step (copy with requantization) over ``count`` elements."""
    fields = {
        **_unary_operands(x, y, count),
        "ifm_zp": q.ifm_zp,
        "ofm_zp": q.ofm_zp,
        "ofm_multiplier": q.ofm_multiplier,
        "post_shift": q.post_shift,
        "act_min": q.act_min,
        "act_max": q.act_max,
    }
    accesses = (_flat(x[0], count, x[1], False), _flat(y[0], count, y[1], True))
    return Step("requant", Unit.ITP, fields, accesses, tag)


@dataclass(frozen=True, slots=True, kw_only=True)
class LutTable:
    """Where a LUT's table is in SRAM and how it is indexed."""

    addr: int
    entries: int
    lut_bits: int
    lut_x_min: int
    lut_f: int


def lut(x: tuple[int, str], y: tuple[int, str], count: int, t: LutTable, tag: str = "") -> Step:
    """A LUT step over ``count`` elements."""
    fields = {
        **_unary_operands(x, y, count),
        "lut_addr": t.addr,
        "lut_bits": t.lut_bits,
        "lut_x_min": t.lut_x_min,
        "lut_f": t.lut_f,
    }
    accesses = (
        _flat(x[0], count, x[1], False),
        _flat(t.addr, t.entries, y[1], False),
        _flat(y[0], count, y[1], True),
    )
    return Step("lut", Unit.ITP, fields, accesses, tag)


def pool(op: str, g: ConvGeometry, q: Requant, tag: str = "") -> Step:
    """A POOL step (``g.w_addr``, dilation and depthwise are ignored)."""
    (ih, iw, ic), (oh, ow, _) = g.ifm_hwc, g.ofm_hwc
    fields = {
        "op": ("max", "avg").index(op),
        "ifm_addr": g.ifm_addr,
        "ifm_h": ih,
        "ifm_w": iw,
        "ifm_c": ic,
        "ifm_dtype": dtype_code(g.ifm_dtype),
        "ofm_addr": g.ofm_addr,
        "ofm_h": oh,
        "ofm_w": ow,
        "ofm_dtype": dtype_code(g.ofm_dtype),
        "kh": g.kernel[0],
        "kw": g.kernel[1],
        "stride_h": g.stride[0],
        "stride_w": g.stride[1],
        "pad_top": g.pads[0],
        "pad_left": g.pads[1],
        "pad_bottom": g.pads[2],
        "pad_right": g.pads[3],
        "ifm_zp": q.ifm_zp,
        "ofm_zp": q.ofm_zp,
        "ofm_multiplier": q.ofm_multiplier,
        "post_shift": q.post_shift,
        "act_min": q.act_min,
        "act_max": q.act_max,
    }
    accesses = (
        _flat(g.ifm_addr, ih * iw * ic, g.ifm_dtype, False),
        _flat(g.ofm_addr, oh * ow * ic, g.ofm_dtype, True),
    )
    return Step("pool", Unit.ITP, fields, accesses, tag)


def emit_all(builder: ProgramBuilder, scheduled: Sequence[Scheduled]) -> None:
    """Emit every scheduled step through the builder (validates each against the ISA table)."""
    for s in scheduled:
        builder.emit(s.step.mnemonic, wait=s.wait, signal=s.signal, **s.step.fields)


def step_cycles(step: Step, hw: HwConfig) -> int:
    """The compiler's cost (perf.py rules) of one step, read from its fields."""
    f = step.fields
    m = step.mnemonic
    if m in ("dma_load", "dma_store"):
        return perf.dma_cycles(
            hw,
            row_bytes=f["row_bytes"],
            row_count=f["row_count"],
            plane_count=f["plane_count"],
            dram_row_stride_bytes=f["dram_row_stride_bytes"],
            dram_plane_stride_bytes=f["dram_plane_stride_bytes"],
        )
    if m == "conv":
        return perf.conv_cycles(
            hw,
            out_pixels=f["ofm_h"] * f["ofm_w"],
            cout=f["ofm_c"],
            cin=f["ifm_c"],
            kh=f["kh"],
            kw=f["kw"],
            depthwise=bool(f["depthwise"]),
            int16_ifm=DTYPE_NAMES[f["ifm_dtype"]] == "int16",
        )
    if m == "pool":
        return perf.itp_cycles(hw, work=f["ofm_h"] * f["ofm_w"] * f["ifm_c"] * f["kh"] * f["kw"])
    factor = 2 if m == "lut" and DTYPE_NAMES[f["ifm_dtype"]] == "int16" else 1
    return perf.itp_cycles(hw, work=f["count"] * factor)


def dram_bytes_moved(step: Step) -> int:
    """Bytes a DMA step moves between DRAM and SRAM (0 for other steps)."""
    if step.mnemonic not in ("dma_load", "dma_store"):
        return 0
    f = step.fields
    return f["row_bytes"] * f["row_count"] * f["plane_count"]


def box_cycles(hw: HwConfig, box: Box) -> int:
    """The compiler's cost of one DMA descriptor moving ``box`` (DRAM side decides the runs)."""
    return perf.dma_cycles(
        hw,
        row_bytes=box.row_bytes,
        row_count=box.rows,
        plane_count=box.planes,
        dram_row_stride_bytes=box.dram_row_stride,
        dram_plane_stride_bytes=box.dram_plane_stride,
    )
