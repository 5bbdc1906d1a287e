"""Depthwise convolution on flattened phase planes: whole vectors for narrow or strided rows.

A float32 NCHW depthwise convolution whose output rows are narrow (7, 14 or
28 columns) or strided computes poorly as row strips: a 7- or 14-wide strip
is split by LLVM into 8 + 4 + 2 + 1 lane pieces for every tap, and a
stride-2 tap reads every other column. This kernel (built as TIR, not
scheduled from the fused function) avoids both:

- Each task copies its planes into ``stride_h * stride_w`` *phase planes*
  ``P[py][px][Y * wq + X] = padded[Y * stride_h + py][X * stride_w + px]``
  (zero where padded; the borders are zeroed once per task). Tap
  ``(ky, kx)`` of output ``(y, x)`` reads phase ``(ky*dh % sh, kx*dw % sw)``
  at ``(y + ky*dh // sh) * wq + x + kx*dw // sw``.
- So the outputs are computed on the *flat* index ``i = y * wq + x``
  (``wq >= out_width`` columns a row, the extra ones discarded): for each
  tap, one contiguous vector of a phase plane times a broadcast weight, in
  groups of :data:`GROUP_VECTORS` accumulator vectors. A 7x7 5x5 plane
  (``wq`` 11) is 5 AVX-512 vectors a tap where 7 row strips were 21 pieces.
- The fused epilogue (bias, activation, clip, residual) is the epilogue
  block's own expression, applied row by row as the flat result is
  written to the output (:func:`depthwise_epilogue.epilogue_of`).

Requires: the function holds one depthwise convolution (:func:`match_conv2d`)
whose data is a zero-padded copy of a parameter (or the parameter itself),
read at ``y * sh + ky * dh``, ``x * sw + kx * dw``, and an epilogue whose
expression is made of arithmetic, selects, casts, calls and loads of
parameters. Guarantees: the same results as the unscheduled function up to
float32 summation order (taps summed in the same order as the row-strip
kernel: ky, then kx).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import tvm
from tvm import s_tir, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.sym import detect_linear_equation
from tvm.tirx.script.builder import ir as T

from npuc.backend.cpu.schedules.conv_match import ConvNest, static_ints
from npuc.backend.cpu.schedules.depthwise_epilogue import ValueAt, epilogue_of
from npuc.backend.cpu.schedules.int_depthwise import channels_per_task

#: Accumulator vectors computed together (independent multiply-add chains per tap).
GROUP_VECTORS = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class FlatGeometry:
    """Sizes (elements) of one depthwise convolution on phase planes."""

    batch: int
    channels: int
    in_h: int
    in_w: int
    out_h: int
    out_w: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    pad_top: int
    pad_left: int
    padded_h: int
    padded_w: int

    @property
    def phase_h(self) -> int:
        return -(-self.padded_h // self.stride_h)

    @property
    def phase_w(self) -> int:
        """``wq``: columns of a phase plane row (the flat row pitch)."""
        return -(-self.padded_w // self.stride_w)

    @staticmethod
    def held(phase: int, stride: int, pad: int, length: int, limit: int) -> tuple[int, int]:
        """Phase rows (or columns) ``[lo, hi)`` of ``phase`` that hold input, not padding."""
        return max(0, -(-(pad - phase) // stride)), min(
            limit, (length - 1 + pad - phase) // stride + 1
        )

    def vectors(self, lanes: int) -> int:
        """Accumulator vectors covering the flat outputs ``out_h * wq``."""
        return -(-self.out_h * self.phase_w // lanes)

    def plane_size(self, lanes: int) -> int:
        """Elements of one phase plane, with room for the last vector of every tap."""
        last_tap = ((self.kernel_h - 1) * self.dilation_h // self.stride_h) * self.phase_w + (
            self.kernel_w - 1
        ) * self.dilation_w // self.stride_w
        return max(self.phase_h * self.phase_w, self.vectors(lanes) * lanes + last_tap)


def linear_coefficients(expr: tvm.ir.Expr, vars_: list[tirx.Var]) -> list[int] | None:
    """Integer coefficients of ``expr`` in ``vars_`` then its constant term, or ``None`` when
    it is not linear in them with constant integer coefficients."""
    found = detect_linear_equation(expr, vars_)
    if len(found) != len(vars_) + 1 or not all(isinstance(c, tirx.IntImm) for c in found):
        return None
    return [int(c) for c in found]


def input_read(
    sch: s_tir.Schedule, nest: ConvNest
) -> tuple[tirx.BufferRegion, list[tirx.Var], list[int], list[int]] | None:
    """The convolution's input read, its block iterators, and the (stride, dilation, 0)
    coefficients of its row and column indices; ``None`` unless both are constant, positive
    and without offset."""
    block = sch.get(sch.get_sblock(nest.block))
    data_read = block.reads[1 - nest.weight_read]
    vars_ = [iv.var for iv in block.iter_vars]
    rows = linear_coefficients(data_read.region[2].min, [vars_[2], vars_[5]])
    cols = linear_coefficients(data_read.region[3].min, [vars_[3], vars_[6]])
    if rows is None or cols is None or rows[2] or cols[2] or min(*rows[:2], *cols[:2]) < 1:
        return None
    return data_read, vars_, rows, cols


def geometry_of(sch: s_tir.Schedule, nest: ConvNest) -> tuple[FlatGeometry, tirx.Buffer] | None:
    """The convolution's geometry and its input parameter, or ``None`` if not of the form."""
    found = input_read(sch, nest)
    if found is None:
        return None
    data_read, vars_, rows, cols = found
    if linear_coefficients(data_read.region[1].min, [vars_[1], vars_[4]]) != [1, 1, 0]:
        return None
    padded = static_ints(list(data_read.source.shape))
    assert padded is not None  # match_conv2d checked
    pad_top = pad_left = 0
    source = data_read.source
    if nest.pad_block is not None:
        pad = sch.get(sch.get_sblock(nest.pad_block))
        if len(pad.reads) != 1 or not isinstance(pad.body, tirx.BufferStore):
            return None
        value = pad.body.value
        if not (
            isinstance(value, tvm.ir.Call)
            and str(value.op.name) in ("tirx.if_then_else", "prim.if_then_else")
            and isinstance(value.args[2], tirx.FloatImm)
            and float(value.args[2].value) == 0.0
        ):
            return None
        pvars = [iv.var for iv in pad.iter_vars]
        region = pad.reads[0].region
        top = linear_coefficients(region[2].min, [pvars[2]])
        left = linear_coefficients(region[3].min, [pvars[3]])
        if top is None or left is None or top[0] != 1 or left[0] != 1:
            return None
        pad_top, pad_left = -top[1], -left[1]
        source = pad.reads[0].source
    return input_geometry(sch, nest, source, padded, rows, cols, (pad_top, pad_left))


