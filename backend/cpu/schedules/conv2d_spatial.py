"""Schedule rule for NCHW pointwise (1x1) convolutions vectorised along the image plane.

A 1x1 convolution of stride 1 without padding is a GEMM over the flattened
image plane, ``out[k, p] = sum_c w[k, c] * in[c, p]``, in which the plane
``p = y * W + x`` is contiguous in both input and output: this rule
vectorises along ``p``. The input is read NCHW in place with vector loads,
the output stored NCHW with vector stores, the weights broadcast; no copy.

It takes four kinds of convolution (:func:`prefers_plane`) and declines
the rest (``None``), which the conv2d rule after it takes:

- channels per group no vector divides (ShuffleNet's 34), which
  :class:`~npuc.backend.cpu.schedules.conv2d.Conv2dRule` declines;
- pointwise convolutions whose plane vectors are wider than the conv2d
  rule's channel vectors, or as wide while that rule's tile is a single
  vector (ShuffleNet's 28-, 68- and 136-channel groups, 4- and 8-lane
  vectors there);
- pointwise convolutions with at most :data:`PLANE_MAX_CHANNELS` input or
  output channels per group, whose plane a vector divides. The conv2d rule
  keeps its accumulators as ``[x][k]`` and writes NCHW through a transpose
  (one scalar store per output element); with a short reduction that store
  dominates. Measured with AVX-512, one thread, CPU time (min of 3, kernels
  with their fused epilogues; conv2d rule -> this rule): MobileNetV2's
  16->96 at 112x112 1.00 -> 0.50 ms, 32->16 at 112 0.47 -> 0.31, 24->144 at
  56 0.56 -> 0.23, 96->24 at 56 0.43 -> 0.13, 144->24 at 56 0.63 -> 0.26,
  32->192 at 28 0.18 -> 0.11, 192->32 at 28 0.16 -> 0.08, 144->32 at 28 0.12
  -> 0.06 (before the conv2d rule padded 24 and 144 channels to whole
  16-lane vectors; after it, same binary, loaded host: 24->144 at 56 0.73
  -> 0.39, 144->24 at 56 0.99 -> 0.44, 16->96 at 112 3.1 -> 2.1 with SiLU;
  32->64 at 56 with SiLU 0.53 -> 0.41). With 64 or more channels both ways
  the conv2d rule was as fast or faster (ResNet-50's 64->256 at 56 1.45 vs
  1.88 ms, 256->64 at 56 1.31 vs 2.14, 128->512 at 28 1.15 vs 1.57): each
  input channel is a stream of its own here, which the conv2d rule's
  channel-blocked input copy avoids;
- pointwise convolutions on a small plane (14x14, 15x15) whatever their
  channels (:func:`_small_plane`).

The kernel: the output is cut into register tiles of ``block_k`` channels of
one group (a divisor of the group's channel count) by ``pixels`` consecutive
positions of the plane (whole vectors; see :func:`choose_plane_tile`). The
accumulators (``block_k x pixels``) live in a local buffer held in vector
registers; each input channel adds one vector load of the input per vector
times ``block_k`` broadcast weights (packed at compile time as ``[k //
block_k, c, 1, 1, k % block_k]``, so they are contiguous). The last tile of
a plane whose vector count the tile does not divide is cut at a vector (a
test per vector, not per lane); a plane of 64 or more vectors takes tiles
that divide it when they are nearly as large (:mod:`plane_tile`). The
vector is the target's full width (16 lanes with AVX-512, 8 with AVX2). A
plane they do not divide but hold at least once (14x14 = 12 x 16 + 4, 7x7
= 3 x 16 + 1) ends in a partial vector, compiled as a shorter one (:func:`_schedule_tail`: TVM's
LoopPartition pass splits the plane loops into the full vectors, without a
test, and the rest); a smaller plane takes the widest 8 or 4 lanes dividing
it, or none (3x3 with AVX-512: declined). Before the partial vector, 14x14
took 4-lane vectors (ShuffleNet's 272 -> 272 in 4 groups, AVX-512, one
thread: 127 us, now 49) and 7x7 went to the conv2d rule (544 -> 544 in 4
groups: 87 us there, 41 here; MobileNetV2's 16 -> 96 at 7x7 2.8 vs 1.5 us,
16 -> 24 at 14x14 4.0 vs 1.2 us). The epilogue (bias, clip, residual
add, SiLU) is applied as the tile is written. Tiles over (image, channel
block, plane block) run in parallel; with fewer output than input channels
the plane blocks are outermost, so a plane block's input is read once for
all channel blocks (144->24 at 56: 0.40 vs 0.71 ms), else the channel
blocks are, so each output row is written as one stream (16->96 at 112:
0.51 vs 0.87 ms).
"""

