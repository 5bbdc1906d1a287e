"""Float sigmoid and softmax with the vectorisable exponential agree with float64 numpy.

Tolerance: rtol 1e-6 with atol 1e-7 (the exponential's relative error is at
most 3e-7, measured); extreme inputs (+-100, where ``exp`` over- or
underflows) give exactly 0 and 1 for sigmoid and finite softmax values.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.backend.cpu.legalize_ops import LegalizeOps
from npuc.backend.cpu.lowering import fusion_passes, schedule_passes
from npuc.backend.cpu.schedule_pass import ScheduleReport
from npuc.core.target import host_target

op = relax.op


def _run(shape: tuple[int, ...], body: object, x: np.ndarray) -> np.ndarray:
    bb = relax.BlockBuilder()
    var = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [var]):
        with bb.dataflow():
            out = bb.emit_output(body(var))  # type: ignore[operator]
        bb.emit_func_output(out)
    target = host_target(num_cores=1)
    passes = fusion_passes(target) + schedule_passes(target, ScheduleReport())
    exe = tvm.compile(tvm.transform.Sequential(passes)(bb.get()), target.to_tvm())
    vm = relax.VirtualMachine(exe, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize(("shape", "axis"), [((40, 6625), -1), ((1, 16, 4, 70), 1), ((3, 5), 0)])
def test_softmax(shape: tuple[int, ...], axis: int) -> None:
    x = np.random.default_rng(0).uniform(-20, 20, shape).astype(np.float32)
    got = _run(shape, lambda v: op.nn.softmax(v, axis=axis), x)
    want = _softmax(x.astype(np.float64), axis)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_sigmoid_and_silu() -> None:
    shape = (1, 8, 9, 13)
    x = np.random.default_rng(1).uniform(-30, 30, shape).astype(np.float32)
    x.flat[:4] = [-100.0, 100.0, 0.0, -88.5]
    got = _run(shape, lambda v: op.multiply(v, op.sigmoid(v)), x)
    sig = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(got, x * sig, rtol=1e-6, atol=1e-7)
    got_sig = _run(shape, op.sigmoid, x)
    np.testing.assert_allclose(got_sig, sig, rtol=1e-6, atol=1e-7)
    assert got_sig.flat[0] == 0.0 and got_sig.flat[1] == 1.0


def test_plain_exp_keeps_the_stock_kernel() -> None:
    mod = relax.BlockBuilder()
    var = relax.Var("x", relax.TensorType((4, 4), "float32"))
    with mod.function("main", [var]):
        with mod.dataflow():
            out = mod.emit_output(op.exp(var))
        mod.emit_func_output(out)
    script = "\n".join(
        f.script()
        for f in LegalizeOps()(mod.get()).functions.values()
        if isinstance(f, tvm.tirx.PrimFunc)
    )
    assert "T.exp(" in script and "fast_exp" not in script
