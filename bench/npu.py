"""npuc's NPU compiler beside Arm Vela 5.2 on ResNet-50 and MobileNetV2, in one run (issue 13).

For each network (Keras applications, 224x224, random weights: the weight
download host is not reachable here) and each config (npu-s beside
Ethos-U65-256, npu-m beside Ethos-U85-1024, Vela given a system config made
from npuc's preset: bench/npu_vela_parse.py):

1. 64 calibration crops of the bundled photos (tools/datasets.py), preprocessed
   for the network;
2. TensorFlow (bench/.venv-vela) converts the Keras model to a full-int8 TFLite
   file (Vela's input) and a float TFLite file (npuc's: npuc quantizes itself on
   the same 64 crops);
3. Vela compiles the int8 file (timed); its summary and per-layer CSVs are read;
4. ``npuc build --target npu`` compiles the same int8 file (``--source int8``,
   the default: npuc's pre-quantized TFLite import keeps its scales) or the float
   file with ``--calib-limit 64`` (``--source float``), timed; then ``npuc report``
   simulates one inference and writes per-layer cycles, DRAM and SRAM;
5. compile time as issue 13 defines it (ResNet-50 including calibration on 64
   samples): a float build with calibration (``--compile-time``), run alone.

Writes bench/results/npu.md and bench/results/raw/npu/ (models, Vela output,
npuc reports, results.json; not committed). Converted models are reused unless
``--fresh``. The machine's load (/proc/loadavg) is recorded around every timed
step: compile times are only comparable within one run.

Usage: ``.venv/bin/python bench/npu.py [--networks resnet50,mobilenetv2]
[--hw npu-s,npu-m] [--jobs N] [--fresh]`` (``make bench-npu``)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from npu_report import write_markdown  # noqa: E402
from npu_vela_parse import TARGETS, config_name, read_layers, read_summary, vela_ini  # noqa: E402

from npuc.core.hw.config import preset  # noqa: E402

VENV = BENCH / ".venv-vela"
REQUIREMENTS = BENCH / "requirements-vela.txt"
RAW = BENCH / "results" / "raw" / "npu"
OUT_MD = BENCH / "results" / "npu.md"
NETWORKS = ("resnet50", "mobilenetv2")
CALIB_SEED = 13
# Keras' own preprocessing: ResNet-50 "caffe" (BGR, ImageNet mean subtracted), MobileNetV2 "tf".
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (/proc/loadavg)."""
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def ensure_venv(fresh: bool) -> Path:
    """bench/.venv-vela with bench/requirements-vela.txt (created on first use)."""
    python = VENV / "bin" / "python"
    if fresh and VENV.exists():
        shutil.rmtree(VENV)
    if not python.exists():
        print(f"creating {VENV} ({REQUIREMENTS.name}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True
        )
    return python


def calibration(network: str, count: int) -> Path:
    """``count`` preprocessed 224x224 crops as ``(N, 224, 224, 3)`` float32 (NHWC, RGB in)."""
    from tools.datasets import random_crops

    path = RAW / f"calib_{network}_{count}.npy"
    if path.exists():
        return path
    crops = random_crops(count, height=224, width=224, seed=CALIB_SEED).astype(np.float32)
    caffe = network == "resnet50"
    x = crops[..., ::-1] - CAFFE_MEAN_BGR if caffe else crops / 127.5 - 1.0
    np.save(path, np.ascontiguousarray(x, dtype=np.float32))
    return path


