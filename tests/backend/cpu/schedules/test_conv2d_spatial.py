"""The plane rule (1x1 convolutions with odd channel groups): equal to the unscheduled nest.

ShuffleNet's grouped 1x1 convolutions (34 channels per group, 28x28) and
smaller variants, each compiled as LegalizeOps and FuseOps left it and with
the rule (weights packed at compile time), run on the same input; each
output is summed over the input channels in the same order, so rtol 1e-5,
atol 1e-5 (fused multiply-adds only).
"""

from __future__ import annotations

import numpy as np
import pytest
from tvm import s_tir, tirx

from npuc.backend.cpu.schedules.conv2d_spatial import Conv2dPlaneRule, choose_plane_tile
from npuc.backend.cpu.schedules.conv_match import match_conv2d
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import ConvCase, run, schedule_with, targets

CASES = [
    ConvCase(channels=136, filters=136, size=(28, 28), kernel=(1, 1), groups=4),
    ConvCase(
        channels=136, filters=136, size=(28, 28), kernel=(1, 1), groups=4, epilogue="residual"
    ),
    ConvCase(channels=24, filters=34, size=(4, 4), kernel=(1, 1), groups=2, epilogue="none"),
    ConvCase(channels=10, filters=15, size=(8, 6), kernel=(1, 1), groups=5, epilogue="clip"),
]
#: Left to other rules: channels a vector divides, a stride, a 3x3 kernel, an odd plane.
DECLINED = [
    ConvCase(channels=64, filters=64, size=(8, 8), kernel=(1, 1), groups=2),
    ConvCase(channels=136, filters=136, size=(28, 28), kernel=(1, 1), stride=2, groups=4),
    ConvCase(channels=34, filters=34, size=(8, 8), padding=1),
    ConvCase(channels=34, filters=34, size=(7, 7), kernel=(1, 1)),
]
TARGETS = targets()


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_plane_rule_matches_unscheduled(case: ConvCase, target: CpuTarget) -> None:
    module = case.module()
    want = run(schedule_with(module, target, None)[0], target, case.inputs())
    scheduled, applied = schedule_with(module, target, Conv2dPlaneRule())
    assert len(applied) == 1, f"the plane rule did not apply to {case}"
    names = [gvar.name_hint for gvar in scheduled.functions]
    assert not any("weight_prepack" in name for name in names), "packing left for run time"
    got = run(scheduled, target, case.inputs())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", DECLINED, ids=str)
def test_plane_rule_declines(case: ConvCase) -> None:
    target = TARGETS[-1]
    funcs = [
        f
        for _, f in schedule_with(case.module(), target, None)[0].functions_items()
        if isinstance(f, tirx.PrimFunc)
    ]
    assert funcs
    assert all(Conv2dPlaneRule().apply(f, target) is None for f in funcs)


def test_plane_tile_fits_the_register_budget() -> None:
    target = TARGETS[0]  # AVX2: 8 lanes, 12 accumulator vectors
    fused, _ = schedule_with(CASES[0].module(), target, None)
    func = next(f for _, f in fused.functions_items() if isinstance(f, tirx.PrimFunc))
    nest = match_conv2d(s_tir.Schedule(func))
    assert nest is not None
    tile = choose_plane_tile(nest, 28 * 28, target)
    assert tile is not None
    assert nest.group_out % tile.block_k == 0 and (28 * 28) % tile.pixels == 0
    assert tile.block_k * (tile.pixels // tile.lanes) <= 12
