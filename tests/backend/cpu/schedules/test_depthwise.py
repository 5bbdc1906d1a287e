"""The depthwise rule on strided rows: scheduled == unscheduled (float32, rtol/atol 1e-5).

Rows at least :data:`MIN_DEINTERLEAVE_WIDTH` outputs wide with a column
stride read a de-interleaved padded plane; narrower ones keep the plain copy.
Rows wider than :data:`FLAT_MAX_WIDTH` (the others go to the flat kernel) are
checked for AVX2 and the host's AVX-512, and their de-interleaving copy must
compile without gathers.
"""

from __future__ import annotations

import pytest
import tvm
from tvm import relax, s_tir

from npuc.backend.cpu.lowering import fusion_passes, lower_passes
from npuc.backend.cpu.schedules.conv_match import ConvNest, match_conv2d
from npuc.backend.cpu.schedules.depthwise import (
    FLAT_MAX_WIDTH,
    MIN_DEINTERLEAVE_WIDTH,
    DepthwiseConv2dRule,
    choose_rows,
    choose_strip,
    column_stride,
)
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import (
    AVX2,
    ConvCase,
    check_rule_matches_unscheduled,
    schedule_with,
    targets,
)
from tests.backend.cpu.schedules.relax_graphs import TARGET, check_same, graph

op = relax.op

STRIDED = [
    ConvCase(channels=6, filters=6, groups=6, size=(34, 34), stride=2, padding=1, epilogue="clip"),
    ConvCase(
        channels=4,
        filters=4,
        groups=4,
        size=(40, 37),
        kernel=(5, 5),
        stride=2,
        padding=2,
        epilogue="residual",
    ),
    ConvCase(channels=3, filters=3, groups=3, size=(36, 36), stride=2, padding=2, dilation=2),
    ConvCase(channels=5, filters=5, groups=5, size=(50, 50), stride=3, padding=1, epilogue="none"),
]


@pytest.mark.parametrize("case", STRIDED, ids=str)
def test_strided_rows_match_unscheduled(case: ConvCase) -> None:
    check_rule_matches_unscheduled(case, TARGET, DepthwiseConv2dRule())


#: Strided rows wider than FLAT_MAX_WIDTH: row strips on a de-interleaved padded plane (odd
#: padded widths leave a never-read slot at the end of a phase; stride 3 has three phases).
WIDE_STRIDED = [
    ConvCase(channels=6, filters=6, groups=6, size=(64, 67), stride=2, padding=1, epilogue="clip"),
    ConvCase(
        channels=4,
        filters=4,
        groups=4,
        size=(60, 62),
        kernel=(5, 5),
        stride=2,
        padding=2,
        epilogue="residual",
    ),
    ConvCase(channels=3, filters=3, groups=3, size=(96, 93), stride=3, padding=1, epilogue="none"),
]


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", WIDE_STRIDED, ids=str)
def test_wide_strided_rows_match_unscheduled(case: ConvCase, target: CpuTarget) -> None:
    assert case.out_shape()[3] > FLAT_MAX_WIDTH
    check_rule_matches_unscheduled(case, target, DepthwiseConv2dRule())


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.cpu_name)
def test_deinterleaving_copy_has_no_gather(target: CpuTarget) -> None:
    """MobileNet's stride-2 3x3 layer padded by 1 on an even width: the de-interleaving copy
    reads consecutive columns for all phases of a phase column (wide loads and permutes);
    copied phase by phase it compiled to AVX-512 gathers."""
    case = ConvCase(channels=4, filters=4, groups=4, size=(64, 64), stride=2, padding=1)
    scheduled, applied = schedule_with(case.module(), target, DepthwiseConv2dRule())
    assert len(applied) == 1
    mod = tvm.transform.Sequential(lower_passes())(scheduled)
    ir = tvm.compile(mod, target.to_tvm()).mod.imports[0].inspect_source("ll")
    assert "gather" not in ir
    assert "shufflevector" in ir


