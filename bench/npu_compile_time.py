"""Compile time of ``npuc build --target npu`` on ResNet-50 with 64 calibration samples, by stage.

Issue 13's target: ResNet-50 including calibration on 64 samples under 60 s on 2 cores.
The model and the samples are bench/npu.py's (Keras ResNet-50 converted to a float
TFLite file, 64 preprocessed photo crops): run ``bench/npu.py`` once first, which
writes them to bench/results/raw/npu/.

Two measurements of the same command:

1. ``whole``: ``npuc build ... --target npu --calib ... --calib-limit 64`` in a
   child process, timed from outside: wall time and the child's CPU time (user +
   system, all threads), as ``/usr/bin/time`` gives them;
2. ``stages``: the same command in this process with the compiler's stage
   functions wrapped by timers (wall and process CPU time, inclusive: a sub-stage's
   time is part of its parent's). Wrapping adds microseconds per call.

The machine is shared: the load average (/proc/loadavg) is recorded before and
after each measurement, and CPU time is the figure to compare between runs.
Writes bench/results/npu_compile_time.md (and prints it); the artifact's sha256 is
recorded so a speed-up can be checked to leave the output byte-identical.

Usage: ``.venv/bin/python bench/npu_compile_time.py [--hw npu-s] [--samples 64]
[--only whole|stages] [--out FILE]``
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RAW = BENCH / "results" / "raw" / "npu"
OUT_MD = BENCH / "results" / "npu_compile_time.md"
NPUC = Path(sys.executable).parent / "npuc"

# (label, depth, module, attribute): the functions timed, in the order the build runs
# them. Each is looked up where its caller finds it at call time (a module attribute,
# or a method on its class), so wrapping it there times every call.
STAGES: tuple[tuple[str, int, str, str], ...] = (
    ("import (read TFLite, to Relax)", 0, "npuc.frontend", "load"),
    ("optimize (graph passes)", 0, "npuc.midend.pipeline", "Pipeline.__call__"),
    ("quantize (all)", 0, "npuc.midend.quantize.api", "quantize_module"),
    ("extract layer graph", 1, "npuc.midend.quantize.api", "extract_graph"),
    ("calibrate (float runs + observers)", 1, "npuc.midend.quantize.api", "calibrate"),
    ("observers (worker thread: its own CPU)", 2, "npuc.midend.quantize.calibrate", "_observe"),
    ("ranges, int8 weights, parameters", 1, "npuc.midend.quantize.api", "quantize_model"),
    ("bias correction", 1, "npuc.midend.quantize.api", "correct_bias"),
    ("NPU compile + golden", 0, "npuc.backend.npu.build", "build_quantized"),
    ("partition", 1, "npuc.backend.npu.build", "partition"),
    ("lower", 1, "npuc.backend.npu.build", "lower_partition"),
    ("plan: fit check of every op", 1, "npuc.backend.npu.build", "_refused_ops"),
    ("compile_npu_graph", 1, "npuc.backend.npu.build", "compile_npu_graph"),
    ("tap packing", 2, "npuc.backend.npu.compile", "pack_graph"),
    ("plan + cascade (tiling)", 2, "npuc.backend.npu.compile", "plan_cascade"),
    ("schedule: tokens", 2, "npuc.backend.npu.compile", "assign_tokens"),
    ("schedule: replay", 2, "npuc.backend.npu.compile", "replay"),
    ("encode: emit", 2, "npuc.backend.npu.compile", "emit_all"),
    ("encode: build program", 2, "npuc.backend.npu.compile", "ProgramBuilder.build"),
    ("golden (integer executor)", 1, "npuc.midend.quantize.int_exec", "IntegerExecutor.run"),
    ("CPU regions (LLVM)", 1, "npuc.backend.npu.build", "compile_cpu_regions"),
    ("artifact bytes", 0, "npuc.backend.npu.build", "artifact_bytes"),
    ("model.npuq", 1, "npuc.midend.quantize.serialize", "to_bytes"),
    ("relax.json (tvm.ir.save_json)", 2, "tvm.ir", "save_json"),
    ("program bytes", 1, "npuc.core.isa.program", "Program.to_bytes"),
    ("zip (deflate)", 1, "npuc.backend.npu.build", "write_zip"),
    ("write file", 0, "npuc.core.fileio", "write_bytes_atomic"),
)


@dataclass
class Timer:
    """Inclusive wall and CPU seconds of one stage, over all its calls."""

    wall_s: float = 0.0
    cpu_s: float = 0.0  # the process's (every thread); the calling thread's when ``own``
    calls: int = 0
    own: bool = False  # CPU of the calling thread only (a stage run in a worker thread)
    active: int = field(default=0, repr=False)  # recursion depth: time the outer call only


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _timed(func: Callable[..., Any], timer: Timer) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if timer.active:
            return func(*args, **kwargs)
        timer.active += 1
        clock = time.thread_time if timer.own else time.process_time
        wall, cpu = time.perf_counter(), clock()
        try:
            return func(*args, **kwargs)
        finally:
            timer.wall_s += time.perf_counter() - wall
            timer.cpu_s += clock() - cpu
            timer.calls += 1
            timer.active -= 1

    return wrapper


@contextmanager
def wrapped_stages() -> Iterator[dict[str, Timer]]:
    """Wrap every function of :data:`STAGES` with a timer; restore them on exit."""
    timers: dict[str, Timer] = {}
    undo: list[tuple[Any, str, Any]] = []
    try:
        for label, _, module_name, attr in STAGES:
            owner: Any = importlib.import_module(module_name)
            *path, name = attr.split(".")
            for part in path:
                owner = getattr(owner, part)
            timers[label] = Timer(own="own CPU" in label)
            if not hasattr(owner, name):  # a stage this version of npuc does not have
                continue
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            setattr(owner, name, _timed(original, timers[label]))
            undo.append((owner, name, original))
        yield timers
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def command(hw: str, samples: int, out: Path) -> list[str]:
    model = RAW / "resnet50_float.tflite"
    calib = RAW / f"calib_resnet50_{samples}.npy"
    for path in (model, calib):
        if not path.exists():
            sys.exit(f"{path} is missing: run bench/npu.py first (it converts and calibrates)")
    return [
        *("build", str(model), "--target", "npu", "--calib", str(calib)),
        *("--calib-limit", str(samples), "--hw", hw, "-o", str(out)),
    ]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure_whole(argv: list[str], out: Path) -> dict[str, Any]:
    """The command in a child process: wall and CPU seconds, load, output sha256."""
    load_before = load_average()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([str(NPUC), *argv], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"npuc build exited {done.returncode}:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "load": f"{load_before} -> {load_average()}",
        "sha256": sha256(out),
        "bytes": out.stat().st_size,
    }


def measure_stages(argv: list[str], out: Path) -> dict[str, Any]:
    """The command in this process with every stage timed (startup: importing the compiler)."""
    load_before = load_average()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    from npuc.cli.main import main

    with wrapped_stages() as timers:
        startup = (time.perf_counter() - wall0, time.process_time() - cpu0)
        code = main(argv)
    if code != 0:
        sys.exit(f"npuc build exited {code}")
    return {
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
        "startup": startup,
        "timers": timers,
        "load": f"{load_before} -> {load_average()}",
        "sha256": sha256(out),
    }


def git_head() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()[:90]


def markdown(argv: list[str], whole: dict[str, Any] | None, stages: dict[str, Any] | None) -> str:
    shown = " ".join(["npuc", *(Path(a).name if "/" in a else a for a in argv)])
    lines = [
        "# npuc build --target npu: compile time by stage (issue 13)",
        "",
        "Written by `bench/npu_compile_time.py` (module docstring: what is measured and how).",
        f"Run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, at `{git_head()}`.",
        "",
        f"Command: `{shown}` (files in bench/results/raw/npu/, made by bench/npu.py).",
        "Target: under 60 s on 2 cores (issue 13).",
        "",
    ]
    if whole is not None:
        lines += [
            "## Whole command (child process)",
            "",
            "| wall s | CPU s (user + sys) | load (1/5/15 min) before -> after | output |",
            "|---:|---:|---|---|",
            f"| {whole['wall_s']:.1f} | {whole['cpu_s']:.1f} | {whole['load']} | "
            f"{whole['bytes']:,} bytes, sha256 `{whole['sha256'][:16]}` |",
            "",
        ]
    if stages is not None:
        lines += [
            "## By stage (same command in one process, stage functions timed)",
            "",
            "Inclusive: an indented row is part of the row above it. CPU is the process's",
            "(every thread), so it can exceed wall time where work overlaps in threads; the",
            "observers row (a worker thread beside the float runs) shows that thread's own CPU.",
            "",
            "| stage | wall s | CPU s | calls |",
            "|---|---:|---:|---:|",
            f"| startup (import the compiler, TVM) | {stages['startup'][0]:.1f} | "
            f"{stages['startup'][1]:.1f} | 1 |",
        ]
        for label, depth, _, _ in STAGES:
            t = stages["timers"][label]
            name = "&nbsp;&nbsp;" * 2 * depth + label
            lines.append(f"| {name} | {t.wall_s:.1f} | {t.cpu_s:.1f} | {t.calls} |")
        lines += [
            f"| **total** | **{stages['wall_s']:.1f}** | **{stages['cpu_s']:.1f}** | |",
            "",
            f"Load before -> after: {stages['load']}; output sha256 `{stages['sha256'][:16]}`.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hw", default="npu-s")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--only", choices=("whole", "stages"), default=None)
    parser.add_argument("--out", type=Path, default=OUT_MD)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="npuc-compile-time-") as tmp:
        out = Path(tmp) / "resnet50.npuc"
        build_argv = command(args.hw, args.samples, out)
        whole = measure_whole(build_argv, out) if args.only != "stages" else None
        if whole is not None:
            print(f"whole: {whole['wall_s']:.1f} s wall, {whole['cpu_s']:.1f} s CPU", flush=True)
        stages = measure_stages(build_argv, out) if args.only != "whole" else None
    text = markdown(build_argv, whole, stages)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
