"""backend/cpu/reciprocal_divide.py: float32 division by constants as multiplication."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import tvm
import tvm_ffi
from onnx import TensorProto, helper
from tvm import relax

from npuc.backend.cpu.reciprocal_divide import ReciprocalDivide, reciprocal
from npuc.frontend.onnx import load_onnx
from tests.tooling.cpu import run_relax_on_cpu


def _ops(mod: tvm.IRModule) -> list[tuple[str, str]]:
    """(op name, divisor/multiplier dtype or '-') of every call in ``main``, in order."""
    found: list[tuple[str, str]] = []

    def visit(expr: relax.Expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            rhs = expr.args[1] if len(expr.args) > 1 else None
            value = getattr(rhs, "value", None)
            kind = str(value.dtype) if isinstance(value, tvm.runtime.Tensor) else "-"
            found.append((expr.op.name, kind))

    relax.analysis.post_order_visit(mod["main"], visit)
    return found


def _module(shape: tuple[int, int] = (2, 3), zero_divisor: bool = True) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    y = relax.Var("y", relax.TensorType(shape, "float64"))
    with bb.function("main", [x, y]):
        with bb.dataflow():
            outs = [
                bb.emit(relax.op.divide(x, relax.const(6.0, "float32"))),
                bb.emit(relax.op.divide(y, relax.const(3.0, "float64"))),  # float64: exact path
                bb.emit(relax.op.divide(x, relax.const(0.0 if zero_divisor else 7.0, "float32"))),
                bb.emit(relax.op.divide(x, relax.const(1e-39, "float32"))),  # subnormal
                bb.emit(relax.op.divide(x, x)),  # not a constant
                bb.emit(relax.op.divide(x, relax.const(np.array([2.0, 3.0, 5.0], "float32")))),
            ]
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    return bb.get()


def test_only_float32_constant_divisors_with_normal_reciprocals_are_rewritten() -> None:
    before = _module()
    after = ReciprocalDivide()(before)
    assert _ops(before).count(("relax.divide", "float32")) == 4
    assert [op for op in _ops(after) if op[0] in ("relax.divide", "relax.multiply")] == [
        ("relax.multiply", "float32"),
        ("relax.divide", "float64"),
        ("relax.divide", "float32"),
        ("relax.divide", "float32"),
        ("relax.divide", "-"),
        ("relax.multiply", "float32"),
    ]
    assert tvm_ffi.structural_equal(ReciprocalDivide()(after), after)  # idempotent


def test_library_is_within_two_ulp_of_the_division_and_float64_exact() -> None:
    rng = np.random.default_rng(5)
    shape = (256, 3)
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 30, shape)).astype(np.float32)
    x[0, 0], x[0, 1], x[1, 0] = 0.0, np.inf, np.nan
    y = rng.standard_normal(shape)
    # TVM's constant folder refuses x / 0.0 when compiling: the library divides by 7 there.
    got = run_relax_on_cpu(_module(shape, zero_divisor=False), {"x": x, "y": y})
    with np.errstate(all="ignore"):
        want = [
            x / np.float32(6.0), y / 3.0, x / np.float32(7.0), x / np.float32(1e-39), x / x,
            x / np.array([2.0, 3.0, 5.0], np.float32),
        ]  # fmt: skip
    np.testing.assert_array_equal(got[1], want[1], strict=True)  # float64 divisions untouched
    np.testing.assert_array_equal(got[3], want[3], strict=True)  # subnormal divisor untouched
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        special = ~np.isfinite(w) & ~np.isnan(w)
        np.testing.assert_array_equal(g[special], w[special])
        if g.dtype == np.float32:
            finite = np.isfinite(w)
            ulps = np.abs(g[finite].view(np.int32).astype(np.int64) - w[finite].view(np.int32))
            assert int(ulps.max(initial=0)) <= 2
    # x / 6 by multiplication differs from the quotient somewhere: the rewrite happened.
    assert (got[0] != want[0])[np.isfinite(want[0])].any()


def test_reciprocal_over_many_divisors_is_within_two_ulp() -> None:
    rng = np.random.default_rng(9)
    divisors = (rng.uniform(1, 2, 4096) * 2.0 ** rng.integers(-120, 120, 4096)).astype(np.float32)
    inverse = reciprocal(divisors)
    assert inverse is not None
    x = rng.standard_normal(4096).astype(np.float32)
    quotient = (x.astype(np.float64) / divisors.astype(np.float64)).astype(np.float32)
    product = x * inverse
    normal = np.abs(quotient) >= np.finfo(np.float32).tiny
    ulps = np.abs(product.view(np.int32).astype(np.int64) - quotient.view(np.int32))[normal]
    assert int(ulps.max()) <= 2
    assert reciprocal(np.array([3.0e38], np.float32)) is None  # reciprocal subnormal


def test_hardswish_model_matches_onnxruntime(tmp_path: Path) -> None:
    node = helper.make_node("HardSwish", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "hs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    onnx.save(model, tmp_path / "hs.onnx")
    mod = load_onnx(str(tmp_path / "hs.onnx")).mod
    assert ("relax.divide", "float32") in _ops(mod)
    x = np.random.default_rng(3).uniform(-5, 5, (1, 8, 16, 16)).astype(np.float32)
    (got,) = run_relax_on_cpu(mod, {"x": x})
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
