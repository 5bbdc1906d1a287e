"""The NPU hardware configuration: one frozen dataclass, presets, TOML overrides, a stable hash.

Guarantees
----------
- A :class:`HwConfig` that exists is valid: ``__post_init__`` checks every
  field's type and range and names the field in the error.
- Field meanings and units live in the field metadata (``unit``, ``doc``);
  docs/hw_config.md is generated from them (tools/gen_npu_docs.py).
- :attr:`HwConfig.config_hash` depends on every field and on nothing else
  (canonical JSON, SHA-256); it is stored in every program and checked on load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npuc.core.errors import InvalidInputError, describe

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
CONFIG_HASH_BYTES = 8


def _field(default: Any, unit: str, doc: str, lo: int | None = None, hi: int | None = None) -> Any:
    return field(default=default, metadata={"unit": unit, "doc": doc, "lo": lo, "hi": hi})


@dataclass(frozen=True, slots=True, kw_only=True)
class HwConfig:
    """One NPU device. Defaults are the ``npu-m`` preset; see docs/hw_config.md."""

    name: str = _field("npu-m", "-", "preset or user name of the device (part of the hash)")
    clock_hz: int = _field(
        1_000_000_000, "Hz", "core clock; converts cycles to seconds", 1_000_000, 10**10
    )
    mac_rows: int = _field(
        32, "MACs", "MAC array rows = output channels computed in parallel", 1, 1024
    )
    mac_cols: int = _field(
        32, "MACs", "MAC array columns = input channels reduced in parallel", 1, 1024
    )
    sram_bytes: int = _field(
        1 * MIB, "bytes", "on-chip SRAM holding all compute operands", KIB, 1 << 32
    )
    dram_bytes: int = _field(
        256 * MIB, "bytes", "DRAM size (program constants, I/O, spills)", MIB, 1 << 32
    )
    dram_bytes_per_cycle: int = _field(
        16, "bytes/cycle", "DMA bandwidth between DRAM and SRAM", 1, 4096
    )
    dma_latency_cycles: int = _field(
        100, "cycles", "fixed cost of every DMA instruction", 0, 1_000_000
    )
    dma_burst_bytes: int = _field(
        64, "bytes", "DRAM burst; shorter contiguous runs cost a full burst", 1, 4096
    )
    itp_lanes: int = _field(32, "elements/cycle", "ITP (post-processing) vector lanes", 1, 4096)
    mac_pipeline_fill_cycles: int = _field(
        64, "cycles", "MAC array fill/drain per CONV/FC instruction (rows + cols)", 0, 1_000_000
    )
    itp_fill_cycles: int = _field(8, "cycles", "ITP pipeline fill per instruction", 0, 1_000_000)
    lut_bits_max: int = _field(10, "bits", "largest k of an int16 LUT (2^k + 1 entries)", 1, 10)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "name":
                if not isinstance(value, str) or not 1 <= len(value) <= 64:
                    raise InvalidInputError(
                        f"hardware config field name = {describe(value)} must be a string"
                        " of 1-64 characters"
                    )
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInputError(
                    f"hardware config field {f.name} = {describe(value)} must be an integer"
                    f" ({f.metadata['unit']})"
                )
            lo, hi = f.metadata["lo"], f.metadata["hi"]
            if not lo <= value <= hi:
                raise InvalidInputError(
                    f"hardware config field {f.name} = {describe(value)} is outside [{lo}, {hi}]",
                    hint=f"{f.name}: {f.metadata['doc']} ({f.metadata['unit']})",
                )
        if self.dma_burst_bytes & (self.dma_burst_bytes - 1):
            raise InvalidInputError(
                f"hardware config field dma_burst_bytes = {self.dma_burst_bytes}"
                " is not a power of two"
            )

    @property
    def macs_per_cycle(self) -> int:
        """Peak MACs per cycle (``mac_rows * mac_cols``)."""
        return self.mac_rows * self.mac_cols

    @property
    def peak_macs_per_second(self) -> int:
        return self.macs_per_cycle * self.clock_hz

    @property
    def dram_bytes_per_second(self) -> int:
        return self.dram_bytes_per_cycle * self.clock_hz

    def to_dict(self) -> dict[str, Any]:
        """Field values by name (the canonical content that is hashed)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def config_hash_bytes(self) -> bytes:
        """First 8 bytes of SHA-256 over the canonical JSON of all fields."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).digest()[:CONFIG_HASH_BYTES]

    @property
    def config_hash(self) -> str:
        """:attr:`config_hash_bytes` as 16 hex digits."""
        return self.config_hash_bytes.hex()

    def cycles_to_seconds(self, cycles: int | float) -> float:
        return float(cycles) / self.clock_hz


def field_docs() -> list[tuple[str, str, str]]:
    """``(name, unit, meaning)`` of every field, in declaration order (for docs)."""
    return [(f.name, f.metadata["unit"], f.metadata["doc"]) for f in dataclasses.fields(HwConfig)]


NPU_S = HwConfig(
    name="npu-s",
    mac_rows=16,
    mac_cols=16,
    sram_bytes=256 * KIB,
    dram_bytes=256 * MIB,
    dram_bytes_per_cycle=8,
    dma_latency_cycles=100,
    itp_lanes=16,
    mac_pipeline_fill_cycles=32,
)
NPU_M = HwConfig()
NPU_L = HwConfig(
    name="npu-l",
    mac_rows=64,
    mac_cols=64,
    sram_bytes=4 * MIB,
    dram_bytes=1 * GIB,
    dram_bytes_per_cycle=32,
    dma_latency_cycles=120,
    itp_lanes=64,
    mac_pipeline_fill_cycles=128,
)
PRESETS: dict[str, HwConfig] = {c.name: c for c in (NPU_S, NPU_M, NPU_L)}
DEFAULT_PRESET = "npu-m"


def preset(name: str) -> HwConfig:
    """The preset called ``name`` (``npu-s``, ``npu-m``, ``npu-l``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown hardware preset {name!r}", hint=f"choose one of {', '.join(PRESETS)}"
        ) from None


