"""Schedule rule for a float32 depthwise convolution (one input and output channel per group).

A depthwise convolution does ``kernel_h * kernel_w`` multiply-adds per output,
so it is bound by memory, not arithmetic. The kernel: every (image, channel)
plane is one parallel task; its padded input plane is built inside the task
(so it is still in cache when read), and each output row is computed in
strips of ``strip`` columns held in a local accumulator vector: for each
kernel tap, one vector of inputs times a broadcast weight. The fused epilogue
(bias, activation, clip, residual add) is applied to the strip as it is
written. Up to :data:`MAX_ROW_BLOCK` output rows are computed together, so
that each tap feeds several independent accumulator chains
(:func:`choose_rows`). The strip is at most two of the target's float32 vectors (32 lanes
with AVX-512, 16 with AVX2): the widest power of two that divides the output
width, else the widest divisor (:func:`choose_strip`).

With a column stride ``s`` (stride-2 downsampling layers) the vector of
inputs for a tap would be a strided gather; instead the padded plane is
stored de-interleaved, ``[row][column % s][column // s]``, so each tap loads
one contiguous vector (:func:`deinterleave_columns`). Measured one thread
(Rocket Lake, shared machine): MobileNetV2's 96x112x112 s2 2.1 -> 0.6-0.9 ms,
PP-OCRv4 det's 192x30x40 5x5 s2 0.70 -> 0.29 ms.

Output rows at most :data:`FLAT_MAX_WIDTH` wide are computed instead by the
flat phase-plane kernel of :mod:`depthwise_flat` (whole vectors over
``rows x padded width``, any stride): orientation's 512x7x7 5x5 0.072 ->
0.037 ms, 256x14x14 5x5 s2 0.078 -> 0.022 ms, 128x28x28 s2 0.055 -> 0.019 ms
(one thread). On wider rows it measured slower (16x112x112 0.07 -> 0.11 ms).
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.sym import detect_linear_equation

from npuc.backend.cpu.schedules.conv2d import float_lanes
from npuc.backend.cpu.schedules.conv_match import (
    ConvNest,
    inline_epilogue,
    loops_by_iter,
    match_conv2d,
)
from npuc.backend.cpu.schedules.depthwise_flat import build_flat_kernel
from npuc.backend.cpu.schedules.loops import extent
from npuc.core.target import CpuTarget

#: Narrowest output row whose padded plane is de-interleaved for a column
#: stride (:func:`deinterleave_columns`); below it the copy costs more than
#: the gathers it saves (measured: 7 wide 0.13 -> 0.5 ms, 14 wide equal).
MIN_DEINTERLEAVE_WIDTH = 16

#: Widest output row computed by the flat phase-plane kernel (:mod:`depthwise_flat`).
FLAT_MAX_WIDTH = 28

#: Narrowest power-of-two strip preferred to a wider strip of another width.
MIN_POW2_STRIP = 8

#: Widest strip of a width no power of two divides (one AVX-512 vector, two AVX2).
MAX_ODD_STRIP = 16

#: Output rows computed together (independent accumulator chains), at most.
MAX_ROW_BLOCK = 8

#: Accumulator vector registers the row block may use (of 32 with AVX-512, 16 with AVX2).
ROW_BLOCK_REGISTERS = 8


def choose_strip(nest: ConvNest, target: CpuTarget) -> int:
    """Output columns per accumulator strip.

    The widest power of two from :data:`MIN_POW2_STRIP` up to two of the
    target's vectors that divides the width; when none does, the widest
    divisor of the width up to :data:`MAX_ODD_STRIP` (28 -> 14, 14 -> 14) if
    that is at least :data:`MIN_POW2_STRIP` wide, else the widest divisor up
    to two vectors (7 -> 7, 17 -> 17). A strip of 28 or 56 lanes is split by
    LLVM into 16 + 8 + 4 lane pieces whose loads and broadcasts are rebuilt
    lane by lane: MobileNetV2's
    32x112x112 0.45 -> 0.37 ms, 144x56x56 0.58 -> 0.47 ms (one thread, loaded
    host; strips 16 and 8 instead of 28).
    """
    limit = 2 * float_lanes(target)
    width = nest.out_width
    pow2 = [s for s in (32, 16, 8) if MIN_POW2_STRIP <= s <= limit and width % s == 0]
    if pow2:
        return pow2[0]
    odd = max(d for d in range(1, min(width, limit, MAX_ODD_STRIP) + 1) if width % d == 0)
    if odd >= MIN_POW2_STRIP:
        return odd
    return max(d for d in range(1, min(width, limit) + 1) if width % d == 0)


def choose_rows(nest: ConvNest, strip: int, target: CpuTarget) -> int:
    """Output rows per block: the widest divisor of the height whose strips fit the registers.

    Each row of a block is its own chain of multiply-adds (one per tap), so a
    block of ``r`` rows keeps ``r`` chains in flight where one row waits on
    the latency of every add: PP-LCNet's 256x14x14 5x5 0.13 -> 0.075 ms,
    MobileNetV2's 192x28x28 0.146 -> 0.087 ms (strip 14, 7 rows). Strips
    narrower than :data:`MIN_POW2_STRIP` (a 7-wide row) stay one row a block:
    their partial vectors spill when blocked (512x7x7 5x5 0.14 -> 0.46 ms).
    """
    if strip < MIN_POW2_STRIP:
        return 1
    registers = -(-strip // float_lanes(target))
    height = nest.out_height
    return max(
        r
        for r in range(1, MAX_ROW_BLOCK + 1)
        if height % r == 0 and r * registers <= ROW_BLOCK_REGISTERS
    )


class DepthwiseConv2dRule:
    """Per-channel parallel, row-strip vectorised depthwise convolution."""

    name = "depthwise_conv2d"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it holds one depthwise conv2d."""
        sch = s_tir.Schedule(func)
        nest = match_conv2d(sch)
        if nest is None or not nest.is_depthwise:
            return None
        if nest.out_width <= FLAT_MAX_WIDTH:
            flat = build_flat_kernel(func, nest, float_lanes(target))
            if flat is not None:
                return flat
        strip = choose_strip(nest, target)
        schedule_depthwise(sch, nest, strip, choose_rows(nest, strip, target))
        return sch.mod["main"]


