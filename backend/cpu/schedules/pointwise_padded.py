"""AVX2 kernel for pointwise convolutions on small planes no vector divides (7x7): a padded plane.

Requires: one fused PrimFunc holding an ungrouped 1x1 convolution of stride 1
without padding (NCHW in, NCHW out) and its element-wise epilogue, as
:func:`~npuc.backend.cpu.schedules.conv_match.match_conv2d` describes it, and
a target without AVX-512. Guarantees: the same values up to summation order
(the reduction runs over input channels in order, with fused multiply-adds),
or ``None`` when :func:`takes_padded_plane` declines the convolution.

The plane rule (:mod:`conv2d_spatial`) vectorises a 7x7 plane as six vectors
and a one-lane tail, with per-channel input rows of 196 bytes (vector loads
that straddle cache lines), and ran ResNet-50's and MobileNetV2's 7x7
pointwise layers 1.3-1.5x slower than onnxruntime's AVX2 kernels. Here the
plane is flattened (``p = y * W + x``) and padded with zeros to a multiple
of :data:`TILE_PIXELS` (49 -> 54, ``pad_einsum``), copied per call as
``[n, c // 8, p, c % 8]`` (channel blocks of one vector), and the
convolution runs as the conv2d rule's kernel does on a row: register tiles
of :data:`TILE_CHANNELS` output channels (two vectors) by
:data:`TILE_PIXELS` plane positions, 12 accumulators, per input channel two
weight vectors (packed at compile time as ``[k // 16, c // 8, 1, 1, c % 8, k
% 16]``) and six broadcast inputs. Each tile's accumulators are written to a
padded ``[n, k, p]`` buffer; the epilogue (bias, activation, residual add)
then reads its first ``H * W`` positions per channel and writes the NCHW
output, in parallel over channels.
"""

from __future__ import annotations

from dataclasses import replace

from tvm import s_tir, tirx

from npuc.backend.cpu.schedules.conv2d import ConvTile, float_lanes, pack_weights
from npuc.backend.cpu.schedules.conv_match import (
    ConvNest,
    inline_epilogue,
    inline_plain_copy,
    match_conv2d,
)
from npuc.core.target import CpuTarget

#: Output channels of a register tile (two AVX2 vectors).
TILE_CHANNELS = 16

#: Plane positions of a register tile (broadcast inputs): 16 x 6 = 12 accumulators of 16
#: registers. Measured against 32 x 3 on the same padded plane (AVX2 code, one thread, each
#: kernel alone, against the plane rule): MobileNetV2's 320->1280 at 7x7 0.85 vs 0.94x,
#: 960->320 0.81 vs 0.86x.
TILE_PIXELS = 6

#: Largest plane (``H * W``) taken: the 7x7 layers. On 14x14 planes (198 padded positions) the
#: kernel ran slower than the plane rule (ResNet-50's 1024->256 1.15x, 256->1024 1.28x): each
#: tile re-reads its channel block's weights (``in_channels x 64`` bytes) from L2.
MAX_PLANE = 64

#: Fewest input channels taken: with a short reduction the accumulators' transposed write-back
#: and the separate epilogue pass cost more than they save (MobileNetV2's 160->960 at 7x7
#: 1.08-1.11x the plane rule; 320->1280 0.85x).
MIN_IN_CHANNELS = 256


def takes_padded_plane(nest: ConvNest, target: CpuTarget) -> bool:
    """Whether this kernel takes ``nest`` (see the module docstring and the limits above)."""
    lanes = float_lanes(target)
    plane = nest.out_height * nest.out_width
    return (
        not target.has_avx512
        and lanes == 8
        and nest.groups == 1
        and (nest.kernel_h, nest.kernel_w) == (1, 1)
        and nest.in_height == nest.out_height
        and not nest.subsamples
        and plane % lanes != 0
        and 1 < plane <= MAX_PLANE  # a 1x1 plane: LegalizeOps drops its spatial loops
        and nest.in_channels >= MIN_IN_CHANNELS
        and nest.in_channels % lanes == 0
        and nest.out_channels % TILE_CHANNELS == 0
    )


