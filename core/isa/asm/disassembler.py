"""Disassembler: :class:`npuc.core.isa.program.Program` -> assembly text.

Guarantee: ``assemble(disassemble(p), hw=hw)`` rebuilds ``p`` exactly (hence
the identical binary) for the ``hw`` the program was built for. Addresses are
printed as numbers (the binary has no symbol names); the constant block is
one ``.data`` item at ``.data_base``; operands use the readable group forms of
the ISA table and omit fields equal to their defaults.
"""

from __future__ import annotations

import re

from npuc.core.isa.definition import COMMON_FIELDS, OpDef
from npuc.core.isa.instructions import Instruction
from npuc.core.isa.program import IoTensor, Program
from npuc.core.isa.types import DTYPE_NAMES, UNIT_NAMES, Field, Group

_BYTES_PER_LINE = 64
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONST_BLOCK_NAME = "__constants"


def format_field(f: Field, v: int) -> str:
    """One field value in assembly syntax."""
    if f.kind in ("sram_addr", "dram_addr"):
        return hex(v)
    if f.kind == "mask":
        return ",".join(u for i, u in enumerate(UNIT_NAMES) if v >> i & 1) if v else "none"
    if f.kind in ("dtype", "choice", "unit"):
        return f.value_names()[v]
    return str(v)


def _format_group(g: Group, fields: list[Field], values: list[int]) -> str | None:
    """A group's text, or None when it is entirely at its defaults (then omitted)."""
    defaults = [f.default for f in fields]
    if g.kind == "alias":
        return None if values == defaults else format_field(fields[0], values[0])
    if g.kind in ("tensor", "tensor2d", "flat"):
        addr, *dims, code = values
        shape = "x".join(str(d) for d in dims)
        return f"{hex(addr)}[{shape + ' ' if shape else ''}{DTYPE_NAMES[code]}]"
    if values == defaults:
        return None
    if g.kind == "pair":
        return f"{values[0]}x{values[1]}"
    if g.kind == "quad":
        return ",".join(str(v) for v in values)
    if g.kind == "range":
        return f"{values[0]}..{values[1]}"
    # opt_addr: printable only in its canonical enabled form
    if values[0] == 1:
        return hex(values[1])
    return ""  # flag off with a non-zero address: print the raw fields instead


def format_instruction(ins: Instruction) -> str:
    """One instruction as a line of assembly."""
    op: OpDef = ins.OP
    values = ins.values()
    by_name = {f.name: f for f in op.all_fields}
    group_of = {g.fields[0]: g for g in op.groups}
    done: set[str] = set()
    parts = [op.mnemonic]
    for f in (*op.fields, *COMMON_FIELDS):  # wait/signal read best at the end
        if f.name in done:
            continue
        g = group_of.get(f.name)
        if g is not None:
            fields = [by_name[n] for n in g.fields]
            text = _format_group(g, fields, [values[n] for n in g.fields])
            if text != "":
                done.update(g.fields)
                if text is not None:
                    parts.append(f"{g.name}={text}")
                continue
        done.add(f.name)
        if f.default is None or values[f.name] != f.default:
            parts.append(f"{f.name}={format_field(f, values[f.name])}")
    return " ".join(parts)


def _format_io(t: IoTensor) -> str:
    shape = ",".join(str(d) for d in t.shape)
    return (
        f'.{t.kind} "{t.name}" {t.dtype} [{shape}] scale={t.scale!r} zp={t.zero_point}'
        f" dram={hex(t.dram_addr)}"
    )


def _format_constants(data: bytes) -> list[str]:
    lines = [f".data {CONST_BLOCK_NAME} uint8 [{len(data)}] hex \\"]
    for i in range(0, len(data), _BYTES_PER_LINE):
        lines.append(f'    "{data[i : i + _BYTES_PER_LINE].hex()}" \\')
    lines.append("    align=1")
    return lines


def disassemble(program: Program) -> str:
    """The whole program as assembly text that re-assembles to the same binary."""
    lines = [
        "; npuc disassembly",
        f'.config_hash "{program.config_hash.hex()}"',
        f".data_base {hex(program.const_dram_addr)}",
    ]
    if program.constants:
        lines += _format_constants(program.constants)
    lines += [_format_io(t) for t in program.io]
    lines.append("")
    lines += [format_instruction(ins) for ins in program.instructions]
    return "\n".join(lines) + "\n"