from __future__ import annotations

from dataclasses import replace

import tvm
from tvm import s_tir, tirx

from npuc.backend.cpu.schedules.conv2d import (
    ConvTile,
    choose_tile,
    pack_weights,
    padded_out_channels,
)
from npuc.backend.cpu.schedules.conv_match import (
    ConvNest,
    inline_epilogue,
    inline_plain_copy,
    loops_by_iter,
    match_conv2d,
)
from npuc.backend.cpu.schedules.plane_tile import PlaneTile, choose_plane_tile
from npuc.backend.cpu.schedules.pointwise_padded import padded_plane_kernel, takes_padded_plane
from npuc.core.target import CpuTarget

__all__ = ["Conv2dPlaneRule", "PlaneTile", "choose_plane_tile", "plane_kernel", "prefers_plane"]


class Conv2dPlaneRule:
    """Plane-vectorised pointwise convolution (see the module docstring for what it takes)."""

    name = "conv2d_plane"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it holds one such 1x1 convolution."""
        sch = s_tir.Schedule(func)
        nest = match_conv2d(sch)
        if nest is None or nest.is_depthwise:
            return None
        if not prefers_plane(nest, target):
            return None  # the conv2d rule takes these
        if takes_padded_plane(nest, target):  # AVX2, 7x7: the padded plane (pointwise_padded)
            return padded_plane_kernel(func, target) or plane_kernel(func, target)
        return plane_kernel(func, target)


#: Channels per group (input or output) up to which a pointwise convolution runs here rather
#: than in the conv2d rule (see the module docstring for the measurements).
PLANE_MAX_CHANNELS = 32


def prefers_plane(nest: ConvNest, target: CpuTarget) -> bool:
    """Whether a pointwise convolution the conv2d rule could take runs faster here.

    Only a 1x1, stride-1, unpadded convolution whose plane a vector of 4 or
    more lanes divides (:func:`choose_plane_tile`). Then when its vectors
    are wider than the conv2d rule's (which cuts a group's channels into
    vectors: ShuffleNet's 28 are 4-lane vectors; an ungrouped pointwise
    convolution's are padded to whole vectors of the target), or as wide and either at most
    :data:`PLANE_MAX_CHANNELS` input or output channels per group, or the
    conv2d rule's tile has a single vector of channels (one broadcast input
    load per multiply-add: ShuffleNet's 68 channels per group, 4-lane vectors
    both ways at 14x14, 0.51 -> 0.28 ms), or its plane is small
    (:func:`_small_plane`: 14x14 or 15x15, whatever the channels).
    """
    if not _pointwise(nest):
        return False
    plane = choose_plane_tile(nest, nest.out_height * nest.out_width, target)
    conv = _conv2d_tile(nest, target)
    if plane is None or conv is None:
        return conv is None and plane is not None
    if plane.lanes != conv.lanes:
        return plane.lanes > conv.lanes
    if min(nest.group_in, nest.group_out) <= PLANE_MAX_CHANNELS or conv.vectors == 1:
        return True
    return _small_plane(nest.out_height * nest.out_width)


#: Output planes (positions) of the pointwise convolutions taken here whatever their channels
#: (:func:`_small_plane`): 14x14 (196) and 15x15 (225); both end in a partial vector.
SMALL_PLANE_PIXELS = range(196, 226)


def _small_plane(plane: int) -> bool:
    """A plane in :data:`SMALL_PLANE_PIXELS`: the conv2d rule's tile divides a 14-wide row
    (7 columns with AVX-512, 2 with AVX2), these vectors run over the whole plane. Measured
    faster there, not on 7x7, 10x10, 13x13 or 28x28 planes (docs/cpu_backend.md)."""
    return plane in SMALL_PLANE_PIXELS


def _conv2d_tile(nest: ConvNest, target: CpuTarget) -> ConvTile | None:
    """The conv2d rule's tile for ``nest``, on the output channels it pads to (if any)."""
    return choose_tile(replace(nest, out_channels=padded_out_channels(nest, target)), target)


