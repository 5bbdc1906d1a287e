"""The matmul rule: scheduled == unscheduled for dense, padded and batched matmuls.

Tolerance: rtol 1e-5, atol 1e-5 times the reduction length (FMA contraction).
"""

from __future__ import annotations

import pytest
from tvm import relax

from npuc.backend.cpu.schedules.loops import vector_lanes
from npuc.backend.cpu.schedules.matmul import MatmulRule
from tests.backend.cpu.schedules.relax_graphs import TARGET, check_same, graph

op = relax.op


@pytest.mark.parametrize(
    ("m", "k", "n"),
    [(1, 2048, 1000), (64, 64, 64), (37, 128, 48), (5, 7, 13), (6, 33, 16), (40, 120, 6625)],
)
def test_matmul_bias_relu(m: int, k: int, n: int) -> None:
    mod = graph([(m, k), (k, n), (n,)], lambda p: op.nn.relu(op.add(op.matmul(p[0], p[1]), p[2])))
    report = check_same(mod, (MatmulRule(),), atol=1e-5 * k)
    # Narrower than one vector: not worth a GEMM kernel, the fallback takes it.
    expected = "matmul" if n >= vector_lanes(TARGET, "float32") else "fallback"
    assert expected in report.rule_of.values()


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((2, 16, 32), (2, 32, 64)), ((3, 8, 24), (24, 32)), ((1, 1, 64), (64, 40))],
)
def test_batch_matmul(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    mod = graph([a_shape, b_shape], lambda p: op.matmul(p[0], p[1]))
    report = check_same(mod, (MatmulRule(),), atol=1e-5 * a_shape[-1])
    assert report.counts() == {"matmul": 1}
