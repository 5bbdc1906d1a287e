"""SimplifySum: reduce(stack(xs)) -> chain of binary ops."""

from __future__ import annotations

import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from npuc.midend.remove_dead_code import RemoveDeadCode
from npuc.midend.simplify_sum import SimplifySum


def _simplify(mod: tvm.IRModule) -> tvm.IRModule:
    return RemoveDeadCode()(SimplifySum()(mod))


def test_onnx_sum_becomes_adds_without_broadcasts() -> None:
    # What the ONNX importer emits for Sum(a, b, c) with a: (1, 4), b, c: (3, 4).
    @I.ir_module
    class Before:
        @R.function
        def main(
            a: R.Tensor((1, 4), "float32"),
            b: R.Tensor((3, 4), "float32"),
            c: R.Tensor((3, 4), "float32"),
        ) -> R.Tensor((3, 4), "float32"):
            with R.dataflow():
                ba = R.broadcast_to(a, R.shape([3, 4]))
                bb = R.broadcast_to(b, R.shape([3, 4]))
                bc = R.broadcast_to(c, R.shape([3, 4]))
                s = R.stack((ba, bb, bc), axis=0)
                y = R.sum(s, axis=[0], keepdims=False)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(
            a: R.Tensor((1, 4), "float32"),
            b: R.Tensor((3, 4), "float32"),
            c: R.Tensor((3, 4), "float32"),
        ) -> R.Tensor((3, 4), "float32"):
            with R.dataflow():
                ab = R.add(a, b)
                y = R.add(ab, c)
                R.output(y)
            return y

    after = _simplify(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    tvm.ir.assert_structural_equal(_simplify(after), Expected)  # idempotent


def test_max_keeps_one_broadcast_when_no_input_has_the_result_shape() -> None:
    @I.ir_module
    class Before:
        @R.function
        def main(a: R.Tensor((1, 4), "float32"), b: R.Tensor((1, 4), "float32")) -> R.Tensor(
            (3, 4), "float32"
        ):
            with R.dataflow():
                s = R.stack(
                    (R.broadcast_to(a, R.shape([3, 4])), R.broadcast_to(b, R.shape([3, 4]))), axis=1
                )
                y = R.max(s, axis=[1], keepdims=False)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(a: R.Tensor((1, 4), "float32"), b: R.Tensor((1, 4), "float32")) -> R.Tensor(
            (3, 4), "float32"
        ):
            with R.dataflow():
                m = R.maximum(a, b)
                y = R.broadcast_to(m, R.shape([3, 4]))
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(_simplify(Before), Expected)


@I.ir_module
class NotStackReductions:
    """Reductions that do not undo a stack: another axis, keepdims, a shared stack."""

    @R.function
    def main(a: R.Tensor((3, 4), "float32"), b: R.Tensor((3, 4), "float32")):
        with R.dataflow():
            s = R.stack((a, b), axis=0)
            other_axis = R.sum(s, axis=[1], keepdims=False)
            t = R.stack((a, b), axis=0)
            kept = R.sum(t, axis=[0], keepdims=True)
            u = R.stack((a, b), axis=0)
            shared = R.sum(u, axis=[0], keepdims=False)
            R.output(other_axis, kept, u, shared)
        return (other_axis, kept, u, shared)


def test_leaves_other_reductions_alone() -> None:
    tvm.ir.assert_structural_equal(SimplifySum()(NotStackReductions), NotStackReductions)
