"""ProgramBuilder: the same program as the assembler, and clear errors for bad fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import NPU_M, NPU_S
from npuc.core.isa.asm.assembler import assemble_file
from npuc.core.isa.builder import ProgramBuilder
from npuc.core.isa.program import Program
from npuc.core.isa.types import Unit

EXAMPLES = sorted((Path(__file__).parents[3] / "examples").glob("*.s"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_rebuilding_an_example_gives_the_same_bytes(path: Path) -> None:
    asm = assemble_file(path, hw=NPU_M)
    b = ProgramBuilder(NPU_M, data_base=asm.const_dram_addr)
    if asm.constants:
        b.constant("blob", np.frombuffer(asm.constants, dtype=np.uint8))
    for t in asm.io:
        place = b.input if t.kind == "input" else b.output
        region = place(t.name, t.shape, t.dtype, scale=t.scale, zero_point=t.zero_point)
        assert region.addr == t.dram_addr
    for ins in asm.instructions:
        b.emit(ins.mnemonic, **ins.values())
    built = b.build()
    assert built.to_bytes() == asm.to_bytes()
    assert Program.from_bytes(built.to_bytes(), hw=NPU_M) == built


def test_typed_values_and_regions() -> None:
    b = ProgramBuilder(NPU_S)
    w = b.constant("w", np.arange(-8, 8, dtype=np.int8))
    m = b.constant("m", np.full(4, 300, dtype=np.uint16))
    assert (w.addr, m.addr, m.nbytes) == (0, 64, 8)
    x = b.input("x", (1, 2, 2, 4), "int8", scale=0.5, zero_point=-1)
    assert x.addr == 128
    s = b.sram("x_s", x.nbytes)
    b.emit("dma_load", dram_addr=x, sram_addr=s, row_bytes=x.nbytes, signal="itp")
    b.emit("sync", unit=Unit.ITP, wait="dma_in")
    program = b.build()
    assert [i.mnemonic for i in program.instructions] == ["dma_load", "sync", "end"]
    assert program.instructions[0].signal == 1 << int(Unit.ITP)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mnemonic", "fields", "message"),
    [
        ("convolve", {}, "unknown instruction 'convolve'"),
        ("sync", {"unit": 1, "speed": 3}, "sync has no field"),
        ("dma_load", {"dram_addr": 0}, "needs field"),
        ("sync", {"unit": 9}, "field unit = 9 is outside"),
        ("sync", {"unit": "mac", "wait": "mac"}, "cannot wait for or signal itself"),
        ("sync", {"unit": "gpu"}, "field unit = 'gpu' is not one of"),
        ("sync", {"unit": 1, "wait": "dma_in|npu"}, "unknown unit"),
    ],
)
def test_bad_instructions_are_named(mnemonic: str, fields: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        ProgramBuilder(NPU_S).emit(mnemonic, **fields)


def test_memory_errors() -> None:
    b = ProgramBuilder(NPU_S)
    b.input("x", (1, 4), "int8", scale=1.0)
    with pytest.raises(InvalidInputError, match="before the first input"):
        b.constant("late", np.zeros(4, np.int8))
    with pytest.raises(InvalidInputError, match="used twice"):
        b.scratch("x", 16)
    with pytest.raises(InvalidInputError, match="exceeds sram_bytes"):
        b.sram("huge", NPU_S.sram_bytes + 1)
    with pytest.raises(InvalidInputError, match="do not fit int8"):
        ProgramBuilder(NPU_S).constant("c", np.array([300]), dtype="int8")
