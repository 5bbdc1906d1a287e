"""Compile a small Relax graph with and without schedules and compare the results.

Shared by the tests of the schedule pass and of each rule. Scheduling reorders
loops and vectorises them; the order of each reduction is unchanged, but LLVM
may contract a multiply-add into an FMA in one version and not the other, so
float results are compared with rtol 1e-5 and a stated atol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tvm
from tvm import relax

from npuc.backend.cpu.lowering import fusion_passes, lower_passes
from npuc.backend.cpu.schedule_pass import ScheduleCpu, ScheduleReport
from npuc.backend.cpu.schedules import ScheduleRule
from npuc.core.target import host_target

GraphFn = Callable[[list[relax.Var]], relax.Expr]
TARGET = host_target(num_cores=2)


def graph(shapes: Sequence[tuple[int, ...]], body: GraphFn, dtype: str = "float32") -> tvm.IRModule:
    """A ``main(x0, x1, ...)`` returning ``body(params)``."""
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(s, dtype)) for i, s in enumerate(shapes)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(params))
        bb.emit_func_output(out)
    return bb.get()


def build(
    mod: tvm.IRModule, rules: Sequence[ScheduleRule] | None, report: ScheduleReport | None = None
) -> tvm.runtime.Executable:
    """Compile with ``ScheduleCpu(rules)``, or with no schedule pass when ``rules`` is None."""
    scheduled = [] if rules is None else [ScheduleCpu(TARGET, rules=rules, report=report)]
    pipeline = tvm.transform.Sequential(fusion_passes(TARGET) + scheduled + lower_passes())
    return relax.build(mod, TARGET.to_tvm(), relax_pipeline=pipeline)


def run(exe: tvm.runtime.Executable, inputs: list[np.ndarray]) -> np.ndarray:
    vm = relax.VirtualMachine(exe, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(x) for x in inputs]).numpy()


def check_same(
    mod: tvm.IRModule,
    rules: Sequence[ScheduleRule],
    *,
    seed: int = 0,
    atol: float = 1e-5,
) -> ScheduleReport:
    """Scheduled and unscheduled builds agree; every PrimFunc was scheduled."""
    rng = np.random.default_rng(seed)
    inputs = []
    for param in mod["main"].params:
        shape = [int(d) for d in param.ty.shape.values]
        inputs.append(rng.uniform(-1, 1, shape).astype(str(param.ty.dtype)))
    report = ScheduleReport()
    got = run(build(mod, rules, report), inputs)
    want = run(build(mod, None), inputs)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)
    assert report.failures == []
    assert "none" not in report.rule_of.values(), report.notes()
    return report