def _pointwise(nest: ConvNest) -> bool:
    """A 1x1 convolution of stride 1 without padding: a GEMM over the flattened plane."""
    if (nest.kernel_h, nest.kernel_w) != (1, 1) or nest.in_height != nest.out_height:
        return False
    return not nest.subsamples


def plane_kernel(
    func: tirx.PrimFunc,
    target: CpuTarget,
    tile: PlaneTile | None = None,
    plane_outer: bool | None = None,
) -> tirx.PrimFunc | None:
    """``func`` (one 1x1 stride-1 unpadded convolution) scheduled as a plane kernel, or ``None``.

    Applies whatever :func:`prefers_plane` says (the rule decides that).
    ``tile`` and ``plane_outer`` override :func:`choose_plane_tile` and the
    loop order (plane blocks outermost when ``group_in >= group_out``; with a
    partial last vector the channel blocks always are), to measure
    alternatives. ``None`` when ``func`` holds no such convolution or no tile
    fits its plane.
    """
    sch = s_tir.Schedule(func)
    nest = match_conv2d(sch)
    if nest is None or nest.is_depthwise:
        return None
    if not _pointwise(nest) or nest.group_in < 2:
        return None  # one input channel per group: no reduction loop to tile
    plane = nest.out_height * nest.out_width
    if tile is None:
        tile = choose_plane_tile(nest, plane, target)
    if tile is None:
        return None
    if not inline_plain_copy(sch, nest):  # only an unpadded copy (LegalizeOps' pad_temp)
        return None
    conv = sch.get_sblock(nest.block)
    pack_weights(sch, conv, nest, tile.block_k)
    if tile.tail:
        if not all(_narrowable(param.ty) for param in func.params):
            return None  # the tail's loop partition needs 32-bit indices (_schedule_tail)
        _schedule_tail(sch, nest, tile)
        narrow = tirx.transform.ForceNarrowIndexToInt32()
        return narrow(tvm.IRModule({"main": sch.mod["main"]}))["main"]
    if plane_outer is None:
        plane_outer = nest.group_in >= nest.group_out
    _schedule(sch, nest, tile, plane_outer)
    return sch.mod["main"]


def _narrowable(buffer: tirx.BufferType) -> bool:
    """``ForceNarrowIndexToInt32`` leaves ``buffer`` as it is, or nothing: a float32 buffer
    (the pass narrows integer buffers too) of a static shape of fewer than 2**31 elements."""
    if str(buffer.dtype) != "float32":
        return False
    count = 1
    for dim in buffer.shape:
        if not isinstance(dim, tirx.IntImm):
            return False
        count *= int(dim)
    return count < 2**31


#: Loop annotation that makes TVM's LoopPartition pass split a loop where its body's
#: conditions change (full vectors, then the partial one).
PARTITION_HINT = "pragma_loop_partition_hint"


def _schedule_tail(sch: s_tir.Schedule, nest: ConvNest, tile: PlaneTile) -> None:
    """The kernel for a plane ending in a partial vector (in place; weights packed).

    The plane is split into tiles of ``tile.pixels`` positions, vectors of
    ``tile.lanes``, with a predicate (``p < plane``) that TVM's LoopPartition
    pass removes: every loop walking the plane carries
    :data:`PARTITION_HINT`, so the full tiles and the full vectors of the
    last tile are compiled without a test, and the partial vector becomes a
    shorter vector (4 of 196 = 12 x 16 + 4 positions). The caller narrows
    the function's indices to int32: NarrowDataType, which the TIR pipeline
    runs before LoopPartition, gives the loops new int32 variables but leaves
    the hints on the old int64 ones, and the hinted loops were not split
    (the predicated vectors were scalarised: 3x slower). The channel blocks
    are the parallel loop and the plane tiles a serial loop inside (the
    partition needs the tile loop unfused).
    """
    lanes, vectors = tile.lanes, tile.pixels // tile.lanes
    conv = sch.get_sblock(nest.block)
    out = inline_epilogue(sch, conv, nest)
    _flatten_plane(sch, conv, out, nest.out_width)
    n, k, p = sch.get_loops(out)
    ko, ki = sch.split(k, [None, tile.block_k])
    po, vi, lane = sch.split(p, [None, vectors, lanes])
    sch.reorder(n, ko, po, ki, vi, lane)
    sch.parallel(sch.fuse(n, ko))
    sch.compute_at(conv, po)
    sch.set_scope(conv, 0, "local")

    roles = loops_by_iter(sch, conv, first=2)  # iterators n, k, p, c
    conv_vi, conv_lane = sch.split(roles[2], [vectors, lanes])
    inner = [roles[1], conv_vi] if 1 in roles else [conv_vi]  # k absent when of extent 1
    init_loops = _register_tile(sch, conv, roles[3], inner, conv_lane)
    sch.unroll(ki)
    sch.unroll(vi)
    sch.vectorize(lane)
    for loop in (po, vi, lane, conv_vi, conv_lane, init_loops[-2], init_loops[-1]):
        sch.annotate(loop, PARTITION_HINT, 1)


