"""Transposes moved down and cancelled (:mod:`npuc.backend.cpu.qlower.sink_transpose`) keep every
value bit for bit: random chains of transposes, element-wise arithmetic (shifts by a transposed
amount, 0-d and broadcast operands), pads of every mode, NHWC max pools and table lookups, each
compiled as built and after the pass, return the same bytes. Symbolic shapes are left alone."""

from __future__ import annotations

import numpy as np
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tvm import relax, tirx

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.qlower.lut import emit_lookup
from npuc.backend.cpu.qlower.sink_transpose import sink_transposes
from npuc.core.target import host_target

SHAPE = (1, 3, 4, 5)
BINARY = {
    "add": relax.op.add,
    "subtract": relax.op.subtract,
    "maximum": relax.op.maximum,
    "bitwise_xor": relax.op.bitwise_xor,
    "right_shift": relax.op.right_shift,
    "left_shift": relax.op.left_shift,
}


def _shape(expr: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape.values)


def _dtype(expr: relax.Expr) -> str:
    return str(expr.ty.dtype)


@st.composite
def _steps(draw: st.DrawFn) -> list[tuple]:
    """Steps on two tensors ``a`` (any values) and ``b`` (shift amounts 0..7, kept so)."""
    kinds = ["perm_both", "perm_both", "perm_a", "binary", "scalar", "broadcast", "pad", "pool",
             "lut", "widen"]  # fmt: skip
    steps = []
    for _ in range(draw(st.integers(2, 7))):
        kind = draw(st.sampled_from(kinds))
        if kind in ("perm_both", "perm_a"):
            steps.append((kind, tuple(draw(st.permutations(range(4))))))
        elif kind == "binary":
            steps.append((kind, draw(st.sampled_from(sorted(BINARY)))))
        elif kind == "pad":
            widths = draw(st.lists(st.integers(0, 2), min_size=8, max_size=8))
            mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
            steps.append((kind, tuple(widths), mode, float(draw(st.integers(0, 7)))))
        elif kind == "pool":
            k = tuple(draw(st.lists(st.integers(1, 3), min_size=2, max_size=2)))
            s = tuple(draw(st.lists(st.integers(1, 2), min_size=2, max_size=2)))
            d = tuple(draw(st.lists(st.integers(1, 2), min_size=2, max_size=2)))
            p = tuple(draw(st.integers(0, k[i % 2] - 1)) for i in range(4))
            steps.append((kind, k, s, p, d, draw(st.booleans())))
        else:
            steps.append((kind,))
    return steps


def _build(steps: list[tuple]) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    params = [relax.Var(n, relax.TensorType(SHAPE, "int8")) for n in ("a", "b")]
    with bb.function("main", params):
        with bb.dataflow():
            a, b = params
            for step in steps:
                a, b = _apply(bb, step, a, b)
            out = bb.emit_output(relax.Tuple([a, b]))
        bb.emit_func_output(out)
    return bb.get()


