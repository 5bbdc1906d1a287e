"""The matmul rule: scheduled == unscheduled for dense, padded and batched matmuls.

Tolerance: rtol 1e-5, atol 1e-5 times the reduction length (FMA contraction).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.backend.cpu.lowering import fusion_passes
from npuc.backend.cpu.prepack_weights import PrepackWeights
from npuc.backend.cpu.schedule_pass import ScheduleCpu
from npuc.backend.cpu.schedules.loops import vector_lanes
from npuc.backend.cpu.schedules.matmul import PANEL_VECTORS, MatmulRule
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


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1280, 1000), (8, 96, 48)])
def test_linear_with_transposed_constant_weight(m: int, k: int, n: int) -> None:
    """``x @ W^T + b`` (Gemm transB=1, PyTorch Linear, TFLite FullyConnected), even unfolded.

    The transpose of the constant weight is a kernel of its own (FuseOps does
    not fuse an injective producer into a matmul); PrepackWeights' constant
    folding evaluates it at compile time, so the library holds ``W^T`` and
    runs only the matmul rule's GEMM.
    """
    rng = np.random.default_rng(3)
    weight = relax.const(rng.uniform(-1, 1, (n, k)).astype(np.float32))
    bias = relax.const(rng.uniform(-1, 1, (n,)).astype(np.float32))
    mod = graph([(m, k)], lambda p: op.add(op.matmul(p[0], op.permute_dims(weight)), bias))
    report = check_same(mod, (MatmulRule(),), atol=1e-5 * k)
    assert report.counts() == {"matmul": 1, "fallback": 1}  # the GEMM; the transpose
    passes = [*fusion_passes(TARGET), ScheduleCpu(TARGET, rules=(MatmulRule(),))]
    packed = PrepackWeights()(tvm.transform.Sequential(passes)(mod))
    called = [v.args[0].name_hint for v in _calls(packed["main"]) if v.args]
    assert len(called) == 1 and "matmul" in called[0], called


def _calls(func: relax.Function) -> list[relax.Call]:
    found: list[relax.Call] = []
    relax.analysis.post_order_visit(
        func,
        lambda e: (
            found.append(e)
            if isinstance(e, relax.Call) and getattr(e.op, "name", "") == "relax.call_tir"
            else None
        ),
    )
    return found


def test_padded_constant_weight_is_padded_at_compile_time() -> None:
    """A column count no vector divides (PP-OCR rec's 6625 classes): the zero-padded copy
    of a constant ``B`` is folded at compile time; one kernel runs, with its epilogue."""
    rng = np.random.default_rng(4)
    m, k, n = 6, 24, 37
    weight = relax.const(rng.uniform(-1, 1, (k, n)).astype(np.float32))
    bias = relax.const(rng.uniform(-1, 1, (n,)).astype(np.float32))
    mod = graph([(1, m, k)], lambda p: op.add(op.matmul(p[0], weight), bias))
    report = check_same(mod, (MatmulRule(),), atol=1e-5 * k)
    assert report.counts() == {"matmul": 1}
    passes = [*fusion_passes(TARGET), ScheduleCpu(TARGET, rules=(MatmulRule(),))]
    packed = PrepackWeights()(tvm.transform.Sequential(passes)(mod))
    called = [v.args[0].name_hint for v in _calls(packed["main"]) if v.args]
    assert len(called) == 1 and called[0].endswith("_prepacked"), called


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1280, 1000), (2, 544, 1000), (1, 200, 96)])
def test_matrix_vector_reads_packed_panels(m: int, k: int, n: int) -> None:
    """A product of one or two rows with a large constant ``B`` (MobileNetV2's 1280x1000
    classifier): ``B`` is packed at compile time as ``[n // width, k, width]`` panels of
    ``PANEL_VECTORS`` vectors (padded to whole panels), and the one kernel left matches
    the unscheduled module."""
    rng = np.random.default_rng(5)
    weight = relax.const(rng.uniform(-1, 1, (k, n)).astype(np.float32))
    bias = relax.const(rng.uniform(-1, 1, (n,)).astype(np.float32))
    mod = graph([(m, k)], lambda p: op.nn.relu(op.add(op.matmul(p[0], weight), bias)))
    report = check_same(mod, (MatmulRule(),), atol=1e-5 * k)
    assert report.counts() == {"matmul": 1}
    passes = [*fusion_passes(TARGET), ScheduleCpu(TARGET, rules=(MatmulRule(),))]
    packed = PrepackWeights()(tvm.transform.Sequential(passes)(mod))
    width = PANEL_VECTORS * vector_lanes(TARGET, "float32")
    called = [v.args[0] for v in _calls(packed["main"]) if v.args]
    assert len(called) == 1, called  # the padding / packing copy was folded away
    kernel = packed[called[0]]
    shapes = [tuple(int(d) for d in p.ty.shape) for p in kernel.params]
    assert (-(-n // width), k, width) in shapes, shapes


def test_matrix_vector_with_small_weight_keeps_the_plain_layout() -> None:
    """``B`` within ``WEIGHT_PANEL_BYTES`` stays a GEMM on the unpacked weight."""
    mod = graph([(1, 32), (32, 64)], lambda p: op.matmul(p[0], p[1]))
    report = check_same(mod, (MatmulRule(),), atol=1e-5 * 32)
    assert report.counts() == {"matmul": 1}
    scheduled = ScheduleCpu(TARGET, rules=(MatmulRule(),))(
        tvm.transform.Sequential(fusion_passes(TARGET))(mod)
    )
    kernels = [f for f in scheduled.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert [[len(p.ty.shape) for p in f.params] for f in kernels] == [[2, 2, 2]]