def input_geometry(
    sch: s_tir.Schedule,
    nest: ConvNest,
    source: tirx.Buffer,
    padded: list[int],
    rows: list[int],
    cols: list[int],
    pad: tuple[int, int],
) -> tuple[FlatGeometry, tirx.Buffer] | None:
    """The geometry of a convolution reading the function parameter ``source`` (NCHW) through
    its ``padded`` shape, with (stride, dilation) ``rows`` and ``cols`` and (top, left) ``pad``;
    ``None`` when ``source`` is not a static 4-d parameter of the function."""
    pad_top, pad_left = pad
    shape = static_ints(list(source.shape))
    params = list(sch.mod["main"].params)
    if shape is None or len(shape) != 4 or not any(b.same_as(source) for b in params):
        return None
    return FlatGeometry(
        batch=shape[0],
        channels=shape[1],
        in_h=shape[2],
        in_w=shape[3],
        out_h=nest.out_height,
        out_w=nest.out_width,
        kernel_h=nest.kernel_h,
        kernel_w=nest.kernel_w,
        stride_h=rows[0],
        stride_w=cols[0],
        dilation_h=rows[1],
        dilation_w=cols[1],
        pad_top=pad_top,
        pad_left=pad_left,
        padded_h=padded[2],
        padded_w=padded[3],
    ), source


