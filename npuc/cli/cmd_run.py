"""``npuc run``: run a library built by ``npuc build`` on inputs from files.

Loads ``model.so`` (with ``model.so.json``), reads ``--input`` files
(see :mod:`npuc.runtime.tensor_files`), checks them against the model's
inputs, runs once and prints every output's name, shape, dtype and basic
statistics; ``--output out.npz`` saves the outputs atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import numpy as np

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.core.errors import InvalidInputError

DESCRIPTION = """\
Run a compiled CPU library on inputs from .npy/.npz files.
  --input NAME=x.npy   one input (repeatable)
  --input x.npz        every array in the archive, by its name
  --input x.npy        allowed when the model has a single input
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a compiled library on inputs from .npy/.npz files",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("library", help="library written by `npuc build` (model.so)")
    common.add_tensor_io_flags(parser)
    parser.add_argument(
        "--raw",
        action="store_true",
        help="give the stored integers, not dequantized floats (.npuc and int8 libraries)",
    )
    parser.add_argument(
        "--engine",
        choices=("sim", "ref"),
        default="sim",
        help="(.npuc) NPU parts on the simulator (default) or the integer executor (ref)",
    )
    parser.add_argument(
        "--trace",
        metavar="TRACE.json",
        help="(.npuc) write a Chrome trace: one process per NPU partition, one track per unit",
    )
    parser.add_argument(
        "--threads", type=int, metavar="N", help="threads to run with (default: as built)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="(.so) time every kernel inside real runs and print where the time goes",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        metavar="N",
        help="(--profile) timed runs, after 3 warm-up runs (default 20)",
    )
    common.add_common_flags(parser)
    parser.set_defaults(handler=run)


def output_stats(value: np.ndarray) -> dict[str, Any]:
    """Name-free summary of one output: shape, dtype, min/max/mean/std of the finite values,
    NaN and infinity counts."""
    stats: dict[str, Any] = {"shape": list(value.shape), "dtype": str(value.dtype)}
    if value.size == 0 or not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
        return stats
    as_float = value.astype(np.float64)
    finite = as_float[np.isfinite(as_float)]
    stats["nan_count"] = int(np.isnan(as_float).sum())
    stats["inf_count"] = int(np.isinf(as_float).sum())
    if finite.size:
        stats.update(
            min=float(finite.min()),
            max=float(finite.max()),
            mean=float(finite.mean()),
            std=float(finite.std()),
        )
    return stats


def run(args: argparse.Namespace) -> CommandResult:
    import npuc.runtime as runtime
    from npuc.runtime.tensor_files import read_input_files, write_outputs_npz
    from npuc.runtime.thread_pool import pool_threads

    if args.runs is not None and not args.profile:
        raise InvalidInputError("--runs counts --profile's timed runs", hint="add --profile")
    runs = 20 if args.runs is None else args.runs
    if runs < 1:
        raise InvalidInputError(f"--runs {runs}: must be at least 1", hint="e.g. --runs 20")
    notes: list[str] = []
    if args.threads is not None:  # process-wide: also the CPU regions of a .npuc file
        threads = runtime.configure_threads(args.threads)
        if threads < args.threads:
            notes.append(
                f"--threads {args.threads}: TVM's thread pool holds at most {threads} threads "
                f"here (the CPUs this process may use, or TVM_NUM_THREADS); running {threads}"
            )
    if str(args.library).endswith(".npuc"):
        from npuc.cli.npu_commands import run as run_npu

        if args.profile:
            raise InvalidInputError(
                "--profile times the kernels of a CPU library (.so); a .npuc runs on the NPU "
                "simulator",
                hint="--trace TRACE.json writes the NPU timeline; npuc report gives the cycles "
                "per layer",
            )

        result = run_npu(args)
        return dataclasses.replace(
            result,
            data={**result.data, "threads": pool_threads(), "notes": notes},  # CPU regions' pool
            text="\n".join([result.text, *(f"  note: {n}" for n in notes)]),
        )
    library = common.existing_file(args.library, "compiled model")
    if library.suffix == ".npuq":
        raise InvalidInputError(
            f"{library}: a quantized model (.npuq), not something npuc run can execute",
            hint="build it first: npuc build MODEL --target npu -o m.npuc (or --target cpu"
            " for a .so); npuc eval runs a .npuq against its float model",
        )
    if args.output and not args.output.endswith(".npz"):
        raise InvalidInputError(f"--output {args.output}: must end in .npz", hint="e.g. out.npz")
    model = runtime.load(library)
    assert isinstance(model, runtime.CompiledModel)  # .npuc files took the branch above
    precision = str(model.info.extra.get("precision", "float"))
    if args.raw and precision != "int8" and not model.info.extra.get("quantized_outputs"):
        raise InvalidInputError(
            f"--raw: {library} is a {precision} library; its outputs are already the model's "
            "real values (only .npuc files and --precision int8 libraries hold stored integers)",
            hint="drop --raw",
        )
    feeds = read_input_files(args.input, model.info)
    start_s = time.monotonic()
    outputs = model.run(feeds, raw=args.raw)
    run_ms = (time.monotonic() - start_s) * 1e3
    if args.output:
        write_outputs_npz(args.output, outputs)

    stats = {name: output_stats(value) for name, value in outputs.items()}
    data = {
        "library": str(library),
        "run_time_ms": run_ms,
        "raw": bool(args.raw),
        "outputs": [{"name": name, **s} for name, s in stats.items()],
        "output_file": args.output,
        "threads": pool_threads(),
        "notes": notes,
    }
    lines = [f"ran {library} in {run_ms:.1f} ms on {data['threads']} thread(s)"]
    lines += [f"  note: {n}" for n in notes]
    for name, s in stats.items():
        shape = "x".join(str(d) for d in s["shape"]) or "scalar"
        line = f"  {name}: {shape} {s['dtype']}"
        if "min" in s:
            line += (
                f"  min {s['min']:.6g} max {s['max']:.6g} mean {s['mean']:.6g} std {s['std']:.6g}"
            )
        if s.get("nan_count"):
            line += f"  NaN {s['nan_count']}"
        if s.get("inf_count"):
            line += f"  inf {s['inf_count']}"
        lines.append(line)
    if args.output:
        lines.append(f"wrote {args.output}")
    if args.profile:
        from npuc.runtime.profile import profile_model, profile_table

        profile = profile_model(model, feeds, runs=runs)
        data["profile"] = profile.as_json()
        lines += profile_table(profile)
    return CommandResult(data=data, text="\n".join(lines))
