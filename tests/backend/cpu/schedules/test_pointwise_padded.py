"""The padded-plane pointwise kernel (AVX2, 7x7-class planes): equal to the unscheduled nest,
and taken only where :func:`takes_padded_plane` says.

Each case is compiled as LegalizeOps and FuseOps left it and with the plane rule (which
hands these convolutions to :mod:`pointwise_padded` on AVX2), run on the same input;
the sums run over the input channels in the same order, so rtol 1e-5, atol 1e-5 (fused
multiply-adds only). The padded positions must not reach the output: planes of 49, 25 and
21 positions (padded to 54, 30 and 24), with every epilogue kind, and a residual read at
the real positions only.
"""

from __future__ import annotations

import pytest
from tvm import s_tir, tirx

from npuc.backend.cpu.schedules.conv2d_spatial import Conv2dPlaneRule
from npuc.backend.cpu.schedules.conv_match import match_conv2d
from npuc.backend.cpu.schedules.pointwise_padded import (
    TILE_CHANNELS,
    padded_plane_kernel,
    takes_padded_plane,
)
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import (
    AVX2,
    ConvCase,
    check_rule_matches_unscheduled,
    schedule_with,
)

AVX512 = CpuTarget(cpu_name="skylake-avx512", features=("avx2", "avx512f", "fma"), num_cores=2)

TAKEN = [
    ConvCase(channels=256, filters=32, size=(7, 7), kernel=(1, 1)),
    ConvCase(channels=256, filters=48, size=(7, 7), kernel=(1, 1), epilogue="residual"),
    ConvCase(channels=264, filters=16, size=(5, 5), kernel=(1, 1), epilogue="none"),
    ConvCase(channels=256, filters=32, size=(3, 7), kernel=(1, 1), epilogue="clip"),
    ConvCase(channels=256, filters=16, size=(7, 7), kernel=(1, 1), epilogue="silu"),
]


def _nest_and_func(case: ConvCase) -> tuple[object, tirx.PrimFunc]:
    fused, _ = schedule_with(case.module(), AVX2, None)
    (func,) = [f for f in fused.functions.values() if isinstance(f, tirx.PrimFunc)]
    nest = match_conv2d(s_tir.Schedule(func))
    assert nest is not None
    return nest, func


@pytest.mark.parametrize("case", TAKEN, ids=str)
def test_padded_plane_matches_unscheduled(case: ConvCase) -> None:
    nest, func = _nest_and_func(case)
    assert takes_padded_plane(nest, AVX2)
    scheduled = padded_plane_kernel(func, AVX2)
    assert scheduled is not None
    # The weights are read in 16-channel blocks of 8 input channels (the padded kernel's
    # packing), not the plane kernel's [k // block_k, c, 1, 1, k % block_k].
    shapes = [tuple(int(d) for d in b.shape) for b in _allocated(scheduled)]
    assert (nest.out_channels // TILE_CHANNELS, nest.in_channels // 8, 1, 1, 8, 16) in shapes
    check_rule_matches_unscheduled(case, AVX2, Conv2dPlaneRule())


def _allocated(func: tirx.PrimFunc) -> list[tirx.Buffer]:
    """The buffers of the function's root block (the packed weights are one)."""
    return list(func.body.block.alloc_buffers)


@pytest.mark.parametrize(
    ("case", "target"),
    [
        # AVX-512 keeps the plane kernel (not measured there).
        (ConvCase(channels=256, filters=32, size=(7, 7), kernel=(1, 1)), AVX512),
        # A plane of whole vectors (8x8), a 14x14 plane (measured slower), few input channels
        # (160: measured slower), output channels no tile divides (40), a 3x3 kernel.
        (ConvCase(channels=256, filters=32, size=(8, 8), kernel=(1, 1)), AVX2),
        (ConvCase(channels=256, filters=32, size=(14, 14), kernel=(1, 1)), AVX2),
        (ConvCase(channels=160, filters=32, size=(7, 7), kernel=(1, 1)), AVX2),
        (ConvCase(channels=256, filters=40, size=(7, 7), kernel=(1, 1)), AVX2),
        (ConvCase(channels=256, filters=32, size=(7, 7), padding=1), AVX2),
        # A 1x1 plane (a matrix-vector product; raised a ScheduleError before).
        (ConvCase(channels=256, filters=16, size=(1, 1), kernel=(1, 1)), AVX2),
    ],
    ids=str,
)
def test_padded_plane_declines(case: ConvCase, target: CpuTarget) -> None:
    fused, _ = schedule_with(case.module(), target, None)
    (func,) = [f for f in fused.functions.values() if isinstance(f, tirx.PrimFunc)]
    assert padded_plane_kernel(func, target) is None
