"""The passes that wrap TVM's own: FoldConstants (plus its numpy stage),
DecomposeInferenceOps, RemoveNoopReshapes, RemoveDeadCode
(Before/Expected, negative case, idempotence)."""

from __future__ import annotations

import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from npuc.midend._rewrite import rewrite_module
from npuc.midend.decompose_inference_ops import DecomposeInferenceOps
from npuc.midend.fold_constants import FoldConstants, _NumpyFolder
from npuc.midend.remove_dead_code import RemoveDeadCode
from npuc.midend.remove_noop_reshapes import RemoveNoopReshapes

BIAS = np.array([1.0, 2.0], "float32")


def test_fold_constants_folds_the_importers_bias_reshape() -> None:
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2, 3), "float32")) -> R.Tensor((1, 2, 3), "float32"):
            with R.dataflow():
                b = R.reshape(R.const(BIAS), R.shape([1, 2, 1]))
                y = R.add(x, b)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2, 3), "float32")) -> R.Tensor((1, 2, 3), "float32"):
            with R.dataflow():
                y = R.add(x, R.const(BIAS.reshape(1, 2, 1)))
                R.output(y)
            return y

    after = FoldConstants()(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    tvm.ir.assert_structural_equal(FoldConstants()(after), Expected)
    # Negative: nothing constant to fold.
    tvm.ir.assert_structural_equal(FoldConstants()(Expected), Expected)


NEG_INF = float("-inf")


@I.ir_module
class ImportedClip:
    """What the ONNX importer emits for Clip(x, min=0): a NaN guard on the bound."""

    @R.function
    def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((2, 3), "float32"):
        with R.dataflow():
            lo_nan = R.isnan(R.const(0.0, "float32"))
            lo = R.where(lo_nan, R.const(NEG_INF, "float32"), R.const(0.0, "float32"))
            y = R.maximum(x, lo)
            R.output(y)
        return y


@I.ir_module
class FoldedClip:
    @R.function
    def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((2, 3), "float32"):
        with R.dataflow():
            y = R.maximum(x, R.const(0.0, "float32"))
            R.output(y)
        return y


def test_fold_constants_folds_the_importers_clip_guard() -> None:
    after = FoldConstants()(ImportedClip)
    tvm.ir.assert_structural_equal(after, FoldedClip)
    tvm.ir.assert_structural_equal(FoldConstants()(after), FoldedClip)


def test_numpy_stage_alone_folds_the_clip_guard_and_skips_nan_max() -> None:
    # The numpy stage (no LLVM compile per op) must do this fold by itself.
    numpy_only = rewrite_module(ImportedClip, lambda m, _f: _NumpyFolder(m))
    tvm.ir.assert_structural_equal(numpy_only, FoldedClip)

    @I.ir_module
    class NanMax:
        @R.function
        def main() -> R.Tensor((), "float32"):
            with R.dataflow():
                y = R.maximum(R.const(float("nan"), "float32"), R.const(1.0, "float32"))
                R.output(y)
            return y

    # NaN handling of max is left to TVM's own kernels.
    tvm.ir.assert_structural_equal(rewrite_module(NanMax, lambda m, _f: _NumpyFolder(m)), NanMax)


def test_remove_noop_reshapes() -> None:
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 6), "float32")) -> R.Tensor((3, 4), "float32"):
            with R.dataflow():
                same = R.reshape(x, R.shape([2, 6]))
                a = R.reshape(same, R.shape([12]))
                y = R.reshape(a, R.shape([3, 4]))
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 6), "float32")) -> R.Tensor((3, 4), "float32"):
            with R.dataflow():
                y = R.reshape(x, R.shape([3, 4]))
                R.output(y)
            return y

    after = RemoveDeadCode()(RemoveNoopReshapes()(Before))
    tvm.ir.assert_structural_equal(after, Expected)
    # Negative (and idempotence): the remaining reshape changes the shape and stays.
    tvm.ir.assert_structural_equal(RemoveNoopReshapes()(after), Expected)


def test_decompose_leftover_batchnorm_then_fold() -> None:
    ones = np.ones(2, "float32")
    zeros = np.zeros(2, "float32")

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2), "float32")) -> R.Tensor((1, 2), "float32"):
            with R.dataflow():
                bn = R.nn.batch_norm(
                    x,
                    R.const(ones),
                    R.const(zeros),
                    R.const(zeros),
                    R.const(ones * 3),
                    axis=1,
                    epsilon=1.0,
                    training=False,
                )
                y = bn[0]
                R.output(y)
            return y

    after = RemoveDeadCode()(FoldConstants()(DecomposeInferenceOps()(Before)))
    ops = [b.value.op.name for b in after["main"].body.blocks[0].bindings]
    # (x - 0) / sqrt(3 + 1) * 1 + 0: elementwise only, no batch_norm left.
    assert "relax.nn.batch_norm" not in ops
    assert set(ops) <= {"relax.subtract", "relax.divide", "relax.multiply", "relax.add"}
    tvm.ir.assert_structural_equal(DecomposeInferenceOps()(after), after)


def test_remove_dead_code_drops_aliases_and_unused_bindings() -> None:
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2,), "float32")) -> R.Tensor((2,), "float32"):
            with R.dataflow():
                alias = x
                unused = R.exp(x)
                t = (alias, unused)
                y = R.nn.relu(t[0])
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2,), "float32")) -> R.Tensor((2,), "float32"):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    after = RemoveDeadCode()(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    tvm.ir.assert_structural_equal(RemoveDeadCode()(after), Expected)
