"""FoldBatchnorm: constant inference batch norms folded into the conv or a scale+shift."""

from __future__ import annotations

import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from npuc.midend.fold_batchnorm import FoldBatchnorm


def _f32(*values: float) -> np.ndarray:
    return np.array(values, dtype="float32")


# Hand-computed: s = gamma / sqrt(var + eps) = [1/2, 2/1]; W' = W * s = [1, 6];
# b' = (b - mean) * s + beta = [(1 - 0.5) / 2 + 0, (1 - 1) * 2 + 1] = [0.25, 1].
W = _f32(2, 3).reshape(2, 1, 1, 1)
BIAS = _f32(1, 1).reshape(1, 2, 1, 1)
GAMMA, BETA, MEAN, VAR = _f32(1, 2), _f32(0, 1), _f32(0.5, 1), _f32(3, 0)
W_FOLDED = _f32(1, 6).reshape(2, 1, 1, 1)
BIAS_FOLDED = _f32(0.25, 1).reshape(1, 2, 1, 1)


def test_folds_conv_bias_batchnorm() -> None:
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 1, 4, 4), "float32")) -> R.Tensor((1, 2, 4, 4), "float32"):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(W))
                b = R.add(c, R.const(BIAS))
                bn = R.nn.batch_norm(
                    b,
                    R.const(GAMMA),
                    R.const(BETA),
                    R.const(MEAN),
                    R.const(VAR),
                    axis=1,
                    epsilon=1.0,
                    training=False,
                )
                y = bn[0]
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 1, 4, 4), "float32")) -> R.Tensor((1, 2, 4, 4), "float32"):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(W_FOLDED))
                y = R.add(c, R.const(BIAS_FOLDED))
                R.output(y)
            return y

    after = FoldBatchnorm()(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    tvm.ir.assert_structural_equal(FoldBatchnorm()(after), Expected)  # idempotent


def test_folds_nhwc_conv_without_bias_and_bias_first_add() -> None:
    w_hwio = W.reshape(1, 1, 1, 2)  # H, W, I, O

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 1), "float32")) -> R.Tensor((1, 4, 4, 2), "float32"):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(w_hwio), data_layout="NHWC", kernel_layout="HWIO")
                bn = R.nn.batch_norm(
                    c,
                    R.const(GAMMA),
                    R.const(BETA),
                    R.const(MEAN),
                    R.const(VAR),
                    axis=3,
                    epsilon=1.0,
                    training=False,
                )
                y = bn[0]
                R.output(y)
            return y

    # No conv bias: b' = (0 - mean) * s + beta = [-0.25, -1].
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 4, 4, 1), "float32")) -> R.Tensor((1, 4, 4, 2), "float32"):
            with R.dataflow():
                c = R.nn.conv2d(
                    x,
                    R.const(W_FOLDED.reshape(1, 1, 1, 2)),
                    data_layout="NHWC",
                    kernel_layout="HWIO",
                )
                y = R.add(c, R.const(_f32(-0.25, -1).reshape(1, 1, 1, 2)))
                R.output(y)
            return y

    tvm.ir.assert_structural_equal(FoldBatchnorm()(Before), Expected)


@I.ir_module
class SharedConv:
    """The conv result is also an output: folding into the conv would compute it twice."""

    @R.function
    def main(x: R.Tensor((1, 1, 4, 4), "float32")):
        with R.dataflow():
            c = R.nn.conv2d(x, R.const(W))
            bn = R.nn.batch_norm(
                c,
                R.const(GAMMA),
                R.const(BETA),
                R.const(MEAN),
                R.const(VAR),
                axis=1,
                epsilon=1.0,
                training=False,
            )
            y = bn[0]
            z = R.nn.relu(c)
            R.output(y, z)
        return (y, z)


def test_shared_conv_keeps_its_weights_and_gets_a_scale_and_shift() -> None:
    # s = [0.5, 2]; shift = beta - mean * s = [0 - 0.25, 1 - 2] = [-0.25, -1].
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 1, 4, 4), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(W))
                m = R.multiply(c, R.const(_f32(0.5, 2).reshape(1, 2, 1, 1)))
                y = R.add(m, R.const(_f32(-0.25, -1).reshape(1, 2, 1, 1)))
                z = R.nn.relu(c)
                R.output(y, z)
            return (y, z)

    after = FoldBatchnorm()(SharedConv)
    tvm.ir.assert_structural_equal(after, Expected)
    tvm.ir.assert_structural_equal(FoldBatchnorm()(after), Expected)  # idempotent


def test_conv_input_shared_with_another_reader_is_not_recomputed() -> None:
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 1, 4, 4), "float32")):
            with R.dataflow():
                r = R.nn.relu(x)
                c = R.nn.conv2d(r, R.const(W))
                bn = R.nn.batch_norm(
                    c,
                    R.const(GAMMA),
                    R.const(BETA),
                    R.const(MEAN),
                    R.const(VAR),
                    axis=1,
                    epsilon=1.0,
                    training=False,
                )
                y = bn[0]
                R.output(r, y)
            return (r, y)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 1, 4, 4), "float32")):
            with R.dataflow():
                r = R.nn.relu(x)
                c = R.nn.conv2d(r, R.const(W_FOLDED))
                y = R.add(c, R.const(_f32(-0.25, -1).reshape(1, 2, 1, 1)))
                R.output(r, y)
            return (r, y)

    tvm.ir.assert_structural_equal(FoldBatchnorm()(Before), Expected)


@I.ir_module
class TrainingMode:
    """Training-mode batch norm normalises with batch statistics: not foldable."""

    @R.function
    def main(x: R.Tensor((1, 1, 4, 4), "float32")) -> R.Tensor((1, 2, 4, 4), "float32"):
        with R.dataflow():
            c = R.nn.conv2d(x, R.const(W))
            bn = R.nn.batch_norm(
                c,
                R.const(GAMMA),
                R.const(BETA),
                R.const(MEAN),
                R.const(VAR),
                axis=1,
                epsilon=1.0,
                training=True,
            )
            y = bn[0]
            R.output(y)
        return y


@I.ir_module
class RuntimeGamma:
    """Gamma is a runtime input, not a constant: nothing to fold into the weights."""

    @R.function
    def main(x: R.Tensor((1, 1, 4, 4), "float32"), gamma: R.Tensor((2,), "float32")) -> R.Tensor(
        (1, 2, 4, 4), "float32"
    ):
        with R.dataflow():
            c = R.nn.conv2d(x, R.const(W))
            bn = R.nn.batch_norm(
                c,
                gamma,
                R.const(BETA),
                R.const(MEAN),
                R.const(VAR),
                axis=1,
                epsilon=1.0,
                training=False,
            )
            y = bn[0]
            R.output(y)
        return y


@I.ir_module
class StatisticsRead:
    """The batch statistics outputs are read: the batch norm must stay."""

    @R.function
    def main(x: R.Tensor((1, 1, 4, 4), "float32")):
        with R.dataflow():
            c = R.nn.conv2d(x, R.const(W))
            bn = R.nn.batch_norm(
                c,
                R.const(GAMMA),
                R.const(BETA),
                R.const(MEAN),
                R.const(VAR),
                axis=1,
                epsilon=1.0,
                training=False,
            )
            y = bn[0]
            mean = bn[1]
            R.output(y, mean)
        return (y, mean)


def test_does_not_fold_unfoldable_batchnorms() -> None:
    for before in (TrainingMode, RuntimeGamma, StatisticsRead):
        tvm.ir.assert_structural_equal(FoldBatchnorm()(before), before)
