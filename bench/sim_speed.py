"""Simulator speed: simulated GMAC/s of ``npuc.npu_sim`` vs numpy float64 GEMM on this machine.

Builds a conv-heavy program (a stack of 3x3 convolutions that stays in SRAM,
ping-ponging between two buffers, as a compiled ResNet stage would), runs it
in the simulator several times, and compares the simulated MACs per
wall-clock second with the GMAC/s numpy's float64 BLAS reaches on the same
GEMM shapes (the im2col shape of each layer), measured in the same run.
The simulator's conv is itself one float64 GEMM per instruction (per output
tile for huge ones) plus im2col
and the integer output stage, so the ratio says how much of the BLAS speed
the rest of the simulator keeps. Target: ratio >= 0.5.

Usage: ``.venv/bin/python bench/sim_speed.py [--out bench/results/npu_sim_speed.md]``
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.fileio import write_text_atomic
from npuc.core.hw.config import NPU_L, HwConfig
from npuc.core.isa.builder import ProgramBuilder
from npuc.core.isa.program import Program
from npuc.npu_sim import simulate


@dataclass(frozen=True)
class Stage:
    """``layers`` 3x3 stride-1 convs, ``channels -> channels``, on a ``side`` x ``side`` map."""

    side: int
    channels: int
    layers: int

    @property
    def macs_per_layer(self) -> int:
        return self.side * self.side * self.channels * self.channels * 9


def build_program(
    stage: Stage, hw: HwConfig, rng: np.random.Generator
) -> tuple[Program, np.ndarray]:
    """The stage as one program: load input and all weights, run the convs, store the result."""
    s, c = stage.side, stage.channels
    act_bytes = s * s * c
    w_bytes = c * 9 * c
    weights = rng.integers(-128, 128, size=(stage.layers, c, 3, 3, c), dtype=np.int8)
    mults = np.full(c, 1 << 10, dtype=np.uint16)
    b = ProgramBuilder(hw)
    w_dram = b.constant("weights", weights)
    m_dram = b.constant("multipliers", mults, align=2)  # right after the weights: one load
    x = b.input("x", (s, s, c), "int8", scale=1.0)
    y = b.output("y", (s, s, c), "int8", scale=1.0)
    try:
        buf = (b.sram("act0", act_bytes), b.sram("act1", act_bytes))  # ping-pong activations
        w_sram = b.sram("weights_s", m_dram.end - w_dram.addr)
    except InvalidInputError as exc:
        raise SystemExit(f"stage {stage} does not fit: {exc.message}") from None
    m_sram = w_sram + (m_dram.addr - w_dram.addr)
    b.emit("dma_load", dram_addr=x, sram_addr=buf[0], row_bytes=act_bytes)
    b.emit("dma_load", dram_addr=w_dram, sram_addr=w_sram, row_bytes=w_sram.nbytes, signal="mac")
    for layer in range(stage.layers):
        b.emit(
            "conv",
            wait="dma_in" if layer == 0 else 0,
            ifm_addr=buf[layer % 2],
            ifm_h=s,
            ifm_w=s,
            ifm_c=c,
            ifm_dtype="int8",
            ofm_addr=buf[(layer + 1) % 2],
            ofm_h=s,
            ofm_w=s,
            ofm_c=c,
            ofm_dtype="int8",
            w_addr=w_sram + layer * w_bytes,
            kh=3,
            kw=3,
            pad_top=1,
            pad_left=1,
            pad_bottom=1,
            pad_right=1,
            ofm_multiplier_per_channel=1,
            ofm_multiplier_addr=m_sram,
            pre_shift=8,
            post_shift=16,
            act_min=0,
            act_max=127,
            signal="dma_out" if layer == stage.layers - 1 else 0,
        )
    b.emit(
        "dma_store", wait="mac", dram_addr=y, sram_addr=buf[stage.layers % 2], row_bytes=act_bytes
    )
    x_value = rng.integers(-128, 128, size=(s, s, c), dtype=np.int8)
    return b.build(), x_value


def best_of_interleaved(repeats: int, *fns) -> list[float]:  # type: ignore[no-untyped-def]
    """Best wall time of each function, running them in turn so load spikes hit all alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def measure(stage: Stage, hw: HwConfig, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    program, x = build_program(stage, hw, rng)
    result = simulate(program, {"x": x}, hw)
    macs = result.stats.macs
    assert macs == stage.macs_per_layer * stage.layers
    s, c = stage.side, stage.channels
    a = rng.integers(-255, 256, size=(s * s, 9 * c)).astype(np.float64)
    b = rng.integers(-128, 128, size=(9 * c, c)).astype(np.float64)
    sim_s, gemm_s = best_of_interleaved(
        repeats,
        lambda: simulate(program, {"x": x}, hw),
        lambda: [a @ b for _ in range(stage.layers)],
    )
    return {
        "macs": macs,
        "sim_s": sim_s,
        "sim_gmacs": macs / sim_s / 1e9,
        "gemm_s": gemm_s,
        "gemm_gmacs": macs / gemm_s / 1e9,
        "ratio": gemm_s / sim_s,
        "cycles": result.stats.total_cycles,
        "utilisation": result.stats.mac_utilisation,
    }


STAGES = (Stage(56, 64, 4), Stage(28, 128, 4), Stage(14, 256, 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/npu_sim_speed.md")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    hw = NPU_L
    rows = []
    for stage in STAGES:
        r = measure(stage, hw, args.repeats)
        rows.append((stage, r))
        print(
            f"{stage.side}x{stage.side}x{stage.channels} x{stage.layers}: sim "
            f"{r['sim_gmacs']:.2f} GMAC/s, float64 GEMM {r['gemm_gmacs']:.2f} GMAC/s, "
            f"ratio {r['ratio']:.2f}"
        )
    total_macs = sum(r["macs"] for _, r in rows)
    total_sim = sum(r["sim_s"] for _, r in rows)
    total_gemm = sum(r["gemm_s"] for _, r in rows)
    lines = [
        "# NPU simulator speed vs numpy float64 GEMM",
        "",
        f"Measured by `bench/sim_speed.py` on {platform.machine()} "
        f"({platform.processor() or 'cpu'}), numpy {np.__version__}, "
        f"Python {platform.python_version()}, preset {hw.name}; best of "
        f"{args.repeats} interleaved runs each. The machine is shared with other jobs, so "
        "absolute numbers vary between runs; the ratio (both measured in the same run) is the "
        "figure of merit.",
        "",
        "Each stage is one program: load input and weights, N 3x3 convs (ping-pong in SRAM),",
        "store.",
        "`GEMM` is numpy float64 `A @ B` on each layer's im2col shape `(H*W, 9*C) x (9*C, C)`.",
        "",
        "| stage (HxWxC x layers) | MACs | sim s | sim GMAC/s | GEMM s | GEMM GMAC/s "
        "| sim/GEMM | sim cycles | MAC util |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage, r in rows:
        lines.append(
            f"| {stage.side}x{stage.side}x{stage.channels} x{stage.layers} | {r['macs']:,} | "
            f"{r['sim_s']:.3f} | {r['sim_gmacs']:.2f} | {r['gemm_s']:.3f} | "
            f"{r['gemm_gmacs']:.2f} | {r['ratio']:.2f} | {r['cycles']:,} | {r['utilisation']:.1%} |"
        )
    lines += [
        f"| **all** | {total_macs:,} | {total_sim:.3f} | {total_macs / total_sim / 1e9:.2f} | "
        f"{total_gemm:.3f} | {total_macs / total_gemm / 1e9:.2f} | "
        f"**{total_gemm / total_sim:.2f}** | | |",
        "",
        "Target: sim/GEMM >= 0.5.",
    ]
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
