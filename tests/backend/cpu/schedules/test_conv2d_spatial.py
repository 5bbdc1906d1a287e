"""The plane rule (pointwise convolutions): equal to the unscheduled nest, and when it applies.

ShuffleNet's grouped 1x1 convolutions (34 channels per group, 28x28), the
pointwise convolutions with few channels of MobileNetV2 (expansions 16->96,
24->144, projections 96->24, 144->24, scaled-down planes) with their fused
epilogues (bias, clip, residual add, SiLU), planes whose vector count the
tile does not divide (28x28 is 49 vectors of 16), each compiled as
LegalizeOps and FuseOps left it and with the rule (weights packed at compile
time), run on the same input, for AVX2 (Haswell code, run on this host) and
the host's AVX-512 when it has it; each output is summed over the input
channels in the same order, so rtol 1e-5, atol 1e-5 (fused multiply-adds
only). Planes that end in a partial vector (14x14 = 12 x 16 + 4, 7x7, 13x13,
10x10, 4x5; with AVX2 3x3 too) are compared the same way, and their kernels
must compile to full-width vectors (no scalarised multiply-add).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import s_tir, tirx

from npuc.backend.cpu.lowering import lower_passes
from npuc.backend.cpu.schedules import RULES
from npuc.backend.cpu.schedules.conv2d import Conv2dRule
from npuc.backend.cpu.schedules.conv2d_spatial import (
    Conv2dPlaneRule,
    choose_plane_tile,
    prefers_plane,
)
from npuc.backend.cpu.schedules.conv_match import ConvNest, match_conv2d
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import AVX2, ConvCase, run, schedule_with, targets

CASES = [
    ConvCase(channels=136, filters=136, size=(28, 28), kernel=(1, 1), groups=4),
    ConvCase(
        channels=136, filters=136, size=(28, 28), kernel=(1, 1), groups=4, epilogue="residual"
    ),
    ConvCase(channels=24, filters=34, size=(4, 4), kernel=(1, 1), groups=2, epilogue="none"),
    ConvCase(channels=10, filters=15, size=(8, 6), kernel=(1, 1), groups=5, epilogue="clip"),
    # Pointwise convolutions with few channels (MobileNetV2's, on smaller planes).
    ConvCase(channels=16, filters=96, size=(16, 16), kernel=(1, 1), epilogue="clip"),
    ConvCase(channels=24, filters=144, size=(28, 28), kernel=(1, 1), epilogue="clip"),
    ConvCase(channels=96, filters=24, size=(16, 16), kernel=(1, 1), epilogue="residual"),
    ConvCase(channels=144, filters=32, size=(28, 28), kernel=(1, 1), epilogue="none"),
    ConvCase(channels=32, filters=16, size=(12, 12), kernel=(1, 1), epilogue="silu"),
    ConvCase(channels=3, filters=8, size=(8, 8), kernel=(1, 1), epilogue="bias_relu"),
    # 14x14 = 196 positions, 4-lane vectors: ShuffleNet's groups (68 channels, where the conv2d
    # rule's tile is one 4-lane vector; 34, which it declines).
    ConvCase(channels=272, filters=272, size=(14, 14), kernel=(1, 1), groups=4, epilogue="clip"),
    ConvCase(channels=136, filters=136, size=(14, 14), kernel=(1, 1), groups=4),
    # Planes ending in a partial vector: ShuffleNet's 68 channels per group at 14x14 and 136 at
    # 7x7 with the residual add, one tile (7x7) and several (13x13, 10x10), a group of 3 output
    # channels (block_k 1 or 3), 4x5 (one vector and a bit), 3x3 (declined with AVX-512).
    ConvCase(
        channels=272, filters=272, size=(14, 14), kernel=(1, 1), groups=4, epilogue="residual"
    ),
    ConvCase(channels=544, filters=544, size=(7, 7), kernel=(1, 1), groups=4, epilogue="residual"),
    ConvCase(channels=16, filters=96, size=(7, 7), kernel=(1, 1), epilogue="clip"),
    ConvCase(channels=16, filters=32, size=(13, 13), kernel=(1, 1), epilogue="silu"),
    ConvCase(channels=24, filters=24, size=(10, 10), kernel=(1, 1), epilogue="residual"),
    ConvCase(channels=10, filters=15, size=(14, 14), kernel=(1, 1), groups=5, epilogue="clip"),
    ConvCase(channels=12, filters=20, size=(4, 5), kernel=(1, 1), groups=2, epilogue="none"),
    # Small planes whatever the channels (MobileNetV2's and Inception-v2's 14x14 layers, with
    # 64 or more channels both ways), 14x14 and 15x15 (225 = 14 x 16 + 1 positions).
    ConvCase(channels=64, filters=128, size=(14, 14), kernel=(1, 1), epilogue="clip"),
    ConvCase(channels=96, filters=64, size=(15, 15), kernel=(1, 1), epilogue="residual"),
    # Whole tiles (plane_tile.WHOLE_TILE_MIN_VECTORS): 32x32 is 64 vectors of 16, 128 of 8.
    ConvCase(channels=32, filters=16, size=(32, 32), kernel=(1, 1), epilogue="clip"),
]
#: Planes with a partial vector on AVX2 only (9 positions: one 8-lane vector and one lane).
AVX2_ONLY = [ConvCase(channels=8, filters=12, size=(3, 3), kernel=(1, 1), epilogue="clip")]
#: Left to other rules: channels a vector divides, a stride, a 3x3 kernel, an odd plane.
DECLINED = [
    ConvCase(channels=128, filters=128, size=(8, 8), kernel=(1, 1), groups=2),
    ConvCase(channels=136, filters=136, size=(28, 28), kernel=(1, 1), stride=2, groups=4),
    ConvCase(channels=34, filters=34, size=(8, 8), padding=1),
    ConvCase(channels=34, filters=34, size=(7, 7), kernel=(1, 1)),
    # Pointwise, but left to the conv2d rule: many channels both ways on a plane that is not
    # small (24x24, 28x28), a plane smaller than a vector that no vector divides
    # (3x3 with AVX-512), a stride, padding.
    ConvCase(channels=64, filters=256, size=(24, 24), kernel=(1, 1)),
    ConvCase(channels=8, filters=12, size=(3, 3), kernel=(1, 1)),
    ConvCase(channels=64, filters=128, size=(28, 28), kernel=(1, 1)),
    ConvCase(channels=16, filters=32, size=(16, 16), kernel=(1, 1), stride=2),
    ConvCase(channels=16, filters=32, size=(16, 16), kernel=(1, 1), padding=1),
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


@pytest.mark.parametrize("case", AVX2_ONLY, ids=str)
def test_plane_rule_with_avx2_tail_matches_unscheduled(case: ConvCase) -> None:
    want = run(schedule_with(case.module(), AVX2, None)[0], AVX2, case.inputs())
    scheduled, applied = schedule_with(case.module(), AVX2, Conv2dPlaneRule())
    assert len(applied) == 1, f"the plane rule did not apply to {case}"
    np.testing.assert_allclose(run(scheduled, AVX2, case.inputs()), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
def test_plane_tail_compiles_to_full_vectors(target: CpuTarget) -> None:
    """The partial vector of 14x14 (196 = 12 x 16 + 4, or 24 x 8 + 4) is a 4-lane vector and the
    rest full-width ones: LoopPartition split the hinted loops (no scalar multiply-add left)."""
    case = CASES[-10]  # 272 channels, 4 groups, 14x14, residual add
    scheduled, applied = schedule_with(case.module(), target, Conv2dPlaneRule())
    assert len(applied) == 1
    lanes = target.vector_bits // 32
    mod = tvm.transform.Sequential(lower_passes())(scheduled)
    ir = tvm.compile(mod, target.to_tvm()).mod.imports[0].inspect_source("ll")
    assert f"@llvm.fmuladd.v{lanes}f32" in ir
    assert "@llvm.fmuladd.v4f32" in ir
    assert "@llvm.fmuladd.f32" not in ir


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
    assert nest.group_out % tile.block_k == 0
    assert tile.pixels % tile.lanes == 0 and (28 * 28) % tile.lanes == 0
    assert tile.block_k * (tile.pixels // tile.lanes) <= 12


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("shape", [(136, 136, 28, 4), (272, 272, 14, 4), (16, 96, 112, 1)], ids=str)
def test_plane_tile_keeps_its_inputs_in_registers(
    shape: tuple[int, int, int, int], target: CpuTarget
) -> None:
    """Accumulators, one input vector per column and a broadcast fit the register file
    (ShuffleNet's 34-channel groups at 28x28 took 2 x 12 vectors and spilled)."""
    nest = _pointwise(*shape)
    tile = choose_plane_tile(nest, shape[2] ** 2, target)
    assert tile is not None
    vectors = tile.pixels // tile.lanes
    assert (tile.block_k + 1) * vectors + 1 <= (32 if target.has_avx512 else 16)


def _pointwise(channels: int, filters: int, size: int, groups: int = 1) -> ConvNest:
    return ConvNest(
        block="conv",
        weight_read=1,
        pad_block=None,
        epilogue=(),
        out_channels=filters,
        out_height=size,
        out_width=size,
        in_channels=channels,
        in_height=size,
        group_in=channels // groups,
        kernel_h=1,
        kernel_w=1,
    )


#: Real pointwise shapes (input channels, output channels, plane side, groups) and whether the
#: plane rule takes them with AVX-512: MobileNetV2's with few channels at planes of 112, 56, 28
#: and ShuffleNet's 68- and 136-channel groups at 14x14 and 7x7 (full vectors and a partial one);
#: the 14x14 layers of MobileNetV2 and ResNet-50 with 64 or more channels each way (a small
#: plane); their 7x7 and 28x28 ones stay with the conv2d rule. 16 -> 24 at 14x14 (no such
#: layer in MobileNetV2) runs 1.2 us here, 4.0 us in the conv2d rule (AVX-512, one thread, CPU
#: time).
REAL_SHAPES = [
    ((16, 96, 112, 1), True),
    ((32, 16, 112, 1), True),
    ((24, 144, 56, 1), True),
    ((96, 24, 56, 1), True),
    ((144, 24, 56, 1), True),
    ((32, 192, 28, 1), True),
    ((192, 32, 28, 1), True),
    ((144, 32, 28, 1), True),
    ((64, 384, 14, 1), True),  # a small plane (_small_full_plane): 70 -> 49 us
    ((16, 24, 14, 1), True),
    ((960, 160, 7, 1), False),
    ((64, 256, 56, 1), False),
    ((256, 64, 56, 1), False),
    ((128, 512, 28, 1), False),
    ((272, 272, 14, 4), True),  # ShuffleNet: 68 channels per group
    ((544, 544, 7, 4), True),  # 136 per group: 41 us here, 87 in the conv2d rule
    ((272, 272, 7, 4), True),
    ((384, 64, 14, 1), True),
    ((1024, 256, 14, 1), True),  # ResNet-50 at 14x14: 586 -> 512 us
    ((512, 512, 7, 1), False),  # 49 of 64 lanes full
    ((128, 128, 28, 1), False),  # 784 positions, not a small plane
    ((512, 1000, 13, 1), False),  # 169 positions: SqueezeNet's, faster in the conv2d rule
    ((256, 256, 16, 1), False),  # 256 positions: whole vectors, not measured here
]


@pytest.mark.parametrize(("shape", "taken"), REAL_SHAPES, ids=str)
def test_plane_rule_decision_on_real_shapes(shape: tuple[int, int, int, int], taken: bool) -> None:
    avx512 = CpuTarget(cpu_name="skylake-avx512", features=("avx2", "avx512f", "fma"), num_cores=2)
    assert prefers_plane(_pointwise(*shape), avx512) is taken


def test_plane_rule_comes_before_the_conv2d_rule() -> None:
    names = [rule.name for rule in RULES]
    assert names.index(Conv2dPlaneRule.name) < names.index(Conv2dRule.name)


def test_conv2d_rule_still_takes_what_the_plane_rule_declines() -> None:
    case = DECLINED[4]  # 64 -> 256 channels
    func = next(
        f
        for _, f in schedule_with(case.module(), AVX2, None)[0].functions_items()
        if isinstance(f, tirx.PrimFunc)
    )
    assert Conv2dPlaneRule().apply(func, AVX2) is None
    assert Conv2dRule().apply(func, AVX2) is not None


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
def test_plane_tile_cuts_the_last_tile_at_a_vector(target: CpuTarget) -> None:
    nest = _pointwise(24, 144, 28)
    tile = choose_plane_tile(nest, 28 * 28, target)
    assert tile is not None
    assert tile.pixels % tile.lanes == 0 and (28 * 28) % tile.lanes == 0
    assert nest.group_out % tile.block_k == 0


@pytest.mark.parametrize(
    ("channels", "filters", "groups"), [(1, 64, 1), (3, 192, 3)], ids=["c1k64", "g3c1k64"]
)
def test_pointwise_conv_with_one_input_channel_per_group_is_declined_not_raised(
    channels: int, filters: int, groups: int
) -> None:
    """Found by the breaker: one input channel per group leaves no reduction loop, and the
    plane rule raised ``KeyError`` (the build logged a rule failure and fell back)."""
    case = ConvCase(
        channels=channels, filters=filters, size=(28, 28), kernel=(1, 1), groups=groups,
        epilogue="clip",
    )  # fmt: skip
    for target in targets():
        want = run(schedule_with(case.module(), target, None)[0], target, case.inputs())
        scheduled, applied = schedule_with(case.module(), target, Conv2dPlaneRule())
        assert applied == [], applied
        got = run(scheduled, target, case.inputs())
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
