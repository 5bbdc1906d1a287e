"""Where a model's CPU time goes: every kernel of the default CPU pipeline timed alone.

The model is imported and optimised as ``npuc build --target cpu`` does it,
then fused, scheduled and weight-packed by the backend's passes. Each PrimFunc
the graph calls is compiled on its own and run on random inputs of its
parameter shapes, on one thread, timed in CPU time of this process (the
minimum over ``--repeats`` pairs of runs), so that other jobs on a shared
machine move the numbers little. The table lists the time per call times the
number of calls, the schedule rule that produced the kernel, and the shapes
of its parameters; the total is the sum over kernels (no VM overhead, no
thread-pool start-up).

Usage: ``.venv/bin/python bench/cpu_kernels.py MODEL.onnx [--top N] [--repeats N]``
prints the table (no file is written).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm
from bench_target import ISAS, bench_target
from tvm import relax, tirx


@dataclass(frozen=True, slots=True)
class KernelTime:
    """One kernel: milliseconds per call, calls per inference, rule, parameter shapes."""

    name: str
    ms_per_call: float
    calls: int
    rule: str
    shapes: tuple[tuple[int, ...], ...]

    @property
    def total_ms(self) -> float:
        return self.ms_per_call * self.calls


def scheduled_module(
    path: Path, input_shapes: dict[str, tuple[int, ...]] | None = None, isa: str = "host"
) -> tuple[tvm.IRModule, dict[str, str]]:
    """The model after fusion, scheduling and weight packing (one thread), and rule per kernel."""
    from npuc.backend.cpu.lowering import fusion_passes, schedule_passes
    from npuc.backend.cpu.prepack_weights import PrepackWeights
    from npuc.backend.cpu.schedule_pass import ScheduleReport
    from npuc.frontend import load
    from npuc.midend.pipeline import MidendOptions, optimize

    target = bench_target(isa, 1)
    mod, _info = load(path, input_shapes or {}, None)
    mod = optimize(mod, MidendOptions())
    report = ScheduleReport()
    passes = fusion_passes(target) + schedule_passes(target, report) + [PrepackWeights()]
    return tvm.transform.Sequential(passes)(mod), dict(report.rule_of)


def call_counts(mod: tvm.IRModule) -> Counter[str]:
    """How many times ``main`` calls each PrimFunc (``call_tir``)."""
    calls: Counter[str] = Counter()
    call_tir = tvm.ir.Op.get("relax.call_tir")

    def visit(expr: relax.Expr) -> None:
        if isinstance(expr, relax.Call) and expr.op.same_as(call_tir):
            calls[expr.args[0].name_hint] += 1

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return calls


def time_kernel(func: tirx.PrimFunc, repeats: int, isa: str = "host") -> float:
    """CPU milliseconds of one call of ``func`` on random inputs (min over ``repeats``)."""
    single = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    kernel = tvm.compile(single, bench_target(isa, 1).to_tvm()).jit()["main"]
    rng = np.random.default_rng(0)
    args = [
        tvm.runtime.tensor(
            rng.standard_normal([int(d) for d in p.ty.shape]).astype(str(p.ty.dtype))
        )
        for p in func.params
    ]
    kernel(*args)  # warm-up
    best_s = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        kernel(*args)
        kernel(*args)
        best_s = min(best_s, (time.process_time() - start) / 2)
    return best_s * 1e3


def profile(
    path: Path,
    repeats: int,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    isa: str = "host",
) -> list[KernelTime]:
    """Every kernel ``main`` calls, slowest (per inference) first."""
    from npuc import runtime

    runtime.configure_threads(1)
    mod, rule_of = scheduled_module(path, input_shapes, isa)
    calls = call_counts(mod)
    rows = []
    for gvar, func in mod.functions.items():
        name = gvar.name_hint
        if not isinstance(func, tirx.PrimFunc) or calls[name] == 0:
            continue
        rule = rule_of.get(name.removesuffix("_prepacked"), "?")
        shapes = tuple(tuple(int(d) for d in p.ty.shape) for p in func.params)
        rows.append(KernelTime(name, time_kernel(func, repeats, isa), calls[name], rule, shapes))
    return sorted(rows, key=lambda r: r.total_ms, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--top", type=int, default=20, help="rows to print")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=SHAPE",
        help="fix an input's shape, as npuc build's --input-shape (e.g. x=1x3x224x224)",
    )
    parser.add_argument(
        "--isa", choices=ISAS, default="host", help="compile for this host or AVX2 only"
    )
    args = parser.parse_args()
    from npuc.cli.common import parse_input_shapes

    rows = profile(args.model, args.repeats, parse_input_shapes(args.input_shape), args.isa)
    by_rule: Counter[str] = Counter()
    for row in rows:
        by_rule[row.rule] += row.total_ms
    print(f"{args.model.name}: {sum(r.total_ms for r in rows):.1f} ms CPU, one thread")
    print("by rule: " + ", ".join(f"{k} {v:.1f} ms" for k, v in by_rule.most_common()))
    print("| ms | calls | kernel | rule | parameter shapes |\n|---:|---:|---|---|---|")
    for row in rows[: args.top]:
        shapes = " ".join("x".join(map(str, s)) or "scalar" for s in row.shapes)
        print(f"| {row.total_ms:.2f} | {row.calls} | {row.name} | {row.rule} | {shapes} |")


if __name__ == "__main__":
    main()
