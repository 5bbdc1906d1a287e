"""Schedule rule for a float32 2-D convolution (NCHW data, any stride/dilation/padding/groups).

The kernel: the output is cut into register tiles of ``block_k`` output
channels by ``tile_w`` output columns of one row. A tile's accumulators live
in a local buffer laid out ``[x, k]`` (``k`` innermost), which LLVM keeps in
vector registers; the reduction over input channels and kernel taps runs
inside the tile, each step one vector load of ``block_k`` packed weights and
``tile_w`` broadcast input values (fused multiply-adds). The epilogue (bias,
activation, clip, residual add) reads the accumulators as they leave the
registers and writes the NCHW output once.

Weights are read in a blocked layout ``[k // block_k, c, ky, kx, k % block_k]``
(OIHWio): the rule asks for the rewrite with a preprocessing block tagged
``meta_schedule.layout_rewrite_preproc``, which
:class:`~npuc.backend.cpu.prepack_weights.PrepackWeights` splits out and
evaluates at compile time, so the library holds the packed weights and does
no layout work at run time.

Tile sizes come from the target: ``block_k`` is one or two vectors of the
target's float32 lanes (16 with AVX-512, 8 with AVX2) and the number of
accumulator vectors stays within the register file (32 or 16 registers).
The tile loops over (image, channel block, row) run in parallel over the
cores. Depthwise convolutions are left to
:class:`~npuc.backend.cpu.schedules.depthwise.DepthwiseConv2dRule`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir, tirx

from npuc.backend.cpu.schedules.conv_match import (
    ConvNest,
    inline_epilogue,
    loops_by_iter,
    match_conv2d,
)
from npuc.core.target import CpuTarget

#: Annotation that makes PrepackWeights split a block out and fold it at compile time.
PREPROC_ATTR = "meta_schedule.layout_rewrite_preproc"


@dataclass(frozen=True, slots=True)
class ConvTile:
    """Register tile of one convolution: ``block_k`` output channels x ``tile_w`` columns.

    ``lanes`` is the vector length the channels are cut into: the target's
    float32 lanes, or a narrower power of two (down to 4) that divides
    ``block_k`` (24 channels are three 8-lane vectors, not one and a half of 16).
    ``block_k`` is always a whole number of such vectors.
    """

    block_k: int
    tile_w: int
    lanes: int

    @property
    def vectors(self) -> int:
        """Accumulator vectors per output column."""
        return self.block_k // self.lanes

    @property
    def loads_per_fma(self) -> float:
        """Weight vectors plus broadcast inputs loaded per fused multiply-add of the tile."""
        return (self.vectors + self.tile_w) / (self.vectors * self.tile_w)


def float_lanes(target: CpuTarget) -> int:
    """float32 elements in one of the target's widest vector registers."""
    return target.vector_bits // 32


def accumulator_budget(target: CpuTarget) -> int:
    """Vector registers the accumulators may take (the rest hold weights and broadcasts)."""
    return 24 if target.has_avx512 else 12


def _divisors(n: int, limit: int) -> list[int]:
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


def choose_tile(nest: ConvNest, target: CpuTarget) -> ConvTile | None:
    """The register tile with the most accumulator lanes, or ``None`` when none fits.

    ``block_k`` must divide the output channels of a group (a vector never
    spans two groups, so its input value is one broadcast) and be a whole
    number of vectors of 4 or more lanes; without such a divisor (odd channel
    counts) the rule declines and the fallback schedule runs the convolution. Ties are broken
    by :func:`_preference`.
    """
    return choose_tile_for(nest.group_out, nest.out_width, target)


