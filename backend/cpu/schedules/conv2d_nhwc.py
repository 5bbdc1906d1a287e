"""Schedule rules for float32 channels-last (NHWC) convolutions: TFLite models as they come.

Channels-last is the layout a CPU convolution wants: the output channels of
one pixel are contiguous, so they are the vector lanes, with no layout
transform at run time.

:class:`Conv2dNhwcRule` (one group, ``weight[ry, rx, c, k]``): the output is
cut into register tiles of ``block_k`` channels by ``tile_w`` columns of one
row (:func:`~npuc.backend.cpu.schedules.conv2d.choose_tile_for`, the NCHW
rule's tile). A tile's accumulators are a local ``[x, k]`` buffer kept in
vector registers; each reduction step (kernel row, column, input channel) is
one vector load of ``block_k`` packed weights and ``tile_w`` broadcast inputs.
Weights are packed at compile time to ``[k // block_k, ry, rx, c, k % block_k]``
(a block tagged ``meta_schedule.layout_rewrite_preproc``, folded by
:class:`~npuc.backend.cpu.prepack_weights.PrepackWeights`). Tiles over
(image, channel block, row) run in parallel. A 1x1 convolution whose channels
are not whole vectors may be computed on them padded (:func:`padded_nhwc_channels`).

:class:`DepthwiseConv2dNhwcRule` (``weight[ry, rx, c, 1]``): each output row
is one parallel task; it is computed in strips of ``strip`` columns whose
accumulators (``strip x channels``) stay in registers; each kernel tap is one
vector load of inputs and one of weights per column and vector of channels.
With a stride of 2 or more the padded input rows of an output row are built
inside its task.

Both run on the calling thread alone below
:data:`~npuc.backend.cpu.schedules.loops.PARALLEL_MIN_MACS` multiply-adds
(:func:`worth_threads`). Both compute the epilogue (bias, activation, clip, residual add, TFLite's
channel-padded residual) as the accumulators are written out
(:func:`~npuc.backend.cpu.schedules.nhwc_match.gather_epilogue`). A padded
input is built by its own parallel, vectorised loop nest; an unpadded copy is
inlined.
"""

from __future__ import annotations

from dataclasses import replace

from tvm import s_tir, tirx
from tvm.ir import TensorLoad
from tvm.s_tir.schedule import LoopRV
from tvm.s_tir.schedule import SBlockRV as BlockRV

from npuc.backend.cpu.schedules.conv2d import (
    PREPROC_ATTR,
    ConvTile,
    accumulator_budget,
    choose_tile_for,
    float_lanes,
    vectorize_channels,
)
from npuc.backend.cpu.schedules.conv_match import loops_by_iter
from npuc.backend.cpu.schedules.fallback import attempt, schedule_block
from npuc.backend.cpu.schedules.loops import MIN_LANES, PARALLEL_MIN_MACS, extent, vector_factor
from npuc.backend.cpu.schedules.nhwc_match import NhwcConv, gather_epilogue, match_nhwc_conv
from npuc.core.target import CpuTarget


class Conv2dNhwcRule:
    """Register-tiled NHWC convolution with pre-packed weights (see the module docstring)."""

    name = "conv2d_nhwc"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it holds one NHWC conv2d of one group."""
        sch = s_tir.Schedule(func)
        conv = match_nhwc_conv(sch)
        if conv is None or conv.depthwise:
            return None
        weight_pad: tuple[str, ...] = ()
        padded = _pad_out_channels(func, conv, target)
        if padded is not None:
            sch, conv, weight_pad = padded
        tile = choose_tile_for(conv.out_channels, conv.out_width, target)
        if tile is None:  # no power-of-two vector divides the channels: the fallback runs it
            return None
        _pack_weights(sch, conv, tile.block_k)
        for name in weight_pad:  # zeros for the padded channels, packed at compile time
            sch.compute_inline(sch.get_sblock(name))
        _prepare_input(sch, conv, target)
        out = gather_epilogue(sch, conv)
        if out is None or not _schedule_conv(sch, conv, out, tile):
            return None
        return sch.mod["main"]


class DepthwiseConv2dNhwcRule:
    """Row-parallel, channel-vectorised NHWC depthwise convolution (see the module docstring)."""

    name = "depthwise_conv2d_nhwc"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it holds one NHWC depthwise conv2d."""
        sch = s_tir.Schedule(func)
        conv = match_nhwc_conv(sch)
        if conv is None or not conv.depthwise:
            return None
        if not conv.subsamples:
            _prepare_input(sch, conv, target)
        out = gather_epilogue(sch, conv)
        if out is None or not _schedule_depthwise(sch, conv, out, target):
            return None
        return sch.mod["main"]


