"""The channel-shuffle rule: bit-exact copies, taken only for plane-preserving transposes."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, tirx

from npuc.backend.cpu.lowering import fusion_passes
from npuc.backend.cpu.schedule_pass import ScheduleReport
from npuc.backend.cpu.schedules import RULES
from npuc.backend.cpu.schedules.channel_shuffle import ChannelShuffleRule
from tests.backend.cpu.schedules.relax_graphs import TARGET, build, graph, run

op = relax.op


def shuffle(x: relax.Expr, shape: tuple[int, ...], groups: int) -> relax.Expr:
    """ShuffleNet's channel shuffle of an NCHW tensor of ``shape``."""
    n, c, h, w = shape
    grouped = op.reshape(x, (n, groups, c // groups, h, w))
    return op.reshape(op.permute_dims(grouped, [0, 2, 1, 3, 4]), (n, c, h, w))


def _rule_of(mod: tvm.IRModule) -> list[tirx.PrimFunc | None]:
    fused = tvm.transform.Sequential(fusion_passes(TARGET))(mod)
    return [
        ChannelShuffleRule().apply(f, TARGET)
        for f in fused.functions.values()
        if isinstance(f, tirx.PrimFunc)
    ]


@pytest.mark.parametrize(
    ("shape", "groups"), [((1, 24, 14, 14), 4), ((2, 12, 7, 7), 3), ((1, 6, 5, 9), 2)]
)
def test_shuffle_is_taken_and_exact(shape: tuple[int, int, int, int], groups: int) -> None:
    mod = graph([shape], lambda p: shuffle(p[0], shape, groups))
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    report = ScheduleReport()
    got = run(build(mod, RULES, report), [x])
    assert list(report.rule_of.values()) == ["channel_shuffle"], report.rule_of
    n, c, h, w = shape
    want = x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(shape)
    np.testing.assert_array_equal(got, want, strict=True)


def test_other_copies_are_left_to_the_fallback() -> None:
    nhwc = graph([(1, 16, 8, 8)], lambda p: op.permute_dims(p[0], [0, 2, 3, 1]))
    concat = graph([(1, 4, 6, 6), (1, 4, 6, 6)], lambda p: op.concat(p, axis=1))
    assert _rule_of(nhwc) == [None]
    assert _rule_of(concat) == [None]
