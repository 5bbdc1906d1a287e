"""Register tiles of the float32 convolution rule: which ``block_k`` x ``tile_w`` to use.

Split out of :mod:`.conv2d` (which re-exports these names). ``block_k`` is one
or two vectors of the target's float32 lanes (16 with AVX-512, 8 with AVX2),
``tile_w`` divides the output width, and the accumulator vectors stay within
the register file (:func:`accumulator_budget`; two-vector AVX-512 tiles up to
:data:`PAIR_ACCUMULATORS`). Channel blocks whose packed weights would not stay
in L2 take narrower blocks and wider rows (:data:`WEIGHT_BLOCK_BYTES`).

Requires: a matched convolution (:class:`~.conv_match.ConvNest`) and the target.
Guarantees: a tile whose vectors fit the register budget, or ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from npuc.backend.cpu.schedules.conv_match import ConvNest
from npuc.core.target import CpuTarget


@dataclass(frozen=True, slots=True)
class ConvTile:
    """Register tile of one convolution: ``block_k`` output channels x ``tile_w`` columns.

    ``lanes`` is the vector length the channels are cut into: the target's
    float32 lanes, or a narrower power of two (down to 4) that divides
    ``block_k`` (24 channels are three 8-lane vectors, not one and a half of 16).
    ``block_k`` is always a whole number of such vectors. ``rows`` output rows
    share the tile (:func:`_two_rows`; the weight vectors are loaded once for all).
    """

    block_k: int
    tile_w: int
    lanes: int
    rows: int = 1

    @property
    def vectors(self) -> int:
        """Accumulator vectors per output column."""
        return self.block_k // self.lanes

    @property
    def loads_per_fma(self) -> float:
        """Weight vectors plus broadcast inputs loaded per fused multiply-add of the tile."""
        columns = self.tile_w * self.rows
        return (self.vectors + columns) / (self.vectors * columns)


def float_lanes(target: CpuTarget) -> int:
    """float32 elements in one of the target's widest vector registers."""
    return target.vector_bits // 32


def accumulator_budget(target: CpuTarget) -> int:
    """Vector registers the accumulators may take (the rest hold weights and broadcasts).

    26 of AVX-512's 32 leaves two weight vectors and one broadcast: a 13-column
    row (SqueezeNet's 13x13 layers) then takes 32 channels x 13 columns, not
    16 x 13, which loads one broadcast per fused multiply-add (its 1x1 layers
    ran 1.15-1.25x faster, one thread). 13 of the 16 registers of AVX2 (and
    SSE) leave one weight vector and one broadcast, so a 13-column row takes
    one vector of channels x 13 columns; with 12 its only tiles were one
    column wide (4 accumulators, latency-bound): SqueezeNet's 512->1000 1x1
    layer at 13x13 went 5.5 -> 1.7 ms and the model's kernels 13.5 -> 8.3 ms,
    compiled for Haswell, one thread, CPU time (``bench/cpu_kernels.py
    --isa avx2``). Other widths get the same tiles as with 12.
    """
    return 26 if target.has_avx512 else 13


def divisors(n: int, limit: int) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _lanes_for(block_k: int, lanes: int) -> int | None:
    """The widest power-of-two vector length <= ``lanes`` (at least 4) dividing ``block_k``.

    ``None`` when there is none: a vector of odd length (34 channels of a
    ShuffleNet group) is split by LLVM into pieces and ran 4x slower than the
    fallback schedule.
    """
    width = lanes
    while width > 4 and block_k % width:
        width //= 2
    return width if block_k % width == 0 else None


def _preference(tile: ConvTile) -> tuple[int, int, float]:
    """Most accumulator lanes, then two vectors of channels, then fewest loads per FMA.

    Measured on ResNet-50's 1x1 layers (AVX-512, one thread): 32 channels x 8
    columns ran 1.6x faster than 64 x 4, which loads less per FMA.
    """
    return (tile.block_k * tile.tile_w, -abs(tile.vectors - 2), -tile.loads_per_fma)


#: Independent accumulator chains that keep both FMA ports busy (latency 4 cycles x 2 ports).
FMA_CHAINS = 8

#: Share of the most accumulator lanes a cheaper AVX2 tile must keep (:func:`_cheapest`).
CHEAPER_MIN_SHARE = 3 / 4