def _apply(
    bb: relax.BlockBuilder, step: tuple, a: relax.Expr, b: relax.Expr
) -> tuple[relax.Expr, relax.Expr]:
    """One step; ``b`` follows every shape change of ``a`` (so binary steps can pair them)."""
    kind = step[0]
    if kind in ("perm_both", "perm_a"):
        a = bb.emit(relax.op.permute_dims(a, list(step[1])))
        if kind == "perm_both":
            b = bb.emit(relax.op.permute_dims(b, list(step[1])))
    elif kind == "binary" and _shape(a) == _shape(b):
        wide = "int32" if step[1] == "left_shift" else _dtype(a)
        a, b = (v if _dtype(v) == wide else bb.emit(relax.op.astype(v, wide)) for v in (a, b))
        a = bb.emit(BINARY[step[1]](a, b))
    elif kind == "scalar":
        a = bb.emit(relax.op.minimum(a, relax.const(np.asarray(100, _dtype(a)))))
    elif kind == "broadcast":
        row = relax.const(np.arange(_shape(a)[-1]).astype(_dtype(a)))
        a = bb.emit(relax.op.subtract(a, row))
    elif kind == "widen":
        a = bb.emit(relax.op.astype(a, "int32"))
    elif kind == "lut" and _dtype(a) == "int8":
        a = emit_lookup(bb, a, (np.arange(256) * 37 % 256 - 128).astype(np.int8))
    elif kind == "pad":  # reflect reads at most size - 1 beyond an edge, circular size
        limit = {"reflect": 1, "circular": 0}.get(step[2], -9)
        a, b = (
            bb.emit(relax.op.nn.pad(v, [min(w, _shape(v)[i // 2] - limit)
                                        for i, w in enumerate(step[1])], step[2], step[3]))
            for v in (a, b)
        )  # fmt: skip
    elif kind == "pool":
        _, k, s, p, d, ceil = step
        h, w = _shape(a)[1:3]
        if h + p[0] + p[2] >= d[0] * (k[0] - 1) + 1 and w + p[1] + p[3] >= d[1] * (k[1] - 1) + 1:
            a, b = (
                bb.emit(relax.op.nn.max_pool2d(v, k, s, p, d, ceil, layout="NHWC")) for v in (a, b)
            )
    return a, b


def _run(mod: tvm.IRModule, inputs: list[np.ndarray]) -> list[np.ndarray]:
    vm = relax.VirtualMachine(compile_module(mod, host_target()), tvm.cpu())
    got = vm["main"](*[tvm.runtime.tensor(x) for x in inputs])
    return [t.numpy() for t in got]


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(_steps(), st.integers(0, 2**16))
def test_random_chains_keep_their_bytes(steps: list[tuple], seed: int) -> None:
    rng = np.random.default_rng(seed)
    inputs = [
        rng.integers(-128, 128, size=SHAPE).astype(np.int8),
        rng.integers(0, 8, size=SHAPE).astype(np.int8),
    ]
    mod = _build(steps)
    sunk = relax.transform.DeadCodeElimination(["main"])(sink_transposes(mod))
    for want, got in zip(_run(mod, inputs), _run(sunk, inputs), strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want, strict=True)


def test_symbolic_shapes_are_left_alone() -> None:
    """An element-wise op of two transposed tensors with a symbolic batch: no rewrite needs a
    static shape to be sound, but the pass compares shapes as integers, so it declines."""
    n = tirx.Var("n", "int64")
    bb = relax.BlockBuilder()
    a, b = (relax.Var(v, relax.TensorType((n, 4, 3, 5), "int8")) for v in ("a", "b"))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            t = [bb.emit(relax.op.permute_dims(v, [0, 2, 3, 1])) for v in (a, b)]
            total = bb.emit(relax.op.add(t[0], t[1]))
            out = bb.emit_output(relax.op.permute_dims(total, [0, 3, 1, 2]))
        bb.emit_func_output(out)
    mod = relax.transform.DeadCodeElimination(["main"])(sink_transposes(bb.get()))
    assert mod["main"].script().count("permute_dims") == 3


def test_negative_axes() -> None:
    """``permute_dims`` keeps negative axes as written: a pad below one (its widths moved by
    axis: the pass built an 10-entry width list and TVM refused it) and a pair that cancels."""
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType(SHAPE, "int8"))
    with bb.function("main", [a]):
        with bb.dataflow():
            nhwc = bb.emit(relax.op.permute_dims(a, [0, -2, -1, 1]))
            padded = bb.emit(relax.op.nn.pad(nhwc, [0, 0, 1, 0, 0, 2, 0, 1], "constant", 3.0))
            back = bb.emit(relax.op.permute_dims(padded, [0, -1, 1, 2]))
            same = bb.emit(relax.op.permute_dims(nhwc, [0, -1, -3, 2]))
            out = bb.emit_output(relax.Tuple([back, same]))
        bb.emit_func_output(out)
    mod = bb.get()
    sunk = relax.transform.DeadCodeElimination(["main"])(sink_transposes(mod))
    assert "permute_dims" not in sunk["main"].script()
    x = np.random.default_rng(4).integers(-128, 128, size=SHAPE).astype(np.int8)
    for want, got in zip(_run(mod, [x]), _run(sunk, [x]), strict=True):
        np.testing.assert_array_equal(got, want, strict=True)
