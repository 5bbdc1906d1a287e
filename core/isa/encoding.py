"""Fixed-width binary encoding of instructions (layout: npuc.core.isa.definition).

Guarantees: :func:`encode` range-checks every field first and raises
InvalidInputError naming the instruction and field; :func:`decode` accepts
only a known opcode, in-range fields and zero unused bits, so
``decode(encode(i)) == i`` for every valid ``i`` and anything else is rejected
with InvalidInputError.
"""

from __future__ import annotations

from collections.abc import Sequence

from npuc.core.errors import InvalidInputError
from npuc.core.isa.definition import INSTRUCTION_BYTES, OPCODE_BITS, OPS, OPS_BY_OPCODE, OpDef
from npuc.core.isa.instructions import CLASSES, Instruction, check_ranges
from npuc.core.isa.types import Field

_LAYOUT: dict[str, tuple[tuple[Field, int], ...]] = {op.mnemonic: op.bit_offsets() for op in OPS}


def encode(ins: Instruction, *, where: str = "") -> bytes:
    """Encode one instruction to INSTRUCTION_BYTES bytes (little-endian bit string)."""
    check_ranges(ins, where=where)
    word = ins.OP.opcode
    for f, offset in _LAYOUT[ins.OP.mnemonic]:
        v = getattr(ins, f.name)
        if f.signed and v < 0:
            v += 1 << f.bits
        word |= v << offset
    return word.to_bytes(INSTRUCTION_BYTES, "little")


def decode(data: bytes, *, where: str = "instruction") -> Instruction:
    """Decode one instruction; raise InvalidInputError for anything not produced by encode."""
    if len(data) != INSTRUCTION_BYTES:
        raise InvalidInputError(f"{where}: {len(data)} bytes, expected {INSTRUCTION_BYTES}")
    word = int.from_bytes(data, "little")
    opcode = word & ((1 << OPCODE_BITS) - 1)
    op: OpDef | None = OPS_BY_OPCODE.get(opcode)
    if op is None:
        raise InvalidInputError(f"{where}: unknown opcode 0x{opcode:02x}")
    if word >> op.used_bits:
        raise InvalidInputError(f"{where}: {op.mnemonic} has non-zero reserved bits")
    values: dict[str, int] = {}
    for f, offset in _LAYOUT[op.mnemonic]:
        v = (word >> offset) & ((1 << f.bits) - 1)
        if f.signed and v >> (f.bits - 1):
            v -= 1 << f.bits
        values[f.name] = v
    ins = CLASSES[op.mnemonic](**values)
    check_ranges(ins, where=f"{where}: ")
    return ins


def encode_all(instructions: Sequence[Instruction]) -> bytes:
    """Encode a sequence of instructions back to back."""
    return b"".join(encode(ins, where=f"instruction {i}: ") for i, ins in enumerate(instructions))


def decode_all(data: bytes) -> tuple[Instruction, ...]:
    """Decode back-to-back instructions; the length must be a multiple of the width."""
    if len(data) % INSTRUCTION_BYTES:
        raise InvalidInputError(
            f"code section is {len(data)} bytes, not a multiple of {INSTRUCTION_BYTES}"
        )
    return tuple(
        decode(data[i : i + INSTRUCTION_BYTES], where=f"instruction {i // INSTRUCTION_BYTES}")
        for i in range(0, len(data), INSTRUCTION_BYTES)
    )