def schedule_depthwise(sch: s_tir.Schedule, nest: ConvNest, strip: int, rows: int = 1) -> None:
    """Apply the kernel of the module docstring to ``sch`` (in place).

    ``rows`` output rows (a divisor of the height) are computed together: for
    each tap, the strip of every row of the block (unrolled).
    """
    stride = column_stride(sch, nest)
    conv = sch.get_sblock(nest.block)
    out = inline_epilogue(sch, conv, nest)
    n, k, row, x = sch.get_loops(out)
    plane = sch.fuse(n, k)
    sch.parallel(plane)
    yo, yi = sch.split(row, [None, rows])
    xo, xi = sch.split(x, [None, strip])
    sch.reorder(yo, xo, yi, xi)
    sch.compute_at(conv, xo)
    sch.set_scope(conv, 0, "local")

    roles = loops_by_iter(sch, conv, first=3)
    taps = [roles[i] for i in (4, 5, 6) if i in roles]  # channel (extent 1), ky, kx
    block_rows = [roles[2]] if 2 in roles else []  # absent for a one-row block
    columns = [roles[3]] if 3 in roles else []  # absent when the strip is one column
    sch.reorder(*taps, *block_rows, *columns)
    for loop in (*taps, *block_rows):
        sch.unroll(loop)
    for column in columns:
        sch.vectorize(column)
    if taps:
        init = sch.decompose_reduction(conv, taps[0])
        if columns:
            sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(yi)
    sch.vectorize(xi)
    if nest.pad_block is not None:
        pad = sch.get_sblock(nest.pad_block)
        sch.compute_at(pad, plane)
        if stride > 1:
            deinterleave_columns(sch, pad, stride)


def column_stride(sch: s_tir.Schedule, nest: ConvNest) -> int:
    """The convolution's column stride (coefficient of the output column in the input read).

    1 when there is no padded copy, the row is narrower than
    :data:`MIN_DEINTERLEAVE_WIDTH` or the index is not linear in the column.
    """
    if nest.pad_block is None or nest.out_width < MIN_DEINTERLEAVE_WIDTH:
        return 1
    block = sch.get(sch.get_sblock(nest.block))
    padded = sch.get(sch.get_sblock(nest.pad_block)).writes[0].source
    column = block.iter_vars[3].var
    for read in block.reads:
        if read.source.same_as(padded):
            coefficients = detect_linear_equation(read.region[-1].min, [column])
            if len(coefficients) == 2 and isinstance(coefficients[0], tirx.IntImm):
                return max(int(coefficients[0]), 1)
    return 1


def deinterleave_columns(sch: s_tir.Schedule, pad: s_tir.schedule.SBlockRV, stride: int) -> None:
    """Store the padded plane as ``[row][column % stride][column // stride]``.

    Output column ``x`` reads padded column ``stride * x + kx``, which is
    column ``x + kx // stride`` of phase ``kx % stride``: a strip of outputs
    then loads one contiguous vector per tap instead of a strided gather.

    The copy walks the phase columns with the phases unrolled inside, so
    LLVM can read consecutive input columns as one interleaved group (wide
    loads split by permutes, a contiguous store per phase): it does for
    MobileNet's 3x3 layers padded by 1 on an even width; with an odd padded
    width or a 5x5 kernel padded by 2 it still gathers with AVX-512. Copied
    phase by phase (phase loop outside) every copy read every other column:
    AVX-512 gathers, scalar loads with AVX2. One thread, each kernel alone,
    interleaved (commit message): orientation's 32x112x112 stride-2 layer 95
    -> 81 us (AVX-512), 127 -> 91 us (AVX2); MobileNetV2's 96x112x112 303 ->
    294 us, 412 -> 344. Splitting the copy from the padding first
    (``decompose_padding``: a fill of the whole plane, then a copy without a
    bounds test) measured 1.25x slower with AVX-512 than before.
    """
    sch.transform_layout(
        pad,
        ("write", 0),
        lambda n, c, y, x: (n, c, y, x % stride, x // stride),
        pad_value=0.0,  # an odd padded width leaves a never-read slot at the end of a phase
    )
    column = sch.get_loops(pad)[-1]
    trip = extent(sch, column)
    if trip is None:
        return
    _, phase = sch.split(column, [-(-trip // stride), stride])
    sch.unroll(phase)
