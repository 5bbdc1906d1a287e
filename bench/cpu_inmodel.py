"""Where a model run's time goes: npuc's kernels timed in the model, and onnxruntime's nodes.

``bench/cpu_kernels.py`` times each kernel alone, with its inputs and weights
hot in cache; inside a model they are not (ResNet-50, one thread: kernels
alone 53.5 ms, the model 70 ms). This script times every call of one
library's ``main`` inside real runs (:func:`npuc.runtime.profile.profile_model`,
the Relax VM's instrument hook, as ``npuc run --profile``; about 3 us of Python
per call is included), at the thread count asked for,
and with ``--onnx`` prints onnxruntime's per-node times for the same model
(its own profiler, same threads), so layers can be compared one to one.

Usage: ``.venv/bin/python bench/cpu_inmodel.py LIB.so [--threads N] [--runs N]
[--top N] [--onnx MODEL.onnx]`` (LIB.so from ``npuc build --target cpu``).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np


def npuc_calls(library: Path, threads: int, runs: int) -> list[tuple[float, str, int]]:
    """(microseconds per run, function, calls per run) for every function ``main`` calls."""
    from npuc import runtime
    from npuc.runtime.profile import profile_model

    runtime.configure_threads(threads)
    model = runtime.load(library)
    assert isinstance(model, runtime.CompiledModel)
    inp = model.info.inputs[0]
    x = np.random.default_rng(0).uniform(-1, 1, tuple(inp.shape)).astype(inp.dtype)
    profile = profile_model(model, {inp.name: x}, runs=runs, warmup=10)
    return [(k.us_per_run, k.function, k.calls_per_run) for k in profile.kernels]


def ort_nodes(onnx_path: Path, shape: tuple[int, ...], threads: int, runs: int) -> list:
    """(median microseconds, op type, node name, output shape) per onnxruntime node."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    for _ in range(runs):
        session.run(None, {name: x})
    events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[tuple[str, str, str], list[float]] = collections.defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            args = event["args"]
            key = (args.get("op_name", "?"), event["name"][: -len("_kernel_time")],
                   str(args.get("output_type_shape", "")))  # fmt: skip
            durations[key].append(float(event["dur"]))
    rows = [(statistics.median(v), *key) for key, v in durations.items()]
    return sorted(rows, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("library", type=Path, help="npuc's .so (npuc build --target cpu)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30, help="timed runs (after 10 warm-up)")
    parser.add_argument("--top", type=int, default=25, help="rows to print")
    parser.add_argument("--onnx", type=Path, help="also profile this model in onnxruntime")
    args = parser.parse_args()
    rows = npuc_calls(args.library, args.threads, args.runs)
    total_ms = sum(us for us, _, _ in rows) / 1e3
    print(f"npuc {args.library.name}, {args.threads} thread(s): {total_ms:.3f} ms per run")
    print("| us per run | calls | function |\n|---:|---:|---|")
    for us, name, calls in rows[: args.top]:
        print(f"| {us:.1f} | {calls} | {name} |")
    if args.onnx is not None:
        from npuc import runtime

        shape = tuple(runtime.load(args.library).info.inputs[0].shape)
        nodes = ort_nodes(args.onnx, shape, args.threads, args.runs)
        print(f"\nonnxruntime {args.onnx.name}: {sum(r[0] for r in nodes) / 1e3:.3f} ms per run")
        print("| us | op | node | output |\n|---:|---|---|---|")
        for us, op, node, out in nodes[: args.top]:
            print(f"| {us:.1f} | {op} | {node} | {out} |")


if __name__ == "__main__":
    main()
