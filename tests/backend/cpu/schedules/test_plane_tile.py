"""The plane rule's tile choice: whole tiles on large planes, cut tiles where those lose.

A tile whose vectors do not divide the plane's leaves a guarded last tile,
whose accumulators LLVM keeps in memory; on planes of at least
``WHOLE_TILE_MIN_VECTORS`` vectors the rule takes tiles that divide the
plane unless they lose more than a third of the accumulators or need more
than one load per multiply-add. Correctness of such kernels is checked in
``test_conv2d_spatial.py`` (32x32 case).
"""

from __future__ import annotations

import pytest

from npuc.backend.cpu.schedules.plane_tile import (
    WHOLE_TILE_MAX_LOADS,
    WHOLE_TILE_MIN_VECTORS,
    PlaneTile,
    choose_plane_tile,
)
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import AVX2
from tests.backend.cpu.schedules.test_conv2d_spatial import _pointwise

AVX512 = CpuTarget(cpu_name="skylake-avx512", features=("avx2", "avx512f", "fma"), num_cores=2)


def _tile(shape: tuple[int, int, int, int], target: CpuTarget) -> PlaneTile:
    tile = choose_plane_tile(_pointwise(*shape), shape[2] ** 2, target)
    assert tile is not None
    return tile


def _vectors(tile: PlaneTile) -> int:
    return tile.pixels // tile.lanes


@pytest.mark.parametrize("target", [AVX512, AVX2], ids=lambda t: t.cpu_name)
@pytest.mark.parametrize(
    "shape", [(32, 16, 112, 1), (16, 32, 112, 1), (32, 64, 56, 1), (96, 24, 56, 1)], ids=str
)
def test_large_planes_take_whole_tiles(shape: tuple[int, int, int, int], target: CpuTarget) -> None:
    """MobileNetV2's and the orientation classifier's layers at 112x112 and 56x56: 4 x 6 (cut,
    784 = 130 x 6 + 4 vectors) before, now a tile dividing the plane."""
    tile = _tile(shape, target)
    plane_vectors = shape[2] ** 2 // tile.lanes
    assert plane_vectors >= WHOLE_TILE_MIN_VECTORS
    assert plane_vectors % _vectors(tile) == 0
    assert shape[1] % tile.block_k == 0


def test_small_planes_keep_cut_tiles() -> None:
    """28x28 with AVX-512 is 49 vectors (whole tiles 1 or 7 wide): the cut 4 x 6 stays."""
    tile = _tile((192, 32, 28, 1), AVX512)
    assert (tile.block_k, _vectors(tile)) == (4, 6)


def test_whole_tiles_with_more_than_one_load_per_fma_are_not_taken() -> None:
    """ShuffleNet's 34-channel groups at 28x28 with AVX2 (98 vectors): the best whole tile is
    1 x 7 (8 loads per 7 multiply-adds); the cut 2 x 5 stays."""
    tile = _tile((136, 136, 28, 4), AVX2)
    vectors = _vectors(tile)
    assert (tile.block_k, vectors) == (2, 5)
    assert (vectors + tile.block_k) / (vectors * tile.block_k) <= WHOLE_TILE_MAX_LOADS
