"""The compiler's cost model: monotone in work; its schedule replay agrees with the simulator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.backend.npu import perf
from npuc.backend.npu.ops import NpuGraph
from npuc.core.hw.config import NPU_M, NPU_S
from tests.backend.npu.graphs import CONFIGS, compile_and_check, conv, eltwise, pool, tensor
from tests.backend.npu.test_compile_graph import residual_block


@settings(max_examples=60, deadline=None)
@given(
    pixels=st.integers(1, 5000),
    cout=st.integers(1, 300),
    cin=st.integers(1, 300),
    k=st.integers(1, 7),
    more=st.integers(1, 100),
    depthwise=st.booleans(),
)
def test_cycles_never_decrease_when_work_grows(
    pixels: int, cout: int, cin: int, k: int, more: int, depthwise: bool
) -> None:
    for hw in (NPU_S, NPU_M):
        base = perf.conv_cycles(
            hw,
            out_pixels=pixels,
            cout=cout,
            cin=cin,
            kh=k,
            kw=k,
            depthwise=depthwise,
            int16_ifm=False,
        )
        for grown in (
            dict(out_pixels=pixels + more, cout=cout, cin=cin),
            dict(out_pixels=pixels, cout=cout + more, cin=cin),
            dict(out_pixels=pixels, cout=cout, cin=cin + more),
        ):
            assert (
                perf.conv_cycles(hw, kh=k, kw=k, depthwise=depthwise, int16_ifm=False, **grown)
                >= base
            )
        assert perf.dma_cycles(hw, row_bytes=pixels + more) >= perf.dma_cycles(hw, row_bytes=pixels)
        assert perf.itp_cycles(hw, work=pixels + more) >= perf.itp_cycles(hw, work=pixels)


def test_pipeline_is_bounded_by_its_busiest_unit_and_the_serial_sum() -> None:
    tiles = [perf.TileCost(load=10 * i, compute=50, store=7) for i in range(1, 8)]
    total = perf.pipeline_cycles(tiles)
    for unit in ("load", "compute", "store"):
        assert total >= sum(getattr(t, unit) for t in tiles)
    assert total <= sum(t.load + t.compute + t.store for t in tiles)


def _graphs() -> dict[str, NpuGraph]:
    rng = np.random.default_rng(11)
    x = tensor("x", (1, 17, 13, 24), "int8", 1)
    c = conv(rng, x, cout=40, kernel=(3, 3), stride=(2, 1), padding=(1, 1, 1, 1))
    p = pool(rng, x, op="avg", kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1))
    a, b = tensor("a", (1, 9, 9, 30), "int8"), tensor("b", (1, 9, 9, 30), "int8", 4)
    e = eltwise(rng, a, b, "mul")
    return {
        "conv": NpuGraph(ops=(c,), inputs=(x,), outputs=(c.ofm,)),
        "pool": NpuGraph(ops=(p,), inputs=(x,), outputs=(p.ofm,)),
        "mul": NpuGraph(ops=(e,), inputs=(a, b), outputs=(e.ofm,)),
        "residual": residual_block(2),
    }


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("name", sorted(_graphs()))
def test_schedule_replay_equals_simulated_cycles(name: str, config: str) -> None:
    """Two implementations of the spec's timing rules (compiler, simulator) agree exactly."""
    compiled, result = compile_and_check(_graphs()[name], CONFIGS[config], np.random.default_rng(0))
    assert compiled.est_cycles == result.stats.total_cycles
    moved = result.stats.dram_read_bytes + result.stats.dram_written_bytes
    assert sum(op.dram_bytes for op in compiled.ops) == moved


def _pipeline_tile_by_tile(tiles: list[perf.TileCost], depth: int) -> int:
    """The recurrence of ``pipeline_cycles``' docstring, one tile at a time (the reference)."""
    load: list[int] = []
    comp: list[int] = []
    store: list[int] = []
    for t, cost in enumerate(tiles):
        load.append(max(load[-1] if load else 0, comp[t - depth] if t >= depth else 0) + cost.load)
        reuse = store[t - depth] if t >= depth else 0
        comp.append(max(comp[-1] if comp else 0, load[t], reuse) + cost.compute)
        store.append(max(store[-1] if store else 0, comp[t]) + cost.store)
    return store[-1] if store else 0


_tile = st.builds(
    perf.TileCost, load=st.integers(0, 300), compute=st.integers(0, 300), store=st.integers(0, 300)
)


@settings(max_examples=300, deadline=None)
@given(
    runs=st.lists(st.tuples(_tile, st.integers(1, 60)), max_size=6),
    depth=st.integers(1, 3),
)
def test_pipeline_skipping_equal_tiles_is_exact(
    runs: list[tuple[perf.TileCost, int]], depth: int
) -> None:
    """Runs of equal tiles (skipped once steady) give the tile-by-tile makespan exactly."""
    tiles = [tile for tile, count in runs for _ in range(count)]
    assert perf.pipeline_cycles(tiles, depth=depth) == _pipeline_tile_by_tile(tiles, depth)
