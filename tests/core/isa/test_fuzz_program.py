"""Fuzzing the ``.npub`` loader: every mutated file loads or fails with npuc's own error.

Seeds are the assembled examples plus hand-made programs with I/O tables.
Three kinds of mutation: raw bytes (mostly stopped by the CRC), bytes with
the size and CRC fields fixed up (so the section, code and I/O table checks
see them), and I/O table entries whose JSON values change type (a list for
``dtype``, strings in ``shape``, huge integers ...) written back with a valid
CRC -- the handed ``npub_iotab_dtype_list`` kind.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from npuc.cli.main import main
from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import NPU_M
from npuc.core.isa import program as npub
from npuc.core.isa.asm import assemble_file, disassemble
from npuc.core.isa.builder import ProgramBuilder
from npuc.core.isa.program import Program
from tests.tooling.fuzz import INTERESTING_INTS, Tally, mutate_bytes, time_bound

ROOT = Path(__file__).resolve().parents[3]
IO_KEYS = ("name", "kind", "shape", "dtype", "scale", "zero_point", "dram_addr")
WRONG_VALUES: tuple[object, ...] = (
    None, True, False, 0, -1, 1.5, float("nan"), float("inf"), "", "int8", "input", "x" * 300,
    [], [1], ["1"], [1.5], [True], [[1]], [0], [-1], [2**40] * 8, [1] * 9, {}, {"a": 1},
    *INTERESTING_INTS, 10**30, -(10**30),
)  # fmt: skip


def seed_programs() -> list[bytes]:
    """The examples, assembled, and small programs with one and two I/O tensors."""
    seeds = [assemble_file(p, hw=NPU_M).to_bytes() for p in sorted((ROOT / "examples").glob("*.s"))]
    b = ProgramBuilder(NPU_M)
    b.constant("w", np.array([1, 2, 3]), dtype="int8")
    b.input("x", (1, 4, 4, 2), "int8", scale=0.5, zero_point=-3)
    b.output("y", (1, 4, 4, 2), "int16", scale=0.25)
    seeds.append(b.build().to_bytes())
    b = ProgramBuilder(NPU_M)
    b.input("only", (8,), "uint8", scale=1.0)
    seeds.append(b.build().to_bytes())
    return seeds


def _sections(data: bytes) -> list[bytes]:
    out = []
    for i in range(len(npub.SECTION_KINDS)):
        at = npub.HEADER_BYTES + npub.SECTION_ENTRY_BYTES * i
        _kind, offset, size, _param = npub._SECTION.unpack_from(data, at)
        out.append(data[offset : offset + size])
    return out


def with_iotab(data: bytes, iotab: bytes, count: int | None = None) -> bytes:
    """``data`` with its I/O table replaced, offsets, total size and CRC made consistent."""
    code, const, _ = _sections(data)
    payloads = (code, const, iotab)
    table = b""
    offset = npub.HEADER_BYTES + npub.SECTION_ENTRY_BYTES * len(payloads)
    for i, payload in enumerate(payloads):
        at = npub.HEADER_BYTES + npub.SECTION_ENTRY_BYTES * i
        kind, _offset, _size, param = npub._SECTION.unpack_from(data, at)
        if i == 2 and count is not None:
            param = count
        table += npub._SECTION.pack(kind, offset, len(payload), param)
        offset += len(payload)
    return fix_up(data[: npub.HEADER_BYTES] + table + b"".join(payloads))


def fix_up(data: bytes) -> bytes:
    """``data`` with its header's total size and CRC32 recomputed (when it has a header)."""
    if len(data) < npub.HEADER_BYTES:
        return data
    total_at = npub._CRC_OFFSET - 4
    data = data[:total_at] + struct.pack("<I", len(data)) + data[total_at + 4 :]
    body = data[: npub._CRC_OFFSET] + b"\0\0\0\0" + data[npub._CRC_OFFSET + 4 :]
    crc = struct.pack("<I", zlib.crc32(body))
    return data[: npub._CRC_OFFSET] + crc + data[npub._CRC_OFFSET + 4 :]


