"""DRAM bytes and cycles per inference with and without cascading (SRAM-resident intermediates).

Two networks, each compiled three times by ``compile_npu_graph`` for npu-s and
npu-m: ``off`` (``cascade=False``: every intermediate through DRAM), ``whole``
(``row_bands=False``: whole tensors kept in SRAM only) and ``on`` (the
default: whole tensors, and residual blocks computed band by band in SRAM):

- ResNet-50 (torchvision's layer shapes, 224x224x3 input, bottleneck blocks,
  random int8 weights: cycles and traffic do not depend on the values), one
  NpuGraph: conv1 7x7/2, max pool 3x3/2, 16 bottlenecks (1x1 -> 3x3 -> 1x1,
  projection shortcut in each stage's first block, residual add), global
  average pool, FC 2048 -> 1000.
- MobileNetV2 (tests/tooling/torch_nets.py), quantized on 2 random samples and
  partitioned by the real pipeline (``build.compile_quantized``); every NPU
  partition counts.

Reported: DRAM bytes (sum of every DMA's bytes), cycles (the replay of the
emitted schedule with the compiler's costs, which equals the simulator's count
on every program measured; ``--simulate`` checks that on ResNet-50 and
MobileNetV2 and checks the outputs bit-exact against the reference), MACs per
cycle, and how many ops read their input from SRAM.

Usage: ``.venv/bin/python bench/npu_cascade.py [--simulate] [--nets resnet50,mobilenetv2]
[--out FILE.md]`` (default bench/results/npu_cascade.md)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from npuc.backend.npu.compile import CompiledNpuProgram, compile_npu_graph
from npuc.backend.npu.ops import (
    NpuConv2d,
    NpuElementwise,
    NpuGraph,
    NpuOp,
    NpuPool,
    NpuTensor,
    window_out,
)
from npuc.backend.npu.reference import run_reference
from npuc.core.fileio import write_text_atomic
from npuc.core.hw.config import NPU_M, NPU_S, HwConfig
from npuc.npu_sim import simulate


def _t(name: str, h: int, w: int, c: int) -> NpuTensor:
    return NpuTensor(name=name, shape=(1, h, w, c), dtype="int8", scale=0.05, zero_point=0)


class _Net:
    """Builds a chain of NPU ops with random weights."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.ops: list[NpuOp] = []

    def conv(
        self, x: NpuTensor, name: str, cout: int, k: int, s: int = 1, *, dw: bool = False
    ) -> NpuTensor:
        _, h, w, cin = x.shape
        p = k // 2
        oh, ow = window_out(h, p, p, k, s), window_out(w, p, p, k, s)
        y = _t(name, oh, ow, cout)
        self.ops.append(
            NpuConv2d(
                name=name,
                ifm=x,
                ofm=y,
                weights=self.rng.integers(-127, 128, (cout, k, k, 1 if dw else cin)).astype(
                    np.int8
                ),
                bias=self.rng.integers(-1000, 1000, cout).astype(np.int16),
                bias_shift=2,
                ofm_multiplier=self.rng.integers(16384, 32768, cout).astype(np.uint16),
                pre_shift=4,
                post_shift=22 if k > 1 or cin > 64 else 20,
                act_min=-128,
                act_max=127,
                stride=(s, s),
                padding=(p, p, p, p),
                groups=cin if dw else 1,
            )
        )
        return y

    def add(self, a: NpuTensor, b: NpuTensor, name: str) -> NpuTensor:
        y = _t(name, *a.hwc)
        self.ops.append(
            NpuElementwise(
                name=name,
                op="add",
                ifm=a,
                ifm2=b,
                ofm=y,
                ifm_multiplier=16384,
                ifm2_multiplier=16384,
                post_shift=15,
                act_min=0,
                act_max=127,
            )
        )
        return y

    def pool(self, x: NpuTensor, name: str, op: str, k: int, s: int, p: int) -> NpuTensor:
        _, h, w, c = x.shape
        y = _t(name, window_out(h, p, p, k, s), window_out(w, p, p, k, s), c)
        mult = 1 if op == "max" else 32768 // (k * k)
        self.ops.append(
            NpuPool(
                name=name,
                op=op,
                ifm=x,
                ofm=y,
                kernel=(k, k),
                stride=(s, s),
                padding=(p, p, p, p),
                ofm_multiplier=mult,
                post_shift=0 if op == "max" else 15,
                act_min=-128,
                act_max=127,
            )
        )
        return y


