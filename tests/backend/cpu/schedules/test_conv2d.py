"""The conv2d and depthwise rules: scheduled kernels equal the unscheduled loop nests.

Each case is compiled twice for the same target, once as LegalizeOps and
FuseOps left it and once with the rule (and the weights packed at compile
time), and run on the same input. The conv2d rule sums each output by input
channel block, kernel row, column, then channel within the block (the
unscheduled nest: channel, row, column), so the tolerance, rtol 1e-5 and
atol 1e-5, allows for fused multiply-adds and sums of up to ~300 unit-normal
products in another order; the cases stay within that depth.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import tvm
from tvm import relax, s_tir, tirx

from npuc.backend.cpu.schedules.conv2d import (
    PAIR_ACCUMULATORS,
    WEIGHT_BLOCK_BYTES,
    Conv2dRule,
    ConvTile,
    accumulator_budget,
    choose_tile,
)
from npuc.backend.cpu.schedules.conv_match import ConvNest, match_conv2d
from npuc.backend.cpu.schedules.conv_tile import _seven_column_pairs
from npuc.backend.cpu.schedules.depthwise import DepthwiseConv2dRule
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import (
    AVX2,
    ConvCase,
    check_rule_matches_unscheduled,
    schedule_with,
    targets,
)

REGULAR = [
    ConvCase(channels=16, filters=32, size=(14, 14), padding=1),
    ConvCase(channels=16, filters=64, size=(8, 8), kernel=(1, 1), epilogue="none"),
    ConvCase(
        channels=8, filters=32, size=(15, 13), stride=2, padding=2, dilation=2, epilogue="residual"
    ),
    ConvCase(channels=3, filters=20, size=(9, 9), kernel=(1, 3), padding=1, epilogue="clip"),
    ConvCase(channels=3, filters=16, size=(23, 23), kernel=(7, 7), stride=2, padding=3),
    ConvCase(channels=32, filters=48, size=(7, 7), kernel=(1, 1), stride=2),
    ConvCase(channels=12, filters=24, size=(7, 7), groups=3, padding=1),
    ConvCase(channels=5, filters=12, size=(6, 11), kernel=(2, 3), epilogue="residual"),
    ConvCase(channels=16, filters=32, size=(10, 10), stride=2, padding=1, epilogue="silu"),
    # Input channel blocks (NCHWc copy): one channel, prime counts, several blocks, a
    # partial divisor (20 = 2 x 10), asymmetric padding, groups of 16, output channels
    # that are not a multiple of 16.
    ConvCase(channels=1, filters=16, size=(9, 10), padding=1),
    ConvCase(channels=2, filters=24, size=(7, 9), kernel=(3, 2), padding=(0, 1, 2, 1)),
    ConvCase(channels=32, filters=40, size=(11, 9), dilation=2, padding=2, epilogue="none"),
    ConvCase(channels=20, filters=48, size=(11, 9), padding=(0, 1, 2, 1), epilogue="residual"),
    ConvCase(channels=32, filters=64, size=(13, 11), stride=2, padding=1, groups=2),
    ConvCase(channels=17, filters=32, size=(6, 7), kernel=(5, 5), padding=(2, 1, 2, 3)),
    # Strided 1x1: only the sampled pixels are copied (with padding, odd sizes, C=3).
    ConvCase(channels=24, filters=32, size=(12, 12), kernel=(1, 1), stride=2, padding=1),
    ConvCase(channels=40, filters=48, size=(14, 10), kernel=(1, 1), stride=2, epilogue="residual"),
    ConvCase(channels=3, filters=16, size=(9, 13), kernel=(1, 1), stride=3, epilogue="none"),
    ConvCase(channels=32, filters=16, size=(9, 9), kernel=(1, 1), stride=2),
    # Output channels that are no whole number of vectors (1x1, stride 1): padded to the
    # next multiple of the lanes with zero weights; only the real channels are stored.
    ConvCase(channels=16, filters=20, size=(5, 7), kernel=(1, 1)),
    ConvCase(channels=24, filters=36, size=(6, 6), kernel=(1, 1), epilogue="none"),
    ConvCase(channels=40, filters=12, size=(7, 5), kernel=(1, 1), epilogue="residual"),
    ConvCase(channels=32, filters=1000 // 8 + 3, size=(3, 3), kernel=(1, 1), epilogue="silu"),
    # 13 columns (prime): AVX-512 takes 32 channels x 13 columns, 26 accumulators.
    ConvCase(channels=32, filters=64, size=(13, 13), kernel=(1, 1)),
    ConvCase(channels=16, filters=32, size=(13, 13), padding=1, epilogue="residual"),
    # Rows of 14 and 28: AVX-512 takes 32 channels x 14 columns, 28 accumulators.
    ConvCase(channels=16, filters=64, size=(14, 14), padding=1, epilogue="residual"),
    ConvCase(channels=16, filters=32, size=(5, 28), padding=1, epilogue="clip"),
]
DEPTHWISE = [
    ConvCase(channels=16, filters=16, groups=16, size=(14, 14), padding=1, epilogue="clip"),
    ConvCase(channels=8, filters=8, groups=8, size=(15, 13), stride=2, padding=2, dilation=2),
    ConvCase(
        channels=5, filters=5, groups=5, size=(9, 9), kernel=(1, 3), padding=1, epilogue="none"
    ),
    ConvCase(
        channels=24, filters=24, groups=24, size=(28, 28), stride=2, padding=1, epilogue="residual"
    ),
]
TARGETS = targets()


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", REGULAR, ids=str)
def test_conv2d_rule_matches_unscheduled(case: ConvCase, target: CpuTarget) -> None:
    check_rule_matches_unscheduled(case, target, Conv2dRule())


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", DEPTHWISE, ids=str)
def test_depthwise_rule_matches_unscheduled(case: ConvCase, target: CpuTarget) -> None:
    check_rule_matches_unscheduled(case, target, DepthwiseConv2dRule())


def test_rules_leave_each_other_alone() -> None:
    regular, depthwise = REGULAR[0], DEPTHWISE[0]
    target = TARGETS[0]
    fused_regular, _ = schedule_with(regular.module(), target, None)
    fused_depthwise, _ = schedule_with(depthwise.module(), target, None)
    for func in _prim_funcs(fused_regular):
        assert DepthwiseConv2dRule().apply(func, target) is None
    for func in _prim_funcs(fused_depthwise):
        assert Conv2dRule().apply(func, target) is None


@pytest.mark.parametrize(
    "case",
    [
        ConvCase(channels=3, filters=7, size=(6, 6)),
        ConvCase(channels=16, filters=68, size=(5, 5), kernel=(1, 1), groups=2),  # 34 per group
    ],
    ids=str,
)
def test_conv2d_rule_declines_channel_blocks_that_are_not_whole_vectors(case: ConvCase) -> None:
    """Odd output channels per group: no vector of 4+ lanes divides them; the fallback runs it."""
    fused, _ = schedule_with(case.module(), TARGETS[0], None)
    (func,) = _prim_funcs(fused)
    assert match_conv2d(s_tir.Schedule(func)) is not None
    assert Conv2dRule().apply(func, TARGETS[0]) is None


def test_an_elementwise_function_is_not_a_convolution() -> None:
    case = ConvCase(channels=4, filters=4, size=(5, 5), kernel=(1, 1), epilogue="residual")
    fused, _ = schedule_with(case.module(), TARGETS[0], None)
    # A conv followed by an add and relu is one function; an add alone is not a conv.
    for func in _prim_funcs(fused):
        assert match_conv2d(s_tir.Schedule(func)) is not None
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 5, 5), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.relu(relax.op.add(x, x)))
        bb.emit_func_output(out)
    fused, _ = schedule_with(bb.get(), TARGETS[0], None)
    for func in _prim_funcs(fused):
        assert Conv2dRule().apply(func, TARGETS[0]) is None
        assert DepthwiseConv2dRule().apply(func, TARGETS[0]) is None


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("width", [7, 14, 28, 56, 112, 13])
def test_tile_fits_the_register_file(target: CpuTarget, width: int) -> None:
    case = ConvCase(channels=8, filters=64, size=(width, width), kernel=(1, 1))
    _, tile = _nest_and_tile(case, target)
    lanes = target.vector_bits // 32
    assert tile.block_k % lanes == 0 and 64 % tile.block_k == 0
    assert width % tile.tile_w == 0
    pair = target.has_avx512 and tile.vectors == 2
    assert tile.vectors * tile.tile_w <= (PAIR_ACCUMULATORS if pair else accumulator_budget(target))


@pytest.mark.parametrize("width", [14, 28, 56, 112])
def test_avx512_rows_of_fourteen_take_two_vectors_by_fourteen_columns(width: int) -> None:
    """ResNet-50's 3x3 layers at 14x14 .. 56x56: 32 x 14 (28 accumulators), not 32 x 7,
    64 x 4 or 32 x 8; AVX2 keeps its tiles."""
    nest = ConvNest(
        block="conv",
        weight_read=1,
        pad_block="pad",
        epilogue=(),
        out_channels=256,
        out_height=width,
        out_width=width,
        in_channels=256,
        in_height=width + 2,
        group_in=256,
        kernel_h=3,
        kernel_w=3,
    )
    avx512 = CpuTarget(cpu_name="skylake-avx512", features=("avx2", "avx512f", "fma"), num_cores=2)
    tile = choose_tile(nest, avx512)
    assert tile is not None and (tile.block_k, tile.tile_w) == (32, 14)
    avx2_tile = choose_tile(nest, AVX2)
    assert avx2_tile is not None and avx2_tile.vectors * avx2_tile.tile_w <= 13


@pytest.mark.parametrize("filters", [1000, 256])
def test_avx2_thirteen_column_rows_get_a_full_row_of_accumulators(filters: int) -> None:
    """SqueezeNet's 13x13 layers on AVX2: 8 channels x 13 columns (13 accumulators), not
    4 accumulators one column wide (a latency-bound tile, 3x slower for 512->1000)."""
    case = ConvCase(channels=16, filters=filters, size=(13, 13), kernel=(1, 1))
    fused, _ = schedule_with(case.module(), AVX2, None)
    (func,) = _prim_funcs(fused)
    nest = match_conv2d(s_tir.Schedule(func))
    assert nest is not None
    tile = choose_tile(nest, AVX2)
    assert tile is not None
    assert (tile.block_k, tile.tile_w) == (8, 13)
    check_rule_matches_unscheduled(case, AVX2, Conv2dRule())


@pytest.mark.parametrize("filters", [64, 32])
def test_avx2_rows_of_fifty_five_take_two_vectors_by_five_columns(filters: int) -> None:
    """SqueezeNet's 3x3 layers at 55x55 on AVX2: 16 channels x 5 columns (7 loads per 10
    multiply-adds), not 8 x 11 (12 per 11, 1.3x slower); AVX-512 keeps its tile."""
    case = ConvCase(channels=16, filters=filters, size=(4, 55), padding=1, epilogue="residual")
    fused, _ = schedule_with(case.module(), AVX2, None)
    (func,) = _prim_funcs(fused)
    nest = match_conv2d(s_tir.Schedule(func))
    assert nest is not None
    tile = choose_tile(nest, AVX2)
    assert tile is not None and (tile.block_k, tile.tile_w, tile.lanes) == (16, 5, 8)
    avx512 = CpuTarget(cpu_name="skylake-avx512", features=("avx2", "avx512f", "fma"), num_cores=2)
    wide = choose_tile(nest, avx512)
    assert wide is not None and (wide.block_k, wide.tile_w) == (32, 11)
    check_rule_matches_unscheduled(case, AVX2, Conv2dRule())


@pytest.mark.parametrize(
    "case",
    [
        ConvCase(channels=16, filters=16, size=(7, 7), padding=1),  # odd rows: a one-row tail
        ConvCase(channels=16, filters=32, size=(4, 7), padding=1, epilogue="residual"),
        ConvCase(channels=8, filters=16, size=(13, 13), stride=2, padding=1, epilogue="none"),
        ConvCase(channels=16, filters=8, size=(5, 5), kernel=(1, 1), epilogue="clip"),
    ],
    ids=str,
)
def test_avx2_short_rows_take_two_rows_of_accumulators(case: ConvCase) -> None:
    """7-column rows on AVX2: 8 channels x 7 columns x 2 rows (14 accumulator chains, not 7);
    5 columns: 8 x 5 x 2. AVX-512 keeps one row. Both rows and the tail row must be right."""
    nest, tile = _avx2_tile_with_avx512_one_row(case)
    assert (tile.block_k, tile.tile_w, tile.rows) == (8, nest.out_width, 2)
    check_rule_matches_unscheduled(case, AVX2, Conv2dRule())


@pytest.mark.parametrize(
    ("case", "rows"),
    [
        (ConvCase(channels=8, filters=32, size=(14, 14), padding=1), 2),
        (ConvCase(channels=16, filters=16, size=(5, 28), padding=1, epilogue="residual"), 2),
        # Not taken: a 1x1 kernel, stride 2, input channels below a vector.
        (ConvCase(channels=16, filters=32, size=(14, 14), kernel=(1, 1), epilogue="none"), 1),
        (ConvCase(channels=16, filters=16, size=(28, 28), stride=2, padding=1), 1),
        (ConvCase(channels=4, filters=16, size=(14, 14), padding=1), 1),
    ],
    ids=str,
)
def test_avx2_rows_of_sevens_take_seven_columns_by_two_rows(case: ConvCase, rows: int) -> None:
    """Stride-1 3x3 layers whose rows 7 divides, on AVX2: 8 channels x 7 columns x 2 rows
    (fewer weight bytes per multiply-add than 32 x 2 / 16 x 4); AVX-512 keeps one row."""
    nest, tile = _avx2_tile_with_avx512_one_row(case)
    if rows == 2:
        assert (tile.block_k, tile.tile_w, tile.rows) == (8, 7, 2)
        check_rule_matches_unscheduled(case, AVX2, Conv2dRule())
    else:
        assert not _seven_column_pairs(nest, AVX2)


def _nest_and_tile(case: ConvCase, target: CpuTarget) -> tuple[ConvNest, ConvTile]:
    """The matched convolution nest of ``case`` fused for ``target`` and its chosen tile."""
    fused, _ = schedule_with(case.module(), target, None)
    (func,) = _prim_funcs(fused)
    nest = match_conv2d(s_tir.Schedule(func))
    assert nest is not None
    tile = choose_tile(nest, target)
    assert tile is not None
    return nest, tile


def _avx2_tile_with_avx512_one_row(case: ConvCase) -> tuple[ConvNest, ConvTile]:
    """The AVX2 tile of ``case``'s convolution, after checking AVX-512 keeps one row."""
    nest, tile = _nest_and_tile(case, AVX2)
    avx512 = CpuTarget(cpu_name="skylake-avx512", features=("avx2", "avx512f", "fma"), num_cores=2)
    wide = choose_tile(nest, avx512)
    assert wide is not None and wide.rows == 1
    return nest, tile


