"""FoldPad: a zero pad goes into the conv (always) or max pool (after a ReLU) that reads it."""

from __future__ import annotations

from collections import Counter

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from npuc.midend.fold_pad import FoldPad
from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.float_exec import FloatExecutor

RNG = np.random.default_rng(1)
W = RNG.normal(size=(4, 3, 3, 3)).astype("float32")  # OIHW


def _ops(mod: tvm.IRModule) -> Counter[str]:
    names: Counter[str] = Counter()

    def visit(expr: relax.Expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            names[expr.op.name] += 1

    relax.analysis.post_order_visit(mod["main"], visit)
    return names


def test_pads_fold_into_conv_and_relu_max_pool() -> None:
    @I.ir_module
    class Padded:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")) -> R.Tensor((1, 4, 6, 6), "float32"):
            with R.dataflow():
                a = R.nn.pad(x, [0, 0, 0, 0, 3, 3, 3, 3])
                b = R.nn.conv2d(a, R.const(W), strides=[1, 1])
                c = R.nn.relu(b)
                d = R.nn.pad(c, [0, 0, 0, 0, 1, 1, 1, 1])
                y = R.nn.max_pool2d(d, pool_size=[3, 3], strides=[2, 2])
                R.output(y)
            return y

    folded = FoldPad()(Padded)
    assert _ops(folded)["relax.nn.pad"] == 0
    x = RNG.normal(size=(1, 3, 8, 8)).astype("float32")
    before = extract_graph(Padded)  # extract_graph folds too: compare with the numpy pads
    graph = extract_graph(folded)
    assert Counter(n.op for n in graph.nodes)["relax"] == 0
    got = FloatExecutor(graph).run({"x": x})[graph.outputs[0]]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (3, 3), (3, 3)))
    conv = np.zeros((1, 4, 12, 12))
    for i in range(3):
        for j in range(3):
            conv += np.einsum("nchw,oc->nohw", xp[:, :, i : i + 12, j : j + 12], W[:, :, i, j])
    relu = np.pad(np.maximum(conv, 0.0), ((0, 0), (0, 0), (1, 1), (1, 1)))
    pooled = np.max(
        [relu[:, :, i : i + 11 : 2, j : j + 11 : 2] for i in range(3) for j in range(3)], axis=0
    )
    np.testing.assert_allclose(got, pooled, rtol=1e-4, atol=1e-4)
    assert len(before.nodes) == len(graph.nodes)


def test_max_pool_after_a_signed_tensor_keeps_its_pad() -> None:
    @I.ir_module
    class Signed:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")) -> R.Tensor((1, 3, 4, 4), "float32"):
            with R.dataflow():
                d = R.nn.pad(x, [0, 0, 0, 0, 1, 1, 1, 1])
                y = R.nn.max_pool2d(d, pool_size=[3, 3], strides=[2, 2])
                R.output(y)
            return y

    assert _ops(FoldPad()(Signed))["relax.nn.pad"] == 1