def fma_cycles(tile: ConvTile) -> float:
    """Estimated cycles of one FMA port per fused multiply-add of ``tile`` on AVX2: at least 1;
    more when the tile's loads (two load ports) or its accumulator chains (:data:`FMA_CHAINS`)
    cannot keep two FMAs per cycle going."""
    accumulators = tile.vectors * tile.tile_w
    return max(1.0, tile.loads_per_fma, FMA_CHAINS / accumulators)


def _cheapest(tiles: list[ConvTile], target: CpuTarget) -> ConvTile:
    """The tile with the most accumulator lanes (:func:`_preference`); without AVX-512, the
    one of fewest :func:`fma_cycles` among those keeping :data:`CHEAPER_MIN_SHARE` of its lanes.

    AVX2 has no broadcast operand: a one-vector tile loads a weight vector and a broadcast
    per column, more than one load per multiply-add. SqueezeNet's 16->64 3x3 layer at 55x55
    (AVX2 code, one thread, CPU time, interleaved, /tmp/h14/tiles.py): 8 x 11 (12 loads per
    11 FMAs) 773 us, 16 x 5 (7 per 10) 582 us. The estimate also ranks the measured losers:
    8 x 8 against 16 x 4 at 56 columns (1.08x slower), 8 x 7 against 32 x 2 at 14 (1.17x).
    """
    best = max(tiles, key=_preference)
    if target.has_avx512:
        return best
    lanes = best.block_k * best.tile_w
    near = [t for t in tiles if t.block_k * t.tile_w >= CHEAPER_MIN_SHARE * lanes]
    return min(near, key=lambda t: (fma_cycles(t), *(-v for v in _preference(t))))


#: Bytes of packed weights one channel block may hold: every tile of the block reads all of
#: them, so they must stay in L2 while the input streams past (VGG-19's 512-channel 3x3 layer at
#: 28x28 ran 1.3x faster with 16 channels x 14 columns, 295 KB, than 64 x 4, 1.2 MB).
WEIGHT_BLOCK_BYTES = 512 * 1024


def choose_tile(nest: ConvNest, target: CpuTarget) -> ConvTile | None:
    """The register tile for ``nest``, or ``None`` when none fits.

    ``block_k`` must divide the output channels of a group (a vector never
    spans two groups, so its input value is one broadcast) and be a whole
    number of vectors of 4 or more lanes; without such a divisor (odd channel
    counts) the rule declines and the fallback schedule runs the convolution.
    Among the tiles, the one with the most accumulator lanes (ties broken by
    :func:`_preference`), unless its channel block's weights exceed
    :data:`WEIGHT_BLOCK_BYTES`: then the best tile within that size that keeps
    at least 3/4 of those lanes. The AVX-512 two-vector tile of
    :func:`_pair_tile` replaces it when it has more lanes and its weights fit.
    """
    tiles = _tiles(nest.group_out, nest.out_width, target)
    if not tiles:
        return None
    if _seven_column_pairs(nest, target):
        return ConvTile(float_lanes(target), 7, float_lanes(target), rows=2)
    best = _cheapest(tiles, target)
    per_channel = 4 * nest.group_in * nest.kernel_h * nest.kernel_w
    small = [
        t
        for t in tiles
        if t.block_k * per_channel <= WEIGHT_BLOCK_BYTES
        and 4 * t.block_k * t.tile_w >= 3 * best.block_k * best.tile_w
    ]
    if best.block_k * per_channel > WEIGHT_BLOCK_BYTES and small:
        best = max(small, key=_preference)
    pair = _pair_tile(nest.group_out, nest.out_width, target)
    if (
        pair is not None
        and pair.block_k * per_channel <= WEIGHT_BLOCK_BYTES
        and pair.block_k * pair.tile_w > best.block_k * best.tile_w
    ):
        return pair
    return _two_rows(best, nest, target)


