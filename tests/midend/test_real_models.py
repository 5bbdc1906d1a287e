"""The midend on real trained models with batch norms (slow: each build takes ~40 s)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.frontend.onnx import load_onnx
from npuc.midend.pipeline import MidendOptions, Pipeline, graph_passes, optimize
from tests.tooling.cpu import run_relax_on_cpu
from tests.tooling.reference import run_onnxruntime
from tools.real_models import ORIENTATION, PPOCR_CLS, RealModel

CASES = [(ORIENTATION, (1, 3, 224, 224)), (PPOCR_CLS, (1, 3, 48, 192))]


def _ops(mod: tvm.IRModule) -> Counter[str]:
    return Counter(
        binding.value.op.name
        for block in mod["main"].body.blocks
        for binding in block.bindings
        if isinstance(binding.value, relax.Call) and isinstance(binding.value.op, tvm.ir.Op)
    )


def _bindings(mod: tvm.IRModule) -> int:
    return sum(len(block.bindings) for block in mod["main"].body.blocks)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "shape"), CASES, ids=[m.key for m, _ in CASES])
def test_optimized_real_model_matches_onnxruntime(model: RealModel, shape: tuple[int, ...]) -> None:
    path = model.path()
    imported = load_onnx(path, {model.input_name: shape}).mod
    assert _ops(imported)["relax.nn.batch_norm"] > 0

    graph = Pipeline(graph_passes(), debug=True)(imported)
    assert _ops(graph)["relax.nn.batch_norm"] == 0
    # Each BN [+ its 3 tuple reads] became one add: fewer bindings overall.
    assert _bindings(graph) < _bindings(imported)

    optimized = optimize(imported, MidendOptions(debug=True))
    tvm.ir.assert_structural_equal(optimized, graph)

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = list(run_onnxruntime(str(path), {model.input_name: x}).values())
    got = run_relax_on_cpu(optimized, {model.input_name: x})
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        # BN folding reassociates fp32 arithmetic through ~30 layers.
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
