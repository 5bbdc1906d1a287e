"""The geometry of an NCHW pool for :mod:`.pool_rows`'s row kernel: sizes, pads, strides.

Requires the reduction block of a pool matched by :func:`.pool.match_pool`
(and its padded copy's block, if any). Guarantees: :func:`geometry_of`
returns the pool's :class:`RowGeometry` and its input parameter only when
the window reads ``y * stride_h + ky * dilation_h``, ``x * stride_w + kx *
dilation_w`` of a parameter (directly, or through a padded copy reading it at
``(y - pad_top, x - pad_left)`` and writing a constant elsewhere) with
static shapes, in float32 or one of :data:`INT_TYPES`, the output of the
same type; ``None`` otherwise. Split from :mod:`.pool_rows` (its size).
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import s_tir, tirx
from tvm.sym import detect_linear_equation

from npuc.backend.cpu.schedules.conv_match import static_ints

#: Element types of the row kernel: float32 (max and sum), integers (max only).
INT_TYPES = ("int8", "uint8", "int16", "int32")

#: Rows narrower than this, of windows at most :data:`SERIAL_ROWS_MAX_TAPS` rows high, are
#: reduced in a loop that LLVM vectorises; the others as one TVM vector over the row (or
#: :data:`ROW_VECTOR_MAX` columns). Measured
#: one thread (AVX-512): 576x14x14 3x3 max 34 us as a 14-lane vector, 22 us as a loop; 5x5
#: max on 128x10x10 (YOLOv8n's SPPF) 8.3 us as a vector, 14.3 us as a loop; 28-wide rows
#: 64 vs 97 us (256x28x28 3x3 average), 15 vs 49 us (240x28x28 3x3/2 average).
SERIAL_ROWS_BELOW = 16
SERIAL_ROWS_MAX_TAPS = 3
#: Widest TVM vector a row is reduced in; wider rows go in blocks of it, the last one ending
#: at the row's end. One vector over the row (3x3 max pool, 1x2x3xW) built in 1.0 s at
#: W = 1000, 7.2 s at 4000, 129 s at 17000; from 32768 TVM's lane count overflowed and LLVM
#: aborted the process ("scalable vector type"). In blocks: 0.4-0.5 s, W up to 300000.
ROW_VECTOR_MAX = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class RowGeometry:
    """Sizes (elements) of one NCHW pool; pads are the rows/columns before the input."""

    planes: int
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

    @property
    def row_width(self) -> int:
        """Columns of the row buffer: every column an output row's taps read."""
        return (self.out_w - 1) * self.stride_w + (self.kernel_w - 1) * self.dilation_w + 1

    @property
    def held(self) -> tuple[int, int]:
        """Row-buffer columns ``[lo, hi)`` that hold input (the others are padding)."""
        lo = min(self.pad_left, self.row_width)
        return lo, max(lo, min(self.pad_left + self.in_w, self.row_width))

    @property
    def vector_rows(self) -> bool:
        """Whether the window rows are reduced as one TVM vector over the held columns
        (else a loop LLVM vectorises): see :data:`SERIAL_ROWS_BELOW`."""
        lo, hi = self.held
        return hi - lo >= SERIAL_ROWS_BELOW or self.kernel_h > SERIAL_ROWS_MAX_TAPS

    def inside_rows(self) -> tuple[int, int]:
        """Output rows ``[lo, hi)`` whose every tap row is an input row (no test needed)."""
        lo = next((y for y in range(self.out_h) if self._first_row(y) >= 0), self.out_h)
        hi = lo
        while hi < self.out_h and self._last_row(hi) < self.in_h:
            hi += 1
        return lo, hi

    def _first_row(self, y: int) -> int:
        return y * self.stride_h - self.pad_top

    def _last_row(self, y: int) -> int:
        return self._first_row(y) + (self.kernel_h - 1) * self.dilation_h


def _linear(expr: tvm.ir.Expr, vars_: list[tirx.Var]) -> list[int] | None:
    found = detect_linear_equation(expr, vars_)
    if len(found) != len(vars_) + 1 or not all(isinstance(c, tirx.IntImm) for c in found):
        return None
    return [int(c) for c in found]


def _source(sch: s_tir.Schedule, pad_name: str | None) -> tuple[tirx.Buffer, int, int] | None:
    """The pooled parameter and the pad's (top, left) offsets; ``None`` if not of the form."""
    if pad_name is None:
        return None
    pad = sch.get(sch.get_sblock(pad_name))
    value = pad.body.value if isinstance(pad.body, tirx.BufferStore) else None
    if not (
        len(pad.reads) == 1
        and isinstance(value, tvm.ir.Call)
        and str(value.op.name) in ("tirx.if_then_else", "prim.if_then_else")
        and isinstance(value.args[2], tirx.FloatImm | tirx.IntImm)
    ):
        return None
    pvars = [iv.var for iv in pad.iter_vars]
    region = pad.reads[0].region
    top, left = _linear(region[2].min, [pvars[2]]), _linear(region[3].min, [pvars[3]])
    if top is None or left is None or top[0] != 1 or left[0] != 1:
        return None
    for axis in (0, 1):
        if _linear(region[axis].min, [pvars[axis]]) != [1, 0]:
            return None
    return pad.reads[0].source, -top[1], -left[1]


def geometry_of(
    sch: s_tir.Schedule, reduction: str, pad_name: str | None
) -> tuple[RowGeometry, tirx.Buffer] | None:
    """The pool's geometry and its input parameter, or ``None`` if not of the form."""
    block = sch.get(sch.get_sblock(reduction))
    read = block.reads[0]
    vars_ = [iv.var for iv in block.iter_vars]
    rows = _linear(read.region[2].min, [vars_[2], vars_[4]])
    cols = _linear(read.region[3].min, [vars_[3], vars_[5]])
    if rows is None or cols is None or rows[2] or cols[2] or min(*rows[:2], *cols[:2]) < 1:
        return None
    for axis in (0, 1):
        if _linear(read.region[axis].min, [vars_[axis]]) != [1, 0]:
            return None
    if pad_name is None:
        source, pad_top, pad_left = read.source, 0, 0
    else:
        found = _source(sch, pad_name)
        if found is None:
            return None
        source, pad_top, pad_left = found
    params = list(sch.mod["main"].params)
    shape = static_ints(list(source.shape))
    out = static_ints([iv.dom.extent for iv in block.iter_vars])
    if shape is None or out is None or not any(b.same_as(source) for b in params):
        return None
    dtype = str(source.dtype)
    if dtype not in ("float32", *INT_TYPES) or str(block.writes[0].source.dtype) != dtype:
        return None
    geometry = RowGeometry(
        planes=shape[0] * shape[1],
        channels=shape[1],
        in_h=shape[2],
        in_w=shape[3],
        out_h=out[2],
        out_w=out[3],
        kernel_h=out[4],
        kernel_w=out[5],
        stride_h=rows[0],
        stride_w=cols[0],
        dilation_h=rows[1],
        dilation_w=cols[1],
        pad_top=pad_top,
        pad_left=pad_left,
    )
    return geometry, source
