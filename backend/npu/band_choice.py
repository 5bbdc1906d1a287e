"""Which residual blocks become row-band chains (the rule: :mod:`npuc.backend.npu.band_chain`).

Requires: an :class:`NpuGraph` after tap packing, the SRAM budget, and a
planner for single ops (``compile.plan_op``). Guarantees: the returned graph
computes the same tensors; a block is replaced only when its chain, planned
with its input and output in DRAM, moves fewer DRAM bytes than its four ops
planned alone at no more than ``TOLERANCE`` more estimated cycles. Blocks of
one geometry are decided once.
"""

from __future__ import annotations

from collections.abc import Callable

from npuc.backend.npu.band_chain import (
    TOLERANCE,
    BandMemo,
    NpuBandChain,
    chain_geometry,
    fuse_band_chains,
)
from npuc.backend.npu.cascade import plan_dram_bytes
from npuc.backend.npu.lower_band_chain import plan_band_chain
from npuc.backend.npu.ops import NpuGraph, NpuOp
from npuc.backend.npu.plan import OpPlan
from npuc.backend.npu.tiling import WindowTiling
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import HwConfig


def choose_band_chains(
    graph: NpuGraph,
    hw: HwConfig,
    budget: int,
    plan_single: Callable[[NpuOp], OpPlan],
    cache: dict[tuple[object, ...], WindowTiling] | None = None,
    memo: BandMemo | None = None,
) -> NpuGraph:
    """``graph`` with the residual blocks worth chaining replaced (rule: :mod:`band_chain`):
    the chain, planned with its input and output in DRAM, moves fewer DRAM bytes than the
    four ops planned alone by ``plan_single`` at no more than ``TOLERANCE`` more cycles
    (decided once per block geometry)."""
    decided: dict[tuple[object, ...], bool] = {}

    def keep(chain: NpuBandChain, ops: tuple[NpuOp, ...]) -> bool:
        key = chain_geometry(chain)
        if key in decided:
            return decided[key]
        try:
            fused = plan_band_chain(chain, hw, budget, cache, memo=memo)
            alone = [plan_single(o) for o in ops]
        except UnsupportedError:
            decided[key] = False
            return False
        cycles = sum(p.est_cycles for p in alone)
        moved = sum(plan_dram_bytes(p) for p in alone)
        decided[key] = plan_dram_bytes(fused) < moved and fused.est_cycles <= cycles * (
            1 + TOLERANCE
        )
        return decided[key]

    return fuse_band_chains(graph, keep)
