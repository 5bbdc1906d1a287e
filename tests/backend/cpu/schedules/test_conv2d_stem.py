"""The stem rule: scheduled == unscheduled (float32, rtol/atol 1e-5), and what it declines.

Targets: AVX-512 (host, when it has it), AVX2 (Haswell) and generic x86-64
(SSE2, 4 lanes).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, s_tir, tirx

from npuc.backend.cpu.lowering import fusion_passes
from npuc.backend.cpu.schedules import RULES
from npuc.backend.cpu.schedules.conv2d_stem import (
    STEM_MAX_TAPS,
    TASK_ROW_BYTES,
    Conv2dStemRule,
    StemKernel,
    StemTile,
    build_stem_kernel,
    choose_stem_tile,
    rows_per_task,
    stem_geometry,
)
from npuc.backend.cpu.schedules.conv_match import match_conv2d
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import (
    AVX2,
    ConvCase,
    check_rule_matches_unscheduled,
    run,
    schedule_with,
)
from tests.backend.cpu.schedules.conv_harness import targets as vector_targets

GENERIC = CpuTarget(cpu_name="x86-64", features=("sse2",), num_cores=2)
AVX512 = CpuTarget(cpu_name="skylake-avx512", features=("avx", "avx2", "avx512f"), num_cores=2)


def all_targets() -> list[CpuTarget]:
    return [*vector_targets(), GENERIC]


def stem(
    channels: int,
    filters: int,
    size: int | tuple[int, int],
    kernel: int = 3,
    stride: int = 2,
    padding: int | tuple[int, int, int, int] = 1,
    epilogue: str = "bias_relu",
    dilation: int = 1,
) -> ConvCase:
    return ConvCase(
        channels=channels,
        filters=filters,
        size=(size, size) if isinstance(size, int) else size,
        kernel=(kernel, kernel),
        stride=stride,
        padding=padding,
        dilation=dilation,
        epilogue=epilogue,
    )


CASES = [
    stem(3, 64, 47, padding=0),  # SqueezeNet's stem, smaller: 23 columns, no padding
    stem(3, 32, 64, epilogue="clip"),  # MobileNetV2
    stem(3, 16, 80, epilogue="silu"),  # YOLOv8n: 40 columns, several vectors
    stem(3, 16, 36, epilogue="none"),
    stem(3, 8, 33, epilogue="residual"),
    stem(3, 24, (35, 41), padding=(0, 1, 1, 0)),  # odd, uneven padding
    stem(1, 16, 40, stride=1),  # one channel, stride 1
    stem(4, 8, 40, kernel=2, stride=2, padding=0),  # four channels, 2x2 window
    stem(3, 8, 45, stride=1, dilation=2, padding=2),
    stem(3, 12, 50, kernel=3, stride=3, padding=1),  # stride 3: three column phases
    stem(2, 6, 38, kernel=4, stride=2, padding=1),  # even window
    stem(3, 16, 70, kernel=7, stride=2, padding=3, epilogue="residual"),  # ResNet-50, 147 taps
]


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_stem_rule_matches_unscheduled(case: ConvCase, target: CpuTarget) -> None:
    check_rule_matches_unscheduled(case, target, Conv2dStemRule())


@pytest.mark.parametrize(
    ("tile", "rows"),
    [(StemTile(2, 1, 8), 1), (StemTile(4, 2, 8), 5), (StemTile(1, 7, 8), 23), (None, 40)],
)
def test_other_tiles_match_unscheduled(tile: StemTile | None, rows: int) -> None:
    """Overridden tiles (one vector per tile, several tiles a row, one channel) and bands
    (one row, 23 = 4 x 5 + 3, the whole image, more rows than the image)."""
    case = stem(3, 16, 47, padding=0)

    class WithTile:
        name = "conv2d_stem"

        def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
            return build_stem_kernel(func, target, tile, rows)

    check_rule_matches_unscheduled(case, AVX2, WithTile())


@pytest.mark.parametrize("target", vector_targets(), ids=lambda t: t.cpu_name)
def test_batch_of_images_matches_unscheduled(target: CpuTarget) -> None:
    """Three images: the bands of every image are tasks of the one parallel loop."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, 3, 7, 7)).astype(np.float32)
    x = relax.Var("x", relax.TensorType((3, 3, 37, 37), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, relax.const(weight), strides=2, padding=3))
            out = bb.emit_output(bb.emit(relax.op.nn.relu(y)))
        bb.emit_func_output(out)
    inputs = [rng.standard_normal((3, 3, 37, 37)).astype(np.float32)]
    want = run(schedule_with(bb.get(), target, None)[0], target, inputs)
    scheduled, applied = schedule_with(bb.get(), target, Conv2dStemRule())
    assert len(applied) == 1
    np.testing.assert_allclose(run(scheduled, target, inputs), want, rtol=1e-5, atol=1e-5)