def test_wide_channel_blocks_keep_their_weights_in_l2() -> None:
    """512 channels 3x3 at 28x28: 64 x 4 would pack 1.2 MB per block; 16 x 14 packs 295 KB."""
    target = CpuTarget(cpu_name="skylake-avx512", features=("avx2", "avx512f", "fma"), num_cores=2)
    nest = ConvNest(
        block="conv",
        weight_read=1,
        pad_block="pad",
        epilogue=(),
        out_channels=512,
        out_height=28,
        out_width=28,
        in_channels=512,
        in_height=30,
        group_in=512,
        kernel_h=3,
        kernel_w=3,
    )
    tile = choose_tile(nest, target)
    assert tile is not None
    assert tile.block_k * 512 * 9 * 4 <= WEIGHT_BLOCK_BYTES
    assert (tile.block_k, tile.tile_w) == (16, 14)
    # 128 channels: 32 x 14 (the two-vector tile, 147 KB) replaces 64 x 4.
    small = choose_tile(replace(nest, in_channels=128, group_in=128), target)
    assert small is not None and (small.block_k, small.tile_w) == (32, 14)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
def test_pointwise_channels_are_padded_to_whole_vectors(target: CpuTarget) -> None:
    """SqueezeNet's 512 -> 1000 1x1 layer: 1000 = 8 x 125; AVX-512 pads to 1024 (32 x 32)."""
    case = ConvCase(channels=64, filters=1000, size=(13, 13), kernel=(1, 1))
    fused, _ = schedule_with(case.module(), target, Conv2dRule())
    lanes = target.vector_bits // 32
    packed = [
        p.ty.shape
        for f in _prim_funcs(fused)
        for p in f.params
        if len(p.ty.shape) == 6  # the packed weights [k // bk, c // cb, ky, kx, c % cb, k % bk]
    ]
    assert len(packed) == 1
    blocks, block_k = int(packed[0][0]), int(packed[0][-1])
    # Padded to two vectors (1024) with AVX-512; 1000 is whole 8-lane vectors with AVX2.
    assert blocks * block_k == (1024 if target.has_avx512 else 1000)
    if target.has_avx512:
        assert block_k % lanes == 0  # whole 16-lane vectors, not 8-lane halves


def _prim_funcs(mod: tvm.IRModule) -> list[tirx.PrimFunc]:
    return [f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc)]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
def test_pointwise_channel_padding_declines_a_stride_in_x_only(target: CpuTarget) -> None:
    """A 1x1 stride-2 convolution of one input row (so its rows are not subsampled) with 100
    channels (not whole vectors): ``pad_einsum`` refuses the strided read and the rule must
    fall back to unpadded channel blocks; it raised ``AttributeError`` (``tvm.TVMError``, gone
    from TVM 0.27) instead, so the model ran the unvectorised fallback."""
    case = ConvCase(channels=32, filters=100, size=(1, 16), kernel=(1, 1), stride=2)
    check_rule_matches_unscheduled(case, target, Conv2dRule())