def resnet50() -> NpuGraph:
    """ResNet-50 v1.5 (stride in the 3x3) as one NpuGraph with random int8 parameters."""
    net = _Net()
    x = _t("x", 224, 224, 3)
    y = net.conv(x, "conv1", 64, 7, 2)
    y = net.pool(y, "pool1", "max", 3, 2, 1)
    for stage, (blocks, width) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512))):
        for b in range(blocks):
            s = 2 if b == 0 and stage > 0 else 1
            n = f"res{stage + 2}{'abcdef'[b]}"
            a = net.conv(y, f"{n}_1x1a", width, 1)
            a = net.conv(a, f"{n}_3x3", width, 3, s)
            a = net.conv(a, f"{n}_1x1b", width * 4, 1)
            short = net.conv(y, f"{n}_proj", width * 4, 1, s) if b == 0 else y
            y = net.add(a, short, f"{n}_add")
    y = net.pool(y, "gap", "avg", 7, 1, 0)
    y = net.conv(y, "fc", 1000, 1)
    return NpuGraph(ops=tuple(net.ops), inputs=(x,), outputs=(y,))


def mobilenet_v2_graphs() -> list[NpuGraph]:
    """MobileNetV2's NPU partitions as the real pipeline lowers them (quantized on noise)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's tests package
    from npuc.backend.npu.build import compile_quantized
    from tests.backend.npu.qmodels import quantized
    from tests.frontend.torch_onnx import export_onnx
    from tests.tooling.torch_nets import mobilenet_v2

    onnx_model = export_onnx(mobilenet_v2(), (torch.zeros(1, 3, 224, 224),), names=["input"])
    qm, _, _ = quantized(onnx_model, samples=2)
    _, _, lowered, _, _ = compile_quantized(qm, NPU_S)
    return [lp.graph for lp in lowered]


def _check(graph: NpuGraph, compiled: CompiledNpuProgram, hw: HwConfig) -> None:
    rng = np.random.default_rng(3)
    feeds = {
        t.name: rng.integers(-128, 128, t.shape).astype(
            np.int16 if t.dtype == "int16" else np.uint8 if t.dtype == "uint8" else np.int8
        )
        for t in graph.inputs
    }
    result = simulate(compiled.program, feeds, hw)
    expected = run_reference(graph, feeds)
    for t in graph.outputs:
        np.testing.assert_array_equal(result.outputs[t.name], expected[t.name])
    assert result.stats.total_cycles == compiled.est_cycles, (
        result.stats.total_cycles,
        compiled.est_cycles,
    )


MODES = {"off": (False, False), "whole": (True, False), "on": (True, True)}


def measure(
    graphs: Iterable[NpuGraph], hw: HwConfig, *, mode: str, check: bool
) -> dict[str, float]:
    dram = cycles = macs = resident = ops = 0
    t0 = time.perf_counter()
    cascade, bands = MODES[mode]
    for g in graphs:
        compiled = compile_npu_graph(g, hw, cascade=cascade, row_bands=bands)
        if check:
            _check(g, compiled, hw)
        dram += sum(o.dram_bytes for o in compiled.ops)
        cycles += compiled.est_cycles
        macs += sum(o.macs for o in compiled.ops)
        resident += sum(
            1 for o in compiled.ops if o.sram_resident or o.tiling.startswith("row-band chain")
        )
        ops += len(compiled.ops)
    return {
        "dram": dram,
        "cycles": cycles,
        "mpc": macs / cycles,
        "resident": resident,
        "ops": ops,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/npu_cascade.md")
    parser.add_argument("--simulate", action="store_true", help="simulate and check bit-exact")
    parser.add_argument("--nets", default="resnet50,mobilenetv2", help="comma-separated")
    args = parser.parse_args()
    build = {"resnet50": ("ResNet-50", lambda: [resnet50()])}
    build["mobilenetv2"] = ("MobileNetV2", mobilenet_v2_graphs)
    nets = {build[n][0]: build[n][1]() for n in args.nets.split(",") if n}
    lines = [
        "# Cascading: SRAM-resident intermediates (bench/npu_cascade.py)",
        "",
        "DRAM = bytes moved by every DMA per inference; cycles = schedule replay (equals the"
        " simulator" + (", checked in this run" if args.simulate else "") + "); MAC/cyc ="
        " MACs / cycles; resident = ops touching an SRAM-resident tensor (the parts of a"
        " row-band chain included); cascade: off / whole (whole tensors only) / on (whole"
        " tensors and row-band chains of residual blocks).",
        "",
        "| net | hw | cascade | DRAM MB | cycles | MAC/cyc | resident ops | compile s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, graphs in nets.items():
        for hw in (NPU_S, NPU_M):
            for mode in MODES:
                r = measure(graphs, hw, mode=mode, check=args.simulate)
                lines.append(
                    f"| {name} | {hw.name} | {mode} |"
                    f" {r['dram'] / 1e6:.2f} | {int(r['cycles']):,} | {r['mpc']:.1f} |"
                    f" {int(r['resident'])}/{int(r['ops'])} | {r['seconds']:.1f} |"
                )
                print(lines[-1], flush=True)
    lines.append("")
    text = "\n".join(lines)
    write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
