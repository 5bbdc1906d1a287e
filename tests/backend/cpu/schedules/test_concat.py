"""The concat rule: the span-copy kernel equals the unscheduled TIR bit for bit.

Each case's fused PrimFunc is compiled twice, as LegalizeOps wrote it and as
the rule rebuilt it, for AVX-512 (when the host has it), AVX2 (Haswell code)
and a baseline x86-64 target (128-bit vectors), and run on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import tvm
from tvm import relax, tirx
from tvm.script import tirx as T

from npuc.backend.cpu.lowering import fusion_passes
from npuc.backend.cpu.schedule_pass import ScheduleReport
from npuc.backend.cpu.schedules import RULES
from npuc.backend.cpu.schedules.concat import ConcatRule, span_copies
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import targets
from tests.backend.cpu.schedules.relax_graphs import TARGET, build, graph, run
from tools.real_models import NUDENET_YOLOV8N

op = relax.op
GENERIC = CpuTarget(cpu_name="x86-64", features=(), num_cores=2)
TARGETS = [*targets(), GENERIC]
LIGHT = Path(relax.__file__).parents[2] / "onnx/backend/test/data/light"


@dataclass(frozen=True)
class Case:
    """A graph of one copy op: input shapes, dtype and the op."""

    name: str
    shapes: tuple[tuple[int, ...], ...]
    dtype: str
    body: Callable[[list[relax.Var]], relax.Expr]

    def func(self) -> tirx.PrimFunc:
        return _fused(graph(list(self.shapes), self.body, self.dtype))[0]


def _concat(axis: int) -> Callable[[list[relax.Var]], relax.Expr]:
    return lambda p: op.concat(p, axis=axis)


CASES = [
    Case("squeezenet", ((1, 64, 55, 55), (1, 64, 55, 55)), "float32", _concat(1)),
    Case("rank1_odd", ((7,), (65,), (1,)), "float32", _concat(0)),
    Case("last_axis", ((3, 5, 7), (3, 5, 65), (3, 5, 1)), "float32", _concat(2)),
    Case("axis0", ((1, 55), (7, 55)), "int32", _concat(0)),
    Case("int8_rows", ((2, 64, 7), (2, 1, 7), (2, 65, 7)), "int8", _concat(1)),
    Case("uint8_pieces", ((1, 65, 55, 55), (1, 7, 55, 55)), "uint8", _concat(1)),
    # Three rows cut into pieces, the last piece of each row with a tail.
    Case("float_pieces", ((3, 100, 65), (3, 37, 65)), "float32", _concat(1)),
    Case("rank5", ((2, 3, 7, 1, 5), (2, 3, 64, 1, 5)), "float32", _concat(2)),
    Case("split", ((1, 64, 55, 55),), "float32", lambda p: op.split(p[0], [7, 8], axis=1)),
    Case("split_last", ((5, 130),), "int8", lambda p: op.split(p[0], [65], axis=-1)),
    Case(
        "slice",
        ((3, 65, 55),),
        "float32",
        lambda p: op.strided_slice(p[0], axes=[1], begin=[1], end=[56]),
    ),
]


def _fused(mod: tvm.IRModule) -> list[tirx.PrimFunc]:
    fused = tvm.transform.Sequential(fusion_passes(TARGET))(mod)
    return [f for f in fused.functions.values() if isinstance(f, tirx.PrimFunc)]


def _outputs(func: tirx.PrimFunc, target: CpuTarget, n_inputs: int) -> list[np.ndarray]:
    kernel = tvm.compile(
        tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target.to_tvm()
    ).jit()["main"]
    rng = np.random.default_rng(7)
    args = []
    for i, p in enumerate(func.params):
        shape, dtype = [int(d) for d in p.shape], str(p.dtype)
        info = np.iinfo(dtype) if dtype.startswith(("int", "uint")) else None
        values = (
            rng.integers(info.min, info.max, shape, endpoint=True)
            if info is not None
            else rng.standard_normal(shape)
        )
        args.append(
            tvm.runtime.tensor(values.astype(dtype) if i < n_inputs else 0 * values.astype(dtype))
        )
    kernel(*args)
    return [a.numpy() for a in args[n_inputs:]]


@cache
def _reference(name: str) -> list[np.ndarray]:
    case = next(c for c in CASES if c.name == name)
    return _outputs(case.func(), GENERIC, len(case.shapes))


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_copy_equals_the_unscheduled_kernel(case: Case, target: CpuTarget) -> None:
    scheduled = ConcatRule().apply(case.func(), target)
    assert scheduled is not None
    got = _outputs(scheduled, target, len(case.shapes))
    for g, want in zip(got, _reference(case.name), strict=True):
        np.testing.assert_array_equal(g, want, strict=True)


def test_large_copies_are_parallel_small_ones_are_not() -> None:
    big, small = (ConcatRule().apply(c.func(), TARGET) for c in CASES[:2])
    assert big is not None and small is not None
    assert "T.parallel" in big.script()
    assert "T.parallel" not in small.script()


def test_whole_pipeline_picks_the_rule() -> None:
    shapes = [(1, 4, 6, 6), (1, 3, 6, 6)]
    mod = graph(shapes, lambda p: op.concat(p, axis=1))
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    report = ScheduleReport()
    got = run(build(mod, RULES, report), xs)
    assert list(report.rule_of.values()) == ["concat"], report.rule_of
    np.testing.assert_array_equal(got, np.concatenate(xs, axis=1), strict=True)


@pytest.mark.parametrize(
    ("shapes", "body"),
    [
        ([(1, 4, 6, 6), (1, 4, 6, 6)], lambda p: op.nn.relu(op.concat(p, axis=1))),
        (
            [(1, 4, 2, 3), (1, 4, 2, 3)],
            lambda p: op.concat([op.reshape(x, (1, 4, 6)) for x in p], axis=2),
        ),
        ([(1, 9, 5)], lambda p: op.strided_slice(p[0], axes=[1, 2], begin=[2, 1], end=[6, 4])),
        ([(1, 9, 5)], lambda p: op.strided_slice(p[0], axes=[1], begin=[0], end=[9], strides=[2])),
        ([(1, 16, 8, 8)], lambda p: op.permute_dims(p[0], [0, 2, 3, 1])),
        ([(4, 1), (4, 5)], lambda p: op.add(p[0], p[1])),
        ([(4, 5)], lambda p: op.astype(p[0], "int32")),
    ],
    ids=["concat_relu", "reshape_concat", "two_axes", "stride2", "transpose", "add", "cast"],
)
def test_other_kernels_are_refused(
    shapes: list[tuple[int, ...]], body: Callable[[list[relax.Var]], relax.Expr]
) -> None:
    for func in _fused(graph(shapes, body)):
        assert ConcatRule().apply(func, TARGET) is None


YOLOV8N_TAKEN = {
    *(f"split{i}" for i in ("", "1", "2", "3")),
    *(f"concatenate{i}" for i in (4, 9, 11)),
    *(f"fused_concatenate{i}" for i in ("", 1, 2, 3, 6, 8)),
}


@pytest.mark.parametrize(
    ("locate", "shapes", "taken"),
    [
        (lambda: LIGHT / "light_squeezenet.onnx", {}, {f"concatenate{i}" for i in ("", 1, 2, 3)}),
        (NUDENET_YOLOV8N.path, {"images": (1, 3, 320, 320)}, YOLOV8N_TAKEN),
    ],
    ids=["squeezenet", "yolov8n"],
)
def test_real_models_copies_are_taken(
    locate: Callable[[], Path], shapes: dict[str, tuple[int, ...]], taken: set[str]
) -> None:
    """The plain concats and splits; YOLOv8n's concats fused with a resize, reshapes or
    arithmetic are left to the fallback."""
    from npuc.frontend import load
    from npuc.midend.pipeline import MidendOptions, optimize

    mod, _info = load(locate(), shapes, None)
    fused = tvm.transform.Sequential(fusion_passes(TARGET))(optimize(mod, MidendOptions()))
    copies = {
        gv.name_hint: span_copies(f)
        for gv, f in fused.functions_items()
        if isinstance(f, tirx.PrimFunc)
    }
    assert {name for name, c in copies.items() if c is not None} == taken
    for name in taken:
        assert sum(c.length * c.rows for c in copies[name] or []) > 0, name


@T.prim_func(private=True, s_tir=True)
def _reads_another_blocks_output(
    a: T.Buffer((4, 64, 64), "float32"),
    b: T.Buffer((4, 64, 64), "float32"),
    m: T.Buffer((4, 128, 64), "float32"),
    y: T.Buffer((4, 192, 64), "float32"),
) -> None:
    for i, j, k in T.grid(4, 128, 64):
        with T.sblock("first"):
            v0, v1, v2 = T.axis.remap("SSS", [i, j, k])
            m[v0, v1, v2] = T.if_then_else(64 <= v1, b[v0, v1 - 64, v2], a[v0, v1, v2])  # noqa: SIM300
    for i, j, k in T.grid(4, 192, 64):
        with T.sblock("second"):
            v0, v1, v2 = T.axis.remap("SSS", [i, j, k])
            y[v0, v1, v2] = T.if_then_else(64 <= v1, m[v0, v1 - 64, v2], a[v0, v1, v2])  # noqa: SIM300


@T.prim_func(private=True, s_tir=True)
def _two_blocks_write_one_output(
    a: T.Buffer((4, 64), "float32"),
    b: T.Buffer((4, 64), "float32"),
    y: T.Buffer((4, 64), "float32"),
) -> None:
    for i, j in T.grid(4, 64):
        with T.sblock("first"):
            v0, v1 = T.axis.remap("SS", [i, j])
            y[v0, v1] = b[v0, v1]
    for i, j in T.grid(4, 64):
        with T.sblock("second"):
            v0, v1 = T.axis.remap("SS", [i, j])
            y[v0, v1] = a[v0, v1]


@pytest.mark.parametrize(
    "func", [_reads_another_blocks_output, _two_blocks_write_one_output], ids=["raw", "waw"]
)
def test_blocks_depending_on_each_other_are_refused(func: tirx.PrimFunc) -> None:
    """The copies run sorted by destination: block order would be lost (both gave wrong
    values before: the chained concat read its middle output before it was written)."""
    assert span_copies(func) is None
    assert ConcatRule().apply(func, TARGET) is None
