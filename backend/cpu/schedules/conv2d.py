"""Schedule rule for a float32 2-D convolution (NCHW data, any stride/dilation/padding/groups).

The kernel: the output is cut into register tiles of ``block_k`` output
channels by ``tile_w`` output columns of one row. A tile's accumulators live
in a local buffer laid out ``[x, k]`` (``k`` innermost), which LLVM keeps in
vector registers; the reduction over input channels and kernel taps runs
inside the tile, each step one vector load of ``block_k`` packed weights and
``tile_w`` broadcast input values (fused multiply-adds). The epilogue (bias,
activation, clip, residual add) reads the accumulators as they leave the
registers and writes the NCHW output once.

The input is copied per call into channel blocks, ``[n, c // cb, y, x, c %
cb]`` (NCHWc, ``cb`` the largest divisor of the group's input channels up to
one vector), padded when the convolution pads; a strided 1x1 convolution
copies only the pixels it samples. Up to :data:`TINY_CHANNELS` input
channels (an RGB image) the input is read in place (NCHW, padded copy only
when the convolution pads): its reduction is a handful of taps per channel.
The reduction runs over ``(c // cb, ky, kx, c % cb)``, so a tile reads a
few contiguous lines per channel block instead of one page per input channel
(NCHW planes, a TLB miss each: VGG-19's 256-channel 3x3 layer at 56x56 ran
1.9x faster). The copy costs one pass over the input.

Weights are read in the matching blocked layout ``[k // block_k, c // cb, ky,
kx, c % cb, k % block_k]``: the rule asks for the rewrite with a preprocessing block tagged
``meta_schedule.layout_rewrite_preproc``, which
:class:`~npuc.backend.cpu.prepack_weights.PrepackWeights` splits out and
evaluates at compile time, so the library holds the packed weights and does
no layout work at run time.

Tile sizes come from the target: ``block_k`` is one or two vectors of the
target's float32 lanes (16 with AVX-512, 8 with AVX2) and the number of
accumulator vectors stays within the register file (26 of 32, or 12 of 16
registers). ``tile_w`` divides the output width. A 1x1 stride-1 convolution
whose output channels are no whole number of vectors (SqueezeNet's 1000) is
computed on channels padded to two vectors (zero weights, packed at compile
time); the epilogue stores only the real channels.
Channel blocks whose packed weights would not stay in L2 take narrower
blocks and wider rows (:data:`WEIGHT_BLOCK_BYTES`). The tile loops over
(image, channel block, row) run in parallel over the cores. Depthwise convolutions are left to
:class:`~npuc.backend.cpu.schedules.depthwise.DepthwiseConv2dRule`.
"""

from __future__ import annotations

from dataclasses import replace

import tvm
from tvm import s_tir, tirx

from npuc.backend.cpu.schedules.conv_match import (
    ConvNest,
    inline_epilogue,
    loops_by_iter,
    match_conv2d,
)
from npuc.backend.cpu.schedules.conv_tile import (  # re-exported: the rules import them here
    PAIR_ACCUMULATORS,
    WEIGHT_BLOCK_BYTES,
    ConvTile,
    accumulator_budget,
    choose_tile,
    choose_tile_for,
    divisors,
    float_lanes,
)
from npuc.core.target import CpuTarget

__all__ = [
    "PAIR_ACCUMULATORS",
    "PREPROC_ATTR",
    "TINY_CHANNELS",
    "WEIGHT_BLOCK_BYTES",
    "Conv2dRule",
    "ConvTile",
    "accumulator_budget",
    "channel_block",
    "choose_tile",
    "choose_tile_for",
    "float_lanes",
    "pack_weights",
    "padded_out_channels",
    "schedule_conv",
    "vectorize_channels",
]

#: Annotation that makes PrepackWeights split a block out and fold it at compile time.
PREPROC_ATTR = "meta_schedule.layout_rewrite_preproc"


