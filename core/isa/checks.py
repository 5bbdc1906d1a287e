"""Cross-field validity of one instruction (beyond each field's own range).

:func:`check_instruction` is what the assembler and the program loader run
on every instruction, so a program that loads is well formed: output
geometry matches the input geometry, optional operands are either enabled or
zero, zero points fit their storage type, a unit never waits for or signals
itself. Memory bounds and alignment depend on the hardware configuration and
on run time state; the simulator checks those (faults).
"""

from __future__ import annotations

from npuc.core.errors import InvalidInputError
from npuc.core.isa.instructions import Instruction
from npuc.core.isa.types import DTYPE_NAMES, DTYPE_RANGES, Unit


def _fail(where: str, ins: Instruction, message: str, hint: str | None = None) -> None:
    raise InvalidInputError(f"{where}{ins.mnemonic}: {message}", hint=hint)


def out_size(size: int, pad_a: int, pad_b: int, kernel: int, stride: int, dilation: int = 1) -> int:
    """Output length of a window operation (may be <= 0 when the window does not fit)."""
    return (size + pad_a + pad_b - dilation * (kernel - 1) - 1) // stride + 1


def _check_zp(where: str, ins: Instruction, zp_field: str, dtype_field: str) -> None:
    dtype = DTYPE_NAMES[getattr(ins, dtype_field)]
    lo, hi = DTYPE_RANGES[dtype]
    zp = getattr(ins, zp_field)
    if not lo <= zp <= hi:
        _fail(where, ins, f"{zp_field} = {zp} is outside the range of {dtype_field} {dtype}")


def _check_geometry(where: str, ins: Instruction, dilated: bool) -> None:
    v = ins.values()
    for axis, a, b in (("h", "top", "bottom"), ("w", "left", "right")):
        dil = v[f"dilation_{axis}"] if dilated else 1
        k = v["kh" if axis == "h" else "kw"]
        expect = out_size(
            v[f"ifm_{axis}"], v[f"pad_{a}"], v[f"pad_{b}"], k, v[f"stride_{axis}"], dil
        )
        if expect < 1:
            _fail(where, ins, f"the kernel does not fit the padded input along {axis}")
        if v[f"ofm_{axis}"] != expect:
            _fail(
                where,
                ins,
                f"ofm_{axis} = {v[f'ofm_{axis}']} but the geometry gives {expect}",
                hint="ofm = (ifm + pads - dilation*(k-1) - 1) // stride + 1",
            )


def _check_optional(where: str, ins: Instruction, flag: str, *dependents: tuple[str, int]) -> None:
    if getattr(ins, flag) == 0:
        for name, default in dependents:
            if getattr(ins, name) != default:
                _fail(where, ins, f"{name} must be {default} when {flag} = 0")


LUT_DOMAIN_DEFAULTS = (("lut_bits", 8), ("lut_x_min", -32768), ("lut_f", 8))


def _check_lut_domain(where: str, ins: Instruction, dtype_field: str) -> None:
    if DTYPE_NAMES[getattr(ins, dtype_field)] == "int16":
        return
    for name, default in LUT_DOMAIN_DEFAULTS:
        if getattr(ins, name) != default:
            _fail(
                where,
                ins,
                f"{name} must be {default} for an 8-bit table input (256 entries)",
                hint="lut_bits, lut_x_min and lut_f only shape int16 tables",
            )


def _check_output_stage(where: str, ins: Instruction) -> None:
    _check_zp(where, ins, "ifm_zp", "ifm_dtype")
    _check_optional(where, ins, "has_bias", ("bias_addr", 0), ("bias_shift", 0))
    _check_optional(where, ins, "ofm_multiplier_per_channel", ("ofm_multiplier_addr", 0))
    if ins.ofm_multiplier_per_channel and ins.ofm_multiplier != 0:  # type: ignore[attr-defined]
        _fail(
            where,
            ins,
            "ofm_multiplier must be 0 when ofm_multiplier_per_channel = 1"
            " (multipliers come from ofm_multiplier_addr)",
        )
    _check_optional(
        where, ins, "lut_en", ("lut_addr", 0), ("lut_in_dtype", 0), *LUT_DOMAIN_DEFAULTS
    )
    _check_lut_domain(where, ins, "lut_in_dtype")


def check_instruction(ins: Instruction, *, where: str = "") -> None:
    """Raise InvalidInputError naming ``where``, instruction and field if ``ins`` is ill formed.

    Assumes every field is in range (see :func:`npuc.core.isa.instructions.check_ranges`).
    """
    unit = None if ins.unit is None else Unit(int(ins.unit))  # SYNC: its own field `unit`
    if unit is None:
        if ins.wait or ins.signal:  # type: ignore[attr-defined]
            _fail(where, ins, "END must have wait = 0 and signal = 0")
        return
    own = 1 << int(unit)
    if ins.wait & own or ins.signal & own:  # type: ignore[attr-defined]
        _fail(where, ins, f"a unit cannot wait for or signal itself ({unit.asm_name})")
    if "act_min" in ins.values() and ins.act_min > ins.act_max:  # type: ignore[attr-defined]
        _fail(where, ins, "act_min is greater than act_max")
    m = ins.mnemonic
    if m == "conv":
        _check_geometry(where, ins, dilated=True)
        _check_output_stage(where, ins)
        if ins.depthwise and ins.ofm_c % ins.ifm_c:  # type: ignore[attr-defined]
            _fail(where, ins, "depthwise: ofm_c must be a multiple of ifm_c")
    elif m == "fc":
        _check_output_stage(where, ins)
    elif m == "pool":
        _check_geometry(where, ins, dilated=False)
        _check_zp(where, ins, "ifm_zp", "ifm_dtype")
    elif m == "eltwise":
        _check_zp(where, ins, "ifm_zp", "ifm_dtype")
        _check_zp(where, ins, "ifm2_zp", "ifm2_dtype")
    elif m == "requant":
        _check_zp(where, ins, "ifm_zp", "ifm_dtype")
    elif m == "lut":
        _check_lut_domain(where, ins, "ifm_dtype")