def padded_nhwc_channels(conv: NhwcConv, target: CpuTarget) -> int:
    """The output channels :class:`Conv2dNhwcRule` computes ``conv`` on.

    A 1x1 convolution whose channels are not a whole number of vectors is computed on
    them rounded up to one when the padded tile holds more real outputs (accumulator
    lanes of real channels) than the best tile of the real channel count, or when that
    count has none (42). BlazeFace on AVX-512, one thread: 42 channels 171 -> 36 us (was
    the fallback), 28 (one 4-lane vector x 16 columns): 161 -> 77 us, 36: 59 -> 29 us,
    88: 54 -> 34 us, 56: 23 -> 17 us. 24 channels (three 8-lane vectors x 8 columns, the
    same real outputs as 32 x 8) keep theirs: padded to 32 they took 96 us instead of 59
    (the partial vector of the output is stored lane by lane). Any other convolution
    keeps ``conv.out_channels``.
    """
    lanes = float_lanes(target)
    if conv.depthwise or (conv.kernel_h, conv.kernel_w) != (1, 1) or conv.out_channels % lanes == 0:
        return conv.out_channels
    padded = -(-conv.out_channels // lanes) * lanes
    tile = choose_tile_for(conv.out_channels, conv.out_width, target)
    wide = choose_tile_for(padded, conv.out_width, target)
    if wide is None:
        return conv.out_channels
    if tile is not None and tile.block_k * tile.tile_w >= conv.out_channels * wide.tile_w:
        return conv.out_channels
    return padded


def _pad_out_channels(
    func: tirx.PrimFunc, conv: NhwcConv, target: CpuTarget
) -> tuple[s_tir.Schedule, NhwcConv, tuple[str, ...]] | None:
    """A schedule of ``func`` whose 1x1 convolution block computes :func:`padded_nhwc_channels`.

    The weights are read as ``[c, k]`` (a copy) and the block, without its unit kernel
    iterators, is padded with ``pad_einsum``: the padded weights are zeros, and the
    epilogue reads the padded result and stores only the real channels. Returns the
    schedule, ``conv`` with the padded ``out_channels``, and the weight blocks (padding,
    copy) to inline into the packing, which folds them at compile time; ``None`` when
    padding does not apply or the block is not an einsum (a strided read).
    """
    padded = padded_nhwc_channels(conv, target)
    if padded == conv.out_channels:
        return None
    sch = s_tir.Schedule(func)
    if conv.pad_block is not None:  # a 1x1 convolution's "padding" is a plain copy
        copy = sch.get_sblock(conv.pad_block)
        if not (_is_copy(sch, copy) and attempt(sch.compute_inline, copy)):
            return None
    block = sch.get_sblock(conv.block)
    try:
        # Plain indices everywhere (an einsum): no unit kernel iterators, a 2-D weight.
        sch.transform_block_layout(block, lambda n, y, x, f, ry, rx, rc: (n, y, x, f, rc))
        weight_copy = sch.cache_read(block, conv.weight_read, "global")
        sch.transform_layout(block, ("read", conv.weight_read), lambda ry, rx, c, k: (c, k))
        sch.pad_einsum(block, [1, 1, 1, float_lanes(target), 1])
    except s_tir.ScheduleError:
        return None
    weight = sch.get(block).reads[conv.weight_read].source
    pads = [p for p in sch.get_producers(block) if sch.get(p).writes[0].source.same_as(weight)]
    if len(pads) != 1:
        return None
    padded_conv = replace(conv, out_channels=padded, pad_block=None)
    return sch, padded_conv, (sch.get(pads[0]).name_hint, sch.get(weight_copy).name_hint)


def _pack_weights(sch: s_tir.Schedule, conv: NhwcConv, bk: int) -> None:
    """Read the weights as ``[k // bk, ry, rx, c, k % bk]`` through a compile-time rewrite.

    A padded 1x1 convolution (:func:`_pad_out_channels`) reads ``[c, k]``: packed as
    ``[k // bk, c, k % bk]``.
    """
    block = sch.get_sblock(conv.block)
    cached = sch.cache_read(block, conv.weight_read, "global")
    if len(sch.get(block).reads[conv.weight_read].source.shape) == 2:
        sch.transform_layout(block, ("read", conv.weight_read), lambda c, k: (k // bk, c, k % bk))
    else:
        sch.transform_layout(
            block, ("read", conv.weight_read), lambda ry, rx, c, k: (k // bk, ry, rx, c, k % bk)
        )
    sch.annotate(cached, PREPROC_ATTR, True)


def _is_copy(sch: s_tir.Schedule, block: BlockRV) -> bool:
    """``block`` stores a plain load (no padding condition)."""
    body = sch.get(block).body
    return isinstance(body, tirx.BufferStore) and isinstance(body.value, TensorLoad)


def _prepare_input(sch: s_tir.Schedule, conv: NhwcConv, target: CpuTarget) -> None:
    """Inline an unpadded copy of the input; give a padded one a vectorised nest.

    The nest is parallel (the fallback's rule for a spatial block) unless the
    convolution itself is too small for threads (:func:`worth_threads`).
    """
    if conv.pad_block is None:
        return
    pad = sch.get_sblock(conv.pad_block)
    if _is_copy(sch, pad) and attempt(sch.compute_inline, pad):
        return
    loops = sch.get_loops(pad)
    channels = extent(sch, loops[-1])
    if len(loops) == 4 and channels is not None and channels < MIN_LANES:
        _pad_rows(sch, pad, worth_threads(sch, loops[0], conv))
        return
    if worth_threads(sch, loops[0], conv):
        schedule_block(sch, pad, target, {})
        return
    width = vector_factor(extent(sch, loops[-1]), float_lanes(target))
    if width is not None:
        sch.vectorize(sch.split(loops[-1], [None, width])[1])


def _pad_rows(sch: s_tir.Schedule, pad: BlockRV, parallel: bool) -> None:
    """A padded copy of an input with fewer channels than a vector (an RGB image): rows in
    parallel, each pixel's channels one short vector, the padding test once per pixel.

    The fallback schedule fused the whole copy into one loop of scalars with the padding test
    on every element (the channels cannot fill a vector): BlazeFace's 128x128x3 input padded
    to 131x131 took 82 of its first convolution's 207 us (AVX2 code, one thread).
    """
    n, y, _, c = sch.get_loops(pad)
    rows = sch.fuse(n, y)
    if parallel:
        sch.parallel(rows)
    sch.vectorize(c)


def _schedule_conv(sch: s_tir.Schedule, conv: NhwcConv, out: BlockRV, tile: ConvTile) -> bool:
    """The NHWC register-tile kernel; ``False`` when the loop nest is not as expected."""
    block = sch.get_sblock(conv.block)
    loops = sch.get_loops(out)
    if len(loops) != 4:
        return False
    n, y, x, k = loops
    ko, ki = sch.split(k, [None, tile.block_k])
    xo, xi = sch.split(x, [None, tile.tile_w])
    if conv.subsamples:  # strided: the input rows of one output row are read once
        sch.reorder(n, y, ko, xo, xi, ki)
    else:  # stride 1: the weights of one channel block stay in cache over the rows
        sch.reorder(n, ko, y, xo, xi, ki)
    parallel = worth_threads(sch, n, conv)
    outer = sch.fuse(*sch.get_loops(out)[:3])
    if parallel:
        sch.parallel(outer)
    sch.compute_at(block, xo)
    sch.set_scope(block, 0, "local")

    roles = loops_by_iter(sch, block, first=2)
    reduction = [roles[i] for i in (4, 5, 6) if i in roles]
    if not reduction or 3 not in roles:
        return False
    columns = [roles[2]] if 2 in roles else []  # absent when the tile is one column
    sch.reorder(*reduction, *columns, roles[3])
    vectorize_channels(sch, roles[3], tile)
    for column in columns:
        sch.unroll(column)
    init = sch.decompose_reduction(block, reduction[0])
    vectorize_channels(sch, sch.get_loops(init)[-1], tile)
    vectorize_channels(sch, ki, tile)
    if tile.tile_w > 1:
        sch.unroll(xi)
    return True


def worth_threads(sch: s_tir.Schedule, batch: LoopRV, conv: NhwcConv) -> bool:
    """``conv`` does at least :data:`~.loops.PARALLEL_MIN_MACS` multiply-adds (all images)."""
    per_output = conv.kernel_h * conv.kernel_w * (1 if conv.depthwise else conv.in_channels)
    outputs = conv.out_height * conv.out_width * conv.out_channels * (extent(sch, batch) or 1)
    return outputs * per_output >= PARALLEL_MIN_MACS


def choose_strip(conv: NhwcConv, target: CpuTarget) -> int:
    """Output columns per depthwise strip: the most whose accumulators fit the register budget.

    A column holds ``ceil(channels / lanes)`` vectors; the strip is the widest
    divisor of the output width within :func:`accumulator_budget` vectors.
    """
    vectors = -(-conv.out_channels // float_lanes(target))
    limit = max(accumulator_budget(target) // vectors, 1)
    return max(d for d in range(1, min(conv.out_width, limit) + 1) if conv.out_width % d == 0)


def _vectorize_depth(sch: s_tir.Schedule, loop: LoopRV, channels: int, target: CpuTarget) -> None:
    """Vectorise a channel loop: whole when it fits 4 vectors, else as unrolled vectors."""
    lanes = float_lanes(target)
    if channels <= 4 * lanes:
        sch.vectorize(loop)
        return
    width = vector_factor(channels, lanes)
    if width is None:
        sch.vectorize(loop)
        return
    outer, inner = sch.split(loop, [None, width])
    sch.unroll(outer)
    sch.vectorize(inner)


def _schedule_depthwise(
    sch: s_tir.Schedule, conv: NhwcConv, out: BlockRV, target: CpuTarget
) -> bool:
    """The NHWC depthwise strip kernel; ``False`` when the loop nest is not as expected."""
    block = sch.get_sblock(conv.block)
    loops = sch.get_loops(out)
    if len(loops) != 4:
        return False
    n, y, x, c = loops
    strip = choose_strip(conv, target)
    xo, xi = sch.split(x, [None, strip])
    parallel = worth_threads(sch, n, conv)
    row = sch.fuse(n, y)
    if parallel:
        sch.parallel(row)
    sch.compute_at(block, xo)
    sch.set_scope(block, 0, "local")

    roles = loops_by_iter(sch, block, first=2)
    if 3 not in roles:
        return False
    taps = [roles[i] for i in (4, 5, 6) if i in roles]
    columns = [roles[2]] if 2 in roles else []
    sch.reorder(*taps, *columns, roles[3])
    for loop in (*taps, *columns):
        sch.unroll(loop)
    _vectorize_depth(sch, roles[3], conv.out_channels, target)
    if taps:
        init = sch.decompose_reduction(block, taps[0])
        _vectorize_depth(sch, sch.get_loops(init)[-1], conv.out_channels, target)
    _vectorize_depth(sch, c, conv.out_channels, target)
    if conv.subsamples and conv.pad_block is not None:
        # Strided: the input rows of one output row are built in its task, while in cache
        # (a separate pass over the padded 42-channel plane cost 5x the convolution).
        pad = sch.get_sblock(conv.pad_block)
        sch.compute_at(pad, row)
        _vectorize_depth(sch, sch.get_loops(pad)[-1], conv.in_channels, target)
    if strip > 1:
        sch.unroll(xi)
    return True
