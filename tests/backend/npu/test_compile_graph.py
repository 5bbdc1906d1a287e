"""Multi-op graphs: a residual block (conv -> conv -> add) bit-exact, and graph-level checks."""

from __future__ import annotations

import numpy as np
import pytest

from npuc.backend.npu.compile import compile_npu_graph
from npuc.backend.npu.ops import NpuGraph
from npuc.core.errors import InvalidInputError, UnsupportedError
from tests.backend.npu.graphs import CONFIGS, compile_and_check, conv, eltwise, tensor


def residual_block(seed: int, h: int = 12, c: int = 24) -> NpuGraph:
    rng = np.random.default_rng(seed)
    x = tensor("x", (1, h, h, c), "int8", -4)
    c1 = conv(rng, x, cout=c, kernel=(3, 3), padding=(1, 1, 1, 1), name="conv1", ofm_name="y1")
    c2 = conv(rng, c1.ofm, cout=c, kernel=(3, 3), padding=(1, 1, 1, 1), name="conv2", ofm_name="y2")
    add = eltwise(rng, c2.ofm, x, "add", name="add", ofm_name="z")
    return NpuGraph(ops=(c1, c2, add), inputs=(x,), outputs=(add.ofm,))


@pytest.mark.parametrize("cascade", [False, True])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_residual_block_bit_exact(config: str, cascade: bool) -> None:
    graph = residual_block(3)
    compiled, result = compile_and_check(
        graph, CONFIGS[config], np.random.default_rng(4), cascade=cascade
    )
    assert [s.name for s in compiled.ops] == ["conv1", "conv2", "add"]
    if not cascade:
        assert compiled.dram_scratch_bytes >= graph.ops[0].ofm.nbytes  # y1, y2 live in DRAM
    assert result.stats.macs == sum(s.macs for s in compiled.ops)


def test_intermediates_share_dram_by_liveness() -> None:
    """y1 dies when conv2 has read it, so a later intermediate may reuse its bytes."""
    rng = np.random.default_rng(5)
    x = tensor("x", (1, 8, 8, 16), "int8")
    ops = []
    t = x
    for i in range(4):
        op = conv(rng, t, cout=16, kernel=(1, 1), name=f"c{i}", ofm_name=f"t{i}")
        ops.append(op)
        t = op.ofm
    graph = NpuGraph(ops=tuple(ops), inputs=(x,), outputs=(t,))
    compiled, _ = compile_and_check(graph, CONFIGS["npu-s"], rng, cascade=False)
    assert compiled.dram_scratch_bytes == 2 * x.nbytes  # t0..t2 need only two slots


def test_dangling_tensor_is_rejected() -> None:
    graph = residual_block(1)
    broken = NpuGraph(ops=graph.ops[1:], inputs=graph.inputs, outputs=graph.outputs)
    with pytest.raises(InvalidInputError, match=r"conv2.*reads .y1."):
        compile_npu_graph(broken, CONFIGS["npu-s"])


def test_layer_too_big_for_sram_names_op() -> None:
    rng = np.random.default_rng(0)
    x = tensor("x", (1, 4, 400, 64), "int8")
    op = conv(rng, x, cout=64, kernel=(3, 3), padding=(1, 1, 1, 1))
    with pytest.raises(UnsupportedError, match=r"'conv'.*SRAM"):
        compile_npu_graph(NpuGraph(ops=(op,), inputs=(x,), outputs=(op.ofm,)), CONFIGS["npu-tiny"])
