"""LegalizeOps + FuseOps: the CPU fusion tail of the pipeline."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from npuc.backend.cpu.fuse_ops import FuseOps
from npuc.backend.cpu.legalize_ops import LegalizeOps
from tests.tooling.cpu import run_relax_on_cpu

W = np.arange(8, dtype="float32").reshape(2, 4) / 8


@I.ir_module
class MatmulEpilogue:
    @R.function
    def main(x: R.Tensor((3, 2), "float32")) -> R.Tensor((3, 1), "float32"):
        with R.dataflow():
            m = R.matmul(x, R.const(W))
            a = R.add(m, R.const(1.0, "float32"))
            r = R.nn.relu(a)
            y = R.sum(r, axis=[1], keepdims=True)
            R.output(y)
        return y


def _main_calls(mod: tvm.IRModule) -> list[str]:
    """The callee of each binding in ``main``: an op name or a PrimFunc name."""
    names = []
    for binding in mod["main"].body.blocks[0].bindings:
        call = binding.value
        assert isinstance(call, relax.Call)
        names.append(call.args[0].name_hint if call.op.name == "relax.call_tir" else call.op.name)
    return names


def test_fuses_matmul_with_its_elementwise_epilogue() -> None:
    legalized = LegalizeOps()(MatmulEpilogue)
    assert _main_calls(legalized) == ["matmul", "add", "relu", "sum"]
    fused = FuseOps()(legalized)
    # matmul+add+relu fuse (out-elementwise-fusable + elementwise); the reduction
    # starts a new group.
    assert _main_calls(fused) == ["fused_matmul_add_relu", "sum"]
    tvm.ir.assert_structural_equal(FuseOps()(fused), fused)  # a second run adds nothing
    x = np.array([[1, 2], [-3, 4], [0.5, -1]], "float32")
    expected = np.maximum(x @ W + 1, 0).sum(axis=1, keepdims=True)
    (got,) = run_relax_on_cpu(fused, {"x": x})
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_fuse_opt_level_zero_fuses_nothing() -> None:
    legalized = LegalizeOps()(MatmulEpilogue)
    assert _main_calls(FuseOps(fuse_opt_level=0)(legalized)) == ["matmul", "add", "relu", "sum"]
