"""RemoveIdentities: ops that return their input become that input."""

from __future__ import annotations

import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from npuc.midend.remove_dead_code import RemoveDeadCode
from npuc.midend.remove_identities import RemoveIdentities


def _clean(mod: tvm.IRModule) -> tvm.IRModule:
    return RemoveDeadCode()(RemoveIdentities()(mod))


def test_removes_each_identity_form() -> None:
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((2, 3), "float32"):
            with R.dataflow():
                d = R.nn.dropout(x, rate=0.5)
                a = d[0]
                b = R.astype(a, "float32")
                c = R.broadcast_to(b, R.shape([2, 3]))
                e = R.permute_dims(c, axes=[0, 1])
                f = R.add(e, R.const(np.zeros((1, 3), "float32")))
                g = R.add(R.const(0.0, "float32"), f)
                h = R.subtract(g, R.const(0.0, "float32"))
                i = R.multiply(R.const(np.ones((2, 3), "float32")), h)
                j = R.divide(i, R.const(1.0, "float32"))
                y = R.nn.relu(j)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((2, 3), "float32"):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    after = _clean(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    tvm.ir.assert_structural_equal(_clean(after), Expected)  # idempotent


@I.ir_module
class NotIdentities:
    """Each op here changes its input (shape, dtype, order or values)."""

    @R.function
    def main(x: R.Tensor((1, 3), "float32")):
        with R.dataflow():
            grow = R.broadcast_to(x, R.shape([2, 3]))  # grows x
            cast = R.astype(x, "float16")  # changes dtype
            flip = R.permute_dims(x, axes=[1, 0])  # real transpose
            shift = R.add(x, R.const(np.array([0, 1, 0], "float32")))  # not all zero
            wider = R.add(x, R.const(np.zeros((2, 3), "float32")))  # zero, but broadcasts x
            double = R.multiply(x, R.const(2.0, "float32"))
            R.output(grow, cast, flip, shift, wider, double)
        return (grow, cast, flip, shift, wider, double)


def test_keeps_ops_that_change_their_input() -> None:
    tvm.ir.assert_structural_equal(RemoveIdentities()(NotIdentities), NotIdentities)


def test_keeps_a_read_dropout_mask() -> None:
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                d = R.nn.dropout(x, rate=0.5)
                a = d[0]
                m = d[1]
                y = R.add(a, m)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                d = R.nn.dropout(x, rate=0.5)
                m = d[1]
                y = R.add(x, m)
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(_clean(Before), Expected)


def test_replaces_by_the_operand_variable_without_recomputing_it() -> None:
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((2, 3), "float32"):
            with R.dataflow():
                r = R.nn.relu(x)
                same = R.astype(r, "float32")
                y = R.add(same, r)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((2, 3), "float32"):
            with R.dataflow():
                r = R.nn.relu(x)
                y = R.add(r, r)
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(_clean(Before), Expected)
