"""Schedule rule for a float32 depthwise convolution (one input and output channel per group).

A depthwise convolution does ``kernel_h * kernel_w`` multiply-adds per output,
so it is bound by memory, not arithmetic. The kernel: every (image, channel)
plane is one parallel task; its padded input plane is built inside the task
(so it is still in cache when read), and each output row is computed in
strips of ``strip`` columns held in a local accumulator vector: for each
kernel tap, one vector of inputs times a broadcast weight. The fused epilogue
(bias, activation, clip, residual add) is applied to the strip as it is
written. The strip is the widest divisor of the output width up to two of the
target's float32 vectors (32 lanes with AVX-512, 16 with AVX2); LLVM splits a
strip that is not a whole number of registers.
"""

from __future__ import annotations

from tvm import s_tir, tirx

from npuc.backend.cpu.schedules.conv2d import float_lanes
from npuc.backend.cpu.schedules.conv_match import (
    ConvNest,
    inline_epilogue,
    loops_by_iter,
    match_conv2d,
)
from npuc.core.target import CpuTarget


def choose_strip(nest: ConvNest, target: CpuTarget) -> int:
    """Output columns per accumulator strip: the widest divisor of the width <= 2 vectors."""
    limit = 2 * float_lanes(target)
    return max(d for d in range(1, min(nest.out_width, limit) + 1) if nest.out_width % d == 0)


class DepthwiseConv2dRule:
    """Per-channel parallel, row-strip vectorised depthwise convolution."""

    name = "depthwise_conv2d"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it holds one depthwise conv2d."""
        sch = s_tir.Schedule(func)
        nest = match_conv2d(sch)
        if nest is None or not nest.is_depthwise:
            return None
        schedule_depthwise(sch, nest, choose_strip(nest, target))
        return sch.mod["main"]


def schedule_depthwise(sch: s_tir.Schedule, nest: ConvNest, strip: int) -> None:
    """Apply the kernel of the module docstring to ``sch`` (in place)."""
    conv = sch.get_sblock(nest.block)
    out = inline_epilogue(sch, conv, nest)
    n, k, _row, x = sch.get_loops(out)
    plane = sch.fuse(n, k)
    sch.parallel(plane)
    xo, xi = sch.split(x, [None, strip])
    sch.compute_at(conv, xo)
    sch.set_scope(conv, 0, "local")

    roles = loops_by_iter(sch, conv, first=3)
    taps = [roles[i] for i in (4, 5, 6) if i in roles]  # channel (extent 1), ky, kx
    columns = [roles[3]] if 3 in roles else []  # absent when the strip is one column
    sch.reorder(*taps, *columns)
    for tap in taps:
        sch.unroll(tap)
    for column in columns:
        sch.vectorize(column)
    if taps:
        init = sch.decompose_reduction(conv, taps[0])
        if columns:
            sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(xi)
    if nest.pad_block is not None:
        sch.compute_at(sch.get_sblock(nest.pad_block), plane)
