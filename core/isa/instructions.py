"""Instruction classes, one frozen dataclass per opcode, generated from the table.

``Conv(ifm_addr=0, ...)`` etc. are made from :data:`npuc.core.isa.definition.OPS`:
their attributes are exactly the table's fields (``wait``, ``signal``, then the
instruction's own), keyword-only, with the table's defaults. Construction does
not range-check (so tests can build invalid instructions); :func:`check_ranges`
and the encoder do.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from npuc.core.errors import InvalidInputError
from npuc.core.isa.definition import OPS, OpDef
from npuc.core.isa.types import DTYPE_NAMES, Unit


class Instruction:
    """Base of the generated instruction classes."""

    __slots__ = ()
    OP: ClassVar[OpDef]

    @property
    def mnemonic(self) -> str:
        return self.OP.mnemonic

    @property
    def unit(self) -> Unit | None:
        """Unit whose queue runs this instruction (``None`` for END).

        For SYNC the dataclass field ``unit`` (an int equal to the Unit value)
        shadows this property; use ``Unit(int(ins.unit))`` for an enum.
        """
        if self.OP.unit is not None:
            return self.OP.unit
        if self.OP.mnemonic == "sync":
            return Unit(self.values()["unit"])
        return None

    def values(self) -> dict[str, int]:
        """All field values by name, in encoding order."""
        return {f.name: getattr(self, f.name) for f in self.OP.all_fields}

    def dtype(self, field_name: str) -> str:
        """Name (``"int8"``, ...) of the storage type held by a dtype field."""
        return DTYPE_NAMES[getattr(self, field_name)]

    def choice(self, field_name: str) -> str:
        """Name of the value of a choice field (``eltwise.op`` -> ``"add"``)."""
        return self.OP.field(field_name).value_names()[getattr(self, field_name)]

    def replace(self, **changes: int) -> Instruction:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _make_class(op: OpDef) -> type[Instruction]:
    specs: list[Any] = []
    for f in op.all_fields:
        if f.default is None:
            specs.append((f.name, int))
        else:
            specs.append((f.name, int, dataclasses.field(default=f.default)))
    cls = dataclasses.make_dataclass(
        op.class_name,
        specs,
        bases=(Instruction,),
        frozen=True,
        slots=True,
        kw_only=True,
        namespace={
            "OP": op,
            "__doc__": f"{op.mnemonic.upper()}: {op.summary}",
            "__module__": __name__,
        },
    )
    return cls


CLASSES: dict[str, type[Instruction]] = {op.mnemonic: _make_class(op) for op in OPS}

DmaLoad = CLASSES["dma_load"]
DmaStore = CLASSES["dma_store"]
Conv = CLASSES["conv"]
Fc = CLASSES["fc"]
Eltwise = CLASSES["eltwise"]
Pool = CLASSES["pool"]
Requant = CLASSES["requant"]
Lut = CLASSES["lut"]
Sync = CLASSES["sync"]
End = CLASSES["end"]


def make(mnemonic: str, **values: int) -> Instruction:
    """Build an instruction by mnemonic (``make("sync", unit=1, wait=2)``)."""
    return CLASSES[mnemonic](**values)


def check_ranges(ins: Instruction, *, where: str = "") -> None:
    """Raise InvalidInputError naming instruction and field if any value is out of range."""
    for f in ins.OP.all_fields:
        v = getattr(ins, f.name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise InvalidInputError(
                f"{where}{ins.mnemonic}: field {f.name} = {v!r} is not an integer",
            )
        if not f.lo <= v <= f.hi:
            raise InvalidInputError(
                f"{where}{ins.mnemonic}: field {f.name} = {v} is outside [{f.lo}, {f.hi}]",
                hint=f"{f.name}: {f.doc}",
            )
