"""Building blocks of the ISA table: units, storage types, fields, operand groups.

The table itself lives in :mod:`npuc.core.isa.definition`; this module only defines
the vocabulary it is written in. A :class:`Field` fully describes one operand
of one instruction (bit width, signedness, legal range, default, meaning), so
the encoder, decoder, assembler, disassembler and generated docs need nothing
else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal


class Unit(IntEnum):
    """The four execution units; the value is the bit of a wait/signal mask."""

    DMA_IN = 0
    MAC = 1
    ITP = 2
    DMA_OUT = 3

    @property
    def asm_name(self) -> str:
        """Lower-case name used in assembly (``dma_in``, ``mac``, ``itp``, ``dma_out``)."""
        return self.name.lower()


UNIT_NAMES: tuple[str, ...] = tuple(u.asm_name for u in Unit)

# Storage types of activations, tables and results, by field code.
DTYPE_NAMES: tuple[str, ...] = ("int8", "uint8", "int16")
DTYPE_BYTES: dict[str, int] = {"int8": 1, "uint8": 1, "int16": 2}
DTYPE_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
}
# Short spellings the assembler also accepts.
DTYPE_ALIASES: dict[str, str] = {"i8": "int8", "u8": "uint8", "i16": "int16"}

FieldKind = Literal[
    "int",  # plain integer
    "sram_addr",  # byte address in SRAM
    "dram_addr",  # byte address in DRAM
    "dtype",  # index into DTYPE_NAMES
    "choice",  # index into Field.choices
    "flag",  # 0 or 1
    "mask",  # 4-bit unit mask (bit u = Unit(u))
    "unit",  # a Unit value
]


@dataclass(frozen=True, slots=True)
class Field:
    """One operand of an instruction.

    Parameters
    ----------
    name
        Field name (assembly keyword, decoded attribute name).
    bits
        Width in the encoding; ``signed`` fields are two's complement.
    lo, hi
        Legal range, inclusive; the encoder and decoder reject anything else.
    doc
        Meaning, one sentence (goes into docs/npu_isa.md).
    default
        Value when omitted in assembly; ``None`` means the operand is required.
    kind
        How the assembler reads and the disassembler prints the value.
    choices
        Names of the values of a ``choice`` field, by code.
    """

    name: str
    bits: int
    lo: int
    hi: int
    doc: str
    signed: bool = False
    default: int | None = None
    kind: FieldKind = "int"
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        lo_bits = -(1 << (self.bits - 1)) if self.signed else 0
        hi_bits = (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1
        if not lo_bits <= self.lo <= self.hi <= hi_bits:
            raise ValueError(f"field {self.name}: range [{self.lo}, {self.hi}] does not fit")
        if self.default is not None and not self.lo <= self.default <= self.hi:
            raise ValueError(f"field {self.name}: default {self.default} is out of range")

    def value_names(self) -> tuple[str, ...]:
        """Names of the codes of a dtype/choice/unit field (empty for others)."""
        if self.kind == "dtype":
            return DTYPE_NAMES
        if self.kind == "unit":
            return UNIT_NAMES
        return self.choices


GroupKind = Literal[
    "tensor",  # addr[HxWxC dtype]: (addr, h, w, c, dtype)
    "tensor2d",  # addr[NxK dtype]: (addr, n, k, dtype)
    "flat",  # addr[dtype]: (addr, dtype)
    "pair",  # AxB: (a, b)
    "quad",  # a,b,c,d
    "range",  # lo..hi
    "opt_addr",  # addr: (flag = 1, addr); omitted: (flag = 0, addr = 0)
    "alias",  # a shorter name for one field
]


@dataclass(frozen=True, slots=True)
class Group:
    """Readable assembly operand standing for several fields (syntax sugar only).

    ``ifm=@x[8x8x16 int8]`` sets ``ifm_addr, ifm_h, ifm_w, ifm_c, ifm_dtype``;
    the disassembler prints the group form whenever an instruction has the
    group, so listings stay short.
    """

    name: str
    kind: GroupKind
    fields: tuple[str, ...]


OPCODE_BITS = 8  # bits 0-7 of every instruction

COMMON_FIELDS: tuple[Field, ...] = (
    Field(
        "wait",
        4,
        0,
        15,
        "bit u: consume one token from unit u before starting",
        kind="mask",
        default=0,
    ),
    Field(
        "signal", 4, 0, 15, "bit u: push one token to unit u when finished", kind="mask", default=0
    ),
)


@dataclass(frozen=True, slots=True)
class OpDef:
    """One instruction: mnemonic, opcode, unit, fields, and its documentation.

    ``unit`` is ``None`` for SYNC (its ``unit`` field says where it runs) and END.
    """

    mnemonic: str
    class_name: str
    opcode: int
    unit: Unit | None
    fields: tuple[Field, ...]
    summary: str
    semantics: str
    timing: str
    groups: tuple[Group, ...] = ()

    @property
    def all_fields(self) -> tuple[Field, ...]:
        """``wait``, ``signal`` and the instruction's own fields, in encoding order."""
        return (*COMMON_FIELDS, *self.fields)

    def field(self, name: str) -> Field:
        """The field called ``name`` (KeyError if the instruction has none)."""
        for f in self.all_fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def bit_offsets(self) -> tuple[tuple[Field, int], ...]:
        """Each field with its first bit in the encoding (the opcode takes bits 0-7)."""
        out = []
        offset = OPCODE_BITS
        for f in self.all_fields:
            out.append((f, offset))
            offset += f.bits
        return tuple(out)

    @property
    def used_bits(self) -> int:
        return OPCODE_BITS + sum(f.bits for f in self.all_fields)
