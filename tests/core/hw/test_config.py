"""HwConfig: presets match the spec table, TOML overrides, validation, stable hash."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import (
    KIB,
    MIB,
    NPU_L,
    NPU_M,
    NPU_S,
    PRESETS,
    HwConfig,
    load_hw_config,
    preset,
)

# The spec's table (section 1): rows, cols, MACs/cycle, SRAM, DRAM B/cycle, DMA latency, ITP lanes.
SPEC_TABLE = {
    "npu-s": (16, 16, 256, 256 * KIB, 8, 100, 16),
    "npu-m": (32, 32, 1024, 1 * MIB, 16, 100, 32),
    "npu-l": (64, 64, 4096, 4 * MIB, 32, 120, 64),
}


@pytest.mark.parametrize("name", sorted(SPEC_TABLE))
def test_presets_match_spec_table(name: str) -> None:
    c = preset(name)
    got = (
        c.mac_rows,
        c.mac_cols,
        c.macs_per_cycle,
        c.sram_bytes,
        c.dram_bytes_per_cycle,
        c.dma_latency_cycles,
        c.itp_lanes,
    )
    assert got == SPEC_TABLE[name]
    assert c.clock_hz == 1_000_000_000
    assert c.dma_burst_bytes == 64
    assert c.name == name


def test_default_is_npu_m() -> None:
    assert HwConfig() == NPU_M
    assert set(PRESETS) == {"npu-s", "npu-m", "npu-l"}


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        NPU_M.mac_rows = 8  # type: ignore[misc]


def test_toml_override(tmp_path: Path) -> None:
    f = tmp_path / "hw.toml"
    f.write_text("sram_bytes = 2_097_152\ndma_latency_cycles = 80\n")
    c = load_hw_config(f)
    assert c.sram_bytes == 2 * MIB and c.dma_latency_cycles == 80
    assert c.mac_rows == NPU_M.mac_rows
    f.write_text('preset = "npu-l"\nitp_lanes = 128\n')
    c = load_hw_config(f)
    assert c.mac_rows == 64 and c.itp_lanes == 128 and c.name == "npu-l"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("sram_bites = 4096\n", "sram_bites"),
        ("mac_rows = 0\n", "mac_rows"),
        ("mac_rows = 1025\n", "mac_rows"),
        ("dram_bytes_per_cycle = 0\n", "dram_bytes_per_cycle"),
        ('itp_lanes = "32"\n', "itp_lanes"),
        ("dma_burst_bytes = 48\n", "dma_burst_bytes"),
        ("lut_bits_max = 11\n", "lut_bits_max"),
        ("sram_bytes = 4294967297\n", "sram_bytes"),
        ("mac_cols = true\n", "mac_cols"),
        ('preset = "npu-xl"\n', "npu-xl"),
    ],
)
def test_toml_rejects_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "hw.toml"
    f.write_text(text)
    with pytest.raises(InvalidInputError) as info:
        load_hw_config(f)
    assert key in info.value.message


def test_toml_syntax_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "hw.toml"
    f.write_text("mac_rows = = 3\n")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        load_hw_config(f)
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_hw_config(tmp_path / "missing.toml")


def test_hash_is_stable() -> None:
    # Golden values: changing them invalidates every compiled program (bump deliberately).
    assert NPU_S.config_hash == "7403102e0cabec8a"
    assert NPU_M.config_hash == "1ac6bb47f0ca7dba"
    assert NPU_L.config_hash == "1f0229782c4161da"
    assert HwConfig().config_hash == NPU_M.config_hash
    assert len(NPU_M.config_hash_bytes) == 8


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(HwConfig)])
def test_hash_sensitive_to_every_field(field: str) -> None:
    value = getattr(NPU_M, field)
    if isinstance(value, str):
        other = value + "x"
    elif field == "dma_burst_bytes":
        other = value * 2
    else:
        other = value - 1 if value > 1 else value + 1
    changed = dataclasses.replace(NPU_M, **{field: other})
    assert changed.config_hash != NPU_M.config_hash


def test_cli_options_resolve(tmp_path: Path) -> None:
    import argparse

    from npuc.core.hw.cli_options import add_hw_options, resolve_hw

    parser = argparse.ArgumentParser()
    add_hw_options(parser)
    assert resolve_hw(parser.parse_args([])) == NPU_M
    assert resolve_hw(parser.parse_args(["--hw-preset", "npu-l"])) == NPU_L
    f = tmp_path / "hw.toml"
    f.write_text('preset = "npu-s"\nsram_bytes = 524288\n')
    c = resolve_hw(parser.parse_args(["--hw", str(f)]))
    assert c.mac_rows == 16 and c.sram_bytes == 512 * KIB
    with pytest.raises(SystemExit):
        parser.parse_args(["--hw", str(f), "--hw-preset", "npu-s"])


def test_toml_that_is_not_text_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "hw.toml"
    f.write_bytes(b"\xff\xfe mac_rows = 8")
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        load_hw_config(f)
