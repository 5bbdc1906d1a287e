"""Where a CPU library's run time goes: every kernel call timed inside real runs.

:func:`profile_model` runs a :class:`~npuc.runtime.compiled_model.CompiledModel`
a few times uninstrumented (its run time), then ``runs`` times with TVM's
Relax VM instrument hook, which is called before and after every call the
VM makes (each compiled kernel, and the VM's own builtins such as
``vm.builtin.alloc_tensor``). Each function's time per run is its summed
call time in one run, median over the runs. Calls are timed with
``time.perf_counter`` from Python, so each includes a few microseconds of the
hook itself: the kernels' sum exceeds the uninstrumented run time by about
that much per call. Kernels run on TVM's thread pool as in a normal run (same
threads); inside the model their inputs are where the previous kernel left
them, unlike a kernel timed alone with hot caches.

``npuc run model.so --profile`` prints this; ``bench/cpu_inmodel.py``
compares it with onnxruntime's per-node profile.
"""

from __future__ import annotations

import collections
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.runtime.compiled_model import CompiledModel
from npuc.runtime.thread_pool import pool_threads

#: Suffix TVM's weight pre-packing adds to a kernel's name after scheduling.
_PREPACKED = "_prepacked"


@dataclass(frozen=True, slots=True)
class KernelTime:
    """One function ``main`` calls: its time per run and the shapes of its first call.

    ``us_per_run``: microseconds per run (all its calls in one run, median over
    runs; includes the hook's few microseconds per call). ``shapes``: the shape
    of each tensor argument of its first call (for a kernel, the inputs then
    the output); empty for calls without tensor arguments. ``rule``: the
    schedule rule that compiled it, as the library's description records
    (``conv2d``, ``fallback``, ``none`` for a serial loop nest, ...); empty
    when it records none (the VM's builtins, kernels scheduled before the
    schedule pass, libraries built before npuc recorded rules).
    """

    function: str
    calls_per_run: int
    us_per_run: float
    shapes: tuple[tuple[int, ...], ...]
    rule: str = ""


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """A profile of one model: the uninstrumented run time and every function's time.

    ``run_ms``: median wall time of one uninstrumented run, milliseconds.
    ``kernels``: by time, largest first. ``threads``: TVM's pool size.
    ``rules_recorded``: the library's description records each kernel's
    schedule rule (libraries built before npuc recorded them do not).
    """

    runs: int
    threads: int
    run_ms: float
    kernels: tuple[KernelTime, ...]
    rules_recorded: bool = True

    @property
    def kernels_ms(self) -> float:
        """Sum of every function's time per run (instrumented), milliseconds."""
        return sum(k.us_per_run for k in self.kernels) / 1e3

    def as_json(self) -> dict[str, Any]:
        """The profile as JSON-ready data (``npuc run --profile --json``)."""
        return {
            "runs": self.runs,
            "threads": self.threads,
            "run_ms": self.run_ms,
            "kernels_ms": self.kernels_ms,
            "rules_recorded": self.rules_recorded,
            "kernels": [
                {
                    "function": k.function,
                    "calls_per_run": k.calls_per_run,
                    "us_per_run": k.us_per_run,
                    "shapes": [list(s) for s in k.shapes],
                    "rule": k.rule,
                }
                for k in self.kernels
            ],
        }


def profile_model(
    model: CompiledModel, inputs: Mapping[str, np.ndarray], runs: int = 20, warmup: int = 3
) -> ModelProfile:
    """Time ``model`` on ``inputs``: ``warmup`` runs, ``runs`` plain runs, ``runs`` instrumented.

    Raises
    ------
    InvalidInputError
        ``runs < 1`` or ``warmup < 0``; the inputs do not match the model
        (as :meth:`CompiledModel.run`).
    """
    if runs < 1 or warmup < 0:
        raise InvalidInputError(
            f"profile: runs must be at least 1 and warm-up runs at least 0, got {runs} and "
            f"{warmup}",
            hint="e.g. --runs 20",
        )
    for _ in range(warmup):
        model.run(inputs)
    wall_s = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run(inputs)
        wall_s.append(time.perf_counter() - start)

    per_run: list[dict[str, float]] = []
    calls: collections.Counter[str] = collections.Counter()
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
    started: dict[str, float] = {}

    def instrument(_func: object, name: str, before: bool, _ret: object, *args: object) -> int:
        if before:
            started[name] = time.perf_counter()
            return 0
        per_run[-1][name] = per_run[-1].get(name, 0.0) + time.perf_counter() - started[name]
        calls[name] += 1
        if name not in shapes:
            shapes[name] = tuple(_shape(a) for a in args if _is_tensor(a))
        return 0

    with model.instrumented(instrument):
        for _ in range(runs):
            per_run.append({})
            model.run(inputs)
    recorded = model.info.extra.get("schedule_rules")
    rules = recorded if isinstance(recorded, dict) else {}
    kernels = [
        KernelTime(
            function=name,
            calls_per_run=calls[name] // runs,
            us_per_run=statistics.median(run.get(name, 0.0) for run in per_run) * 1e6,
            shapes=shapes[name],
            rule=str(rules.get(name) or rules.get(name.removesuffix(_PREPACKED), "")),
        )
        for name in calls
    ]
    kernels.sort(key=lambda k: (-k.us_per_run, k.function))
    return ModelProfile(
        runs=runs,
        threads=pool_threads(),
        run_ms=statistics.median(wall_s) * 1e3,
        kernels=tuple(kernels),
        rules_recorded=isinstance(recorded, dict),
    )


def _is_tensor(value: object) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape)


def profile_table(profile: ModelProfile, top: int = 20) -> list[str]:
    """Text lines: the run time, then the ``top`` functions by time and a line for the rest."""
    lines = [
        f"profile: {profile.run_ms:.3f} ms per run ({profile.threads} thread(s), median of "
        f"{profile.runs}); functions timed inside {profile.runs} more runs sum to "
        f"{profile.kernels_ms:.3f} ms (each call includes a few us of timing)",
        f"  {'us/run':>9} {'%':>5} {'calls':>5}  {'rule':<16}  function  [argument shapes]",
    ]
    if not profile.rules_recorded:
        lines.insert(
            1,
            "  (this library records no schedule rules: built before npuc recorded them; "
            "rebuild it to see each kernel's rule)",
        )
    total_us = max(profile.kernels_ms * 1e3, 1e-9)
    for k in profile.kernels[:top]:
        shapes = ", ".join("x".join(map(str, s)) or "scalar" for s in k.shapes)
        lines.append(
            f"  {k.us_per_run:9.1f} {100 * k.us_per_run / total_us:5.1f} {k.calls_per_run:5d}  "
            f"{k.rule or '-':<16}  {k.function}" + (f"  [{shapes}]" if shapes else "")
        )
    rest = profile.kernels[top:]
    if rest:
        rest_us = sum(k.us_per_run for k in rest)
        lines.append(f"  {rest_us:9.1f} {100 * rest_us / total_us:5.1f}        ({len(rest)} more)")
    return lines