@pytest.mark.parametrize(("strides", "width"), [((1, 2), 40), ((2, 1), 20), ((2, 2), 14)])
def test_row_and_column_strides(strides: tuple[int, int], width: int) -> None:
    shapes = [(1, 8, 6, width), (8, 1, 3, 3), (1, 8, 1, 1)]
    mod = graph(
        shapes,
        lambda p: op.clip(
            op.add(op.nn.conv2d(p[0], p[1], strides=strides, padding=1, groups=8), p[2]), 0, 6
        ),
    )
    report = check_same(mod, [DepthwiseConv2dRule()])
    assert "depthwise_conv2d" in report.rule_of.values()


def test_column_stride_read_from_the_index() -> None:
    def stride_of(case: ConvCase) -> int:
        mod = tvm.transform.Sequential(fusion_passes(TARGET))(case.module())
        func = next(f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc))
        sch = s_tir.Schedule(func)
        nest = match_conv2d(sch)
        assert nest is not None
        return column_stride(sch, nest)

    assert [stride_of(c) for c in STRIDED] == [2, 2, 2, 3]
    narrow = ConvCase(channels=4, filters=4, groups=4, size=(28, 28), stride=2, padding=1)
    assert MIN_DEINTERLEAVE_WIDTH > (28 // 2) and stride_of(narrow) == 1


def _nest_of(case: ConvCase) -> ConvNest:
    mod = tvm.transform.Sequential(fusion_passes(TARGET))(case.module())
    func = next(f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc))
    nest = match_conv2d(s_tir.Schedule(func))
    assert nest is not None
    return nest


@pytest.mark.parametrize(
    ("width", "avx2_strip"),
    [(112, 16), (56, 8), (28, 14), (14, 14), (7, 7), (30, 15), (17, 1), (40, 8)],
)
def test_strip_is_a_power_of_two_where_one_divides_the_width(width: int, avx2_strip: int) -> None:
    """Widest power of two (>= 8) dividing the row, up to two vectors; else the widest divisor
    up to 16 columns, or up to two vectors when that one is narrower than 8."""
    case = ConvCase(channels=2, filters=2, groups=2, size=(3, width), padding=1)
    assert choose_strip(_nest_of(case), AVX2) == avx2_strip


@pytest.mark.parametrize(
    ("height", "width", "rows"), [(14, 14, 2), (28, 28, 4), (112, 112, 4), (7, 7, 1), (9, 28, 3)]
)
def test_row_block_is_the_widest_divisor_of_the_height_that_fits(
    height: int, width: int, rows: int
) -> None:
    """AVX2: up to 8 rows and 8 accumulator registers (a 14- or 16-wide strip is 2 of them);
    7-wide strips: 1 row."""
    case = ConvCase(channels=2, filters=2, groups=2, size=(height, width), padding=1)
    nest = _nest_of(case)
    assert choose_rows(nest, choose_strip(nest, AVX2), AVX2) == rows


POW2_STRIPS = [
    ConvCase(channels=3, filters=3, groups=3, size=(9, 28), padding=1, epilogue="clip"),
    ConvCase(channels=2, filters=2, groups=2, size=(5, 56), padding=1, epilogue="residual"),
    ConvCase(channels=2, filters=2, groups=2, size=(4, 112), kernel=(5, 5), padding=2),
    ConvCase(channels=4, filters=4, groups=4, size=(14, 14), kernel=(5, 5), padding=2),
    ConvCase(channels=3, filters=3, groups=3, size=(56, 56), stride=2, padding=1, epilogue="clip"),
    ConvCase(channels=5, filters=5, groups=5, size=(7, 7), kernel=(5, 5), padding=2),
    ConvCase(channels=2, filters=2, groups=2, size=(16, 17), padding=(1, 1, 0, 1)),
]


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", POW2_STRIPS, ids=str)
def test_power_of_two_strips_match_unscheduled(case: ConvCase, target: CpuTarget) -> None:
    check_rule_matches_unscheduled(case, target, DepthwiseConv2dRule())
