"""Program container: canonical round trip, and a loader that rejects every corruption."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import NPU_M, NPU_S
from npuc.core.isa.instructions import CLASSES
from npuc.core.isa.program import _CRC_OFFSET, HEADER_BYTES, IoTensor, Program
from tests.core.isa.strategies import programs


def _small() -> Program:
    return Program(
        config_hash=NPU_M.config_hash_bytes,
        instructions=(CLASSES["sync"](unit=1, wait=1), CLASSES["end"]()),
        constants=bytes(range(100)),
        const_dram_addr=128,
        io=(
            IoTensor(
                name="x", kind="input", shape=(1, 4, 4, 3), dtype="int8", scale=0.5,
                zero_point=-3, dram_addr=1024,
            ),
        ),
    )  # fmt: skip


def _fix_crc(data: bytes) -> bytes:
    body = data[:_CRC_OFFSET] + b"\0\0\0\0" + data[_CRC_OFFSET + 4 :]
    return data[:_CRC_OFFSET] + struct.pack("<I", zlib.crc32(body)) + data[_CRC_OFFSET + 4 :]


def _load_or_reject(data: bytes) -> None:
    """The loader's contract: InvalidInputError, or a program that validates and re-serialises."""
    try:
        program = Program.from_bytes(data, hw=NPU_M)
    except InvalidInputError:
        return
    program.validate(NPU_M)
    assert program.to_bytes() == data


def test_round_trip_and_save_load(tmp_path: Path) -> None:
    p = _small()
    data = p.to_bytes()
    assert Program.from_bytes(data, hw=NPU_M) == p
    path = tmp_path / "p.npub"
    p.save(path)
    assert path.read_bytes() == data
    assert Program.load(path, hw=NPU_M) == p
    assert [t.name for t in p.inputs] == ["x"] and p.outputs == ()


def test_rejects_other_config_and_bad_files(tmp_path: Path) -> None:
    data = _small().to_bytes()
    with pytest.raises(InvalidInputError, match="built for hardware config"):
        Program.from_bytes(data, hw=NPU_S)
    with pytest.raises(InvalidInputError, match="bad magic"):
        Program.from_bytes(b"hello world" * 10)
    with pytest.raises(InvalidInputError, match="truncated"):
        Program.from_bytes(data[:-1])
    with pytest.raises(InvalidInputError, match="CRC32"):
        Program.from_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(InvalidInputError, match="cannot read"):
        Program.load(tmp_path / "missing.npub")


def test_validation_rules() -> None:
    p = _small()
    end, sync = CLASSES["end"](), CLASSES["sync"](unit=2)
    bad = {
        "END must be the last": dataclasses.replace(p, instructions=(sync,)),
        "no instructions": dataclasses.replace(p, instructions=()),
        "exactly once": dataclasses.replace(p, instructions=(end, end)),
        "overlap": dataclasses.replace(p, const_dram_addr=1000),
        "appears twice": dataclasses.replace(p, io=(p.io[0], p.io[0])),
        "zero_point": dataclasses.replace(p, io=(dataclasses.replace(p.io[0], zero_point=300),)),
        "scale": dataclasses.replace(p, io=(dataclasses.replace(p.io[0], scale=0.0),)),
        "aligned": dataclasses.replace(
            p, io=(dataclasses.replace(p.io[0], dtype="int16", dram_addr=1025),)
        ),
    }
    for needle, program in bad.items():
        with pytest.raises(InvalidInputError, match=needle):
            program.to_bytes()
    huge = dataclasses.replace(p, io=(dataclasses.replace(p.io[0], dram_addr=NPU_M.dram_bytes),))
    with pytest.raises(InvalidInputError, match="dram_bytes"):
        huge.validate(NPU_M)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_round_trip(program: Program) -> None:
    data = program.to_bytes()
    assert Program.from_bytes(data, hw=NPU_M) == program


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(max_instructions=3), st.data())
def test_corruption_is_always_rejected_cleanly(program: Program, data: st.DataObject) -> None:
    good = program.to_bytes()
    kind = data.draw(st.sampled_from(["flip", "flip_fix_crc", "truncate", "append", "header"]))
    if kind == "truncate":
        bad = good[: data.draw(st.integers(0, len(good) - 1))]
    elif kind == "append":
        bad = good + data.draw(st.binary(min_size=1, max_size=70))
    else:
        hi = HEADER_BYTES + 48 if kind == "header" else len(good) - 1
        index = data.draw(st.integers(0, hi))
        bad_arr = bytearray(good)
        bad_arr[index] ^= data.draw(st.integers(1, 255))
        bad = bytes(bad_arr)
        if kind != "flip":
            bad = _fix_crc(bad)  # get past the CRC so the deeper checks are exercised
    _load_or_reject(bad)
    if kind == "flip":
        with pytest.raises(InvalidInputError):
            Program.from_bytes(bad)