class Conv2dRule:
    """Register-tiled, vectorised, parallel convolution with pre-packed weights."""

    name = "conv2d"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it holds one non-depthwise conv2d."""
        sch = s_tir.Schedule(func)
        nest = match_conv2d(sch)
        if nest is None or nest.is_depthwise:
            return None
        weight_pad = None
        padded = _pad_channels(func, nest, target)
        if padded is not None:
            sch, nest, weight_pad = padded
        tile = choose_tile(nest, target)
        if tile is None:
            return None
        conv = sch.get_sblock(nest.block)
        cb = (
            1
            if nest.group_in <= TINY_CHANNELS
            else channel_block(nest.group_in, float_lanes(target))
        )
        pack_weights(sch, conv, nest, tile.block_k, cb)
        if weight_pad is not None:  # zeros for the padded channels, packed at compile time
            sch.compute_inline(sch.get_sblock(weight_pad))
        if nest.group_in <= TINY_CHANNELS:
            # The first layer (RGB): nothing to gain from a copy; read NCHW as it is.
            if nest.pad_block is not None:
                pad = sch.get_sblock(nest.pad_block)
                sch.parallel(sch.fuse(*sch.get_loops(pad)[:3]))
        elif (
            nest.kernel_h == nest.kernel_w == 1
            and nest.groups == 1
            and nest.subsamples
            and min(nest.out_height, nest.out_width) > 1  # reindex drops unit axes
        ):
            _gather_pixels(sch, conv, nest, cb)
        else:
            if nest.pad_block is not None:
                copy = sch.get_sblock(nest.pad_block)
            else:
                copy = sch.cache_read(conv, 1 - nest.weight_read, "global")
            _build_input(sch, copy, cb)
        schedule_conv(sch, nest, tile, cb)
        return sch.mod["main"]


#: Input channels per group up to which the input is read in place (NCHW, no channel blocks).
TINY_CHANNELS = 4


def _pad_channels(
    func: tirx.PrimFunc, nest: ConvNest, target: CpuTarget
) -> tuple[s_tir.Schedule, ConvNest, str] | None:
    """Compute a pointwise convolution's output channels up to a whole number of vectors.

    SqueezeNet's 512 -> 1000 1x1 layer: 1000 = 8 x 125 has no divisor that is
    a multiple of 16, so on AVX-512 its channel blocks were 8-lane (half-width)
    vectors. For an ungrouped, unstrided, unpadded 1x1 convolution whose
    output channels are not a multiple of the target's lanes, the convolution
    block is padded (``pad_einsum``) to the next multiple: the padded weights
    are zeros (folded into the packing at compile time) and the epilogue
    stores only the real channels. Returns a schedule of ``func`` with the
    padded block, the nest with ``out_channels`` rounded up, and the name of
    the weight-padding block; ``None`` when the case does not apply.
    """
    padded = padded_out_channels(nest, target)
    if padded == nest.out_channels:
        return None
    lanes = float_lanes(target)
    sch = s_tir.Schedule(func)
    conv = sch.get_sblock(nest.block)
    try:
        # Without the unit kernel iterators the reads are plain indices (an einsum).
        sch.transform_block_layout(conv, lambda n, k, y, x, c, ky, kx: (n, k, y, x, c))
        sch.pad_einsum(conv, [1, 2 * lanes, 1, 1, 1])
    except (tvm.error.InternalError, s_tir.ScheduleError):
        return None  # e.g. a stride in x only: the input read is not an einsum
    weight = sch.get(conv).reads[nest.weight_read].source
    (weight_pad,) = [
        b for b in sch.get_producers(conv) if sch.get(b).writes[0].source.same_as(weight)
    ]
    (unpad,) = sch.get_consumers(conv)
    epilogue = nest.epilogue
    if epilogue:
        sch.compute_inline(unpad)  # the epilogue reads the padded result directly
    else:
        epilogue = (sch.get(unpad).name_hint,)  # the copy-out is the output block
    return sch, replace(nest, out_channels=padded, epilogue=epilogue), sch.get(weight_pad).name_hint


def padded_out_channels(nest: ConvNest, target: CpuTarget) -> int:
    """The output channels the rule computes ``nest`` on: rounded up to two vectors for an
    ungrouped 1x1 convolution of more than :data:`TINY_CHANNELS` inputs whose channels are
    not a whole number of vectors and whose rows are not subsampled (:func:`_pad_channels`),
    else ``nest.out_channels``."""
    lanes = float_lanes(target)
    if (
        nest.groups != 1
        or (nest.kernel_h, nest.kernel_w) != (1, 1)
        or nest.out_channels % lanes == 0
        or nest.group_in <= TINY_CHANNELS
        or nest.in_height != nest.out_height
    ):
        return nest.out_channels
    return -(-nest.out_channels // (2 * lanes)) * 2 * lanes


def channel_block(group_in: int, lanes: int) -> int:
    """Input channels stored together per pixel: the largest divisor of ``group_in`` <= lanes."""
    return max(divisors(group_in, lanes))


def pack_weights(
    sch: s_tir.Schedule, conv: s_tir.schedule.SBlockRV, nest: ConvNest, bk: int, cb: int = 1
) -> None:
    """Read the weights as ``[k // bk, c // cb, ky, kx, c % cb, k % bk]`` (compile-time rewrite).

    With ``cb == 1`` the layout is ``[k // bk, c, ky, kx, k % bk]``.
    """
    cached = sch.cache_read(conv, nest.weight_read, "global")
    if cb == 1:
        sch.transform_layout(
            conv, ("read", nest.weight_read), lambda k, c, ky, kx: (k // bk, c, ky, kx, k % bk)
        )
    else:
        sch.transform_layout(
            conv,
            ("read", nest.weight_read),
            lambda k, c, ky, kx: (k // bk, c // cb, ky, kx, c % cb, k % bk),
        )
    sch.annotate(cached, PREPROC_ATTR, True)


def schedule_conv(sch: s_tir.Schedule, nest: ConvNest, tile: ConvTile, cb: int = 1) -> None:
    """Apply the kernel of the module docstring to ``sch`` (in place); weights already packed."""
    conv = sch.get_sblock(nest.block)
    out = inline_epilogue(sch, conv, nest)

    n, k, y, x = sch.get_loops(out)
    ko, ki = sch.split(k, [None, tile.block_k])
    xo, xi = sch.split(x, [None, tile.tile_w])
    # The weights of one channel block stay in cache over the rows (also when strided: with
    # the rows outermost, ResNet-50's 1x1 stride-2 layer re-read its 8 MB of weights per row).
    if tile.rows > 1:  # an odd last row runs under a test
        y, yi = sch.split(y, [None, tile.rows])
        sch.reorder(n, ko, y, xo, ki, yi, xi)
    else:
        sch.reorder(n, ko, y, xo, ki, xi)
    outer = sch.fuse(*sch.get_loops(out)[:3])
    sch.parallel(outer)
    sch.compute_at(conv, xo)
    sch.set_scope(conv, 0, "local")
    # Accumulators [x][k]: k innermost so a vector of channels is contiguous.
    sch.transform_layout(conv, ("write", 0), lambda n_, k_, y_, x_: (n_, y_, x_, k_))

    roles = loops_by_iter(sch, conv, first=2)
    taps = [roles[i] for i in (5, 6) if i in roles]
    channels = [roles[4]] if 4 in roles else []
    if channels and nest.group_in > cb:
        channels = list(sch.split(channels[0], [None, cb]))
        reduction = [channels[0], *taps, channels[1]]
    else:
        reduction = [*taps, *channels]
    # The tile's rows (only with tile.rows > 1) and columns (absent when one column).
    columns = [roles[i] for i in (2, 3) if i in roles]
    sch.reorder(*reduction, *columns, roles[1])
    vectorize_channels(sch, roles[1], tile)
    for column in columns:
        sch.unroll(column)
    if reduction:  # none with one input channel and a 1x1 kernel: a scaled copy
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


def _build_input(sch: s_tir.Schedule, copy: s_tir.schedule.SBlockRV, cb: int) -> None:
    """Store the (padded) input as ``[n, c // cb, y, x, c % cb]``, built in parallel over rows."""
    sch.transform_layout(copy, ("write", 0), lambda n, c, y, x: (n, c // cb, y, x, c % cb))
    sch.transform_block_layout(copy, lambda n, c, y, x: (n, c // cb, y, x, c % cb))
    _parallel_copy(sch, copy, cb)


def _parallel_copy(sch: s_tir.Schedule, copy: s_tir.schedule.SBlockRV, cb: int) -> None:
    loops = sch.get_loops(copy)
    sch.parallel(sch.fuse(*loops[:3]))
    if cb > 1:
        sch.vectorize(loops[-1])


def _gather_pixels(
    sch: s_tir.Schedule, conv: s_tir.schedule.SBlockRV, nest: ConvNest, cb: int
) -> None:
    """Copy only the pixels a strided 1x1 convolution reads, as ``[n, c // cb, y, x, c % cb]``."""
    copy = sch.reindex(conv, ("read", 1 - nest.weight_read))  # [n, y, x, c], output-sized
    if nest.pad_block is not None:
        sch.compute_inline(sch.get_sblock(nest.pad_block))
    sch.transform_layout(copy, ("write", 0), lambda n, y, x, c: (n, c // cb, y, x, c % cb))
    sch.transform_block_layout(copy, lambda n, y, x, c: (n, c // cb, y, x, c % cb))
    _parallel_copy(sch, copy, cb)
