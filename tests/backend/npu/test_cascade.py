"""Cascading: SRAM-resident intermediates stay exact, never overlap live buffers, save DRAM."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from npuc.backend.npu.cascade import Cascade, ResidentTensor, candidates
from npuc.backend.npu.compile import CompiledNpuProgram, compile_npu_graph
from npuc.backend.npu.ops import NpuGraph
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import NPU_S
from tests.backend.npu.graphs import CONFIGS, compile_and_check, conv, eltwise, tensor
from tests.backend.npu.test_compile_chain import KINDS, chain


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _in_place(out: ResidentTensor, src: ResidentTensor) -> bool:
    """``out`` takes over ``src``'s bytes exactly, at the one op where ``src`` is last read."""
    return (
        out.alias_of == src.name
        and (out.addr, out.nbytes) == (src.addr, src.nbytes)
        and out.first == src.last
    )


def check_layout(compiled: CompiledNpuProgram, top: int) -> None:
    """Resident tensors live together are disjoint; each op's buffers lie in its window,
    inside ``[0, top)``, and touch no resident tensor live at that op."""
    casc = compiled.cascade
    assert isinstance(casc, Cascade)
    # one window per op after tap packing and row-band chaining (a chain has a row per part)
    assert len(casc.windows) == len(casc.notes) <= len(compiled.ops)
    for t in casc.tensors:
        assert t.addr % 64 == 0 and t.addr >= 0 and t.addr + t.nbytes <= top
    for i, a in enumerate(casc.tensors):
        for b in casc.tensors[i + 1 :]:
            if a.first <= b.last and b.first <= a.last:
                if _in_place(a, b) or _in_place(b, a):
                    continue
                assert not _overlap((a.addr, a.addr + a.nbytes), (b.addr, b.addr + b.nbytes))
    for index, name, addr, nbytes in compiled.sram_buffers:
        lo, hi = casc.windows[index]
        assert lo <= addr and addr + nbytes <= hi <= top, (index, name)
        for t in casc.live_at(index):
            assert not _overlap((addr, addr + nbytes), (t.addr, t.addr + t.nbytes)), (name, t)


def residual(side: int, c: int, seed: int = 0) -> NpuGraph:
    """conv 3x3 -> depthwise 3x3 -> conv 1x1 -> add with the block input."""
    rng = np.random.default_rng(seed)
    x = tensor("x", (1, side, side, c))
    a = conv(rng, x, cout=c, kernel=(3, 3), padding=(1, 1, 1, 1), name="c1", ofm_name="y1")
    b = conv(
        rng, a.ofm, cout=c, kernel=(3, 3), padding=(1, 1, 1, 1), depthwise=True, name="dw",
        ofm_name="y2",
    )  # fmt: skip
    d = conv(rng, b.ofm, cout=c, kernel=(1, 1), name="pw", ofm_name="y3")
    d = dataclasses.replace(d, ofm=dataclasses.replace(d.ofm, zero_point=0))
    add = eltwise(rng, d.ofm, x, "add", name="add", ofm_name="z")
    return NpuGraph(ops=(a, b, d, add), inputs=(x,), outputs=(add.ofm,))


def test_residual_block_cascades_exactly_and_saves_dram() -> None:
    graph = residual(20, 32)
    rng = np.random.default_rng(0)
    on, sim_on = compile_and_check(graph, NPU_S, rng)
    off = compile_npu_graph(graph, NPU_S, cascade=False)
    names = {t.name for t in on.cascade.tensors} if on.cascade else set()
    assert names == {"y1", "y2", "y3"}  # every intermediate fits the 256 KiB
    assert off.cascade is not None and not off.cascade.tensors
    assert sum(o.dram_bytes for o in on.ops) < sum(o.dram_bytes for o in off.ops)
    assert sim_on.stats.dram_read_bytes + sim_on.stats.dram_written_bytes == sum(
        o.dram_bytes for o in on.ops
    )
    assert on.ops[1].sram_resident == (
        "reads y1 from SRAM (cascaded with c1); output stays in SRAM for pw"
    )
    assert on.dram_scratch_bytes == 0
    check_layout(on, NPU_S.sram_bytes)


