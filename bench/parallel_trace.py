"""Where a multi-threaded npuc CPU library's time goes: a timeline of TVM's parallel launches.

``bench/profile_int8.py`` times kernels through the VM's instrument, which adds
tens of microseconds per call and, with several threads, misplaces time between
kernels. This tool instead points the library's ``__TVMBackendParallelLaunch``
at a small C shim (``parallel_trace.c``, built with gcc) that records the time
stamp counter at every launch's start and end and at every task's start and end
on the thread that runs it (task 0 runs on the calling thread, the others on
TVM's pool workers). From ``--runs`` runs of ``CompiledModel.run`` it reports,
per run (medians over runs, microseconds):

- ``wall``: the whole ``run()`` call; ``before_first`` / ``after_last``: from its
  start to the first launch and from the last launch to its end (Python checks,
  the input copy, the VM, serial kernels, the output copy and dequantization);
- ``in_launches``: inside launches; ``gaps``: between launches (the VM and the
  kernels that do not run in parallel);
- ``ideal``: the sum over launches of the slowest task; ``imbalance``: the sum
  over launches of slowest minus fastest task; ``start_latency``: the sum over
  launches of the time from the launch to the first worker task's start;
- ``task_sum``: all tasks' time (CPU time in kernels, all threads).

and per kernel (PrimFunc): launches per run, median launch time, the calling
thread's task, the slowest worker task, the worker's start latency and the gap
before the launch.

Usage: ``.venv/bin/python bench/parallel_trace.py --lib model.so --model mobilenet_v2
[--threads 2] [--runs 200] [--top 30] [--isa avx2] [--json]``; ``--model`` is one of
``bench/cpu_int8.py``'s models (its first evaluation sample is the input) and the
library an ``npuc build --target cpu`` output for it. ``--isa avx2`` re-runs under
the CPUID mask (``bench/cpuid_mask.py``; for a library built for AVX2). Needs Linux
on x86-64, gcc and nm.
"""

from __future__ import annotations

import argparse
import bisect
import ctypes
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # its siblings (gcc_shared, cpu_int8), also when loaded by path
from gcc_shared import build_shared  # noqa: E402

SOURCE = BENCH / "parallel_trace.c"
LAUNCH_START, LAUNCH_END, TASK_START, TASK_END = range(4)


class _Record(ctypes.Structure):
    _fields_ = [
        ("tsc", ctypes.c_uint64),
        ("fn", ctypes.c_void_p),
        ("kind", ctypes.c_int32),
        ("task", ctypes.c_int32),
    ]


@dataclass(frozen=True, slots=True)
class Launch:
    """One parallel launch: its kernel, start and end (us, from the run's start) and its
    tasks, ``task id -> (start, end)`` in the same units."""

    kernel: str
    start_us: float
    end_us: float
    tasks: dict[int, tuple[float, float]]


@dataclass(frozen=True, slots=True)
class RunTrace:
    """The launches of one ``run()`` call, which took ``wall_us``."""

    wall_us: float
    launches: tuple[Launch, ...]


def build_shim(folder: Path) -> Path:
    """Compile ``parallel_trace.c`` into ``folder`` (once per source version); its path.

    Raises
    ------
    subprocess.CalledProcessError
        gcc failed.
    """
    return build_shared(SOURCE, folder, "npuc-parallel-trace")


