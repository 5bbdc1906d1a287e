"""The register tile of a plane-vectorised pointwise convolution (:mod:`conv2d_spatial`).

Requires: a matched 1x1 convolution (:class:`~npuc.backend.cpu.schedules.conv_match.ConvNest`)
and the target. Guarantees: :func:`choose_plane_tile` returns a tile whose ``block_k`` divides
the group's output channels and whose vectors are the target's float32 lanes (or the widest
4 or 8 dividing a plane smaller than one vector), or ``None``; a pure function of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from npuc.backend.cpu.schedules.conv2d import float_lanes
from npuc.backend.cpu.schedules.conv_match import ConvNest
from npuc.backend.cpu.schedules.loops import vector_factor
from npuc.core.target import CpuTarget


@dataclass(frozen=True, slots=True)
class PlaneTile:
    """``block_k`` output channels by ``pixels`` plane positions (``pixels // lanes`` vectors)."""

    block_k: int
    pixels: int
    lanes: int
    tail: bool = False
    """The plane ends in a partial vector (:func:`choose_plane_tile`)."""


def _accumulator_budget(target: CpuTarget) -> int:
    """Accumulator vectors of a plane tile: 24 of AVX-512's 32 registers, 12 of AVX2's 16.

    The rest hold the tile's input vectors or broadcast weights (a 2x13 tile
    of 4-lane vectors, 26 accumulators, ran ShuffleNet's 68-channel groups
    slower than 4x6).
    """
    return 24 if target.has_avx512 else 12


def _max_vectors(block_k: int, target: CpuTarget) -> int:
    """Plane vectors of a tile of ``block_k`` channels that stay in registers.

    Within :func:`_accumulator_budget`, and with the tile's input vectors too
    (LLVM loads each once per input channel and keeps it for the ``block_k``
    multiply-adds: ``block_k * vectors`` accumulators + ``vectors`` inputs +
    a broadcast, of 32 or 16 registers). ShuffleNet's 34-channel groups at
    28x28 (AVX-512, one thread): 2 x 12 vectors 72 us, 2 x 10 50 us.
    """
    registers = 32 if target.has_avx512 else 16
    return min(_accumulator_budget(target) // block_k, (registers - 1) // (block_k + 1))


#: Plane vectors from which a plane without a partial vector takes whole tiles
#: (:func:`choose_plane_tile`): 112x112, 80x80, 56x56 (and 28x28 with AVX2), not 28x28 with
#: AVX-512 (49 vectors: MobileNetV2's 192->32 ran 54 -> 62 us with 2 x 7 whole tiles).
WHOLE_TILE_MIN_VECTORS = 64

#: Share of a cut tile's useful accumulators that whole tiles must keep to be taken instead.
WHOLE_TILE_MIN_SHARE = 2 / 3

#: Most loads per multiply-add of a whole tile taken instead of a cut one (ShuffleNet's
#: 34-channel groups at 28x28 with AVX2: whole 1 x 7, 8 loads per 7, ran 93 -> 109 us against
#: the cut 2 x 5).
WHOLE_TILE_MAX_LOADS = 1.0


def choose_plane_tile(nest: ConvNest, plane: int, target: CpuTarget) -> PlaneTile | None:
    """The register tile for ``nest``'s ``plane`` (the output's ``H * W``), or ``None``.

    The vector length is the target's float32 lanes. A plane of at least one
    such vector that they do not divide (14x14, 7x7) ends in a partial
    vector (:data:`PlaneTile.tail`); a smaller plane takes the widest power of
    two (at least 4) dividing it, or ``None`` when there is none.
    ``block_k`` divides the group's output channels. Among the tiles within
    90% of the most accumulator vectors doing useful work (a cut tile counts
    its share), the fewest loads per multiply-add (``block_k`` broadcasts
    plus one input vector per column), then the most channels.

    The tile's vectors may leave the last tile of a plane cut at a vector,
    and with a partial vector the tiles are balanced (13 vectors as 5 + 5 +
    3, not 6 + 6 + 1). Without a partial vector, a cut tile's guarded
    vectors are not kept in registers: LLVM loads, multiply-adds and stores
    their accumulators on every input channel (MobileNetV2's 32->16 at
    112x112, 4 channels x 6 vectors: 784 = 130 x 6 + 4 vectors, 2 of the 6
    guarded). So a plane of at least :data:`WHOLE_TILE_MIN_VECTORS` vectors
    takes tiles whose vectors divide its own when they keep at least
    :data:`WHOLE_TILE_MIN_SHARE` of the accumulators (4 x 4 there) with at
    most :data:`WHOLE_TILE_MAX_LOADS` loads per multiply-add. One
    thread, each kernel alone, interleaved (cut -> whole): AVX-512
    MobileNetV2 32->16 at 112 163 -> 112 us, orientation 16->32 at 112 196 ->
    152, 32->64 at 56 151 -> 109, YOLOv8n 48->32 at 80 269 -> 192; AVX2
    MobileNetV2's plane kernels 3.61 -> 2.58 ms in all (16->96 at 112 903 ->
    691 us, 96->24 at 56 243 -> 152).
    """
    full = float_lanes(target)
    ragged = plane % full != 0 and plane >= full
    lanes = full if ragged else vector_factor(plane, full)
    if lanes is None:
        return None
    plane_vectors = -(-plane // lanes)
    cut = _best_tile(nest, plane_vectors, lanes, ragged, target, whole=False)
    if cut is None or ragged or plane_vectors < WHOLE_TILE_MIN_VECTORS:
        return None if cut is None else cut[1]
    whole = _best_tile(nest, plane_vectors, lanes, ragged, target, whole=True)
    if whole is None or whole[0] < WHOLE_TILE_MIN_SHARE * cut[0]:
        return cut[1]
    tile = whole[1]
    vectors = tile.pixels // tile.lanes
    loads = (vectors + tile.block_k) / (vectors * tile.block_k)
    return tile if loads <= WHOLE_TILE_MAX_LOADS else cut[1]


def _best_tile(
    nest: ConvNest, plane_vectors: int, lanes: int, ragged: bool, target: CpuTarget, whole: bool
) -> tuple[float, PlaneTile] | None:
    """The most useful accumulators and the tile :func:`choose_plane_tile` picks among all
    tiles, or among those whose vectors divide the plane's (``whole``)."""
    budget = _accumulator_budget(target)
    scored: list[tuple[float, float, PlaneTile]] = []
    for block_k in range(1, min(nest.group_out, budget) + 1):
        if nest.group_out % block_k:
            continue
        vectors = min(_max_vectors(block_k, target), plane_vectors)
        if whole:
            vectors = max(v for v in range(1, vectors + 1) if plane_vectors % v == 0)
        tiles = -(-plane_vectors // vectors)
        if ragged:
            vectors = -(-plane_vectors // tiles)
        useful = block_k * plane_vectors / tiles
        loads = (vectors + block_k) / (vectors * block_k)
        scored.append((useful, loads, PlaneTile(block_k, vectors * lanes, lanes, ragged)))
    if not scored:
        return None
    most = max(useful for useful, _, _ in scored)
    near = [s for s in scored if s[0] >= 0.9 * most]
    return most, min(near, key=lambda s: (s[1], -s[2].block_k))[2]