def _register_tile(
    sch: s_tir.Schedule,
    conv: s_tir.schedule.SBlockRV,
    reduction: s_tir.schedule.LoopRV,
    inner: list[s_tir.schedule.LoopRV],
    lane: s_tir.schedule.LoopRV,
) -> list[s_tir.schedule.LoopRV]:
    """The reduction outside the tile's unrolled ``inner`` loops and vectorised ``lane``
    loop, its init split out the same way; returns the init's loops."""
    sch.reorder(reduction, *inner, lane)
    for loop in inner:
        sch.unroll(loop)
    sch.vectorize(lane)
    init = sch.decompose_reduction(conv, reduction)
    init_loops = sch.get_loops(init)
    for loop in init_loops[len(init_loops) - 1 - len(inner) : -1]:
        sch.unroll(loop)
    sch.vectorize(init_loops[-1])
    return init_loops


def _flatten_plane(
    sch: s_tir.Schedule, conv: s_tir.schedule.SBlockRV, out: s_tir.schedule.SBlockRV, width: int
) -> None:
    """Index the accumulators and both blocks by the plane position ``y * width + x``."""
    sch.transform_layout(conv, ("write", 0), lambda n, k, y, x: (n, k, y * width + x))
    sch.transform_block_layout(out, lambda n, k, y, x: (n, k, y * width + x))
    sch.transform_block_layout(
        conv, lambda n, k, y, x, c, ky, kx: (n, k, y * width + x, c + ky + kx)
    )


def _schedule(sch: s_tir.Schedule, nest: ConvNest, tile: PlaneTile, plane_outer: bool) -> None:
    """Apply the kernel of the module docstring to ``sch`` (in place); weights packed."""
    width, lanes = nest.out_width, tile.lanes
    vectors = tile.pixels // lanes
    conv = sch.get_sblock(nest.block)
    out = inline_epilogue(sch, conv, nest)

    # The accumulators as [n, k, plane // lanes, lanes]: a tile's region is whole vectors, and
    # the last tile of a plane whose vector count the tile does not divide is cut at a vector.
    _flatten_plane(sch, conv, out, width)
    sch.transform_block_layout(out, lambda n, k, p: (n, k, p // lanes, p % lanes))
    sch.transform_block_layout(conv, lambda n, k, p, c: (n, k, p // lanes, p % lanes, c))
    sch.transform_layout(conv, ("write", 0), lambda n, k, p: (n, k, p // lanes, p % lanes))
    n, k, pv, lane = sch.get_loops(out)
    ko, ki = sch.split(k, [None, tile.block_k])
    po, vi = sch.split(pv, [None, vectors])
    if plane_outer:
        sch.reorder(n, po, ko, ki, vi, lane)
        outer = sch.fuse(n, po, ko)
    else:
        sch.reorder(n, ko, po, ki, vi, lane)
        outer = sch.fuse(n, ko, po)
    sch.parallel(outer)
    sch.compute_at(conv, outer)
    sch.set_scope(conv, 0, "local")

    roles = loops_by_iter(sch, conv, first=1)  # iterators n, k, pv, lane, c
    inner = [roles[i] for i in (1, 2) if i in roles]  # absent when of extent 1
    _register_tile(sch, conv, roles[4], inner, roles[3])
    sch.unroll(ki)
    sch.unroll(vi)
    sch.vectorize(lane)