class Tracer:
    """The shim installed into one loaded TVM library (``library_path``, already loaded
    by TVM from that path): every parallel launch it makes from now on is recorded."""

    def __init__(self, library_path: Path, shim_folder: Path) -> None:
        self.shim = ctypes.CDLL(str(build_shim(shim_folder)))
        self.shim.trace_count.restype = ctypes.c_long
        self.shim.trace_capacity.restype = ctypes.c_long
        self.shim.trace_now.restype = ctypes.c_uint64
        self.shim.trace_records.restype = ctypes.POINTER(_Record)
        self.shim.trace_reset.restype = None
        self.path = str(Path(library_path).resolve())
        loaded = ctypes.CDLL(self.path)  # the same handle as TVM's dlopen of this path
        pointer = ctypes.c_void_p.in_dll(loaded, "__TVMBackendParallelLaunch")
        ctypes.c_void_p.in_dll(self.shim, "trace_real_launch").value = pointer.value
        pointer.value = ctypes.cast(self.shim.trace_launch, ctypes.c_void_p).value
        self._names = _Symbols(self.path)
        self.tsc_hz = self._tsc_hz()

    def _tsc_hz(self) -> float:
        a, t0 = self.shim.trace_now(), time.perf_counter()
        time.sleep(0.2)
        b, t1 = self.shim.trace_now(), time.perf_counter()
        return (b - a) / (t1 - t0)

    def trace(self, run: Callable[[], object], runs: int) -> list[RunTrace]:
        """Call ``run`` ``runs`` times; each call's launches.

        Raises
        ------
        RuntimeError
            The runs made more records than the shim holds (``TRACE_CAPACITY``).
        """
        self.shim.trace_reset()
        edges, counts = [], []
        for _ in range(runs):
            start = self.shim.trace_now()
            run()
            edges.append((start, self.shim.trace_now()))
            counts.append(self.shim.trace_count())
        if counts and counts[-1] > self.shim.trace_capacity():
            raise RuntimeError(
                f"{counts[-1]} trace records, more than the shim holds "
                f"({self.shim.trace_capacity()}): trace fewer runs"
            )
        records = self.shim.trace_records()
        us = 1e6 / self.tsc_hz
        traces, first = [], 0
        for (start, end), last in zip(edges, counts, strict=True):
            launches: list[Launch] = []
            current: dict = {}
            for i in range(first, last):
                r = records[i]
                at = (r.tsc - start) * us
                if r.kind == LAUNCH_START:
                    current = {"fn": r.fn, "start": at, "tasks": defaultdict(lambda: [0.0, 0.0])}
                elif r.kind in (TASK_START, TASK_END):
                    current["tasks"][r.task][r.kind - TASK_START] = at
                else:
                    tasks = {k: (v[0], v[1]) for k, v in current["tasks"].items()}
                    name = self._names.name(r.fn)
                    launches.append(Launch(name, current["start"], at, tasks))
            traces.append(RunTrace((end - start) * us, tuple(launches)))
            first = last
        return traces


class _Symbols:
    """Function names of a loaded shared library by address: the nearest symbol at or
    before it (``nm``, local symbols too). A kernel's parallel lambda follows its
    ``<kernel>_compute_`` function, whose name it gets (without the suffix)."""

    def __init__(self, path: str) -> None:
        out = subprocess.run(["nm", "-n", path], capture_output=True, text=True, check=True)
        rows = [line.split() for line in out.stdout.splitlines()]
        self.syms = [(int(p[0], 16), p[2]) for p in rows if len(p) == 3 and p[1] in "tTwW"]
        self.addrs = [a for a, _ in self.syms]
        self.base = min(
            int(f[0].split("-")[0], 16) - int(f[2], 16)
            for f in (line.split() for line in Path("/proc/self/maps").read_text().splitlines())
            if len(f) >= 6 and f[5] == path
        )

    def name(self, address: int) -> str:
        i = bisect.bisect_right(self.addrs, address - self.base) - 1
        return self.syms[i][1].removesuffix("_compute_") if i >= 0 else hex(address)