def _seven_column_pairs(nest: ConvNest, target: CpuTarget) -> bool:
    """Whether, without AVX-512, an ungrouped stride-1 convolution with a spatial kernel
    (3x3), at least a vector of input and output channels, and rows that 7 divides takes one
    vector of channels x 7 columns x 2 rows (14 accumulators, the most the 16 registers hold
    with a weight vector and a broadcast).

    :func:`_cheapest` ranks 32 x 2 and 16 x 4 (8 accumulators, 6 loads per 8 FMAs) ahead
    of it (15 loads per 14), but they read 4-8x more weight bytes per multiply-add, from L2
    (a channel block's weights exceed L1). ResNet-50's 3x3 layers, AVX2 code, kernel alone,
    one thread, CPU time, interleaved (/tmp/h15/rows4.py, two runs of 15 rounds): 256 at
    14x14 0.94-0.95x (against 32 x 2), 128 at 28x28 0.96-0.98x and 64 at 56x56 0.94-0.96x
    (against 16 x 4). Not taken for 1x1 (256->64 and 64->256 at 56, 128->512 at 28:
    0.99-1.01x) nor stride 2 (128 at 56 -> 28: 1.03x).
    """
    lanes = float_lanes(target)
    return (
        not target.has_avx512
        and nest.groups == 1
        and nest.kernel_h * nest.kernel_w > 1
        and not nest.subsamples
        and nest.out_width % 7 == 0
        and nest.out_height >= 2
        and nest.group_in >= lanes
        and nest.group_out % lanes == 0
    )


#: Vector registers of AVX2 (and SSE): a two-row tile's accumulators, weight vectors and
#: broadcast must fit in them (:func:`_two_rows`).
AVX2_REGISTERS = 16


def _two_rows(tile: ConvTile, nest: ConvNest, target: CpuTarget) -> ConvTile:
    """``tile`` over two output rows when, without AVX-512, it has fewer than
    :data:`FMA_CHAINS` accumulators and twice as many still fit the registers with its weight
    vectors and one broadcast; else ``tile``.

    A row of 7 columns (7x7, 14x14 planes) takes 8 channels x 7 columns: 7 independent
    accumulator chains, latency-bound (no other tile of whole columns did better). Two rows
    make 14 chains reading each weight vector once. An odd last row is a tail under a test
    that LLVM moves out of the reduction (two loop versions). ResNet-50's 512-channel 3x3 at
    7x7, AVX2 code, kernel alone, 1 thread CPU time, interleaved (/tmp/h15/rows2.py): 0.89x.
    """
    accumulators = tile.vectors * tile.tile_w
    if (
        target.has_avx512
        or nest.out_height < 2
        or accumulators >= FMA_CHAINS
        or 2 * accumulators + tile.vectors + 1 > AVX2_REGISTERS
    ):
        return tile
    return replace(tile, rows=2)


#: Accumulators of a two-vector AVX-512 tile (:func:`_pair_tile`): 28 of the 32 registers.
PAIR_ACCUMULATORS = 28


def _pair_tile(channels: int, out_width: int, target: CpuTarget) -> ConvTile | None:
    """Two vectors of channels by up to 14 columns on AVX-512 (:data:`PAIR_ACCUMULATORS`).

    The two weight vectors take two registers and LLVM folds the broadcast
    input into the multiply-add (``{1to16}``), so 28 accumulators fit where
    :func:`accumulator_budget` allows 26 (13 columns): 14-wide rows (and 28,
    56, 112) take 32 channels x 14 columns instead of 32 x 7 (or 64 x 4, 32 x
    8). ResNet-50's 3x3 layers alone, one thread, CPU time, L2 flushed
    between calls: 256 ch at 14x14 0.89x, 128 at 28x28 0.87x, 64 at 56x56
    0.93x. ``None`` without AVX-512, when two vectors do not divide
    ``channels`` or when no divisor of ``out_width`` above 1 is at most 14.
    """
    lanes = float_lanes(target)
    if not target.has_avx512 or channels % (2 * lanes):
        return None
    columns = max(divisors(out_width, PAIR_ACCUMULATORS // 2))
    return ConvTile(2 * lanes, columns, lanes) if columns > 1 else None


def _tiles(channels: int, out_width: int, target: CpuTarget) -> list[ConvTile]:
    """Every tile of whole vectors within the register budget (widest columns per block)."""
    lanes = float_lanes(target)
    budget = accumulator_budget(target)
    tiles = []
    for block_k in divisors(channels, 4 * lanes):
        width = _lanes_for(block_k, lanes)
        if width is None or block_k // width > budget:
            continue
        vectors = block_k // width
        tiles.append(ConvTile(block_k, max(divisors(out_width, budget // vectors)), width))
    return tiles


def choose_tile_for(channels: int, out_width: int, target: CpuTarget) -> ConvTile | None:
    """The tile with the most accumulator lanes for ``channels`` (per group) x ``out_width``.

    Used by the NHWC convolution rule (the tile is the same: channels in
    vectors, columns unrolled); ties are broken by :func:`_preference`.
    """
    tiles = _tiles(channels, out_width, target)
    return _cheapest(tiles, target) if tiles else None
