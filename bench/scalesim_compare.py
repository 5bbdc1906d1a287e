"""MAC-array cycles of npuc's NPU simulator vs SCALE-Sim (weight stationary) on plain conv layers.

For ResNet-50 / MobileNetV1 layer shapes (no depthwise: SCALE-Sim has no
grouped conv), at the same square array size (16x16 = npu-s, 32x32 = npu-m):

- npuc: each layer is ONE CONV instruction run by ``npuc.npu_sim.simulate`` on
  the preset with SRAM enlarged to hold the whole layer; the number is the MAC
  unit's busy cycles (timing model: ``fill + folds * max(pixels, rows)``).
- SCALE-Sim 3.0.0 (its own venv, numpy < 2): its closed-form WS compute cycles
  for every layer, plus its full cycle-stepping simulator on a few layers as a
  check that the closed form is what it computes.

Writes bench/results/npu_scalesim.md. The venv is created on first use:
``bench/.venv-scalesim`` with ``scalesim==3.0.0`` and ``numpy<2`` (not committed).

Usage: ``.venv/bin/python bench/scalesim_compare.py [--full res2a_2a,...] [--arrays 16,32]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from npuc.core.fileio import write_text_atomic
from npuc.core.hw.config import NPU_M, NPU_S, HwConfig
from npuc.core.isa.builder import ProgramBuilder
from npuc.npu_sim import simulate

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-scalesim"
RUNNER = BENCH / "scalesim_runner.py"


@dataclasses.dataclass(frozen=True)
class Layer:
    """A conv layer: input ``h x w x cin``, ``k x k`` kernel, stride, symmetric padding."""

    name: str
    h: int
    w: int
    cin: int
    cout: int
    k: int
    stride: int
    pad: int

    @property
    def out_hw(self) -> tuple[int, int]:
        return (
            (self.h + 2 * self.pad - self.k) // self.stride + 1,
            (self.w + 2 * self.pad - self.k) // self.stride + 1,
        )

    @property
    def macs(self) -> int:
        oh, ow = self.out_hw
        return oh * ow * self.cout * self.k * self.k * self.cin

    def scalesim_row(self) -> dict[str, int | str]:
        """SCALE-Sim wants the IFMAP extent the conv reads, padding included."""
        oh, ow = self.out_hw
        return {
            "name": self.name,
            "ifmap_h": (oh - 1) * self.stride + self.k,
            "ifmap_w": (ow - 1) * self.stride + self.k,
            "k": self.k,
            "cin": self.cin,
            "cout": self.cout,
            "stride": self.stride,
        }


LAYERS = (
    Layer("r50_conv1", 224, 224, 3, 64, 7, 2, 3),
    # The same layer after the compiler packs the 7x7x3 taps into channels by DMA (im2col).
    Layer("r50_conv1_packed", 112, 112, 147, 64, 1, 1, 0),
    Layer("r50_res2a_2a", 56, 56, 64, 64, 1, 1, 0),
    Layer("r50_res2a_2b", 56, 56, 64, 64, 3, 1, 1),
    Layer("r50_res2a_2c", 56, 56, 64, 256, 1, 1, 0),
    Layer("r50_res3a_1", 56, 56, 256, 512, 1, 2, 0),
    Layer("r50_res3a_2b", 28, 28, 128, 128, 3, 1, 1),
    Layer("r50_res4a_2b", 14, 14, 256, 256, 3, 1, 1),
    Layer("r50_res4b_2c", 14, 14, 256, 1024, 1, 1, 0),
    Layer("r50_res5a_2b", 7, 7, 512, 512, 3, 1, 1),
    Layer("r50_res5c_2c", 7, 7, 512, 2048, 1, 1, 0),
    Layer("r50_fc", 1, 1, 2048, 1000, 1, 1, 0),
    Layer("mbv1_conv1", 224, 224, 3, 32, 3, 2, 1),
    Layer("mbv1_pw1", 112, 112, 32, 64, 1, 1, 0),
    Layer("mbv1_pw2", 56, 56, 64, 128, 1, 1, 0),
    Layer("mbv1_pw7", 14, 14, 512, 512, 1, 1, 0),
    Layer("mbv1_pw13", 7, 7, 1024, 1024, 1, 1, 0),
)
DEFAULT_FULL = ("r50_res2a_2a", "mbv1_pw13")


def ensure_venv() -> Path:
    """Create bench/.venv-scalesim with scalesim==3.0.0 and numpy<2 if it is missing."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV} (scalesim==3.0.0, numpy<2) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "scalesim==3.0.0", "numpy<2"],
            check=True,
        )
    return python


