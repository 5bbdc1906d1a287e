"""bench/npu_vela_parse.py on saved Vela 5.2 output (MobileNetV2 on an npu-s-like Ethos-U65-256):
summary totals, per-layer rows merged per operator, layer matching, the generated system config.
Needs neither TensorFlow nor Vela."""

from __future__ import annotations

import configparser
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from npuc.core.hw.config import NPU_M, NPU_S, HwConfig

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def parse() -> ModuleType:
    path = ROOT / "bench" / "npu_vela_parse.py"
    spec = importlib.util.spec_from_file_location("npu_vela_parse", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["npu_vela_parse"] = module
    spec.loader.exec_module(module)
    return module


def test_summary_totals(parse: ModuleType) -> None:
    s = parse.read_summary(DATA / "vela_summary.csv")
    # The file's own numbers: cycles_total, nn_macs, dram_total_bytes, sram_memory_used (KiB).
    assert s.cycles == 3235650
    assert s.macs == 300838992
    assert s.dram_bytes == 8141296
    assert s.sram_used_bytes == round(254.3125 * 1024)
    assert s.encoded_weight_bytes == 3492720


def test_layers_merge_fused_rows(parse: ModuleType) -> None:
    layers = parse.read_layers(DATA / "vela_per-layer.csv")
    # 7 rows: Conv2D + its Relu6 row, depthwise + Relu6, two convs, the fully connected.
    assert [v.op for v in layers] == [
        "Conv2D",
        "DepthwiseConv2D",
        "Conv2D",
        "Conv2D",
        "FullyConnected",
    ]
    assert [v.macs for v in layers] == [10838016, 3612672, 6422528, 19267584, 1280000]
    assert [v.cycles for v in layers] == [215752, 151644, 50800, 302048, 165330]


def test_matching_skips_a_missing_layer(parse: ModuleType) -> None:
    vela = parse.read_layers(DATA / "vela_per-layer.csv")
    ours = [
        {"layer": "conv2d_0", "macs": 10838016},
        {"layer": "relu", "macs": 0},
        {"layer": "conv2d_1", "macs": 3612672},
        {"layer": "conv2d_3", "macs": 19267584},
        {"layer": "dense_0", "macs": 1280000},
    ]
    pairs = parse.match_mac_layers(vela, ours)
    names = [(v.op if v else None, o["layer"] if o else None) for v, o in pairs]
    assert names == [
        ("Conv2D", "conv2d_0"),
        ("DepthwiseConv2D", "conv2d_1"),
        ("Conv2D", None),
        ("Conv2D", "conv2d_3"),
        ("FullyConnected", "dense_0"),
    ]


@pytest.mark.parametrize("hw", [NPU_S, NPU_M], ids=lambda h: h.name)
def test_system_config_matches_the_preset(parse: ModuleType, hw: HwConfig) -> None:
    text = parse.vela_ini(hw, parse.TARGETS[hw.name])
    ini = configparser.ConfigParser()
    ini.read_string(text)
    name = parse.config_name(hw)
    system = ini[f"System_Config.{name}"]
    assert float(system["core_clock"]) == hw.clock_hz
    dram = float(system["Dram_clock_scale"]) * parse.AXI_BYTES
    assert dram == hw.dram_bytes_per_cycle
    assert int(system["Dram_burst_length"]) == hw.dma_burst_bytes
    memory = ini[f"Memory_Mode.{name}"]
    assert int(memory["arena_cache_size"]) == hw.sram_bytes


def test_matching_follows_mac_counts_across_reordered_branches(parse: ModuleType) -> None:
    vela = parse.read_layers(DATA / "vela_per-layer.csv")
    ours = [
        {"layer": "a", "macs": 10838016},
        {"layer": "c", "macs": 6422528},  # npuc emits this branch before the depthwise
        {"layer": "b", "macs": 3612672},
        {"layer": "d", "macs": 19267584},
        {"layer": "fc", "macs": 1280000},
    ]
    pairs = parse.match_mac_layers(vela, ours)
    assert [o["layer"] for _, o in pairs] == ["a", "b", "c", "d", "fc"]
    assert all(v is not None and v.macs == o["macs"] for v, o in pairs)
