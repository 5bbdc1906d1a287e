"""Row-band chains: residual blocks computed band by band stay bit-exact and save DRAM."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from npuc.backend.npu.band_chain import NpuBandChain, find_chains, fuse_band_chains
from npuc.backend.npu.compile import CompiledNpuProgram, compile_npu_graph
from npuc.backend.npu.ops import NpuGraph, NpuOp
from npuc.backend.npu.reference import run_reference
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import NPU_S, HwConfig
from npuc.core.isa.program import Program
from npuc.npu_sim import simulate
from tests.backend.npu.graphs import CONFIGS, conv, eltwise, random_input, tensor
from tests.backend.npu.test_cascade import check_layout


def blocks(
    side: int,
    c: int,
    inner: int,
    n: int,
    *,
    kernel: int = 3,
    depthwise: bool = False,
    seed: int = 0,
) -> NpuGraph:
    """stem 1x1 -> ``n`` x (1x1 -> kxk -> 1x1 -> add with the stream) -> head 1x1."""
    rng = np.random.default_rng(seed)
    x = tensor("x", (1, side, side, c))
    ops: list[NpuOp] = [conv(rng, x, cout=c, kernel=(1, 1), name="stem", ofm_name="s0")]
    s = ops[-1].ofm
    p = kernel // 2
    for b in range(n):
        h = conv(rng, s, cout=inner, kernel=(1, 1), name=f"h{b}", ofm_name=f"a{b}")
        m = conv(
            rng,
            h.ofm,
            cout=inner,
            kernel=(kernel, kernel),
            padding=(p, p, p, p),
            depthwise=depthwise,
            name=f"m{b}",
            ofm_name=f"m{b}",
        )
        t = conv(rng, m.ofm, cout=c, kernel=(1, 1), name=f"t{b}", ofm_name=f"b{b}")
        t = dataclasses.replace(t, ofm=dataclasses.replace(t.ofm, zero_point=0))
        add = eltwise(rng, t.ofm, s, "add", name=f"add{b}", ofm_name=f"s{b + 1}")
        ops += [h, m, t, add]
        s = add.ofm
    end = conv(rng, s, cout=c, kernel=(1, 1), name="end", ofm_name="y")
    return NpuGraph(ops=(*ops, end), inputs=(x,), outputs=(end.ofm,))


def run_fused(
    graph: NpuGraph, hw: HwConfig, *, budget: int | None = None, cascade: bool = True
) -> CompiledNpuProgram:
    """Compile ``graph`` with every block chained, simulate, assert == the unfused reference."""
    fused = fuse_band_chains(graph, lambda *_: True)
    assert any(isinstance(op, NpuBandChain) for op in fused.ops)
    compiled = compile_npu_graph(fused, hw, sram_budget=budget, cascade=cascade)
    program = Program.from_bytes(compiled.program.to_bytes(), hw=hw)
    rng = np.random.default_rng(7)
    inputs = {t.name: random_input(rng, t) for t in graph.inputs}
    result = simulate(program, inputs, hw)
    expected = run_reference(graph, inputs)
    for t in graph.outputs:
        np.testing.assert_array_equal(result.outputs[t.name], expected[t.name], strict=True)
    assert result.stats.total_cycles == compiled.est_cycles
    # a row per op (a chain's four parts each get theirs): every instruction exactly once
    names = [s.name for s in compiled.ops]
    assert len(set(names)) == len(names) and set(names) >= {op.name for op in graph.ops}
    every = sorted(i for s in compiled.ops for i in s.instruction_list())
    assert every == list(range(len(program.instructions) - 1))  # all but END
    return compiled


def test_blocks_match_the_pattern() -> None:
    graph = blocks(8, 16, 8, 2)
    assert find_chains(graph) == [(1, 2, 3, 4), (5, 6, 7, 8)]
    strided = list(graph.ops)
    strided[2] = dataclasses.replace(graph.ops[2], stride=(2, 2))
    assert find_chains(dataclasses.replace(graph, ops=tuple(strided))) == [(5, 6, 7, 8)]
    # the stream s1 read by one more op: the block's output may not overwrite it
    extra = conv(np.random.default_rng(1), graph.ops[4].ofm, cout=4, kernel=(1, 1), name="tap")
    more = NpuGraph(
        ops=(*graph.ops, extra), inputs=graph.inputs, outputs=(*graph.outputs, extra.ofm)
    )
    assert find_chains(more) == [(1, 2, 3, 4)]


def test_stream_stays_in_sram_in_place_band_by_band() -> None:
    """Room for the stream and a band of each intermediate, not for the block whole."""
    graph = blocks(24, 64, 16, 3)
    stream = 24 * 24 * 64
    budget = stream + stream // 2
    compiled = run_fused(graph, NPU_S, budget=budget)
    casc = compiled.cascade
    assert casc is not None
    parts = [s for s in compiled.ops if s.tiling.startswith("row-band chain")]
    assert [s.name for s in parts[:4]] == ["h0", "m0", "t0", "add0"] and len(parts) == 12
    assert {t.name: t.alias_of for t in casc.tensors}.get("s2") == "s1"  # in place over s1
    check_layout(compiled, budget // 64 * 64)
    whole = compile_npu_graph(graph, NPU_S, sram_budget=budget, row_bands=False)
    chosen = compile_npu_graph(graph, NPU_S, sram_budget=budget)
    assert any(s.tiling.startswith("row-band chain") for s in chosen.ops)  # chosen here too
    moved = sum(s.dram_bytes for s in chosen.ops)
    assert moved < sum(s.dram_bytes for s in whole.ops) - 2 * stream
    assert chosen.est_cycles <= whole.est_cycles * 1.05


def test_block_input_and_output_through_dram() -> None:
    compiled = run_fused(blocks(13, 24, 16, 2, kernel=5, depthwise=True), NPU_S, cascade=False)
    assert compiled.cascade is not None and not compiled.cascade.tensors


def _check(
    side: int, c: int, inner: int, kernel: int, dw: bool, config: str, frac: float, seed: int
) -> None:
    graph = blocks(side, c, inner, 2, kernel=kernel, depthwise=dw, seed=seed)
    hw = CONFIGS[config]
    budget = int(hw.sram_bytes * frac)
    try:
        compiled = run_fused(graph, hw, budget=budget)
    except UnsupportedError:
        assume(False)
        return
    check_layout(compiled, budget // 64 * 64)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    side=st.integers(5, 20),
    c=st.sampled_from([8, 16, 24]),
    inner=st.sampled_from([4, 8, 16]),
    kernel=st.sampled_from([3, 5]),
    dw=st.booleans(),
    config=st.sampled_from(sorted(CONFIGS)),
    frac=st.sampled_from([1.0, 0.5, 0.2]),
    seed=st.integers(0, 2**31),
)
def test_random_blocks_band_by_band_are_exact(
    side: int, c: int, inner: int, kernel: int, dw: bool, config: str, frac: float, seed: int
) -> None:
    _check(side, c, inner, kernel, dw, config, frac, seed)
