"""The flat phase-plane depthwise kernel: scheduled == unscheduled (float32, rtol/atol 1e-5).

Rows up to :data:`FLAT_MAX_WIDTH` outputs wide take the flat kernel through
the depthwise rule; a rule that always builds it checks wide planes too.
Targets: AVX-512 (host), AVX2 (Haswell) and generic x86-64 (SSE2, 4 lanes).
"""

from __future__ import annotations

import pytest
import tvm
from tvm import s_tir, tirx

from npuc.backend.cpu.lowering import fusion_passes
from npuc.backend.cpu.schedules.conv2d import float_lanes
from npuc.backend.cpu.schedules.conv_match import match_conv2d
from npuc.backend.cpu.schedules.depthwise import FLAT_MAX_WIDTH, DepthwiseConv2dRule
from npuc.backend.cpu.schedules.depthwise_flat import FlatGeometry, build_flat_kernel, geometry_of
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import ConvCase, check_rule_matches_unscheduled
from tests.backend.cpu.schedules.conv_harness import targets as vector_targets

GENERIC = CpuTarget(cpu_name="x86-64", features=("sse2",), num_cores=2)


def all_targets() -> list[CpuTarget]:
    return [*vector_targets(), GENERIC]


def dw(
    channels: int,
    size: int,
    kernel: int,
    stride: int,
    epilogue: str,
    padding: int | tuple[int, int, int, int] | None = None,
    dilation: int = 1,
) -> ConvCase:
    return ConvCase(
        channels=channels,
        filters=channels,
        groups=channels,
        size=(size, size),
        kernel=(kernel, kernel),
        stride=stride,
        padding=kernel // 2 * dilation if padding is None else padding,
        dilation=dilation,
        epilogue=epilogue,
    )


#: Orientation / MobileNet shapes (outputs 7, 14, 28 wide), every epilogue kind.
RULE_CASES = [
    dw(16, 28, 3, 2, "clip"),
    dw(64, 56, 3, 2, "silu"),
    dw(128, 28, 3, 2, "bias_relu"),
    dw(256, 14, 5, 2, "residual"),
    dw(512, 7, 5, 1, "silu"),
    dw(32, 14, 5, 1, "none"),
    dw(24, 28, 3, 1, "residual"),
    dw(8, 15, 3, 2, "clip", padding=(0, 1, 1, 0)),  # odd plane, uneven padding
    dw(8, 17, 3, 1, "bias_relu", padding=0),  # no padded copy: reads the input
    dw(8, 20, 3, 1, "clip", dilation=2),
    dw(8, 21, 5, 3, "bias_relu"),
]


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", RULE_CASES, ids=str)
def test_rule_flat_kernel_matches_unscheduled(case: ConvCase, target: CpuTarget) -> None:
    check_rule_matches_unscheduled(case, target, DepthwiseConv2dRule())


class FlatOnly:
    """The flat kernel whatever the width (the rule keeps wide rows on row strips)."""

    name = "depthwise_flat"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        nest = match_conv2d(s_tir.Schedule(func))
        if nest is None or not nest.is_depthwise:
            return None
        return build_flat_kernel(func, nest, float_lanes(target))


WIDE_CASES = [dw(16, 112, 3, 2, "clip"), dw(4, 112, 3, 1, "residual"), dw(4, 64, 5, 2, "silu")]


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", WIDE_CASES, ids=str)
def test_flat_kernel_on_wide_planes_matches_unscheduled(case: ConvCase, target: CpuTarget) -> None:
    check_rule_matches_unscheduled(case, target, FlatOnly())


def _fused(case: ConvCase) -> tirx.PrimFunc:
    mod = tvm.transform.Sequential(fusion_passes(GENERIC))(case.module())
    return next(f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc))


@pytest.mark.parametrize(("size", "stride", "flat"), [(56, 2, True), (28, 1, True), (56, 1, False)])
def test_rule_takes_the_flat_kernel_up_to_the_width_limit(
    size: int, stride: int, flat: bool
) -> None:
    func = _fused(dw(8, size, 3, stride, "clip"))
    scheduled = DepthwiseConv2dRule().apply(func, GENERIC)
    assert scheduled is not None
    assert ("depthwise_flat" in scheduled.script()) == flat
    assert (size // stride <= FLAT_MAX_WIDTH) == flat


def test_geometry_read_from_the_loop_nest() -> None:
    func = _fused(dw(8, 15, 5, 2, "clip", padding=(2, 1, 2, 3)))
    sch = s_tir.Schedule(func)
    nest = match_conv2d(sch)
    assert nest is not None
    found = geometry_of(sch, nest)
    assert found is not None
    g = found[0]
    assert (g.stride_h, g.stride_w, g.pad_top, g.pad_left) == (2, 2, 2, 1)
    assert (g.padded_h, g.padded_w, g.out_h, g.out_w) == (19, 19, 8, 8)
    assert (g.phase_h, g.phase_w) == (10, 10)


def test_phase_plane_holds_the_last_vector_of_every_tap() -> None:
    """7x7 outputs of a 5x5 stride-1 kernel: rows of 11, 77 flat outputs in 5 vectors of 16;
    the last tap starts 4 rows and 4 columns in (48), so 48 + 80 elements a plane."""
    g = FlatGeometry(
        batch=1,
        channels=1,
        in_h=7,
        in_w=7,
        out_h=7,
        out_w=7,
        kernel_h=5,
        kernel_w=5,
        stride_h=1,
        stride_w=1,
        dilation_h=1,
        dilation_w=1,
        pad_top=2,
        pad_left=2,
        padded_h=11,
        padded_w=11,
    )
    assert g.vectors(16) == 5
    assert g.plane_size(16) == 4 * 11 + 4 + 80