def choose_tile_for(channels: int, out_width: int, target: CpuTarget) -> ConvTile | None:
    """:func:`choose_tile` for ``channels`` output channels (per group) and ``out_width`` columns.

    Shared by the NCHW and NHWC convolution rules (the tile is the same:
    channels in vectors, columns unrolled).
    """
    lanes = float_lanes(target)
    budget = accumulator_budget(target)
    best: ConvTile | None = None
    for block_k in _divisors(channels, 4 * lanes):
        width = _lanes_for(block_k, lanes)
        if width is None or block_k // width > budget:
            continue
        vectors = block_k // width
        tile = ConvTile(block_k, max(_divisors(out_width, budget // vectors)), width)
        if best is None or _preference(tile) > _preference(best):
            best = tile
    return best


class Conv2dRule:
    """Register-tiled, vectorised, parallel convolution with pre-packed weights."""

    name = "conv2d"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it holds one non-depthwise conv2d."""
        sch = s_tir.Schedule(func)
        nest = match_conv2d(sch)
        if nest is None or nest.is_depthwise:
            return None
        tile = choose_tile(nest, target)
        if tile is None:
            return None
        conv = sch.get_sblock(nest.block)
        pack_weights(sch, conv, nest, tile.block_k)
        if nest.pad_block is not None:
            _build_input(sch, sch.get_sblock(nest.pad_block), nest)
        schedule_conv(sch, nest, tile)
        return sch.mod["main"]


def pack_weights(
    sch: s_tir.Schedule, conv: s_tir.schedule.SBlockRV, nest: ConvNest, bk: int
) -> None:
    """Read the weights as ``[k // bk, c, ky, kx, k % bk]`` through a compile-time rewrite."""
    cached = sch.cache_read(conv, nest.weight_read, "global")
    sch.transform_layout(
        conv, ("read", nest.weight_read), lambda k, c, ky, kx: (k // bk, c, ky, kx, k % bk)
    )
    sch.annotate(cached, PREPROC_ATTR, True)


def schedule_conv(sch: s_tir.Schedule, nest: ConvNest, tile: ConvTile) -> None:
    """Apply the kernel of the module docstring to ``sch`` (in place); weights already packed."""
    conv = sch.get_sblock(nest.block)
    out = inline_epilogue(sch, conv, nest)

    n, k, y, x = sch.get_loops(out)
    ko, ki = sch.split(k, [None, tile.block_k])
    xo, xi = sch.split(x, [None, tile.tile_w])
    if nest.subsamples:
        # Strided: the rows of one output row are read once for all channel blocks.
        sch.reorder(n, y, ko, xo, ki, xi)
    else:
        # Stride 1: the weights of one channel block stay in cache over the rows.
        sch.reorder(n, ko, y, xo, ki, xi)
    outer = sch.fuse(*sch.get_loops(out)[:3])
    sch.parallel(outer)
    sch.compute_at(conv, xo)
    sch.set_scope(conv, 0, "local")
    # Accumulators [x][k]: k innermost so a vector of channels is contiguous.
    sch.transform_layout(conv, ("write", 0), lambda n_, k_, y_, x_: (n_, y_, x_, k_))

    roles = loops_by_iter(sch, conv, first=2)
    reduction = [roles[i] for i in (4, 5, 6) if i in roles]
    columns = [roles[3]] if 3 in roles else []  # absent when the tile is one column
    sch.reorder(*reduction, *columns, roles[1])
    vectorize_channels(sch, roles[1], tile)
    for column in columns:
        sch.unroll(column)
    init = sch.decompose_reduction(conv, reduction[0])
    vectorize_channels(sch, sch.get_loops(init)[-1], tile)
    sch.vectorize(xi)


def vectorize_channels(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV, tile: ConvTile) -> None:
    """Vectorise a ``block_k`` loop as ``tile.vectors`` unrolled vectors of ``tile.lanes``."""
    if tile.vectors > 1:
        outer, inner = sch.split(loop, [tile.vectors, tile.lanes])
        sch.unroll(outer)
        sch.vectorize(inner)
    else:
        sch.vectorize(loop)


def _build_input(sch: s_tir.Schedule, pad: s_tir.schedule.SBlockRV, nest: ConvNest) -> None:
    """Build the padded input in parallel over (image, channel, row); ``[n, y, c, x]`` for 1x1.

    A 1x1 kernel reads one input row per channel and reduction step: stored
    channel-interleaved, the rows one output row needs are a few contiguous
    pages instead of one page per channel. (Larger kernels read several rows
    of a channel per step and keep NCHW.)
    """
    if nest.kernel_h == nest.kernel_w == 1:
        sch.transform_layout(pad, ("write", 0), lambda n, c, y, x: (n, y, c, x))
    loops = sch.get_loops(pad)
    if len(loops) == 4:
        sch.parallel(sch.fuse(*loops[:3]))