def build_flat_kernel(func: tirx.PrimFunc, nest: ConvNest, lanes: int) -> tirx.PrimFunc | None:
    """The kernel of the module docstring for ``func`` with vectors of ``lanes`` float32.

    ``None`` when the convolution or its epilogue is not of the form the
    module docstring requires.
    """
    sch = s_tir.Schedule(func)
    found = geometry_of(sch, nest)
    epilogue = epilogue_of(sch, nest)
    if found is None or epilogue is None:
        return None
    geometry, source = found
    out_buffer, value_at = epilogue
    probe = [tirx.Var(name, "int64") for name in "ncyx"]
    if value_at(probe, tirx.FloatImm("float32", 0.0)) is None:
        return None
    weight = sch.get(sch.get_sblock(nest.block)).reads[nest.weight_read].source
    kernel = FlatKernel(geometry=geometry, lanes=lanes)
    return kernel.emit(func, source, weight, out_buffer, value_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlatKernel:
    """The loop nest of one flat depthwise kernel (sizes in float32 elements)."""

    geometry: FlatGeometry
    lanes: int

    @property
    def taps(self) -> list[tuple[int, int, int, int]]:
        """``(ky, kx, phase, offset in the phase plane)`` of every tap, ky-major."""
        g, taps = self.geometry, []
        for ky, kx in itertools.product(range(g.kernel_h), range(g.kernel_w)):
            qy, py = divmod(ky * g.dilation_h, g.stride_h)
            qx, px = divmod(kx * g.dilation_w, g.stride_w)
            taps.append((ky, kx, py * g.stride_w + px, qy * g.phase_w + qx))
        return taps

    def emit(
        self,
        func: tirx.PrimFunc,
        source: tirx.Buffer,
        weight: tirx.Buffer,
        out_buffer: tirx.Buffer,
        value_at: ValueAt,
    ) -> tirx.PrimFunc:
        """The PrimFunc with ``func``'s parameters and attributes."""
        g, lanes = self.geometry, self.lanes
        size = g.plane_size(lanes)
        vectors = g.vectors(lanes)
        group = min(GROUP_VECTORS, vectors)
        planes = g.batch * g.channels
        per_task = channels_per_task(planes)
        phase_elems = g.stride_h * g.stride_w * size
        inputs = [p for p in func.params if not p.same_as(out_buffer)]
        with IRBuilder() as ib, T.prim_func(s_tir=True):
            T.func_name("main")
            for p in func.params:
                T.arg(p.name, p)
            T.func_attr(dict(func.attrs.items()) if func.attrs is not None else {})
            with (
                T.sblock("root"),
                T.parallel(0, planes // per_task) as task,
                T.sblock("depthwise_flat"),
            ):
                T.reads(*[p[tuple(slice(None) for _ in p.shape)] for p in inputs])
                T.writes(out_buffer[:, :, :, :])
                phases = T.sblock_alloc_buffer((phase_elems,), "float32")
                flat = T.sblock_alloc_buffer((vectors * lanes,), "float32")
                acc = T.sblock_alloc_buffer((group * lanes,), "float32", scope="local")
                _zero_borders(phases, g, size)
                with T.serial(0, per_task) as job:
                    plane = task * per_task + job
                    n, c = plane // g.channels, plane % g.channels
                    _fill(phases, source, g, size, n, c)
                    for first, count in self._groups(vectors, group):
                        with T.serial(0, count) as block:
                            base = first + block * (group * lanes)
                            self._group(phases, weight, flat, acc, c, size, base, group)
                    with T.serial(0, g.out_h) as y, T.vectorized(0, g.out_w) as x:
                        value = value_at([n, c, y, x], flat[y * g.phase_w + x])
                        assert value is not None  # probed by build_flat_kernel
                        T.buffer_store(out_buffer, value, [n, c, y, x])
        return ib.get()

    def _groups(self, vectors: int, group: int) -> list[tuple[int, int]]:
        """``(first element, repeats)`` of the group loops: whole groups, then one last group
        overlapping the previous one (its vectors recomputed, the same values stored)."""
        loops = [(0, vectors // group)]
        if vectors % group:
            loops.append(((vectors - group) * self.lanes, 1))
        return loops

    def _group(
        self,
        phases: tirx.Buffer,
        weight: tirx.Buffer,
        flat: tirx.Buffer,
        acc: tirx.Buffer,
        c: tvm.ir.Expr,
        size: int,
        base: tvm.ir.Expr,
        group: int,
    ) -> None:
        """``flat[base + i] = sum over taps of phases[tap + base + i] * weight``, ``group``
        accumulator vectors (unrolled)."""
        lanes = self.lanes
        for j in range(group):
            with T.vectorized(0, lanes) as lane:
                T.buffer_store(acc, tirx.FloatImm("float32", 0.0), [j * lanes + lane])
        for ky, kx, phase, offset in self.taps:
            w = weight[c, 0, ky, kx]
            for j in range(group):
                with T.vectorized(0, lanes) as lane:
                    k = j * lanes + lane
                    tap = phases[phase * size + offset + base + k]
                    T.buffer_store(acc, acc[k] + tap * w, [k])
        for j in range(group):
            with T.vectorized(0, lanes) as lane:
                T.buffer_store(flat, acc[j * lanes + lane], [base + j * lanes + lane])


def _fill(
    phases: tirx.Buffer,
    source: tirx.Buffer,
    g: FlatGeometry,
    size: int,
    n: tvm.ir.Expr,
    c: tvm.ir.Expr,
) -> None:
    """Copy plane ``(n, c)`` into its phase planes (interior only; see :func:`_zero_borders`).

    The column phases of a row are written in one loop over the phase columns
    they all hold (LLVM reads them as interleaved vector loads), then each
    phase's own first and last columns.
    """
    sh, sw, wq = g.stride_h, g.stride_w, g.phase_w
    cols = [g.held(px, sw, g.pad_left, g.in_w, wq) for px in range(sw)]
    common = (max(lo for lo, _ in cols), min(hi for _, hi in cols))

    def copy(yy: tvm.ir.Expr, py: int, px: int, xx: tvm.ir.Expr) -> None:
        T.buffer_store(
            phases,
            source[n, c, yy * sh + py - g.pad_top, xx * sw + px - g.pad_left],
            [(py * sw + px) * size + yy * wq + xx],
        )

    for py in range(sh):
        y_lo, y_hi = g.held(py, sh, g.pad_top, g.in_h, g.phase_h)
        if y_hi <= y_lo:
            continue
        with T.serial(y_lo, y_hi) as yy:
            if common[0] < common[1]:
                with T.serial(common[0], common[1]) as xx:
                    for px in range(sw):
                        copy(yy, py, px, xx)
            for px, (lo, hi) in enumerate(cols):
                for a, b in ((lo, min(hi, common[0])), (max(lo, common[1]), hi)):
                    if a < b:
                        with T.serial(a, b) as xx:
                            copy(yy, py, px, xx)


def _zero_borders(phases: tirx.Buffer, g: FlatGeometry, size: int) -> None:
    """Zero every phase-plane element :func:`_fill` does not write (padding, slack): the
    elements before the first held row's first held column, between one held row's last
    and the next one's first, and after the last held row's last held column."""
    sw, wq = g.stride_w, g.phase_w

    def zero(start: tvm.ir.Expr, count: int) -> None:
        if count > 0:
            with T.serial(0, count) as i:
                T.buffer_store(phases, tirx.FloatImm("float32", 0.0), [start + i])

    for py, px in itertools.product(range(g.stride_h), range(sw)):
        base = (py * sw + px) * size
        y_lo, y_hi = g.held(py, g.stride_h, g.pad_top, g.in_h, g.phase_h)
        x_lo, x_hi = g.held(px, sw, g.pad_left, g.in_w, wq)
        if y_hi <= y_lo or x_hi <= x_lo:
            zero(base, size)
            continue
        zero(base, y_lo * wq + x_lo)
        with T.serial(y_lo, y_hi - 1) as yy:
            zero(base + yy * wq + x_hi, wq - x_hi + x_lo)
        zero(base + (y_hi - 1) * wq + x_hi, size - (y_hi - 1) * wq - x_hi)