def npuc_cycles(layer: Layer, base: HwConfig) -> dict[str, int]:
    """Run the layer as one CONV instruction in the simulator; return MAC busy cycles."""
    oh, ow = layer.out_hw
    ifm = layer.h * layer.w * layer.cin
    weights = layer.cout * layer.k * layer.k * layer.cin
    ofm = oh * ow * layer.cout
    hw = dataclasses.replace(base, name=f"{base.name}-bigsram", sram_bytes=64 << 20)
    b = ProgramBuilder(hw)
    b.emit(
        "conv",
        ifm_addr=b.sram("ifm", ifm),
        ifm_h=layer.h,
        ifm_w=layer.w,
        ifm_c=layer.cin,
        ifm_dtype="int8",
        ofm_addr=b.sram("ofm", ofm),
        ofm_h=oh,
        ofm_w=ow,
        ofm_c=layer.cout,
        ofm_dtype="int8",
        w_addr=b.sram("weights", weights),
        kh=layer.k,
        kw=layer.k,
        stride_h=layer.stride,
        stride_w=layer.stride,
        pad_top=layer.pad,
        pad_left=layer.pad,
        pad_bottom=layer.pad,
        pad_right=layer.pad,
        ofm_multiplier=1,
        post_shift=0,
    )
    program = b.build()
    stats = simulate(program, {}, hw).stats
    assert stats.macs == layer.macs
    return {"cycles": stats.units[1].busy_cycles, "fill": hw.mac_pipeline_fill_cycles}


def run_scalesim(python: Path, array: int, full: tuple[str, ...]) -> dict:
    job = {"array": array, "layers": [layer.scalesim_row() for layer in LAYERS], "full": list(full)}
    with tempfile.TemporaryDirectory() as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        subprocess.run(
            [str(python), str(RUNNER), str(job_path), str(out_path)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return json.loads(out_path.read_text())["layers"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--full", default=",".join(DEFAULT_FULL), help="layers for SCALE-Sim's full simulator"
    )
    parser.add_argument("--out", default=str(BENCH / "results" / "npu_scalesim.md"))
    args = parser.parse_args()
    full = tuple(x for x in args.full.split(",") if x)
    python = ensure_venv()
    lines = [
        "# npuc NPU simulator vs SCALE-Sim: MAC-array cycles per conv layer",
        "",
        "Generated by `bench/scalesim_compare.py` (SCALE-Sim 3.0.0, weight-stationary, same",
        "square array). `npuc` = MAC-unit busy cycles from `npuc.npu_sim.simulate` running the",
        "layer as one CONV instruction (preset timing, SRAM enlarged to hold the layer).",
        "`SCALE-Sim` = its WS compute cycles (closed form; `full` = its cycle-stepping simulator",
        "where run). `ideal` = MACs / (rows * cols). Why they differ: docs/npu_sim.md, section",
        "'Comparison with SCALE-Sim'.",
        "",
    ]
    for base in (NPU_S, NPU_M):
        n = base.mac_rows
        start = time.perf_counter()
        ss = run_scalesim(python, n, full)
        ss_s = time.perf_counter() - start
        lines += [
            f"## {n}x{n} array ({base.name}; SCALE-Sim run took {ss_s:.0f} s)",
            "",
            "| layer | in HxWxC | out C | k/s | MACs | ideal | npuc | SCALE-Sim | full "
            "| npuc/SCALE-Sim |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        tot_npuc = tot_ss = 0
        for layer in LAYERS:
            ours = npuc_cycles(layer, base)["cycles"]
            entry = ss[layer.name]
            theirs = entry["closed_form"]["cycles"]
            full_cycles = entry.get("full", {}).get("compute_cycles")
            full_text = "" if full_cycles is None else f"{full_cycles:,}"
            tot_npuc += ours
            tot_ss += theirs
            ideal = -(-layer.macs // (n * n))
            lines.append(
                f"| {layer.name} | {layer.h}x{layer.w}x{layer.cin} | {layer.cout} | "
                f"{layer.k}x{layer.k}/{layer.stride} | {layer.macs:,} | {ideal:,} | {ours:,} | "
                f"{theirs:,} | {full_text} | {ours / theirs:.2f} |"
            )
            print(f"{n}x{n} {layer.name}: npuc {ours:,} SCALE-Sim {theirs:,} full {full_cycles}")
        lines += [
            f"| **total** | | | | | | {tot_npuc:,} | {tot_ss:,} | | {tot_npuc / tot_ss:.2f} |",
            "",
        ]
        for name in full:
            entry = ss[name]
            if "full" in entry:
                f = entry["full"]
                same = (
                    "equals"
                    if f["compute_cycles"] == entry["closed_form"]["cycles"]
                    else "DIFFERS from"
                )
                lines.append(
                    f"- full SCALE-Sim on {name}: {f['compute_cycles']:,} compute cycles "
                    f"({same} the closed form), {f['overall_cycles']:,} overall incl. its SRAM "
                    "prefill, "
                    f"{f['stall_cycles']} stall, {f['seconds']:.0f} s wall"
                )
        lines.append("")
    write_text_atomic(args.out, "\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