def test_cascade_off_keeps_every_intermediate_in_dram() -> None:
    graph = residual(12, 16)
    off, _ = compile_and_check(graph, NPU_S, np.random.default_rng(1))
    off = compile_npu_graph(graph, NPU_S, cascade=False)
    assert all(o.sram_resident == "" for o in off.ops)
    assert off.dram_scratch_bytes >= sum(t.nbytes for t in (graph.ops[0].ofm, graph.ops[1].ofm))


def test_candidates_exclude_graph_outputs_and_data_movement() -> None:
    graph = chain(["conv3", "pad", "conv3", "conv1"], 3, side=9, channels=8)
    found = {name for name, *_ in candidates(graph)}
    # t0 feeds the pad (a DMA copy), t3 and t1 are graph outputs; t2 feeds a conv
    assert found == {"t2"}


def _check(kinds: list[str], seed: int, config: str, fraction: float) -> None:
    graph = chain(kinds, seed, side=9, channels=12)
    assume(graph.outputs[0] != graph.outputs[1] and graph.outputs[1] not in graph.inputs)
    hw = CONFIGS[config]
    budget = int(hw.sram_bytes * fraction)
    try:
        compiled, _ = compile_and_check(graph, hw, np.random.default_rng(seed), sram_budget=budget)
    except UnsupportedError:
        assume(False)
        return
    check_layout(compiled, budget // 64 * 64)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=5),
    seed=st.integers(0, 2**31),
    config=st.sampled_from(sorted(CONFIGS)),
    fraction=st.sampled_from([1.0, 0.3, 0.1]),
)
def test_random_chains_cascade_exactly_without_overlap(
    kinds: list[str], seed: int, config: str, fraction: float
) -> None:
    _check(kinds, seed, config, fraction)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=7),
    seed=st.integers(0, 2**31),
    config=st.sampled_from(sorted(CONFIGS)),
    fraction=st.floats(0.05, 1.0),
)
def test_random_chains_cascade_exactly_without_overlap_slow(
    kinds: list[str], seed: int, config: str, fraction: float
) -> None:
    _check(kinds, seed, config, fraction)


def residual_stream(side: int, c: int, blocks: int, seed: int = 0) -> NpuGraph:
    """stem 1x1 -> ``blocks`` x (conv 3x3 -> conv 1x1 -> add with the stream) -> head 1x1."""
    rng = np.random.default_rng(seed)
    x = tensor("x", (1, side, side, c))
    ops: list = [conv(rng, x, cout=c, kernel=(1, 1), name="stem", ofm_name="s0")]
    s = ops[-1].ofm
    for b in range(blocks):
        a = conv(
            rng, s, cout=c, kernel=(3, 3), padding=(1, 1, 1, 1), name=f"c{b}", ofm_name=f"a{b}"
        )
        p = conv(rng, a.ofm, cout=c, kernel=(1, 1), name=f"pw{b}", ofm_name=f"p{b}")
        add = eltwise(rng, p.ofm, s, "add", name=f"add{b}", ofm_name=f"s{b + 1}")
        ops += [a, p, add]
        s = add.ofm
    head = conv(rng, s, cout=c, kernel=(1, 1), name="head", ofm_name="y")
    return NpuGraph(ops=(*ops, head), inputs=(x,), outputs=(head.ofm,))


def test_residual_stream_stays_in_sram_with_adds_in_place() -> None:
    """Room for two stream-sized tensors and a bit: each add writes over the stream it reads."""
    graph = residual_stream(24, 32, 3)
    budget = int(24 * 24 * 32 * 3.4)
    on, _ = compile_and_check(graph, NPU_S, np.random.default_rng(2), sram_budget=budget)
    assert on.cascade is not None
    aliases = {t.name: t.alias_of for t in on.cascade.tensors if t.alias_of}
    assert {"s1", "s2", "s3"} <= set(aliases)  # the whole stream stays resident
    for i in (1, 2, 3):  # over the old stream or the block's 1x1 output, both last read there
        assert aliases[f"s{i}"] in {f"s{i - 1}", f"p{i - 1}"}
    add = next(o for o in on.ops if o.name == "add0")
    assert f"writes its output in place over {aliases['s1']}" in add.sram_resident
    off = compile_npu_graph(graph, NPU_S, sram_budget=budget, cascade=False)
    assert sum(o.dram_bytes for o in on.ops) < sum(o.dram_bytes for o in off.ops) / 2
    check_layout(on, budget // 64 * 64)