def convert(python: Path, network: str, calib: Path, fresh: bool) -> dict[str, Any]:
    """Int8 and float TFLite files of ``network`` (reused when present)."""
    info_path = RAW / f"{network}_convert.json"
    if fresh or not info_path.exists():
        print(f"converting {network} to TFLite (int8 + float) ...", flush=True)
        subprocess.run(
            [str(python), str(BENCH / "npu_vela.py"), network, str(calib), str(RAW)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    info: dict[str, Any] = json.loads(info_path.read_text())
    return info


def timed(cmd: list[str], log: Path) -> tuple[float, list[float], int]:
    """Run ``cmd`` with output to ``log``; (wall seconds, load before, exit code)."""
    load = load_average()
    start = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    return time.perf_counter() - start, load, code


def run_vela(network: str, hw_name: str) -> dict[str, Any]:
    hw = preset(hw_name)
    target = TARGETS[hw_name]
    ini = RAW / f"vela_{hw_name}.ini"
    ini.write_text(vela_ini(hw, target))
    out = RAW / f"vela_{network}_{hw_name}"
    shutil.rmtree(out, ignore_errors=True)
    name = config_name(hw)
    vela = VENV / "bin" / "vela"
    cmd = [str(vela), str(RAW / f"{network}_int8.tflite"), "--accelerator-config"]
    cmd += [target.accelerator, "--config", str(ini), "--system-config", name]
    cmd += ["--memory-mode", name, "--optimise", "Performance", "--verbose-performance"]
    cmd += ["--output-dir", str(out)]
    seconds, load, code = timed(cmd, RAW / f"vela_{network}_{hw_name}.log")
    if code != 0:
        return {"error": f"vela exited {code} (see {out}.log)", "seconds": seconds}
    summary = read_summary(next(out.glob("*_summary_*.csv")))
    layers = read_layers(next(out.glob("*_per-layer.csv")))
    return {
        "accelerator": target.accelerator,
        "seconds": seconds,
        "load": load,
        "summary": summary.__dict__,
        "layers": [v.__dict__ for v in layers],
    }


def build_npuc(
    network: str, hw_name: str, source: str, calib: Path, samples: int, tag: str
) -> tuple[Path, dict[str, Any]]:
    """``npuc build`` of the ``source`` (int8 or float) TFLite file, timed; float calibrates."""
    npuc = Path(sys.executable).parent / "npuc"
    model = RAW / f"{network}_{hw_name}_{tag}.npuc"
    cmd = [str(npuc), "build", str(RAW / f"{network}_{source}.tflite"), "--target", "npu"]
    if source == "float":
        cmd += ["--calib", str(calib), "--calib-limit", str(samples)]
    cmd += ["--hw", hw_name, "-o", str(model)]
    log = RAW / f"npuc_{network}_{hw_name}_{tag}_build.log"
    seconds, load, code = timed(cmd, log)
    result: dict[str, Any] = {"source": source, "build_seconds": seconds, "build_load": load}
    if code != 0:
        lines = log.read_text().strip().splitlines()
        result["error"] = f"npuc build exited {code}: " + " | ".join(lines[-3:])
    return model, result


def run_npuc(network: str, hw_name: str, source: str, calib: Path, samples: int) -> dict[str, Any]:
    """Build ``source`` and simulate one inference with ``npuc report``."""
    model, result = build_npuc(network, hw_name, source, calib, samples, source)
    if "error" in result:
        return result
    npuc = Path(sys.executable).parent / "npuc"
    report_dir = RAW / f"npuc_{network}_{hw_name}"
    shutil.rmtree(report_dir, ignore_errors=True)
    cmd = [str(npuc), "report", str(model), "-o", str(report_dir)]
    report_seconds, _, code = timed(cmd, RAW / f"npuc_{network}_{hw_name}_report.log")
    result["report_seconds"] = report_seconds
    if code != 0:
        result["error"] = f"npuc report exited {code} (see {report_dir}_report.log)"
        return result
    result["report"] = json.loads((report_dir / "report.json").read_text())
    return result


def git_dirty() -> list[str]:
    """Tracked files with uncommitted changes (the run measures the working tree)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--short", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line[3:] for line in done.stdout.splitlines() if line.strip()]


def git_head() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()[:100]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--hw", default="npu-s,npu-m")
    parser.add_argument("--calib-samples", type=int, default=64)
    parser.add_argument("--fresh", action="store_true", help="rebuild the venv and the models")
    parser.add_argument("--out", type=Path, default=OUT_MD)
    parser.add_argument("--jobs", type=int, default=1, help="npuc builds run at once")
    parser.add_argument(
        "--source",
        choices=("int8", "float"),
        default="int8",
        help="TFLite file npuc compiles: Vela's int8 file (default) or the float one + calibration",
    )
    parser.add_argument(
        "--compile-time",
        default="resnet50:npu-s",
        metavar="NET:HW,...",
        help="with --source int8: also time float builds with calibration for these (alone)",
    )
    parser.add_argument(
        "--markdown-only", action="store_true", help="rewrite the page from the last results.json"
    )
    args = parser.parse_args(argv)
    if args.markdown_only:
        write_markdown(json.loads((RAW / "results.json").read_text()), args.out)
        print(f"wrote {args.out}")
        return 0
    networks = [n for n in args.networks.split(",") if n]
    hws = [h for h in args.hw.split(",") if h]
    for n in networks:
        if n not in NETWORKS:
            parser.error(f"--networks: unknown {n!r}; choose from {', '.join(NETWORKS)}")
    for h in hws:
        if h not in TARGETS:
            parser.error(f"--hw: no Vela counterpart for {h!r}; choose from {', '.join(TARGETS)}")
    RAW.mkdir(parents=True, exist_ok=True)
    python = ensure_venv(args.fresh)
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "load_start": load_average(),
        "git": git_head(),
        "dirty": git_dirty(),
        "calib_samples": args.calib_samples,
        "jobs": args.jobs,
        "source": args.source,
        "runs": [],
    }
    jobs: list[tuple[str, str, Path]] = []
    for network in networks:
        calib = calibration(network, args.calib_samples)
        info = convert(python, network, calib, args.fresh)
        for hw_name in hws:
            print(f"== {network} on {hw_name}: Vela", flush=True)
            vela = run_vela(network, hw_name)
            run = {"network": network, "hw": hw_name, "convert": info, "vela": vela}
            results["runs"].append(run)
            jobs.append((network, hw_name, calib))

    def build(job: tuple[str, str, Path]) -> dict[str, Any]:
        print(f"== {job[0]} on {job[1]}: npuc ({args.source} file)", flush=True)
        return run_npuc(job[0], job[1], args.source, job[2], args.calib_samples)

    # --jobs 2 runs two npuc builds at once: faster, but each build's time then includes
    # the other's load (recorded as "load before").
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for run, ours in zip(results["runs"], pool.map(build, jobs), strict=True):
            run["npuc"] = ours
            (RAW / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    # Compile time with calibration (issue 13: ResNet-50, 64 samples), from the float file.
    for pair in [p for p in args.compile_time.split(",") if p] if args.source == "int8" else []:
        network, hw_name = pair.split(":")
        print(f"== {network} on {hw_name}: npuc from the float file (compile time)", flush=True)
        calib = calibration(network, args.calib_samples)
        _, timing = build_npuc(network, hw_name, "float", calib, args.calib_samples, "calib")
        results.setdefault("compile", []).append({"network": network, "hw": hw_name, **timing})
    results["load_end"] = load_average()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (RAW / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_markdown(results, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