def hw_config_from_dict(
    values: dict[str, Any], *, base: HwConfig = NPU_M, source: str = ""
) -> HwConfig:
    """Override ``base`` with ``values``; a ``preset`` key picks the base by name.

    Unknown keys and invalid values raise InvalidInputError naming the key.
    """
    where = f"{source}: " if source else ""
    values = dict(values)
    if "preset" in values:
        name = values.pop("preset")
        if not isinstance(name, str):
            raise InvalidInputError(f"{where}key 'preset' must be a preset name string")
        try:
            base = preset(name)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}{exc.message}", hint=exc.hint) from None
    known = {f.name for f in dataclasses.fields(HwConfig)}
    for key in values:
        if key not in known:
            raise InvalidInputError(
                f"{where}unknown hardware config key {describe(key)}",
                hint=f"known keys: preset, {', '.join(sorted(known))}",
            )
    try:
        return dataclasses.replace(base, **values)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}{exc.message}", hint=exc.hint) from None


def load_hw_config(path: str | Path, *, base: HwConfig = NPU_M) -> HwConfig:
    """Load a TOML file of field overrides on top of ``base`` (default ``npu-m``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read hardware config {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"cannot read hardware config {p}: not UTF-8 text", hint="write it as a TOML text file"
        ) from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"{p}: not valid TOML: {exc}") from None
    except ValueError:  # an integer literal beyond Python's 4,300-digit limit
        raise InvalidInputError(
            f"{p}: not valid TOML: an integer has more digits than any field can hold",
            hint="every hardware config value fits in 64 bits",
        ) from None
    except RecursionError:
        raise InvalidInputError(f"{p}: not valid TOML: values nest too deeply") from None
    return hw_config_from_dict(values, base=base, source=str(p))
