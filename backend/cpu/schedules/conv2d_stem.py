"""Schedule rule for a network's stem: a float32 NCHW convolution of an image's few channels.

The first layer of a vision model (3 input channels, a 3x3 or 7x7 window,
stride 2, rows 111 or 112 wide) has a reduction of a few dozen taps per
output. :class:`~npuc.backend.cpu.schedules.conv2d.Conv2dRule` computes it
with its channels on the vector lanes and writes NCHW through a transpose
(one scalar store per output), and its tile's columns must divide the width
(SqueezeNet's 111: 64 channels x 3 columns). This kernel (built as TIR, not
scheduled from the fused function) puts the output *columns* on the lanes,
so each output vector is stored as it is:

- Each parallel task is a band of output rows (:func:`rows_per_task`) of
  one image. It copies the input rows the band reads into *phase rows*
  ``P[c][r][px][X] = padded[c][y0 * sh + r][X * sw + px]`` (zero where
  padded), so the taps of a strided window are contiguous: tap ``(ky, kx)``
  of output ``(y0 + dy, x)`` reads phase row ``(dy * sh + ky * dh, kx * dw
  % sw)`` at ``x + kx * dw // sw``. LLVM vectorises the copy with
  interleaved loads.
- The task then loops over channel blocks, and inside them over its rows,
  so it writes ``block_k`` output planes a band at a time. A row's outputs
  are vectors of the target's float32 lanes, the last one ending at the
  row's end (overlapping the one before when the lanes do not divide the
  width: its outputs are computed twice and stored twice, the same values).
  A register tile is ``block_k`` output channels by ``vectors`` of them
  (:func:`choose_stem_tile`); per tap, one vector load of a phase row per
  vector and one broadcast weight per channel. A row of more than
  :data:`MAX_UNROLLED_TILES` tiles loops over its regular tiles and emits
  only the last ones (:meth:`StemKernel.row_tiles`).
- The fused epilogue (bias, activation, clip, residual) is the epilogue
  block's expression (:func:`depthwise_epilogue.epilogue_of`), applied as
  the accumulators are stored.

Requires: an ungrouped convolution (:func:`match_conv2d`) of at most
:data:`STEM_MAX_CHANNELS` input channels and :data:`STEM_MAX_TAPS` products
per output, whose data is a zero-padded copy of
a parameter (or the parameter itself) read at ``y * sh + ky * dh``, ``x * sw
+ kx * dw``, output rows at least one vector wide, and an epilogue whose
expression is made of arithmetic, selects, casts, calls and loads of
parameters; anything else is declined (``None``). Guarantees: the
unscheduled function's results, each output summed in the same order (input
channel, then kernel row, then kernel column) from zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tvm
from tvm import s_tir, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx.script.builder import ir as T

from npuc.backend.cpu.schedules.conv_match import ConvNest, match_conv2d, static_ints
from npuc.backend.cpu.schedules.depthwise_epilogue import ValueAt, epilogue_of
from npuc.backend.cpu.schedules.depthwise_flat import (
    FlatGeometry,
    input_geometry,
    input_read,
    linear_coefficients,
)
from npuc.backend.cpu.schedules.stem_tile import (  # re-exported: tests and docs name them here
    TASK_ROW_BYTES,
    StemTile,
    band_span,
    choose_stem_tile,
    rows_per_task,
)
from npuc.core.target import CpuTarget

__all__ = [
    "STEM_MAX_CHANNELS",
    "STEM_MAX_TAPS",
    "TASK_ROW_BYTES",
    "Conv2dStemRule",
    "StemKernel",
    "StemTile",
    "band_span",
    "build_stem_kernel",
    "choose_stem_tile",
    "rows_per_task",
    "stem_geometry",
]

#: Input channels up to which a convolution is a stem (an RGB or RGBA image).
STEM_MAX_CHANNELS = 4
#: Longest reduction (input channels x kernel taps) taken: the longest measured, ResNet-50's
#: 7x7 stem on RGB. The conv2d rule's transposed store costs the same per output whatever the
#: reduction, so the gain shrinks with it: 3x3 stems (27) ran 0.5-0.7x of the conv2d rule's
#: time, the 7x7 one (147) 0.97x alone and 0.93x in the model with AVX-512, 0.84x alone
#: compiled for AVX2 (one thread).
STEM_MAX_TAPS = 147


def _padded_source(sch: s_tir.Schedule, nest: ConvNest) -> tuple[tirx.Buffer, int, int] | None:
    """The parameter a zero-padding block (or plain copy) copies and its (top, left) offsets,
    or ``None``."""
    assert nest.pad_block is not None
    pad = sch.get(sch.get_sblock(nest.pad_block))
    if len(pad.reads) != 1 or not isinstance(pad.body, tirx.BufferStore):
        return None
    value = pad.body.value
    if not isinstance(value, tvm.ir.TensorLoad) and not (
        isinstance(value, tvm.ir.Call)
        and str(value.op.name) in ("tirx.if_then_else", "prim.if_then_else")
        and isinstance(value.args[2], tirx.FloatImm)
        and float(value.args[2].value) == 0.0
    ):
        return None
    pvars = [iv.var for iv in pad.iter_vars]
    region = pad.reads[0].region
    for axis in (0, 1):
        if linear_coefficients(region[axis].min, [pvars[axis]]) != [1, 0]:
            return None
    top = linear_coefficients(region[2].min, [pvars[2]])
    left = linear_coefficients(region[3].min, [pvars[3]])
    if top is None or left is None or top[0] != 1 or left[0] != 1:
        return None
    return pad.reads[0].source, -top[1], -left[1]


def stem_geometry(sch: s_tir.Schedule, nest: ConvNest) -> tuple[FlatGeometry, tirx.Buffer] | None:
    """The convolution's geometry and its input parameter, or ``None`` if not of the form."""
    read = input_read(sch, nest)
    if read is None:
        return None
    data_read, vars_, rows, cols = read
    if linear_coefficients(data_read.region[1].min, [vars_[1], vars_[4]]) != [0, 1, 0]:
        return None
    if linear_coefficients(data_read.region[0].min, [vars_[0]]) != [1, 0]:
        return None
    padded = static_ints(list(data_read.source.shape))
    assert padded is not None  # match_conv2d checked
    source, pad_top, pad_left = data_read.source, 0, 0
    if nest.pad_block is not None:
        found = _padded_source(sch, nest)
        if found is None:
            return None
        source, pad_top, pad_left = found
    if str(source.dtype) != "float32":
        return None
    return input_geometry(sch, nest, source, padded, rows, cols, (pad_top, pad_left))