def _fused(case: ConvCase) -> tirx.PrimFunc:
    mod = tvm.transform.Sequential(fusion_passes(GENERIC))(case.module())
    return next(f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc))


@pytest.mark.parametrize(
    ("case", "why"),
    [
        (stem(4, 16, 64, kernel=7, padding=3), "196 products per output"),
        (stem(5, 16, 40), "5 input channels"),
        (ConvCase(channels=4, filters=8, size=(40, 40), groups=2, padding=1), "grouped"),
        (stem(3, 16, 14), "7 output columns: less than one vector"),
        (stem(16, 16, 40, padding=1), "not a stem"),
    ],
)
def test_declines(case: ConvCase, why: str) -> None:
    assert Conv2dStemRule().apply(_fused(case), AVX2) is None, why


def test_bands_keep_their_input_rows_in_l2() -> None:
    """Four bands per core; YOLOv8n's 160 rows on 2 cores: 20 rows would copy 158 KB of
    input rows, so 16 (128 KB at most)."""
    for size, want in ((224, 14), (320, 16)):
        func = _fused(stem(3, 16, size))
        sch = s_tir.Schedule(func)
        nest = match_conv2d(sch)
        assert nest is not None
        found = stem_geometry(sch, nest)
        assert found is not None
        assert rows_per_task(found[0], 2) == want
        kernel = StemKernel(geometry=found[0], tile=StemTile(8, 3, 16), out_channels=16, rows=want)
        assert 4 * kernel.task_elements <= TASK_ROW_BYTES


def test_tap_limit_is_the_reduction_length() -> None:
    assert STEM_MAX_TAPS == 3 * 7 * 7  # ResNet-50's stem, the longest measured


def test_tiles_fit_the_register_file() -> None:
    """AVX-512: 8 channels x 3 vectors (24 accumulators + 3 inputs + a broadcast of 32);
    AVX2: 4 x 3 (12 + 3 + 1 of 16); a row narrower than a vector: none."""
    assert choose_stem_tile(64, 111, AVX512) == StemTile(8, 3, 16)
    assert choose_stem_tile(64, 111, AVX2) == StemTile(4, 3, 8)
    assert choose_stem_tile(16, 7, AVX2) is None
    tile = choose_stem_tile(6, 40, AVX2)
    assert tile is not None and 6 % tile.block_k == 0


def test_row_vectors_end_at_the_row_end() -> None:
    """111 columns in 16 lanes: 7 vectors, the last from column 95, cut into equal tiles."""
    func = _fused(stem(3, 64, 224, padding=0))
    sch = s_tir.Schedule(func)
    nest = match_conv2d(sch)
    assert nest is not None
    found = stem_geometry(sch, nest)
    assert found is not None
    kernel = StemKernel(geometry=found[0], tile=StemTile(8, 3, 16), out_channels=64)
    assert kernel.starts() == [[0, 16, 32], [48, 64], [80, 95]]
    g = found[0]
    assert (g.stride_h, g.stride_w, g.pad_top, g.pad_left, g.phase_w) == (2, 2, 0, 0, 112)


def test_rule_comes_before_the_conv2d_rule() -> None:
    names = [rule.name for rule in RULES]
    assert names.index("conv2d_stem") < names.index("conv2d")


def _output_stores(func: tirx.PrimFunc) -> int:
    """Stores of the kernel's output in its TIR script (one per channel and row vector of
    each emitted tile)."""
    name = func.params[-1].name
    return sum(line.strip().startswith(f"{name}[") for line in func.script().splitlines())


def test_wide_rows_loop_over_their_tiles() -> None:
    """A row of 4096 outputs is 256 vectors: emitting every tile made a kernel that took 67 s
    to build with AVX-512 (a 1920-wide input at stride 2 for AVX2: 15.6 s; the conv2d rule
    0.3-0.6 s). Beyond
    :data:`MAX_UNROLLED_TILES` tiles the regular ones are a loop: as much code as 1024."""
    kernels = [
        build_stem_kernel(_fused(stem(3, 16, (4, width), stride=1)), AVX512)
        for width in (1024, 4096)
    ]
    assert all(k is not None for k in kernels)
    counts = [_output_stores(k) for k in kernels if k is not None]
    assert counts[0] == counts[1]


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.cpu_name)
def test_wide_rows_match_unscheduled(target: CpuTarget) -> None:
    """600 outputs a row (38 vectors of 16, 75 of 8, 150 of 4): looped tiles, then the rest
    unrolled with the last vector ending at the row's end."""
    check_rule_matches_unscheduled(
        stem(3, 8, (6, 1200), epilogue="residual"), target, Conv2dStemRule()
    )