def swap_io_types(rng: random.Random, data: bytes) -> bytes:
    """An I/O table entry (or the table) with a value, key or structure of the wrong JSON type."""
    entries = json.loads(_sections(data)[2])
    kind = rng.randrange(6)
    if entries and kind <= 2:
        entry = rng.choice(entries)
        entry[rng.choice(IO_KEYS)] = rng.choice(WRONG_VALUES)
    elif entries and kind == 3:
        entry = rng.choice(entries)
        del entry[rng.choice(IO_KEYS)]
        if rng.random() < 0.5:
            entry["extra"] = rng.choice(WRONG_VALUES)
    elif kind == 4:
        entries.append(rng.choice(WRONG_VALUES))
    else:
        entries = rng.choice(WRONG_VALUES)
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    count = len(entries) if isinstance(entries, list) else rng.randrange(3)
    return with_iotab(data, text.encode("utf-8"), count)


def _load_and_use(data: bytes) -> None:
    program = Program.from_bytes(data, hw=NPU_M, source="fuzz.npub")
    assert program.to_bytes() == data  # accepted files are canonical
    disassemble(program)


def fuzz_program_loader(cases: int, seed: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally(f"npub (seed {seed})")
    seeds = seed_programs()
    for data in seeds:
        assert tally.run("seed", data, lambda d=data: _load_and_use(d)) == "ok"
    for _ in range(cases):
        data = rng.choice(seeds)
        kind = rng.choice(("bytes", "bytes+crc", "iotab"))
        if kind == "bytes":
            data = mutate_bytes(rng, data)
        elif kind == "bytes+crc":
            data = fix_up(mutate_bytes(rng, data))
        else:
            data = swap_io_types(rng, data)
        tally.run(kind, data, lambda d=data: _load_and_use(d))
    return tally


def test_fuzz_program_loader_short() -> None:
    tally = fuzz_program_loader(1000, seed=1)
    tally.check()
    assert tally.outcomes["InvalidInputError"] > 0


@pytest.mark.slow
def test_fuzz_program_loader_long() -> None:
    fuzz_program_loader(30000, seed=2).check()


# ----------------------------------------------------------------------------- handed kinds


@pytest.mark.parametrize("key", IO_KEYS)
@pytest.mark.parametrize("value", [["int8"], {"a": 1}, None, True, -2.5, [[1]], "1"])
def test_io_entry_of_the_wrong_type_with_a_valid_crc(key: str, value: object) -> None:
    data = seed_programs()[-2]
    entries = json.loads(_sections(data)[2])
    if entries[0][key] == value:
        return
    entries[0][key] = value
    bad = with_iotab(data, json.dumps(entries, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(InvalidInputError, match=rf"fuzz\.npub: I/O table entry 0.*{key}"):
        Program.from_bytes(bad, source="fuzz.npub")


def test_io_table_integer_beyond_the_digit_limit() -> None:
    data = seed_programs()[-1]
    iotab = _sections(data)[2].replace(b'"dram_addr":0', b'"dram_addr":' + b"9" * 5000)
    with pytest.raises(InvalidInputError, match="I/O table is not valid"):
        Program.from_bytes(with_iotab(data, iotab), source="fuzz.npub")


def test_wrong_types_exit_3_through_disasm_and_sim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = seed_programs()[-2]
    entries = json.loads(_sections(data)[2])
    entries[0]["dtype"] = ["int8"]
    path = tmp_path / "bad.npub"
    path.write_bytes(with_iotab(data, json.dumps(entries).encode()))
    for argv in (["disasm", str(path)], ["sim", str(path), "--hw-preset", "npu-m"]):
        assert main(argv) == 3
        err = capsys.readouterr().err
        assert "bad.npub" in err and "dtype" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- closed pipes


def _npuc(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from npuc.cli.main import main; sys.exit(main())",
        *args,
    ]


@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_a_reader_closing_stdout_early_is_not_an_error(tmp_path: Path, flags: list[str]) -> None:
    """``npuc disasm big.npub | head -1``: no BrokenPipeError traceback, exit 0."""
    b = ProgramBuilder(NPU_M)
    x = b.input("x", (4096,), "int8", scale=1.0)
    x_s = b.sram("x_s", 4096)
    for _ in range(3000):
        b.emit("dma_load", dram_addr=x, sram_addr=x_s, row_bytes=64)
    path = tmp_path / "big.npub"
    b.build().save(path)
    command = _npuc("disasm", str(path), *flags)
    with (
        time_bound(60.0),
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc,
    ):
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # like `| head -1`
        err = proc.stderr.read().decode()
        code = proc.wait()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 0