class Conv2dStemRule:
    """Column-vectorised stem convolution (see the module docstring for what it takes)."""

    name = "conv2d_stem"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it holds one stem convolution."""
        return build_stem_kernel(func, target)


def build_stem_kernel(
    func: tirx.PrimFunc, target: CpuTarget, tile: StemTile | None = None, rows: int | None = None
) -> tirx.PrimFunc | None:
    """The kernel of the module docstring for ``func``, or ``None`` when not of the form.

    ``tile`` and ``rows`` override :func:`choose_stem_tile` and
    :func:`rows_per_task` (to measure alternatives); ``tile.block_k`` must
    divide the output channels.
    """
    sch = s_tir.Schedule(func)
    nest = match_conv2d(sch)
    if nest is None or nest.groups != 1 or nest.in_channels > STEM_MAX_CHANNELS:
        return None
    if nest.in_channels * nest.kernel_h * nest.kernel_w > STEM_MAX_TAPS:
        return None
    if tile is None:
        tile = choose_stem_tile(nest.out_channels, nest.out_width, target)
    if tile is None or nest.out_channels % tile.block_k or nest.out_width < tile.lanes:
        return None
    found = stem_geometry(sch, nest)
    if found is None:
        return None
    geometry, source = found
    if rows is None:
        rows = rows_per_task(geometry, target.num_cores)
    kernel = StemKernel(geometry=geometry, tile=tile, out_channels=nest.out_channels, rows=rows)
    epilogue = epilogue_of(sch, nest)
    if epilogue is None:
        return None
    out_buffer, value_at = epilogue
    probe = [tirx.Var(name, "int64") for name in "ncyx"]
    if value_at(probe, tirx.FloatImm("float32", 0.0)) is None:
        return None
    weight = sch.get(sch.get_sblock(nest.block)).reads[nest.weight_read].source
    return kernel.emit(func, source, weight, out_buffer, value_at)


#: Tiles of a row emitted one after the other; a row of more loops over its regular tiles.
#: Every tile emitted made a 4096-wide row (256 vectors) take 67 s to build with AVX-512, a
#: 1920-wide input at stride 2 15.6 s for AVX2 (looped: 1.0 and 0.8 s, and 0.95x the kernel
#: time, one thread, bit-identical outputs).
MAX_UNROLLED_TILES = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class StemKernel:
    """The loop nest of one stem convolution."""

    geometry: FlatGeometry
    tile: StemTile
    out_channels: int
    rows: int = 4
    """Output rows per task."""

    @property
    def span(self) -> int:
        """Padded input rows a task of :attr:`rows` output rows reads."""
        return band_span(self.geometry, self.rows)

    @property
    def task_elements(self) -> int:
        """Elements of a task's phase rows: channels x span x column phases x ``wq``."""
        g = self.geometry
        return g.channels * self.span * g.stride_w * g.phase_w

    def starts(self) -> list[list[int]]:
        """First output column of each vector, by tile; the last vector ends at the row's end."""
        lanes, width = self.tile.lanes, self.geometry.out_w
        count = -(-width // lanes)
        starts = [min(v * lanes, width - lanes) for v in range(count)]
        tiles = -(-count // self.tile.vectors)
        sizes = [count // tiles + (i < count % tiles) for i in range(tiles)]
        return [starts[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(tiles)]

    def row_tiles(self) -> tuple[int, list[list[int]]]:
        """``(looped, tiles)``: :meth:`starts` when it has at most :data:`MAX_UNROLLED_TILES`
        tiles (``looped`` 0); else ``looped`` tiles of ``vectors`` whole vectors from column 0
        (a loop), then the remaining ``vectors`` to ``2 * vectors - 1`` vectors cut as
        :meth:`starts` cuts a row."""
        tiles = self.starts()
        if len(tiles) <= MAX_UNROLLED_TILES:
            return 0, tiles
        lanes, width, vectors = self.tile.lanes, self.geometry.out_w, self.tile.vectors
        count = -(-width // lanes)
        looped = count // vectors - 1
        rest = [min(v * lanes, width - lanes) for v in range(looped * vectors, count)]
        parts = -(-len(rest) // vectors)
        sizes = [len(rest) // parts + (i < len(rest) % parts) for i in range(parts)]
        return looped, [rest[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(parts)]

    def emit(
        self,
        func: tirx.PrimFunc,
        source: tirx.Buffer,
        weight: tirx.Buffer,
        out_buffer: tirx.Buffer,
        value_at: ValueAt,
    ) -> tirx.PrimFunc:
        """The PrimFunc with ``func``'s parameters and attributes."""
        g, tile = self.geometry, self.tile
        inputs = [p for p in func.params if not p.same_as(out_buffer)]
        chunks = -(-g.out_h // self.rows)
        looped, tiles = self.row_tiles()
        most = max([len(t) for t in tiles] + ([tile.vectors] if looped else []))
        with IRBuilder() as ib, T.prim_func(s_tir=True):
            T.func_name("main")
            for p in func.params:
                T.arg(p.name, p)
            T.func_attr(dict(func.attrs.items()) if func.attrs is not None else {})
            with (
                T.sblock("root"),
                T.parallel(0, g.batch * chunks) as task,
                T.sblock("conv2d_stem"),
            ):
                T.reads(*[p[tuple(slice(None) for _ in p.shape)] for p in inputs])
                T.writes(out_buffer[:, :, :, :])
                phases = T.sblock_alloc_buffer((self.task_elements,), "float32")
                size = tile.block_k * most * tile.lanes
                acc = T.sblock_alloc_buffer((size,), "float32", scope="local")
                n, y0 = task // chunks, task % chunks * self.rows
                count = tirx.min(self.rows, g.out_h - y0)
                self._fill(phases, source, n, y0, count)
                with (
                    T.serial(0, self.out_channels // tile.block_k) as kb,
                    T.serial(0, count) as dy,
                ):
                    k0, y = kb * tile.block_k, y0 + dy
                    if looped:
                        with T.serial(0, looped) as t:
                            step = tile.vectors * tile.lanes
                            regular = [t * step + v * tile.lanes for v in range(tile.vectors)]
                            self._tile(phases, weight, acc, k0, dy, regular)
                            self._store(acc, out_buffer, value_at, n, k0, y, regular)
                    for starts in tiles:
                        self._tile(phases, weight, acc, k0, dy, starts)
                        self._store(acc, out_buffer, value_at, n, k0, y, starts)
        return ib.get()

    def _row(self, c: tvm.ir.Expr, row: tvm.ir.Expr, px: int) -> tvm.ir.Expr:
        """First element of the task's phase row ``(c, row, px)``."""
        g = self.geometry
        return ((c * self.span + row) * g.stride_w + px) * g.phase_w

    def _fill(
        self,
        phases: tirx.Buffer,
        source: tirx.Buffer,
        n: tvm.ir.Expr,
        y0: tvm.ir.Expr,
        count: tvm.ir.Expr,
    ) -> None:
        """Copy the padded input rows output rows ``y0 .. y0 + count`` read into phase rows.

        A padding row is read at a clamped row and replaced by zeros (a select
        on a condition of the row only); the columns of all phases are copied in
        one loop over the phase columns they all hold, then each phase's own
        first and last columns, and the padding columns are zeroed.
        """
        g = self.geometry
        sw, wq = g.stride_w, g.phase_w
        cols = [g.held(px, sw, g.pad_left, g.in_w, wq) for px in range(sw)]
        common = (max(lo for lo, _ in cols), min(hi for _, hi in cols))
        zero = tirx.FloatImm("float32", 0.0)
        read = (count - 1) * g.stride_h + (g.kernel_h - 1) * g.dilation_h + 1  # band_span(g, count)
        with T.serial(0, g.channels) as c, T.serial(0, read) as i:
            r = y0 * g.stride_h + i - g.pad_top
            inside = tirx.all(r >= 0, r < g.in_h)
            clamped = tirx.max(tirx.min(r, g.in_h - 1), 0)

            def copy(px: int, xx: tvm.ir.Expr) -> None:
                value = source[n, c, clamped, xx * sw + (px - g.pad_left)]
                index = self._row(c, i, px) + xx
                T.buffer_store(phases, tirx.Select(inside, value, zero), [index])

            if common[0] < common[1]:
                with T.serial(common[0], common[1]) as xx:
                    for px in range(sw):
                        copy(px, xx)
            for px, (lo, hi) in enumerate(cols):
                for a, b in ((lo, min(hi, common[0])), (max(lo, common[1]), hi)):
                    if a < b:
                        with T.serial(a, b) as xx:
                            copy(px, xx)
                for a, b in ((0, lo), (max(lo, hi), wq)):
                    if a < b:
                        with T.serial(a, b) as xx:
                            T.buffer_store(phases, zero, [self._row(c, i, px) + xx])

    def _tile(
        self,
        phases: tirx.Buffer,
        weight: tirx.Buffer,
        acc: tirx.Buffer,
        k0: tvm.ir.Expr,
        dy: tvm.ir.Expr,
        starts: Sequence[int | tvm.ir.Expr],
    ) -> None:
        """``acc[k][v] =`` the convolution at channels ``k0 + k``, the task's row ``dy``,
        columns ``starts[v] + lane``."""
        g, tile = self.geometry, self.tile
        lanes, vectors = tile.lanes, len(starts)
        for j in range(tile.block_k * vectors):
            with T.vectorized(0, lanes) as lane:
                T.buffer_store(acc, tirx.FloatImm("float32", 0.0), [j * lanes + lane])
        # Kernel rows as a loop, columns unrolled: with every tap unrolled (27 of them)
        # SqueezeNet's stem ran 0.32 ms instead of 0.27 (one thread, AVX-512).
        with T.serial(0, g.channels) as c, T.serial(0, g.kernel_h) as ky:
            row = dy * g.stride_h + ky * g.dilation_h
            for kx in range(g.kernel_w):
                qx, px = divmod(kx * g.dilation_w, g.stride_w)
                first = self._row(c, row, px) + qx
                for k in range(tile.block_k):
                    w = weight[k0 + k, c, ky, kx]
                    for v, start in enumerate(starts):
                        with T.vectorized(0, lanes) as lane:
                            i = (k * vectors + v) * lanes + lane
                            tap = phases[first + start + lane]
                            T.buffer_store(acc, acc[i] + tap * w, [i])

    def _store(
        self,
        acc: tirx.Buffer,
        out_buffer: tirx.Buffer,
        value_at: ValueAt,
        n: tvm.ir.Expr,
        k0: tvm.ir.Expr,
        y: tvm.ir.Expr,
        starts: Sequence[int | tvm.ir.Expr],
    ) -> None:
        """Write the tile's outputs through the epilogue."""
        lanes, vectors = self.tile.lanes, len(starts)
        for k in range(self.tile.block_k):
            for v, start in enumerate(starts):
                with T.vectorized(0, lanes) as lane:
                    index = [n, k0 + k, y, start + lane]
                    value = value_at(index, acc[(k * vectors + v) * lanes + lane])
                    assert value is not None  # probed by build_stem_kernel
                    T.buffer_store(out_buffer, value, index)
