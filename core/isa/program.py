"""The NPU program container (``.npub``): header, code, constants, I/O table.

Layout (all little-endian; spec section 7)::

    header   64 bytes  magic "NPUCPROG", format version, header size, section count,
                       instruction size, config hash (8 bytes), total size, CRC32
    sections 3 x 16    (kind, offset, size, param): CODE (param = instruction count),
                       CONST (param = DRAM address of the constant block), IOTAB (param = entries)
    CODE               instruction count x 64-byte instructions (npuc.core.isa.encoding)
    CONST              raw bytes copied to DRAM at CONST.param before the program runs
    IOTAB              UTF-8 canonical JSON list of I/O tensors

Sections follow the table back to back in that order, so a file has exactly
one canonical form. The CRC32 covers the whole file with the CRC field zeroed.

Guarantee: :meth:`Program.from_bytes` either returns a program whose every
instruction decodes, is in range and is well formed (npuc.core.isa.checks), whose
I/O table is consistent, and (given ``hw``) whose config hash matches and
whose DRAM regions fit -- or raises InvalidInputError. Nothing half-valid
ever reaches a simulator.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npuc.core.errors import InvalidInputError, describe
from npuc.core.fileio import write_bytes_atomic
from npuc.core.hw.config import CONFIG_HASH_BYTES, HwConfig
from npuc.core.isa.checks import check_instruction
from npuc.core.isa.definition import INSTRUCTION_BYTES
from npuc.core.isa.encoding import decode_all, encode_all
from npuc.core.isa.instructions import Instruction, check_ranges
from npuc.core.isa.types import DTYPE_BYTES, DTYPE_RANGES

MAGIC = b"NPUCPROG"
FORMAT_VERSION = 1
HEADER_BYTES = 64
SECTION_ENTRY_BYTES = 16
SECTION_CODE, SECTION_CONST, SECTION_IOTAB = 1, 2, 3
SECTION_KINDS = (SECTION_CODE, SECTION_CONST, SECTION_IOTAB)
_HEADER = struct.Struct("<8sHHHH8sII")  # magic, version, header, sections, insn, hash, total, crc
_CRC_OFFSET = 8 + 2 * 4 + CONFIG_HASH_BYTES + 4
_SECTION = struct.Struct("<IIII")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")
U32_MAX = (1 << 32) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class IoTensor:
    """One program input or output living in DRAM (dense, row-major, e.g. NHWC)."""

    name: str
    kind: str  # "input" or "output"
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int
    dram_addr: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
            "dram_addr": self.dram_addr,
        }


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_io_tensor(t: IoTensor, *, where: str = "") -> None:
    """Raise InvalidInputError if an I/O entry is malformed (names the entry and field).

    Every field is type-checked first, so entries read from a file's JSON
    with the wrong types (a list for ``dtype``, strings in ``shape``) are
    reported, never crash.
    """
    w = f"{where}I/O tensor {describe(t.name)}: "
    if not isinstance(t.name, str) or not _NAME_RE.match(t.name):
        raise InvalidInputError(f"{w}name must be an identifier of at most 128 characters")
    if not isinstance(t.kind, str) or t.kind not in ("input", "output"):
        raise InvalidInputError(f"{w}kind {describe(t.kind)} is not 'input' or 'output'")
    if not isinstance(t.dtype, str) or t.dtype not in DTYPE_BYTES:
        raise InvalidInputError(
            f"{w}dtype {describe(t.dtype)} is not one of {', '.join(DTYPE_BYTES)}"
        )
    if not isinstance(t.shape, tuple) or not 0 < len(t.shape) <= 8:
        raise InvalidInputError(f"{w}shape must have 1 to 8 dimensions")
    if not all(_is_int(d) and 1 <= d <= U32_MAX for d in t.shape):
        raise InvalidInputError(
            f"{w}shape {describe(list(t.shape))} must hold integers in [1, {U32_MAX}]"
        )
    if not isinstance(t.scale, float) or not math.isfinite(t.scale) or t.scale <= 0:
        raise InvalidInputError(f"{w}scale {describe(t.scale)} must be a positive finite float")
    lo, hi = DTYPE_RANGES[t.dtype]
    if not _is_int(t.zero_point) or not lo <= t.zero_point <= hi:
        raise InvalidInputError(
            f"{w}zero_point {describe(t.zero_point)} must be an integer in [{lo}, {hi}]"
        )
    if not _is_int(t.dram_addr) or not 0 <= t.dram_addr <= U32_MAX - t.nbytes:
        raise InvalidInputError(f"{w}dram_addr {describe(t.dram_addr)} is outside the 32-bit space")
    if t.dram_addr % DTYPE_BYTES[t.dtype]:
        raise InvalidInputError(f"{w}dram_addr {t.dram_addr} is not aligned to its element size")


def _io_from_json(entry: object, index: int) -> IoTensor:
    keys = {"name", "kind", "shape", "dtype", "scale", "zero_point", "dram_addr"}
    if not isinstance(entry, dict) or set(entry) != keys:
        raise InvalidInputError(
            f"I/O table entry {index} is not an object with exactly the keys {sorted(keys)}"
        )
    if not isinstance(entry["shape"], list):
        raise InvalidInputError(f"I/O table entry {index}: shape is not a list")
    t = IoTensor(
        name=entry["name"],
        kind=entry["kind"],
        shape=tuple(entry["shape"]),
        dtype=entry["dtype"],
        scale=entry["scale"],
        zero_point=entry["zero_point"],
        dram_addr=entry["dram_addr"],
    )
    check_io_tensor(t, where=f"I/O table entry {index}, ")
    return t


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Program:
    """A complete NPU program: code, constants placed in DRAM, and the I/O table."""

    config_hash: bytes
    instructions: tuple[Instruction, ...]
    constants: bytes = b""
    const_dram_addr: int = 0
    io: tuple[IoTensor, ...] = field(default=())

    @property
    def inputs(self) -> tuple[IoTensor, ...]:
        return tuple(t for t in self.io if t.kind == "input")

    @property
    def outputs(self) -> tuple[IoTensor, ...]:
        return tuple(t for t in self.io if t.kind == "output")

    def validate(self, hw: HwConfig | None = None) -> None:
        """Raise InvalidInputError unless the program is fully valid (for ``hw`` if given)."""
        if not isinstance(self.config_hash, bytes) or len(self.config_hash) != CONFIG_HASH_BYTES:
            raise InvalidInputError("program config hash must be 8 bytes")
        if hw is not None and self.config_hash != hw.config_hash_bytes:
            raise InvalidInputError(
                f"program was built for hardware config {self.config_hash.hex()}, "
                f"not for {hw.name} ({hw.config_hash})",
                hint="rebuild for this config, or pass the --hw/--hw-preset it was built for",
            )
        if not self.instructions:
            raise InvalidInputError("program has no instructions (it must end with END)")
        for i, ins in enumerate(self.instructions):
            where = f"instruction {i}: "
            check_ranges(ins, where=where)
            check_instruction(ins, where=where)
            values = ins.values()
            lut_on = ins.mnemonic == "lut" or values.get("lut_en", 0)
            if hw is not None and lut_on and values["lut_bits"] > hw.lut_bits_max:
                raise InvalidInputError(
                    f"{where}lut_bits = {values['lut_bits']} exceeds lut_bits_max = "
                    f"{hw.lut_bits_max} of {hw.name}"
                )
            is_last = i == len(self.instructions) - 1
            if (ins.mnemonic == "end") != is_last:
                raise InvalidInputError(
                    f"{where}END must be the last instruction and appear exactly once"
                )
        if not 0 <= self.const_dram_addr <= U32_MAX - len(self.constants):
            raise InvalidInputError("constant block does not fit in the 32-bit DRAM space")
        regions = [
            ("constants", (self.const_dram_addr, self.const_dram_addr + len(self.constants)))
        ]
        names: set[str] = set()
        for t in self.io:
            check_io_tensor(t)
            if t.name in names:
                raise InvalidInputError(f"I/O tensor name {t.name!r} appears twice")
            names.add(t.name)
            regions.append((f"I/O tensor {t.name!r}", (t.dram_addr, t.dram_addr + t.nbytes)))
        for i, (name_a, ra) in enumerate(regions):
            if hw is not None and ra[1] > hw.dram_bytes:
                raise InvalidInputError(
                    f"{name_a} ends at DRAM byte {ra[1]}, beyond dram_bytes = {hw.dram_bytes}"
                )
            for name_b, rb in regions[i + 1 :]:
                if ra[0] != ra[1] and rb[0] != rb[1] and _overlap(ra, rb):
                    raise InvalidInputError(f"{name_a} and {name_b} overlap in DRAM")

    def to_bytes(self) -> bytes:
        """Serialise (after :meth:`validate`) to the canonical binary form."""
        self.validate()
        code = encode_all(self.instructions)
        iotab = json.dumps(
            [t.to_json() for t in self.io], sort_keys=True, separators=(",", ":")
        ).encode("utf-8")
        sections = (
            (SECTION_CODE, code, len(self.instructions)),
            (SECTION_CONST, self.constants, self.const_dram_addr),
            (SECTION_IOTAB, iotab, len(self.io)),
        )
        offset = HEADER_BYTES + SECTION_ENTRY_BYTES * len(sections)
        table = b""
        for kind, payload, param in sections:
            table += _SECTION.pack(kind, offset, len(payload), param)
            offset += len(payload)
        if offset > U32_MAX:
            raise InvalidInputError(f"program is {offset} bytes, beyond the 4 GiB format limit")
        header = _HEADER.pack(
            MAGIC, FORMAT_VERSION, HEADER_BYTES, len(sections), INSTRUCTION_BYTES,
            self.config_hash, offset, 0,
        ).ljust(HEADER_BYTES, b"\0")  # fmt: skip
        body = header + table + code + self.constants + iotab
        crc = zlib.crc32(body)
        return body[:_CRC_OFFSET] + struct.pack("<I", crc) + body[_CRC_OFFSET + 4 :]

    @classmethod
    def from_bytes(
        cls, data: bytes, *, hw: HwConfig | None = None, source: str = "program"
    ) -> Program:
        """Parse and fully validate a binary; raise InvalidInputError naming ``source`` if bad."""
        try:
            return _parse(data, hw)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{source}: {exc.message}", hint=exc.hint) from None

    def save(self, path: str | Path) -> None:
        """Write atomically to ``path``."""
        write_bytes_atomic(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path, *, hw: HwConfig | None = None) -> Program:
        """Read and validate a ``.npub`` file."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"cannot read program {path}: {exc.strerror}") from None
        return cls.from_bytes(data, hw=hw, source=str(path))


