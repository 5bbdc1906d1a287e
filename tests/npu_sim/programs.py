"""Helpers to build small NPU programs in tests (constants laid out, I/O table filled in)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from npuc.core.hw.config import NPU_M, HwConfig
from npuc.core.isa.instructions import Instruction, make
from npuc.core.isa.program import IoTensor, Program

CONST_BASE = 0x0400_0000  # 64 MiB: constants live above the I/O tensors
ALIGN = 64


@dataclass
class ProgramBuilder:
    """Collects constants, I/O tensors and instructions, then makes a :class:`Program`."""

    hw: HwConfig = NPU_M
    constants: bytearray = field(default_factory=bytearray)
    io: list[IoTensor] = field(default_factory=list)
    instructions: list[Instruction] = field(default_factory=list)
    next_io_addr: int = 0

    def const(self, array: np.ndarray) -> int:
        """Append ``array``'s bytes (64-byte aligned); return its DRAM address."""
        pad = -len(self.constants) % ALIGN
        self.constants += bytes(pad)
        addr = CONST_BASE + len(self.constants)
        self.constants += np.ascontiguousarray(array).tobytes()
        return addr

    def tensor(self, name: str, kind: str, shape: tuple[int, ...], dtype: str) -> int:
        """Declare an input/output tensor in DRAM; return its address."""
        addr = self.next_io_addr
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.next_io_addr += nbytes + (-nbytes % ALIGN)
        self.io.append(
            IoTensor(
                name=name,
                kind=kind,
                shape=shape,
                dtype=dtype,
                scale=1.0,
                zero_point=0,
                dram_addr=addr,
            )
        )
        return addr

    def add(self, mnemonic: str, **fields: int) -> Instruction:
        ins = make(mnemonic, **fields)
        self.instructions.append(ins)
        return ins

    def build(self) -> Program:
        instructions = [*self.instructions]
        if not instructions or instructions[-1].mnemonic != "end":
            instructions.append(make("end"))
        return Program(
            config_hash=self.hw.config_hash_bytes,
            instructions=tuple(instructions),
            constants=bytes(self.constants),
            const_dram_addr=CONST_BASE,
            io=tuple(self.io),
        )
