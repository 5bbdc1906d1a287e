"""Hypothesis strategies: in-range instructions, well-formed instructions, valid programs."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from npuc.core.hw.config import NPU_M
from npuc.core.isa.checks import out_size
from npuc.core.isa.definition import OPS, OPS_BY_MNEMONIC, OpDef
from npuc.core.isa.instructions import CLASSES, Instruction
from npuc.core.isa.program import IoTensor, Program
from npuc.core.isa.types import DTYPE_BYTES, DTYPE_NAMES, DTYPE_RANGES

NON_END = [op for op in OPS if op.mnemonic != "end"]


def field_values(op: OpDef) -> st.SearchStrategy[dict[str, int]]:
    """Every field anywhere in its range (encodable, maybe not well formed)."""
    return st.fixed_dictionaries({f.name: st.integers(f.lo, f.hi) for f in op.all_fields})


def in_range_instruction() -> st.SearchStrategy[Instruction]:
    return st.sampled_from(OPS).flatmap(
        lambda op: field_values(op).map(lambda v: CLASSES[op.mnemonic](**v))
    )


def _clamp_zp(v: dict[str, int], zp: str, dtype: str) -> None:
    lo, hi = DTYPE_RANGES[DTYPE_NAMES[v[dtype]]]
    v[zp] = min(max(v[zp], lo), hi)


def _fix_geometry(v: dict[str, int], dilated: bool) -> None:
    for axis, a, b, k in (("h", "top", "bottom", "kh"), ("w", "left", "right", "kw")):
        dil = v[f"dilation_{axis}"] if dilated else 1
        v[f"ifm_{axis}"] = max(v[f"ifm_{axis}"], dil * (v[k] - 1) + 1)
        out = out_size(
            v[f"ifm_{axis}"], v[f"pad_{a}"], v[f"pad_{b}"], v[k], v[f"stride_{axis}"], dil
        )
        if out > 65535:
            v[f"pad_{a}"] = v[f"pad_{b}"] = 0
            out = out_size(v[f"ifm_{axis}"], 0, 0, v[k], v[f"stride_{axis}"], dil)
        v[f"ofm_{axis}"] = out


def _fix_output_stage(v: dict[str, int]) -> None:
    _clamp_zp(v, "ifm_zp", "ifm_dtype")
    if not v["has_bias"]:
        v["bias_addr"] = v["bias_shift"] = 0
    if v["ofm_multiplier_per_channel"]:
        v["ofm_multiplier"] = 0
    else:
        v["ofm_multiplier_addr"] = 0
    if not v["lut_en"]:
        v["lut_addr"], v["lut_in_dtype"] = 0, 0
        _lut_domain_defaults(v)
    elif DTYPE_NAMES[v["lut_in_dtype"]] != "int16":
        _lut_domain_defaults(v)


def _lut_domain_defaults(v: dict[str, int]) -> None:
    v["lut_bits"], v["lut_x_min"], v["lut_f"] = 8, -32768, 8


def make_well_formed(op: OpDef, v: dict[str, Any]) -> Instruction:
    """Repair in-range values into an instruction that passes check_instruction."""
    v = dict(v)
    cls = CLASSES[op.mnemonic]
    if op.mnemonic == "end":
        return cls()
    unit = op.unit if op.unit is not None else v["unit"]
    v["wait"] &= ~(1 << int(unit))
    v["signal"] &= ~(1 << int(unit))
    if "act_min" in v and v["act_min"] > v["act_max"]:
        v["act_min"], v["act_max"] = v["act_max"], v["act_min"]
    m = op.mnemonic
    if m == "conv":
        _fix_geometry(v, dilated=True)
        _fix_output_stage(v)
        if v["depthwise"]:
            v["ofm_c"] = v["ifm_c"] * max(1, min(v["ofm_c"] // v["ifm_c"], 65535 // v["ifm_c"]))
    elif m == "fc":
        _fix_output_stage(v)
    elif m == "pool":
        _fix_geometry(v, dilated=False)
        _clamp_zp(v, "ifm_zp", "ifm_dtype")
    elif m == "eltwise":
        _clamp_zp(v, "ifm_zp", "ifm_dtype")
        _clamp_zp(v, "ifm2_zp", "ifm2_dtype")
    elif m == "requant":
        _clamp_zp(v, "ifm_zp", "ifm_dtype")
    elif m == "lut" and DTYPE_NAMES[v["ifm_dtype"]] != "int16":
        _lut_domain_defaults(v)
    return cls(**v)


def well_formed_instruction(ops: list[OpDef] = NON_END) -> st.SearchStrategy[Instruction]:
    return st.sampled_from(ops).flatmap(
        lambda op: field_values(op).map(lambda v: make_well_formed(op, v))
    )


@st.composite
def io_tables(draw: st.DrawFn, start: int) -> tuple[IoTensor, ...]:
    out = []
    cursor = (start + 63) // 64 * 64
    for i in range(draw(st.integers(0, 3))):
        dtype = draw(st.sampled_from(sorted(DTYPE_BYTES)))
        shape = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=4)))
        lo, hi = DTYPE_RANGES[dtype]
        cursor += draw(st.integers(0, 3)) * 64
        t = IoTensor(
            name=draw(st.sampled_from(["x", "y", "input.1", "out:0", "t"])) + str(i),
            kind=draw(st.sampled_from(["input", "output"])),
            shape=shape,
            dtype=dtype,
            scale=draw(st.floats(1e-12, 1e6, allow_nan=False, allow_infinity=False)),
            zero_point=draw(st.integers(lo, hi)),
            dram_addr=cursor,
        )
        cursor += (t.nbytes + 63) // 64 * 64
        out.append(t)
    return tuple(out)


@st.composite
def programs(draw: st.DrawFn, max_instructions: int = 6) -> Program:
    """Valid programs for NPU_M: well-formed instructions then END, constants, I/O table."""
    body = draw(st.lists(well_formed_instruction(), max_size=max_instructions))
    constants = draw(st.binary(max_size=200))
    const_addr = draw(st.integers(0, 4096))
    io = draw(io_tables(const_addr + len(constants)))
    return Program(
        config_hash=NPU_M.config_hash_bytes,
        instructions=(*body, CLASSES["end"]()),
        constants=constants,
        const_dram_addr=const_addr,
        io=io,
    )


__all__ = ["OPS_BY_MNEMONIC", "in_range_instruction", "programs", "well_formed_instruction"]