def summary(traces: Sequence[RunTrace]) -> dict[str, float]:
    """Per-run medians (us) of the quantities in the module docstring."""
    rows: dict[str, list[float]] = defaultdict(list)
    for t in traces:
        ls = t.launches
        spans = [[e - s for s, e in ln.tasks.values()] for ln in ls]
        rows["wall"].append(t.wall_us)
        rows["launches"].append(len(ls))
        rows["in_launches"].append(sum(ln.end_us - ln.start_us for ln in ls))
        rows["gaps"].append(sum(b.start_us - a.end_us for a, b in itertools.pairwise(ls)))
        rows["before_first"].append(ls[0].start_us if ls else t.wall_us)
        rows["after_last"].append(t.wall_us - ls[-1].end_us if ls else 0.0)
        rows["ideal"].append(sum(max(s, default=0.0) for s in spans))
        rows["imbalance"].append(sum(max(s) - min(s) for s in spans if s))
        rows["task_sum"].append(sum(sum(s) for s in spans))
        rows["start_latency"].append(sum(_latency(ln) for ln in ls))
    return {k: statistics.median(v) for k, v in rows.items()}


def _latency(launch: Launch) -> float:
    workers = [s for task, (s, _e) in launch.tasks.items() if task != 0]
    return min(workers) - launch.start_us if workers else 0.0


def per_kernel(traces: Sequence[RunTrace]) -> list[dict[str, float | str]]:
    """Per kernel, medians over its launches (us), by total time per run, largest first."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t in traces:
        for prev, ln in zip((None, *t.launches[:-1]), t.launches, strict=True):
            d = rows[ln.kernel]
            d["launch"].append(ln.end_us - ln.start_us)
            main = ln.tasks.get(0, (0.0, 0.0))
            d["caller_task"].append(main[1] - main[0])
            d["worker_task"].append(
                max((e - s for k, (s, e) in ln.tasks.items() if k != 0), default=0.0)
            )
            d["start_latency"].append(_latency(ln))
            d["gap_before"].append(ln.start_us - prev.end_us if prev else ln.start_us)
    out: list[dict[str, float | str]] = []
    for name, d in rows.items():
        per_run = len(d["launch"]) / len(traces)
        row: dict[str, float | str] = {"kernel": name, "per_run": per_run}
        row.update({k: statistics.median(v) for k, v in d.items()})
        row["total_per_run"] = float(row["launch"]) * per_run
        out.append(row)
    return sorted(out, key=lambda r: -float(r["total_per_run"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", required=True, help="npuc CPU library (.so, sidecar beside)")
    parser.add_argument("--model", required=True, help="bench/cpu_int8.py model name")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--isa", choices=("host", "avx2"), default="host")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.isa == "avx2":
        import cpuid_mask

        reason = cpuid_mask.reexec_masked()
        if reason is not None:
            parser.error(f"--isa avx2 needs the CPUID mask: {reason}")
    import numpy as np
    from cpu_int8 import EVAL_SEED, MODELS

    from npuc import runtime

    models = {m.name: m for m in MODELS}
    if args.model not in models:
        parser.error(f"--model {args.model!r}: one of {', '.join(models)}")
    model = models[args.model]
    runtime.configure_threads(args.threads)
    lib = runtime.load(args.lib)
    feeds = {model.input_name: np.ascontiguousarray(model.samples(1, EVAL_SEED)[:1])}
    for _ in range(20):
        lib.run(feeds)
    with tempfile.TemporaryDirectory() as folder:
        tracer = Tracer(Path(args.lib), Path(folder))
        traces = tracer.trace(lambda: lib.run(feeds), args.runs)
    totals, kernels = summary(traces), per_kernel(traces)
    if args.json:
        print(json.dumps({"summary": totals, "kernels": kernels}, indent=1))
        return 0
    print(f"{args.model} {args.isa} {args.threads} threads, {args.runs} runs; per run, us:")
    print("  " + ", ".join(f"{k} {v:.1f}" for k, v in totals.items()))
    print("| kernel | per run | launch | caller task | worker task | start latency | gap before |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in kernels[: args.top]:
        cells = [f"{float(r[k]):.1f}" for k in ("launch", "caller_task", "worker_task")]
        cells += [f"{float(r[k]):.1f}" for k in ("start_latency", "gap_before")]
        print(f"| {r['kernel']} | {float(r['per_run']):g} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH.parent))
    sys.exit(main())


__all__ = ["Launch", "RunTrace", "Tracer", "build_shim", "per_kernel", "summary"]
