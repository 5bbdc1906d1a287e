"""The schedule pass and its rules: scheduled code computes what the serial loop nests compute.

Each case builds a small Relax graph, compiles it twice — through the CPU
pipeline with the rule under test, and with no schedule at all — and
compares the outputs on random inputs. Scheduling reorders loops and
vectorises them; the order of each reduction is unchanged, but LLVM may
contract a multiply-add into an FMA in one version and not the other, so
float results are compared with rtol 1e-5 / atol 1e-5 (times the reduction
length for matmuls). Integer graphs must be bit-exact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import tvm
from tvm import relax, tirx

from npuc.backend.cpu.lowering import fusion_passes, lower_passes
from npuc.backend.cpu.schedule_pass import RULE_ATTR, ScheduleCpu, ScheduleReport
from npuc.backend.cpu.schedules import ScheduleRule
from npuc.backend.cpu.schedules.loops import vector_lanes
from npuc.backend.cpu.schedules.matmul import MatmulRule
from npuc.core.target import CpuTarget, host_core_count, host_target

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


FALLBACK_ONLY: tuple[ScheduleRule, ...] = ()
op = relax.op


@pytest.mark.parametrize(
    "shape", [(1, 64, 56, 56), (3, 7), (1, 1000), (2, 3, 5, 7), (1, 32, 13, 13), (17,)]
)
def test_elementwise_chain(shape: tuple[int, ...]) -> None:
    mod = graph([shape, shape], lambda p: op.nn.relu(op.add(op.multiply(p[0], p[1]), p[0])))
    check_same(mod, FALLBACK_ONLY)


@pytest.mark.parametrize(("shape", "axis"), [((1, 1000), -1), ((4, 37), -1), ((2, 8, 6), 1)])
def test_softmax(shape: tuple[int, ...], axis: int) -> None:
    check_same(graph([shape], lambda p: op.nn.softmax(p[0], axis=axis)), FALLBACK_ONLY)


@pytest.mark.parametrize(
    ("shape", "axes"), [((1, 64, 7, 7), [2, 3]), ((1, 24, 16, 16), [1]), ((5, 9), [0])]
)
def test_mean(shape: tuple[int, ...], axes: list[int]) -> None:
    check_same(graph([shape], lambda p: op.mean(p[0], axis=axes, keepdims=True)), FALLBACK_ONLY)


@pytest.mark.parametrize(
    ("shape", "pool", "strides", "padding"),
    [
        ((1, 16, 32, 32), (2, 2), (2, 2), (0, 0)),
        ((1, 8, 55, 55), (3, 3), (2, 2), (0, 0)),
        ((1, 8, 28, 28), (3, 3), (1, 1), (1, 1)),
    ],
)
def test_pooling(
    shape: tuple[int, ...],
    pool: tuple[int, int],
    strides: tuple[int, int],
    padding: tuple[int, int],
) -> None:
    for pool_op in (op.nn.max_pool2d, op.nn.avg_pool2d):
        mod = graph([shape], lambda p, f=pool_op: f(p[0], pool, strides, padding=padding))
        check_same(mod, FALLBACK_ONLY)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "padding", "layout"),
    [
        ((1, 8, 16, 16), (16, 8, 3, 3), (1, 1), "NCHW"),
        ((1, 8, 13, 13), (12, 8, 1, 1), (0, 0), "NCHW"),
        ((1, 10, 10, 8), (3, 3, 8, 16), (1, 1), "NHWC"),
    ],
)
def test_convolution_without_its_rule(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], padding: tuple[int, int], layout: str
) -> None:
    kernel_layout = "OIHW" if layout == "NCHW" else "HWIO"

    def body(p: list[relax.Var]) -> relax.Expr:
        conv = op.nn.conv2d(
            p[0], p[1], padding=padding, data_layout=layout, kernel_layout=kernel_layout
        )
        return op.nn.relu(conv)

    check_same(graph([x_shape, w_shape], body), FALLBACK_ONLY, atol=1e-4)


@pytest.mark.parametrize(
    ("m", "k", "n"),
    [(1, 2048, 1000), (64, 64, 64), (37, 128, 48), (5, 7, 13), (6, 33, 16), (40, 120, 6625)],
)
def test_matmul_bias_relu(m: int, k: int, n: int) -> None:
    mod = graph([(m, k), (k, n), (n,)], lambda p: op.nn.relu(op.add(op.matmul(p[0], p[1]), p[2])))
    report = check_same(mod, (MatmulRule(),), atol=1e-5 * k)
    # Narrower than one vector: not worth a GEMM kernel, the fallback takes it.
    expected = "matmul" if n >= vector_lanes(TARGET, "float32") else "fallback"
    assert expected in report.rule_of.values()


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((2, 16, 32), (2, 32, 64)), ((3, 8, 24), (24, 32)), ((1, 1, 64), (64, 40))],
)
def test_batch_matmul(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    mod = graph([a_shape, b_shape], lambda p: op.matmul(p[0], p[1]))
    report = check_same(mod, (MatmulRule(),), atol=1e-5 * a_shape[-1])
    assert report.counts() == {"matmul": 1}


def test_integer_graph_is_bit_exact() -> None:
    mod = graph([(4, 33), (4, 33)], lambda p: op.multiply(op.add(p[0], p[1]), p[0]), "int32")
    rng = np.random.default_rng(1)
    inputs = [rng.integers(-1000, 1000, (4, 33), dtype=np.int32) for _ in range(2)]
    got = run(build(mod, FALLBACK_ONLY), inputs)
    np.testing.assert_array_equal(got, run(build(mod, None), inputs), strict=True)


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
