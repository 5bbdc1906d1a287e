"""Random chains of NPU ops (tensors reused, intermediates in DRAM) == the integer reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from npuc.backend.npu.ops import NpuConcat, NpuGraph, NpuOp, NpuPad, NpuTensor
from npuc.core.errors import UnsupportedError
from tests.backend.npu.graphs import CONFIGS, compile_and_check, conv, eltwise, pool, tensor

KINDS = ("conv3", "conv1", "dw", "maxpool", "avgpool", "add", "pad", "concat")


def chain(kinds: list[str], seed: int, side: int, channels: int) -> NpuGraph:
    """Each op reads the latest tensor (and, for add/concat, the one before when shapes allow)."""
    rng = np.random.default_rng(seed)
    x = tensor("x", (1, side, side, channels), "int8", -2)
    made: list[NpuTensor] = [x]
    ops: list[NpuOp] = []
    for i, kind in enumerate(kinds):
        cur, name, out = made[-1], f"op{i}", f"t{i}"
        same = [t for t in made[:-1] if t.shape == cur.shape and t.zero_point == cur.zero_point]
        if kind == "conv3":
            op: NpuOp = conv(
                rng,
                cur,
                cout=int(rng.integers(4, 40)),
                kernel=(3, 3),
                padding=(1, 1, 1, 1),
                name=name,
                ofm_name=out,
            )
        elif kind == "conv1":
            op = conv(
                rng,
                cur,
                cout=int(rng.integers(4, 40)),
                kernel=(1, 1),
                name=name,
                ofm_name=out,
                stride=(2, 2),
            )
        elif kind == "dw":
            op = conv(
                rng,
                cur,
                cout=cur.shape[3],
                kernel=(3, 3),
                padding=(1, 1, 1, 1),
                depthwise=True,
                name=name,
                ofm_name=out,
            )
        elif kind in ("maxpool", "avgpool"):
            op = pool(
                rng,
                cur,
                op=kind[:3],
                kernel=(2, 2),
                stride=(2, 2),
                padding=(0, 0, 1, 1),
                name=name,
                ofm_name=out,
            )
        elif kind == "add" and same:
            op = eltwise(rng, cur, same[-1], "add", name=name, ofm_name=out)
        elif kind == "concat" and same:
            shape = (*cur.shape[:3], cur.shape[3] + same[-1].shape[3])
            op = NpuConcat(
                name=name,
                ifms=(cur, same[-1]),
                axis=3,
                ofm=NpuTensor(
                    name=out,
                    shape=shape,
                    dtype=cur.dtype,
                    scale=cur.scale,
                    zero_point=cur.zero_point,
                ),
            )  # type: ignore[arg-type]
        else:
            _, h, w, c = cur.shape
            op = NpuPad(
                name=name,
                ifm=cur,
                padding=(1, 0, 0, 1),
                ofm=NpuTensor(
                    name=out,
                    shape=(1, h + 1, w + 1, c),
                    dtype=cur.dtype,
                    scale=cur.scale,
                    zero_point=cur.zero_point,
                ),
            )
        ops.append(op)
        made.append(op.ofm)
    return NpuGraph(ops=tuple(ops), inputs=(x,), outputs=(made[-1], made[len(made) // 2]))


def _check(kinds: list[str], seed: int, config: str, fraction: float) -> None:
    graph = chain(kinds, seed, side=9, channels=12)
    assume(graph.outputs[0] != graph.outputs[1] and graph.outputs[1] not in graph.inputs)
    hw = CONFIGS[config]
    try:
        compile_and_check(
            graph, hw, np.random.default_rng(seed), sram_budget=int(hw.sram_bytes * fraction)
        )
    except UnsupportedError:
        assume(False)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=4),
    seed=st.integers(0, 2**31),
    config=st.sampled_from(sorted(CONFIGS)),
    fraction=st.sampled_from([1.0, 0.3]),
)
def test_random_chain(kinds: list[str], seed: int, config: str, fraction: float) -> None:
    _check(kinds, seed, config, fraction)


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=6),
    seed=st.integers(0, 2**31),
    config=st.sampled_from(sorted(CONFIGS)),
    fraction=st.floats(0.1, 1.0),
)
def test_random_chain_slow(kinds: list[str], seed: int, config: str, fraction: float) -> None:
    _check(kinds, seed, config, fraction)
