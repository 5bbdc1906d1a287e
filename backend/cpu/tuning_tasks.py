"""The tasks of ``npuc tune``: distinct kernels of the fused module, ranked by estimated cost.

Also the tuning budget (:class:`TuneOptions`). Used by :mod:`.tuning` and
:mod:`.tuning_search`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import relax, tirx

from npuc.backend.cpu.tuning_db import task_module
from npuc.core.errors import InvalidInputError


@dataclass(frozen=True, slots=True, kw_only=True)
class TuneOptions:
    """Budget of one ``npuc tune`` run.

    Parameters
    ----------
    trials
        Candidates measured in total, over all tuned tasks (``--trials``).
    time_budget_s
        Seconds after which no search batch starts (``--time-budget``),
        counted from the start of :func:`tune_module`; batches are sized to
        the time left, then selection takes a few seconds per task.
    max_tasks
        The most expensive kernels tuned (``--tasks``).
    seed
        Random seed of the search, for repeatable runs.
    """

    trials: int = 200
    time_budget_s: float = 600.0
    max_tasks: int = 8
    seed: int | None = None

    def __post_init__(self) -> None:
        for name, flag in (("trials", "--trials"), ("max_tasks", "--tasks")):
            if getattr(self, name) < 1:
                raise InvalidInputError(
                    f"{flag} must be at least 1, got {getattr(self, name)}",
                    hint=f"pass {flag} 1 or more",
                )
        if not (self.time_budget_s > 0 and math.isfinite(self.time_budget_s)):
            raise InvalidInputError(
                f"--time-budget must be a finite number of seconds > 0, got {self.time_budget_s}",
                hint="pass e.g. --time-budget 600 (10 minutes)",
            )


@dataclass(frozen=True, slots=True)
class TuningTask:
    """One distinct kernel of the fused module.

    ``flops`` is TVM's estimate of floating-point operations per call;
    ``calls`` counts ``call_tir`` sites of this kernel (and of structurally
    equal ones) in the graph.
    """

    name: str
    func: tirx.PrimFunc
    calls: int
    flops: float

    @property
    def cost(self) -> float:
        """Estimated work per inference: ``flops * calls``."""
        return self.flops * self.calls


def extract_tasks(fused: tvm.IRModule) -> list[TuningTask]:
    """Distinct unscheduled kernels of ``fused``, most expensive first.

    Parameters
    ----------
    fused
        A module after :func:`~npuc.backend.cpu.lowering.fusion_passes`.
    """
    calls: dict[str, int] = {}

    def count(expr: relax.Expr) -> None:
        if (
            isinstance(expr, relax.Call)
            and expr.args
            and isinstance(expr.args[0], tvm.ir.GlobalVar)
        ):
            calls[expr.args[0].name_hint] = calls.get(expr.args[0].name_hint, 0) + 1

    for _, func in fused.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func.body, count)
    tasks: dict[int, TuningTask] = {}
    for gvar, func in fused.functions_items():
        name = gvar.name_hint
        if not isinstance(func, tirx.PrimFunc) or calls.get(name, 0) == 0:
            continue
        key = task_module(func)
        digest = tvm_ffi.structural_hash(key)
        seen = tasks.get(digest)
        if seen is not None:
            tasks[digest] = TuningTask(seen.name, seen.func, seen.calls + calls[name], seen.flops)
            continue
        tasks[digest] = TuningTask(name, func, calls[name], _flops(key))
    return sorted(tasks.values(), key=lambda t: (-t.cost, t.name))


def _flops(key: tvm.IRModule) -> float:
    try:
        return float(tvm.s_tir.analysis.estimate_tir_flops(key))
    except Exception:  # a loop nest TVM cannot count (data-dependent extents)
        return 0.0