def _parse(data: bytes, hw: HwConfig | None) -> Program:
    if len(data) < HEADER_BYTES or data[:8] != MAGIC:
        raise InvalidInputError(
            "not an npuc program (bad magic or shorter than the header)",
            hint="pass a .npub file written by `npuc asm` or `npuc build`",
        )
    _magic, version, header_bytes, n_sections, insn_bytes, chash, total, crc = _HEADER.unpack_from(
        data
    )
    if version != FORMAT_VERSION:
        raise InvalidInputError(
            f"program format version {version} is not supported (this npuc reads {FORMAT_VERSION})"
        )
    if header_bytes != HEADER_BYTES or insn_bytes != INSTRUCTION_BYTES:
        raise InvalidInputError("header or instruction size field is wrong (corrupt file)")
    if total != len(data):
        raise InvalidInputError(
            f"file is {len(data)} bytes but its header says {total} (truncated or padded)"
        )
    body = data[:_CRC_OFFSET] + b"\0\0\0\0" + data[_CRC_OFFSET + 4 :]
    if zlib.crc32(body) != crc:
        raise InvalidInputError("CRC32 mismatch: the file is corrupt")
    if any(data[_HEADER.size : HEADER_BYTES]):
        raise InvalidInputError("reserved header bytes are not zero (corrupt file)")
    if n_sections != len(SECTION_KINDS):
        raise InvalidInputError(f"expected {len(SECTION_KINDS)} sections, header says {n_sections}")
    offset = HEADER_BYTES + SECTION_ENTRY_BYTES * n_sections
    payloads: list[tuple[bytes, int]] = []
    for i, kind in enumerate(SECTION_KINDS):
        entry = data[
            HEADER_BYTES + SECTION_ENTRY_BYTES * i : HEADER_BYTES + SECTION_ENTRY_BYTES * (i + 1)
        ]
        if len(entry) < SECTION_ENTRY_BYTES:
            raise InvalidInputError("section table is truncated")
        got_kind, got_offset, size, param = _SECTION.unpack(entry)
        if got_kind != kind or got_offset != offset or offset + size > len(data):
            raise InvalidInputError(f"section table entry {i} is inconsistent (corrupt file)")
        payloads.append((data[offset : offset + size], param))
        offset += size
    if offset != len(data):
        raise InvalidInputError("sections do not cover the file exactly (corrupt file)")
    (code, n_insn), (constants, const_addr), (iotab, n_io) = payloads
    if len(code) != n_insn * INSTRUCTION_BYTES:
        raise InvalidInputError("code section size does not match its instruction count")
    instructions = decode_all(code)
    try:
        entries = json.loads(iotab.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: also huge ints
        raise InvalidInputError("I/O table is not valid UTF-8 JSON (corrupt file)") from None
    if not isinstance(entries, list) or len(entries) != n_io:
        raise InvalidInputError("I/O table entry count does not match the section table")
    io = tuple(_io_from_json(e, i) for i, e in enumerate(entries))
    program = Program(
        config_hash=chash,
        instructions=instructions,
        constants=constants,
        const_dram_addr=const_addr,
        io=io,
    )
    program.validate(hw)
    if program.to_bytes() != data:
        raise InvalidInputError("file is not in canonical form (corrupt or foreign writer)")
    return program
