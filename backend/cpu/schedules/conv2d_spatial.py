"""Schedule rule for NCHW 1x1 convolutions whose channels per group no vector divides.

ShuffleNet's grouped 1x1 convolutions have 34 output channels per group:
:class:`~npuc.backend.cpu.schedules.conv2d.Conv2dRule` vectorises along the
channels and declines them (an odd vector is split by LLVM and ran slower
than the fallback). A 1x1 convolution of stride 1 without padding is a GEMM
over the flattened image plane, ``out[k, p] = sum_c w[k, c] * in[c, p]``, in
which the plane ``p = y * W + x`` is contiguous in both input and output:
this rule vectorises along ``p`` instead.

The kernel: the output is cut into register tiles of ``block_k`` channels of
one group (a divisor of the group's channel count) by ``pixels`` consecutive
positions of the plane (whole vectors). The accumulators (``block_k x
pixels``) live in a local buffer held in vector registers; each input
channel adds one vector load of the input times ``block_k`` broadcast weights
(packed at compile time as ``[k // block_k, c, 1, 1, k % block_k]``, so they
are contiguous). The epilogue is applied as the tile is written. Tiles over
(image, channel block, plane block) run in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir, tirx
from tvm.ir import TensorLoad

from npuc.backend.cpu.schedules.conv2d import (
    accumulator_budget,
    choose_tile,
    float_lanes,
    pack_weights,
)
from npuc.backend.cpu.schedules.conv_match import (
    ConvNest,
    inline_epilogue,
    loops_by_iter,
    match_conv2d,
)
from npuc.backend.cpu.schedules.loops import vector_factor
from npuc.core.target import CpuTarget


@dataclass(frozen=True, slots=True)
class PlaneTile:
    """``block_k`` output channels by ``pixels`` plane positions (``pixels // lanes`` vectors)."""

    block_k: int
    pixels: int
    lanes: int


def choose_plane_tile(nest: ConvNest, plane: int, target: CpuTarget) -> PlaneTile | None:
    """The tile with the most accumulator vectors within the budget, or ``None``.

    ``plane`` is the output's ``H * W``; its vector length is the widest
    power of two (at least 8) dividing it.
    """
    lanes = vector_factor(plane, float_lanes(target))
    if lanes is None or lanes < 8:
        return None
    budget = accumulator_budget(target)
    best: PlaneTile | None = None
    for block_k in range(1, min(nest.group_out, budget) + 1):
        if nest.group_out % block_k:
            continue
        vectors = max(v for v in range(1, budget // block_k + 1) if (plane // lanes) % v == 0)
        tile = PlaneTile(block_k, vectors * lanes, lanes)
        if best is None or (tile.block_k * tile.pixels, tile.block_k) > (
            best.block_k * best.pixels,
            best.block_k,
        ):
            best = tile
    return best


class Conv2dPlaneRule:
    """Plane-vectorised 1x1 convolution for odd channel groups (see the module docstring)."""

    name = "conv2d_plane"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it holds one such 1x1 convolution."""
        sch = s_tir.Schedule(func)
        nest = match_conv2d(sch)
        if nest is None or nest.is_depthwise or choose_tile(nest, target) is not None:
            return None  # the conv2d and depthwise rules take these
        if (nest.kernel_h, nest.kernel_w) != (1, 1) or nest.in_height != nest.out_height:
            return None
        if nest.subsamples or nest.in_height * nest.out_width != nest.out_height * nest.out_width:
            return None
        plane = nest.out_height * nest.out_width
        tile = choose_plane_tile(nest, plane, target)
        if tile is None:
            return None
        if nest.pad_block is not None:  # an unpadded copy of the input (LegalizeOps' pad_temp)
            pad = sch.get_sblock(nest.pad_block)
            body = sch.get(pad).body
            if not (isinstance(body, tirx.BufferStore) and isinstance(body.value, TensorLoad)):
                return None
            sch.compute_inline(pad)
        conv = sch.get_sblock(nest.block)
        pack_weights(sch, conv, nest, tile.block_k)
        _schedule(sch, nest, tile)
        return sch.mod["main"]


def _schedule(sch: s_tir.Schedule, nest: ConvNest, tile: PlaneTile) -> None:
    """Apply the kernel of the module docstring to ``sch`` (in place); weights packed."""
    width = nest.out_width
    conv = sch.get_sblock(nest.block)
    out = inline_epilogue(sch, conv, nest)
    # The accumulators as [n, k, plane]: the tile's region is then exact.
    sch.transform_layout(conv, ("write", 0), lambda n, k, y, x: (n, k, y * width + x))
    sch.transform_block_layout(out, lambda n, k, y, x: (n, k, y * width + x))
    sch.transform_block_layout(
        conv, lambda n, k, y, x, c, ky, kx: (n, k, y * width + x, c + ky + kx)
    )
    n, k, p = sch.get_loops(out)
    ko, ki = sch.split(k, [None, tile.block_k])
    po, pi = sch.split(p, [None, tile.pixels])
    sch.reorder(n, ko, po, ki, pi)
    outer = sch.fuse(n, ko, po)
    sch.parallel(outer)
    sch.compute_at(conv, outer)
    sch.set_scope(conv, 0, "local")

    roles = loops_by_iter(sch, conv, first=1)  # iterators n, k, p, c, ky, kx
    channels = [roles[i] for i in (1,) if i in roles]  # absent when block_k is 1
    sch.reorder(roles[3], *channels, roles[2])
    for loop in channels:
        sch.unroll(loop)
    _vectorize_plane(sch, roles[2], tile)
    init = sch.decompose_reduction(conv, roles[3])
    init_loops = sch.get_loops(init)
    if channels:
        sch.unroll(init_loops[-2])
    _vectorize_plane(sch, init_loops[-1], tile)
    sch.unroll(ki)
    _vectorize_plane(sch, pi, tile)


def _vectorize_plane(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV, tile: PlaneTile) -> None:
    """Vectorise a ``pixels`` loop as unrolled vectors of ``tile.lanes``."""
    if tile.pixels > tile.lanes:
        outer, inner = sch.split(loop, [None, tile.lanes])
        sch.unroll(outer)
        sch.vectorize(inner)
    else:
        sch.vectorize(loop)
