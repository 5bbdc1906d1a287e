"""The conv2d rule's kernel for wide pointwise convolutions: a GEMM over packed plane panels.

Requires: one fused PrimFunc holding an ungrouped 1x1 convolution of stride 1
without padding (NCHW in, NCHW out) and its element-wise epilogue (bias,
activation, residual add), as :func:`~npuc.backend.cpu.schedules.conv_match.match_conv2d`
describes it. Guarantees: the same values up to summation order (the
reduction runs over input channels in order, with fused multiply-adds), or
``None`` when the case is not one it takes (:func:`choose_panel_tile`).

Such a convolution is ``out[k, p] = sum_c w[k, c] * in[c, p]`` over the
flattened plane ``p = y * W + x``, contiguous in input and output. The
channel-blocked kernel of :mod:`~npuc.backend.cpu.schedules.conv2d` copies the
input to NCHWc and writes NCHW through a transpose of its ``[x][k]``
accumulators: per tile, ``block_k`` output rows of a few columns each, and
the same for a residual it reads. Inside a model that output and residual
come from far caches, and 32 rows of 32 bytes per tile defeat the
prefetchers: ResNet-50's 64->256 1x1 layer with a residual add at 56x56 took
2.07 ms per call in the model against 0.93 alone (one thread, AVX-512).

Here the plane is cut into panels of up to :func:`panel_bytes` of input.
Per panel (the parallel loop), the input's ``[C, panel]`` slice is copied to
a contiguous block (``[n, panel, c, p % panel]``; in L2 while it is used)
and every output channel block is computed over it in register tiles of
``block_k`` channels by ``vectors`` vectors of the plane: per input channel,
``vectors`` contiguous loads of the panel and ``block_k`` broadcast weights
(packed at compile time as ``[k // block_k, c, 1, 1, k % block_k]``). The
epilogue stores whole vectors of each output row, reading the residual the
same way: no transpose, and each row is written in runs of the panel's
width. Weights of all channels (``K x C x 4`` bytes) are read once per panel
from L2.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir, tirx

from npuc.backend.cpu.schedules.conv2d import float_lanes, pack_weights
from npuc.backend.cpu.schedules.conv_match import (
    ConvNest,
    inline_epilogue,
    inline_plain_copy,
    loops_by_iter,
    match_conv2d,
)
from npuc.core.target import CpuTarget

#: Bytes of input one panel may hold with AVX-512 (``in_channels x panel x 4``). ResNet-50 in
#: the model (AVX-512, one thread, ms per call for panels of 224 / 448 / 1568 positions):
#: 64->256 with the residual add 0.80-0.82 / 0.71-0.74 / 0.68-0.69 (57 / 115 / 401 KB), 256->64
#: 0.70-0.74 / 0.70-0.77 / 1.14-1.28 (229 / 458 KB / 1.6 MB): larger panels write each output
#: row in longer runs, until the panel leaves L2 (2 MB per core here, 1.25 MB on Ice Lake).
PANEL_BYTES = 512 * 1024

#: The same without AVX-512: Zen 3 has 512 KB of L2 per core, Haswell 256 KB, and a panel
#: shares it with the weights and the output rows. On this host's 2 MB L2, AVX2 code ran as fast
#: with 256 KB as with 512 KB panels (in the model, 64->256 with residual 1.14-1.17 vs 1.16-1.17
#: ms per call, 256->64 1.21-1.25 vs 1.25-1.29).
PANEL_BYTES_AVX2 = 256 * 1024


def panel_bytes(target: CpuTarget) -> int:
    """:data:`PANEL_BYTES` with AVX-512, else :data:`PANEL_BYTES_AVX2`."""
    return PANEL_BYTES if target.has_avx512 else PANEL_BYTES_AVX2


#: Input and output channels from which a pointwise convolution may run here (fewer go to
#: the plane rule, :data:`~npuc.backend.cpu.schedules.conv2d_spatial.PLANE_MAX_CHANNELS`).
MIN_CHANNELS = 33


@dataclass(frozen=True, slots=True)
class PanelTile:
    """``block_k`` channels x ``vectors`` vectors of ``lanes``; panels of ``panel`` positions."""

    block_k: int
    vectors: int
    lanes: int
    panel: int

    @property
    def pixels(self) -> int:
        """Plane positions of one register tile."""
        return self.vectors * self.lanes


def _accumulator_budget(target: CpuTarget) -> int:
    """Accumulator vectors: 24 of AVX-512's 32 registers, 12 of AVX2's 16."""
    return 24 if target.has_avx512 else 12


def choose_panel_tile(nest: ConvNest, target: CpuTarget) -> PanelTile | None:
    """The tile and panel for ``nest``, or ``None`` when this kernel does not take it.

    It takes an ungrouped 1x1 stride-1 unpadded convolution with at least
    :data:`MIN_CHANNELS` input and output channels whose plane is a whole
    number of the target's vectors. The tile: ``block_k`` dividing the output
    channels, ``vectors`` dividing the plane's vectors, at least two vectors
    and four channels, at least half the accumulator budget; the most
    accumulators, then the most channels
    (ResNet-50's 64->256 at 56x56, AVX-512 alone: 8 x 2 0.69 ms, 4 x 4 0.72,
    16 x 1 0.74). None fits a 28x28 plane with AVX-512 (49 vectors: one or
    seven per tile); with AVX2's 8 lanes it takes 4 x 2. The panel:
    :func:`_panel`.
    """
    if nest.groups != 1 or (nest.kernel_h, nest.kernel_w) != (1, 1) or nest.subsamples:
        return None
    if nest.in_height != nest.out_height or min(nest.in_channels, nest.out_channels) < MIN_CHANNELS:
        return None
    lanes = float_lanes(target)
    plane = nest.out_height * nest.out_width
    if plane % lanes:
        return None
    plane_vectors = plane // lanes
    budget = _accumulator_budget(target)
    best: tuple[tuple[int, int], int, int] | None = None
    for block_k in range(4, budget // 2 + 1):
        if nest.out_channels % block_k:
            continue
        for vectors in range(2, budget // block_k + 1):
            if plane_vectors % vectors or 2 * block_k * vectors < budget:
                continue
            key = (block_k * vectors, block_k)
            if best is None or key > best[0]:
                best = (key, block_k, vectors)
    if best is None:
        return None
    _, block_k, vectors = best
    return PanelTile(block_k, vectors, lanes, _panel(plane, vectors * lanes, nest, target))


def _panel(plane: int, pixels: int, nest: ConvNest, target: CpuTarget) -> int:
    """Positions per panel: a multiple of ``pixels`` dividing ``plane``, the largest whose input
    fits :func:`panel_bytes` (else ``pixels``), among those whose count the cores divide, else
    those at least as many as the cores (two threads: 256->64 at 56x56 as 14 panels of 224, not
    7 of 448; 128->512 at 28x28 with AVX2 as 7 of 112, not 1 of 784)."""
    budget = panel_bytes(target)
    fits = [
        m * pixels
        for m in range(1, plane // pixels + 1)
        if plane % (m * pixels) == 0 and 4 * nest.in_channels * m * pixels <= budget
    ] or [pixels]
    even = [p for p in fits if (plane // p) % target.num_cores == 0]
    enough = [p for p in fits if plane // p >= target.num_cores]
    return max(even or enough or fits)


def pointwise_kernel(
    func: tirx.PrimFunc, target: CpuTarget, tile: PanelTile | None = None
) -> tirx.PrimFunc | None:
    """``func`` scheduled as the module docstring says, or ``None`` (not such a convolution).

    ``tile`` overrides :func:`choose_panel_tile` (to measure alternatives); it
    must divide the output channels and the panel, and the panel the plane.
    """
    sch = s_tir.Schedule(func)
    nest = match_conv2d(sch)
    if nest is None or nest.is_depthwise:
        return None
    data = sch.get(sch.get_sblock(nest.block)).reads[1 - nest.weight_read].source
    if int(data.shape[3]) != nest.out_width:  # a stride (or padding) in x only
        return None
    chosen = choose_panel_tile(nest, target)
    if chosen is None:
        return None
    tile = tile or chosen
    plane = nest.out_height * nest.out_width
    if plane % tile.panel or tile.panel % tile.pixels or nest.out_channels % tile.block_k:
        return None
    if not inline_plain_copy(sch, nest):  # only an unpadded copy (LegalizeOps' pad_temp)
        return None
    pack_weights(sch, sch.get_sblock(nest.block), nest, tile.block_k)
    _schedule(sch, nest, tile)
    return sch.mod["main"]


def _schedule(sch: s_tir.Schedule, nest: ConvNest, tile: PanelTile) -> None:
    """Panels in parallel, the panel copy inside, then channel blocks x register tiles."""
    width, panel = nest.out_width, tile.panel
    conv = sch.get_sblock(nest.block)
    out = inline_epilogue(sch, conv, nest)

    copy = sch.cache_read(conv, 1 - nest.weight_read, "global")
    to_panels = lambda n, c, y, x: (  # noqa: E731
        n,
        (y * width + x) // panel,
        c,
        (y * width + x) % panel,
    )
    sch.transform_layout(copy, ("write", 0), to_panels)
    sch.transform_block_layout(copy, to_panels)

    # Conv and output indexed by the plane position; the reduction (c, ky, kx) is one loop.
    sch.transform_layout(conv, ("write", 0), lambda n, k, y, x: (n, k, y * width + x))
    sch.transform_block_layout(out, lambda n, k, y, x: (n, k, y * width + x))
    sch.transform_block_layout(
        conv, lambda n, k, y, x, c, ky, kx: (n, k, y * width + x, c + ky + kx)
    )
    n, k, p = sch.get_loops(out)
    ko, ki = sch.split(k, [None, tile.block_k])
    pb, pt, vi, lane = sch.split(p, [None, panel // tile.pixels, tile.vectors, tile.lanes])
    sch.reorder(n, pb, ko, pt, ki, vi, lane)
    outer = sch.fuse(n, pb)
    sch.parallel(outer)
    sch.compute_at(conv, pt)
    sch.set_scope(conv, 0, "local")
    sch.compute_at(copy, outer)
    # One vector per step: the panel loop is whole vectors long (thousands of positions), and
    # vectorised as one it gave LLVM vectors of that many lanes (PP-OCRv4 det: 15.5 s to write).
    _, copy_lane = sch.split(sch.get_loops(copy)[-1], [None, tile.lanes])
    sch.vectorize(copy_lane)

    roles = loops_by_iter(sch, conv, first=3)  # iterators n, k, p, c
    conv_vi, conv_lane = sch.split(roles[2], [tile.vectors, tile.lanes])
    inner = [roles[1], conv_vi]
    sch.reorder(roles[3], *inner, conv_lane)
    for loop in inner:
        sch.unroll(loop)
    sch.vectorize(conv_lane)
    init = sch.decompose_reduction(conv, roles[3])
    init_loops = sch.get_loops(init)
    for loop in init_loops[-3:-1]:
        sch.unroll(loop)
    sch.vectorize(init_loops[-1])
    sch.unroll(ki)
    sch.unroll(vi)
    sch.vectorize(lane)


class Conv2dPointwiseRule:
    """Wide pointwise convolutions over packed plane panels (module docstring)."""

    name = "conv2d_pointwise"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless :func:`choose_panel_tile` takes it."""
        return pointwise_kernel(func, target)