def padded_plane_kernel(func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
    """``func`` scheduled as the module docstring says, or ``None`` when it declines it."""
    sch = s_tir.Schedule(func)
    nest = match_conv2d(sch)
    if nest is None or nest.is_depthwise or not takes_padded_plane(nest, target):
        return None
    conv = sch.get_sblock(nest.block)
    data = sch.get(conv).reads[1 - nest.weight_read].source
    if int(data.shape[3]) != nest.out_width:  # a stride (or padding) in x only
        return None
    if not inline_plain_copy(sch, nest):  # only an unpadded copy (LegalizeOps' pad_temp)
        return None
    lanes = float_lanes(target)
    width = nest.out_width
    conv = sch.get_sblock(nest.block)
    if not nest.epilogue:  # the convolution writes the output: give it an intermediate first
        write_out = sch.cache_write(conv, 0, "global")
        nest = replace(nest, epilogue=(sch.get(write_out).name_hint,))
    copy = sch.cache_read(conv, 1 - nest.weight_read, "global")
    sch.transform_layout(copy, ("write", 0), lambda n, c, y, x: (n, c, y * width + x))
    sch.transform_layout(conv, ("write", 0), lambda n, k, y, x: (n, k, y * width + x))
    sch.transform_block_layout(
        conv, lambda n, k, y, x, c, ky, kx: (n, k, y * width + x, c + ky + kx)
    )
    sch.pad_einsum(conv, [1, 1, TILE_PIXELS, 1])
    (padded_input,) = sch.get_producers(conv)  # the zero-padded input (weights are params)
    sch.compute_inline(copy)
    (unpad,) = sch.get_consumers(conv)
    sch.compute_inline(unpad)  # the epilogue reads the padded result's first positions
    out = inline_epilogue(sch, conv, nest)
    _channel_blocks(sch, padded_input, lanes)
    pack_weights(sch, conv, nest, TILE_CHANNELS, lanes)
    _tile(sch, conv, lanes)
    loops = sch.get_loops(out)
    sch.parallel(sch.fuse(*loops[:2]))
    sch.vectorize(sch.fuse(*loops[2:]))
    return sch.mod["main"]


def _channel_blocks(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, lanes: int) -> None:
    """Store the padded input as ``[n, c // lanes, p, c % lanes]``, built in parallel."""
    sch.transform_layout(block, ("write", 0), lambda n, c, p: (n, c // lanes, p, c % lanes))
    sch.transform_block_layout(block, lambda n, c, p: (n, c // lanes, p, c % lanes))
    loops = sch.get_loops(block)
    sch.parallel(sch.fuse(*loops[:2]))
    sch.vectorize(loops[-1])


def _tile(sch: s_tir.Schedule, conv: s_tir.schedule.SBlockRV, lanes: int) -> None:
    """Register tiles of :data:`TILE_CHANNELS` x :data:`TILE_PIXELS` over the padded plane,
    accumulators ``[p][k]`` in a local buffer written back once per tile."""
    write_back = sch.cache_write(conv, 0, "local")
    sch.transform_layout(conv, ("write", 0), lambda n, k, p: (n, p, k))
    n, k, p, c = sch.get_loops(conv)
    ko, ki = sch.split(k, [None, TILE_CHANNELS])
    po, pi = sch.split(p, [None, TILE_PIXELS])
    co, ci = sch.split(c, [None, lanes])
    sch.reorder(n, ko, po, co, ci, pi, ki)
    outer = sch.fuse(n, ko, po)
    sch.parallel(outer)
    sch.reverse_compute_at(write_back, outer)
    tile = ConvTile(TILE_CHANNELS, TILE_PIXELS, lanes)
    vectors, vector_lanes = sch.split(ki, [tile.vectors, lanes])
    sch.unroll(vectors)
    sch.vectorize(vector_lanes)
    sch.unroll(pi)
    init = sch.decompose_reduction(conv, co)
    init_loops = sch.get_loops(init)
    sch.vectorize(init_loops[-1])
    for loop in init_loops[-3:-1]:
        sch.unroll(loop)
