"""The pointwise panel kernel: scheduled kernels equal the unscheduled loop nests.

Each case is compiled twice for the same target (AVX2, and the host when it
has AVX-512), once as LegalizeOps and FuseOps left it and once with the rule
(weights packed at compile time), and run on the same input. The kernel sums
each output over the input channels in order, with fused multiply-adds: rtol
and atol 1e-5 allow for that on sums of up to 64 unit-normal products.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, s_tir, tirx

from npuc.backend.cpu.schedules.conv2d_pointwise import (
    Conv2dPointwiseRule,
    PanelTile,
    choose_panel_tile,
    panel_bytes,
)
from npuc.backend.cpu.schedules.conv_match import match_conv2d
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import (
    AVX2,
    ConvCase,
    check_rule_matches_unscheduled,
    schedule_with,
    targets,
)

TARGETS = targets()

TAKEN = [
    ConvCase(channels=48, filters=64, size=(8, 8), kernel=(1, 1), epilogue="residual"),
    # 40 output channels: blocks of 10 (AVX-512) or 5 (AVX2) channels.
    ConvCase(channels=64, filters=40, size=(16, 4), kernel=(1, 1)),
    ConvCase(channels=40, filters=96, size=(4, 32), kernel=(1, 1), epilogue="none"),
    ConvCase(channels=64, filters=64, size=(8, 16), kernel=(1, 1), epilogue="silu"),
    # Several panels (576 positions: two of 288 for two cores).
    ConvCase(channels=36, filters=48, size=(24, 24), kernel=(1, 1), epilogue="clip"),
]

DECLINED = [
    ConvCase(channels=64, filters=64, size=(14, 14), kernel=(1, 1)),  # plane not whole vectors
    ConvCase(channels=32, filters=64, size=(8, 8), kernel=(1, 1)),  # few input channels
    ConvCase(channels=64, filters=32, size=(8, 8), kernel=(1, 1)),  # few output channels
    ConvCase(channels=64, filters=64, size=(16, 16), kernel=(1, 1), stride=2),
    # Stride 2 on one input row: in x only (rows not subsampled); the rule raised InternalError.
    ConvCase(channels=64, filters=64, size=(1, 64), kernel=(1, 1), stride=2),
    ConvCase(channels=64, filters=64, size=(8, 8), kernel=(1, 1), padding=1),
    ConvCase(channels=64, filters=64, size=(8, 8), kernel=(1, 1), groups=2),
    ConvCase(channels=64, filters=64, size=(8, 8), padding=1),  # 3x3
]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", TAKEN, ids=str)
def test_pointwise_rule_matches_unscheduled(case: ConvCase, target: CpuTarget) -> None:
    check_rule_matches_unscheduled(case, target, Conv2dPointwiseRule())


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", DECLINED, ids=str)
def test_pointwise_rule_declines(case: ConvCase, target: CpuTarget) -> None:
    """Not an ungrouped 1x1 stride-1 unpadded conv of 33+ channels on whole vectors: ``None``."""
    fused, _ = schedule_with(case.module(), target, None)
    funcs = [f for f in fused.functions.values() if isinstance(f, tirx.PrimFunc)]
    assert funcs
    for func in funcs:
        assert Conv2dPointwiseRule().apply(func, target) is None


def _tile(case: ConvCase, target: CpuTarget) -> PanelTile | None:
    fused, _ = schedule_with(case.module(), target, None)
    (func,) = [f for f in fused.functions.values() if isinstance(f, tirx.PrimFunc)]
    nest = match_conv2d(s_tir.Schedule(func))
    assert nest is not None
    return choose_panel_tile(nest, target)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
def test_resnet_tile_and_panel(target: CpuTarget) -> None:
    """ResNet-50's 64->256 at 56x56: 8 x 2 vectors (AVX-512) or 4 x 2 (AVX2); two panels of
    1568 positions with AVX-512 (401 KB of input each), four of 784 with AVX2 (256 KB budget)."""
    case = ConvCase(channels=64, filters=256, size=(56, 56), kernel=(1, 1), epilogue="residual")
    tile = _tile(case, target)
    assert tile is not None
    want = (8, 2, 16) if target.has_avx512 else (4, 2, 8)
    assert (tile.block_k, tile.vectors, tile.lanes) == want
    want_panel = 1568 if target.has_avx512 else 784  # 401 KB / 200 KB, even counts
    assert tile.panel == want_panel and 4 * 64 * tile.panel <= panel_bytes(target)


def test_avx2_takes_a_28x28_plane() -> None:
    """784 positions are 98 AVX2 vectors (2 x 49): tiles of two vectors divide them."""
    case = ConvCase(channels=128, filters=512, size=(28, 28), kernel=(1, 1))
    assert _tile(case, AVX2) == PanelTile(4, 2, 8, 112)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
def test_panels_fit_the_budget_and_the_cores(target: CpuTarget) -> None:
    """256->64 at 56x56: two cores take 14 panels of 224 (with AVX-512 448, 7 panels, fit)."""
    case = ConvCase(channels=256, filters=64, size=(56, 56), kernel=(1, 1))
    tile = _tile(case, target)
    assert tile is not None and tile.panel == 224
    assert panel_bytes(target) >= 4 * 256 * 224


class _BatchOfTwo:
    """A 48->64 1x1 convolution with a residual add on a batch of two 8x8 images."""

    def module(self) -> tvm.IRModule:
        rng = np.random.default_rng(0)
        weight = rng.standard_normal((64, 48, 1, 1)).astype(np.float32)
        x = relax.Var("x", relax.TensorType((2, 48, 8, 8), "float32"))
        r = relax.Var("r", relax.TensorType((2, 64, 8, 8), "float32"))
        bb = relax.BlockBuilder()
        with bb.function("main", [x, r]):
            with bb.dataflow():
                y = bb.emit(relax.op.nn.conv2d(x, relax.const(weight)))
                out = bb.emit_output(bb.emit(relax.op.add(y, r)))
            bb.emit_func_output(out)
        return bb.get()

    def inputs(self) -> list[np.ndarray]:
        rng = np.random.default_rng(1)
        return [
            rng.standard_normal((2, 48, 8, 8)).astype(np.float32),
            rng.standard_normal((2, 64, 8, 8)).astype(np.float32),
        ]


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
def test_a_batch_of_two_matches_unscheduled(target: CpuTarget) -> None:
    """Images and panels share the parallel loop; each image's panels are its own."""
    check_rule_matches_unscheduled(_BatchOfTwo(), target, Conv2dPointwiseRule())
