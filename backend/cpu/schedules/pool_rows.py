"""NCHW float pooling as a separable row kernel, built as TIR (not scheduled from the function).

A max or sum window over ``kernel_h x kernel_w`` taps is a reduction over the
window's rows followed by one over its columns. The kernel, per (image,
channel) plane (one parallel task each):

- for each output row, the ``kernel_h`` input rows it reads are reduced
  column by column into a row buffer (contiguous vector loads, straight from
  the input: no padded copy of the plane); the buffer's padding columns hold
  the pad value, written once per task. Rows outside the input are skipped
  (their tap is the pad value), decided per output row, so the output rows
  whose window lies inside the input run without any test;
- the output row is the reduction of the row buffer over the ``kernel_w``
  column taps; with a column stride its loop is left to LLVM's vectoriser,
  which reads the strided taps as interleaved vector loads (wide loads and
  permutes), with stride 1 it is a vector of contiguous loads;
- the fused element-wise blocks after the reduction (an average's division,
  an activation) are applied as the output is written
  (:func:`value_builder`).

A 3x3 window costs 3 + 3 operations per output instead of 9, and the input
is read once, in order, with nothing written but the output.

Requires: :func:`pool.match_pool` matched an NCHW, non-global pool whose
input (or padded copy) is read at ``y * stride_h + ky * dilation_h``,
``x * stride_w + kx * dilation_w``; the padded copy, if any, reads a
parameter at ``(y - pad_top, x - pad_left)`` and writes a constant
elsewhere; the blocks after the reduction are made of arithmetic, selects,
casts and loads of parameters. Guarantees: a max pool gives the maximum of
the window's input values, NaN inputs skipped (``x > acc ? x : acc``; a
window of only NaN gives ``-inf``), padded rows skipped (initial value
``-inf``) and padded columns the padded copy's value (LegalizeOps'
``-FLT_MAX``), as onnxruntime's undilated kernels: a window of ``-inf``
gives ``-inf`` unless it reaches a padded column. A sum is taken rows first, then
columns: another float32 order than the unscheduled nest's (within a few
ulp of the window's magnitude). An integer max pool (int8/uint8/int16/int32,
the int8 library's) is the same kernel in its own type: initial value the
type's lowest, padded columns the padded copy's value (LegalizeOps: the
lowest too); a maximum of integers is exact in any order.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import s_tir, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.tirx import expr as E
from tvm.tirx.script.builder import ir as T

from npuc.backend.cpu.schedules.conv_match import static_ints
from npuc.backend.cpu.schedules.depthwise_epilogue import ValueAt, store_value_builder
from npuc.backend.cpu.schedules.fallback import PARALLEL_MIN_ELEMENTS, inline_elementwise
from npuc.backend.cpu.schedules.pool_geometry import (
    INT_TYPES,
    ROW_VECTOR_MAX,
    RowGeometry,
    geometry_of,
)

NEG_INF = float("-inf")


__all__ = [
    "INT_TYPES",
    "ROW_VECTOR_MAX",
    "RowGeometry",
    "build_row_kernel",
    "geometry_of",
    "value_builder",
]


def value_builder(sch: s_tir.Schedule, reduction: str) -> tuple[tirx.Buffer, ValueAt] | None:
    """The output parameter and a builder of the output value from the window's reduction.

    ``None`` unless the block after the reduction (if any) covers exactly the
    pool's outputs: the kernel writes one value per pool output, so a fused
    ``pad`` (a bigger output) would leave its padding unwritten.
    """
    inline_elementwise(sch)
    block = sch.get_sblock(reduction)
    acc_buffer = sch.get(block).writes[0].source
    params = list(sch.mod["main"].params)
    consumers = sch.get_consumers(block)
    if not consumers:
        if not any(acc_buffer.same_as(b) for b in params):
            return None
        return acc_buffer, lambda index, value: value
    if len(consumers) != 1 or sch.get_consumers(consumers[0]):
        return None
    out = sch.get(consumers[0])
    pooled = static_ints([iv.dom.extent for iv in sch.get(block).iter_vars][:4])
    if pooled is None or static_ints([iv.dom.extent for iv in out.iter_vars]) != pooled:
        return None
    store = out.body
    if not isinstance(store, tirx.BufferStore) or not any(store.buffer.same_as(b) for b in params):
        return None
    vars_ = [iv.var for iv in out.iter_vars]
    if len(vars_) != 4 or len(store.indices) != 4:
        return None
    if not all(
        isinstance(i, E.Var) and i.same_as(v) for i, v in zip(store.indices, vars_, strict=True)
    ):
        return None

    return store.buffer, store_value_builder(store, vars_, acc_buffer, params, exact=True)


def build_row_kernel(
    func: tirx.PrimFunc, reduction: str, pad_name: str | None, is_max: bool
) -> tirx.PrimFunc | None:
    """The kernel of the module docstring for ``func``; ``None`` when not of the form."""
    sch = s_tir.Schedule(func)
    found = geometry_of(sch, reduction, pad_name)
    if found is None:
        return None
    geometry, source = found
    dtype = str(source.dtype)
    if dtype in INT_TYPES and not is_max:
        return None
    identity: float = NEG_INF if is_max else 0.0
    if dtype in INT_TYPES:
        identity = float(tvm.tirx.min_value(dtype).value)
    pad_value = identity
    if pad_name is not None:
        pad_value = float(sch.get(sch.get_sblock(pad_name)).body.value.args[2].value)
        if not is_max and pad_value != 0.0:
            return None
    init = sch.get(sch.get_sblock(reduction)).init
    if not is_max and not (
        isinstance(init, tirx.BufferStore)
        and isinstance(init.value, tirx.FloatImm)
        and float(init.value.value) == 0.0
    ):
        return None
    built = value_builder(sch, reduction)
    if built is None:
        return None
    out_buffer, value_at = built
    probe = [tirx.Var(name, "int64") for name in "ncyx"]
    if value_at(probe, tirx.const(0, dtype)) is None:
        return None
    kernel = RowKernel(
        geometry=geometry, is_max=is_max, identity=identity, pad_value=pad_value, dtype=dtype
    )
    return kernel.emit(func, source, out_buffer, value_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class RowKernel:
    """The loop nest of one row-separable pool."""

    geometry: RowGeometry
    is_max: bool
    identity: float
    pad_value: float
    dtype: str = "float32"
    """Element type of the input, the row buffer and the reduction."""

    def const(self, value: float) -> tvm.ir.Expr:
        """``value`` (an integer for integer types) as a constant of :attr:`dtype`."""
        return tirx.const(value if self.dtype == "float32" else int(value), self.dtype)

    def combine(self, acc: tvm.ir.Expr, value: tvm.ir.Expr) -> tvm.ir.Expr:
        """``acc`` combined with ``value``: a NaN-skipping maximum, or a sum."""
        if self.is_max:
            return tirx.Select(value > acc, value, acc)
        return acc + value

    def fold(self, values: list[tvm.ir.Expr]) -> tvm.ir.Expr:
        """``values`` combined left to right, each partial result bound once (no copies).

        Integers: a plain ``max`` chain (no copies to avoid, and TVM's simplifier
        fails on integer ``Let`` variables bound to a constant in one copy of the
        row loop and to a range in another: "conflicts with previous binding").
        """
        if self.dtype != "float32":
            acc = values[0]
            for value in values[1:]:
                acc = tirx.max(acc, value)
            return acc
        acc = values[0]
        for value in values[1:]:
            a, v = tirx.Var("acc", self.dtype), tirx.Var("tap", self.dtype)
            acc = tirx.Let(a, acc, tirx.Let(v, value, self.combine(a, v)))
        return acc

    def emit(
        self,
        func: tirx.PrimFunc,
        source: tirx.Buffer,
        out_buffer: tirx.Buffer,
        value_at: ValueAt,
    ) -> tirx.PrimFunc:
        """The PrimFunc with ``func``'s parameters and attributes."""
        g = self.geometry
        inputs = [p for p in func.params if not p.same_as(out_buffer)]
        work = g.planes * g.out_h * g.out_w * g.kernel_h * g.kernel_w
        loop = T.parallel if work >= PARALLEL_MIN_ELEMENTS else T.serial
        width = g.row_width
        lo, hi = g.held
        pad = self.const(self.pad_value)
        with IRBuilder() as ib, T.prim_func(s_tir=True):
            T.func_name("main")
            for p in func.params:
                T.arg(p.name, p)
            T.func_attr(dict(func.attrs.items()) if func.attrs is not None else {})
            with T.sblock("root"), loop(0, g.planes) as plane, T.sblock("pool_rows"):
                T.reads(*[p[tuple(slice(None) for _ in p.shape)] for p in inputs])
                T.writes(out_buffer[:, :, :, :])
                row = T.sblock_alloc_buffer((width,), self.dtype)
                for a, b in ((0, lo), (hi, width)):
                    if a < b:
                        with T.serial(a, b) as j:
                            T.buffer_store(row, pad, [j])
                n, c = plane // g.channels, plane % g.channels
                inside = g.inside_rows()
                for y_lo, y_hi, tested in (
                    (0, inside[0], True),
                    (inside[0], inside[1], False),
                    (inside[1], g.out_h, True),
                ):
                    if y_lo < y_hi:
                        with T.serial(y_lo, y_hi) as y:
                            self._rows(row, source, n, c, y, tested)
                            self._columns(row, out_buffer, value_at, n, c, y)
        return ib.get()

    def _rows(
        self,
        row: tirx.Buffer,
        source: tirx.Buffer,
        n: tvm.ir.Expr,
        c: tvm.ir.Expr,
        y: tvm.ir.Expr,
        tested: bool,
    ) -> None:
        """``row[lo + j] =`` the window rows of output row ``y`` reduced at input column ``j``
        (in blocks of :data:`ROW_VECTOR_MAX` columns when the row is a wider vector)."""
        g = self.geometry
        lo, hi = g.held
        pad = self.const(self.identity)

        def store(j: tvm.ir.Expr) -> None:
            values = [pad]
            for ky in range(g.kernel_h):
                r = y * g.stride_h + (ky * g.dilation_h - g.pad_top)
                if tested:
                    clamped = tirx.max(tirx.min(r, g.in_h - 1), 0)
                    values.append(
                        tirx.Select(tirx.all(r >= 0, r < g.in_h), source[n, c, clamped, j], pad)
                    )
                else:
                    values.append(source[n, c, r, j])
            T.buffer_store(row, self.fold(values), [lo + j])

        count = hi - lo
        if count <= 0:
            return
        if not g.vector_rows or count <= ROW_VECTOR_MAX:
            with (T.vectorized if g.vector_rows else T.serial)(0, count) as j:
                store(j)
            return
        with T.serial(0, -(-count // ROW_VECTOR_MAX)) as block:
            start = tirx.min(block * ROW_VECTOR_MAX, count - ROW_VECTOR_MAX)
            with T.vectorized(0, ROW_VECTOR_MAX) as j:
                store(start + j)

    def _columns(
        self,
        row: tirx.Buffer,
        out_buffer: tirx.Buffer,
        value_at: ValueAt,
        n: tvm.ir.Expr,
        c: tvm.ir.Expr,
        y: tvm.ir.Expr,
    ) -> None:
        """Output row ``y``: the row buffer reduced over the column taps, then the epilogue."""
        g = self.geometry
        with T.serial(0, g.out_w) as x:
            taps = [row[x * g.stride_w + kx * g.dilation_w] for kx in range(g.kernel_w)]
            value = value_at([n, c, y, x], self.fold(taps))
            assert value is not None  # probed by build_row_kernel
            T.buffer_store(out_buffer, value, [n, c, y, x])
