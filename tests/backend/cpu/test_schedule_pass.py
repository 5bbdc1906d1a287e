"""The schedule pass: rule order, failures recorded, idempotence, targets and threads."""

from __future__ import annotations

import re

import numpy as np
import tvm
from tvm import relax, tirx

from npuc.backend.cpu.lowering import fusion_passes
from npuc.backend.cpu.schedule_pass import RULE_ATTR, ScheduleCpu, ScheduleReport
from npuc.backend.cpu.schedules import ScheduleRule
from npuc.backend.cpu.schedules.matmul import MatmulRule
from npuc.core.target import CpuTarget, host_core_count
from tests.backend.cpu.schedules.relax_graphs import TARGET, build, check_same, graph

FALLBACK_ONLY: tuple[ScheduleRule, ...] = ()
op = relax.op


class _Broken:
    """A rule with a bug: it raises on every function."""

    name = "broken"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        raise IndexError("rule bug")


def test_failing_rule_falls_back_and_is_recorded() -> None:
    mod = graph([(8, 64), (8, 64)], lambda p: op.add(p[0], p[1]))
    report = check_same(graph([(8, 64)], lambda p: op.nn.relu(p[0])), FALLBACK_ONLY)
    assert report.counts() == {"fallback": 1}

    report = ScheduleReport()
    scheduled = ScheduleCpu(TARGET, rules=[_Broken()], report=report)(
        tvm.transform.Sequential(fusion_passes(TARGET))(mod)
    )
    assert [(f.rule, f.error) for f in report.failures] == [("broken", "IndexError: rule bug")]
    assert report.counts() == {"fallback": 1}
    assert any("rule 'broken' failed on add" in line for line in report.notes())
    funcs = [f for _, f in scheduled.functions_items() if isinstance(f, tirx.PrimFunc)]
    assert [str(f.attrs[RULE_ATTR]) for f in funcs] == ["fallback"]


def test_pass_leaves_its_input_alone_and_is_idempotent() -> None:
    fused = tvm.transform.Sequential(fusion_passes(TARGET))(
        graph([(1, 64, 28, 28)], lambda p: op.nn.relu(p[0]))
    )
    before = fused.script()
    once = ScheduleCpu(TARGET)(fused)
    assert fused.script() == before
    tvm.ir.assert_structural_equal(ScheduleCpu(TARGET)(once), once)
    text = once.script()
    assert "T.parallel" in text and "T.vectorized" in text


def test_vector_width_follows_the_target() -> None:
    fused = tvm.transform.Sequential(fusion_passes(TARGET))(
        graph([(1, 64, 32, 32)], lambda p: op.nn.relu(p[0]))
    )
    avx2 = CpuTarget(cpu_name="znver3", features=("avx", "avx2", "fma"), num_cores=2)
    avx512 = CpuTarget(cpu_name="icelake-server", features=("avx2", "avx512f"), num_cores=2)
    assert re.search(r"T\.vectorized\((T\.int64\()?8\)", ScheduleCpu(avx2)(fused).script())
    assert re.search(r"T\.vectorized\((T\.int64\()?16\)", ScheduleCpu(avx512)(fused).script())


def test_parallel_code_gives_the_same_result_on_any_thread_count() -> None:
    """``--threads`` sizes TVM's pool; the parallel loops split work, never change it."""
    from npuc.runtime.thread_pool import configure_threads, configured_threads

    mod = graph(
        [(64, 96), (96, 80), (1, 8, 30, 30)],
        lambda p: relax.Tuple([op.matmul(p[0], p[1]), op.nn.softmax(op.nn.relu(p[2]), axis=1)]),
    )
    exe = build(mod, (MatmulRule(),))
    rng = np.random.default_rng(5)
    inputs = [rng.uniform(-1, 1, s).astype("float32") for s in [(64, 96), (96, 80), (1, 8, 30, 30)]]
    previous = configured_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            configure_threads(threads)
            vm = relax.VirtualMachine(exe, tvm.cpu())
            outs = vm["main"](*[tvm.runtime.tensor(x) for x in inputs])
            results.append([out.numpy() for out in outs])
    finally:
        # What loading a library would have chosen, if nothing had sized the pool yet.
        configure_threads(previous if previous is not None else host_core_count())
    for other in results[1:]:
        for got, want in zip(other, results[0], strict=True):
            np.testing.assert_array_equal(got, want, strict=True)
