"""Product-side program builder: typed construction of a :class:`Program` without assembly text.

The builder is what code generation (backend/npu), tests, the examples' data
generator and the benchmarks use to make NPU programs. It does what the
assembler's directives do, as method calls:

- :meth:`ProgramBuilder.constant` appends weights, biases, multipliers or LUTs
  to the constant block (DRAM, from ``data_base``, each item aligned);
- :meth:`ProgramBuilder.input` / :meth:`ProgramBuilder.output` /
  :meth:`ProgramBuilder.scratch` place I/O tensors and scratch regions in
  DRAM after the constant block (adding them seals the constant block, so
  every address is known when it is handed out);
- :meth:`ProgramBuilder.sram` allocates SRAM upwards from 0 (or at a given
  address), for hand-written programs; a compiler with its own allocator
  passes plain integer addresses instead;
- :meth:`ProgramBuilder.emit` appends one instruction by mnemonic with field
  values by name, validated against the ISA table (:mod:`npuc.core.isa.definition`):
  unknown mnemonic or field, missing required field, value out of range or an
  ill-formed combination raise :class:`InvalidInputError` naming the
  instruction index, mnemonic and field;
- :meth:`ProgramBuilder.build` appends END (if missing) and returns the same
  in-memory :class:`Program` the assembler produces, validated for ``hw``.

Guarantee: ``build()`` either returns a program that ``Program.validate(hw)``
accepts (so it serialises and the simulator's loader accepts it) or raises
InvalidInputError. Field names are never spelled here: they come from the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import HwConfig
from npuc.core.isa.checks import check_instruction
from npuc.core.isa.definition import OPS_BY_MNEMONIC
from npuc.core.isa.instructions import CLASSES, Instruction, check_ranges
from npuc.core.isa.program import IoTensor, Program, check_io_tensor
from npuc.core.isa.types import DTYPE_NAMES, Unit

DEFAULT_ALIGN = 64
CONSTANT_DTYPES = ("int8", "uint8", "int16", "uint16", "int32")


def align_up(value: int, align: int) -> int:
    """Smallest multiple of ``align`` (a power of two) that is >= ``value``."""
    return (value + align - 1) // align * align


@dataclass(frozen=True, slots=True)
class Region:
    """A named byte range in ``memory`` (``"dram"`` or ``"sram"``): ``[addr, addr + nbytes)``."""

    name: str
    memory: str
    addr: int
    nbytes: int

    @property
    def end(self) -> int:
        return self.addr + self.nbytes

    def __add__(self, offset: int) -> int:
        """``region + k``: the byte address ``addr + k`` (as in assembly ``@x+k``)."""
        return self.addr + offset


FieldValue: TypeAlias = int | bool | str | Region | Unit


class ProgramBuilder:
    """Builds one program for one hardware config; see the module docstring.

    Parameters
    ----------
    hw
        The target configuration (its hash goes into the program; sizes are checked).
    data_base
        DRAM address of the constant block (default 0).
    """

    def __init__(self, hw: HwConfig, *, data_base: int = 0) -> None:
        if data_base < 0 or data_base % DEFAULT_ALIGN:
            raise InvalidInputError(
                f"data_base = {data_base} must be a non-negative multiple of {DEFAULT_ALIGN}"
            )
        self.hw = hw
        self.data_base = data_base
        self._constants = bytearray()
        self._sealed = False
        self._dram_next = data_base
        self._sram_next = 0
        self._io: list[IoTensor] = []
        self._names: set[str] = set()
        self._instructions: list[Instruction] = []

    # ------------------------------------------------------------------ memory

    def _new_name(self, name: str) -> None:
        if name in self._names:
            raise InvalidInputError(f"program builder: the name {name!r} is used twice")
        self._names.add(name)

    def constant(
        self, name: str, values: np.ndarray, *, dtype: str | None = None, align: int = DEFAULT_ALIGN
    ) -> Region:
        """Append ``values`` (stored little-endian as ``dtype``, default their own) to constants.

        Raises InvalidInputError if a value does not fit ``dtype``, the array
        is empty, or I/O / scratch regions were already placed.
        """
        self._new_name(name)
        if self._sealed:
            raise InvalidInputError(
                f"constant {name!r}: add every constant before the first input, output or scratch"
            )
        arr = np.asarray(values)
        dt = dtype or str(arr.dtype)
        if dt not in CONSTANT_DTYPES:
            raise InvalidInputError(
                f"constant {name!r}: dtype {dt!r} is not one of {', '.join(CONSTANT_DTYPES)}"
            )
        if arr.size == 0:
            raise InvalidInputError(f"constant {name!r} must not be empty")
        if arr.dtype.kind not in "iub":
            raise InvalidInputError(f"constant {name!r} must hold integers, not {arr.dtype}")
        info = np.iinfo(dt)
        if int(arr.min()) < info.min or int(arr.max()) > info.max:
            raise InvalidInputError(
                f"constant {name!r}: values [{arr.min()}, {arr.max()}] do not fit {dt}"
            )
        start = align_up(self.data_base + len(self._constants), align)
        self._constants.extend(bytes(start - self.data_base - len(self._constants)))
        payload = arr.astype(np.dtype(dt).newbyteorder("<")).tobytes()
        self._constants.extend(payload)
        return Region(name, "dram", start, len(payload))

    def _place_dram(self, name: str, nbytes: int, align: int) -> int:
        if not self._sealed:
            self._sealed = True
            self._dram_next = align_up(self.data_base + len(self._constants), DEFAULT_ALIGN)
        addr = align_up(self._dram_next, align)
        if addr + nbytes > self.hw.dram_bytes:
            raise InvalidInputError(
                f"DRAM region {name!r} [{addr}, {addr + nbytes}) exceeds dram_bytes ="
                f" {self.hw.dram_bytes} of {self.hw.name}"
            )
        self._dram_next = addr + nbytes
        return addr

    def _place_io(self, kind: str, name: str, shape: tuple[int, ...], dtype: str, scale: float,
            zero_point: int) -> Region:  # fmt: skip
        self._new_name(name)
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize if dtype in DTYPE_NAMES else 0
        addr = self._place_dram(name, nbytes, DEFAULT_ALIGN)
        t = IoTensor(
            name=name,
            kind=kind,
            shape=tuple(int(d) for d in shape),
            dtype=dtype,
            scale=float(scale),
            zero_point=int(zero_point),
            dram_addr=addr,
        )
        check_io_tensor(t, where="program builder: ")
        self._io.append(t)
        return Region(name, "dram", addr, t.nbytes)

    def input(
        self, name: str, shape: tuple[int, ...], dtype: str, *, scale: float, zero_point: int = 0
    ) -> Region:
        """Place a program input (dense row-major, e.g. NHWC) in DRAM after the constants."""
        return self._place_io("input", name, shape, dtype, scale, zero_point)

    def output(
        self, name: str, shape: tuple[int, ...], dtype: str, *, scale: float, zero_point: int = 0
    ) -> Region:
        """Place a program output in DRAM after the constants."""
        return self._place_io("output", name, shape, dtype, scale, zero_point)

    def scratch(self, name: str, nbytes: int, *, align: int = DEFAULT_ALIGN) -> Region:
        """Reserve ``nbytes`` of DRAM scratch (not in the I/O table) after the constants."""
        self._new_name(name)
        if nbytes < 1:
            raise InvalidInputError(f"scratch {name!r}: size {nbytes} must be positive")
        return Region(name, "dram", self._place_dram(name, nbytes, align), nbytes)

    def sram(
        self, name: str, nbytes: int, *, align: int = DEFAULT_ALIGN, at: int | None = None
    ) -> Region:
        """Allocate ``nbytes`` of SRAM upwards from 0 (or ``at``); error past ``sram_bytes``."""
        self._new_name(name)
        if nbytes < 1:
            raise InvalidInputError(f"SRAM region {name!r}: size {nbytes} must be positive")
        addr = align_up(self._sram_next, align) if at is None else at
        if addr < 0 or addr + nbytes > self.hw.sram_bytes:
            raise InvalidInputError(
                f"SRAM region {name!r} [{addr}, {addr + nbytes}) exceeds sram_bytes ="
                f" {self.hw.sram_bytes} of {self.hw.name}",
                hint="shrink the buffers or choose a config with more SRAM",
            )
        self._sram_next = max(self._sram_next, addr + nbytes)
        return Region(name, "sram", addr, nbytes)

    @property
    def dram_end(self) -> int:
        """One past the highest DRAM byte placed so far (constants, I/O, scratch)."""
        return max(self._dram_next, self.data_base + len(self._constants))

    # ------------------------------------------------------------ instructions

    @staticmethod
    def _field_value(where: str, mnemonic: str, name: str, value: FieldValue) -> int:
        f = OPS_BY_MNEMONIC[mnemonic].field(name)
        if isinstance(value, Region):
            return value.addr
        if isinstance(value, Unit | bool):
            return int(value)
        if not isinstance(value, str):
            return int(value)
        if f.kind == "mask":
            units = [u.strip().upper() for u in value.split("|") if u.strip()]
            bad = [u.lower() for u in units if u not in Unit.__members__]
            if bad:
                raise InvalidInputError(
                    f"{where}{mnemonic}: field {name}: unknown unit(s) {', '.join(bad)}",
                    hint=f"units: {', '.join(u.asm_name for u in Unit)}",
                )
            return sum(1 << int(Unit[u]) for u in units)
        names = f.value_names()
        if value not in names:
            raise InvalidInputError(
                f"{where}{mnemonic}: field {name} = {value!r} is not one of {', '.join(names)}"
                if names
                else f"{where}{mnemonic}: field {name} takes an integer, not {value!r}"
            )
        return names.index(value)

    def emit(self, mnemonic: str, **fields: FieldValue) -> int:
        """Append one instruction; return its index.

        Values may be ints, bools (flags), names (dtype ``"int8"``, choice
        ``"add"``, unit ``"mac"``, masks ``"dma_in|itp"``), :class:`Unit` or a
        :class:`Region` (its address). Omitted fields take the table's default.
        """
        index = len(self._instructions)
        where = f"program builder, instruction {index}: "
        op = OPS_BY_MNEMONIC.get(mnemonic)
        if op is None:
            raise InvalidInputError(
                f"{where}unknown instruction {mnemonic!r}",
                hint=f"instructions: {', '.join(OPS_BY_MNEMONIC)}",
            )
        known = {f.name for f in op.all_fields}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise InvalidInputError(
                f"{where}{mnemonic} has no field(s) {', '.join(unknown)}",
                hint=f"{mnemonic} fields: {', '.join(f.name for f in op.all_fields)}",
            )
        missing = [f.name for f in op.all_fields if f.default is None and f.name not in fields]
        if missing:
            raise InvalidInputError(f"{where}{mnemonic} needs field(s) {', '.join(missing)}")
        values = {k: self._field_value(where, mnemonic, k, v) for k, v in fields.items()}
        ins = CLASSES[mnemonic](**values)
        check_ranges(ins, where=where)
        check_instruction(ins, where=where)
        self._instructions.append(ins)
        return index

    def append(self, ins: Instruction) -> int:
        """Append an already built instruction (checked like :meth:`emit`); return its index."""
        where = f"program builder, instruction {len(self._instructions)}: "
        check_ranges(ins, where=where)
        check_instruction(ins, where=where)
        self._instructions.append(ins)
        return len(self._instructions) - 1

    @property
    def instructions(self) -> tuple[Instruction, ...]:
        return tuple(self._instructions)

    def build(self) -> Program:
        """Append END if missing and return the validated program (InvalidInputError if not)."""
        instructions = list(self._instructions)
        if not instructions or instructions[-1].mnemonic != "end":
            instructions.append(CLASSES["end"]())
        program = Program(
            config_hash=self.hw.config_hash_bytes,
            instructions=tuple(instructions),
            constants=bytes(self._constants),
            const_dram_addr=self.data_base,
            io=tuple(self._io),
        )
        program.validate(self.hw)
        return program
