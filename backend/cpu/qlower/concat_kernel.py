"""Concatenation as one pre-scheduled copy kernel: contiguous vector copies, no index arithmetic.

Requires: two or more tensors of one dtype whose shapes agree on every axis
but the concatenation axis. :func:`emit_concat` views each input as
``(outer, length_i)`` (``outer`` the product of the axes before the
concatenation axis, ``length_i`` that of the axis and those after it: a
reshape, which the CPU pipeline turns into a view), copies them side by side
into ``(outer, sum(length_i))`` and views the result in the concatenated shape.

Guarantees: the values of ``relax.op.concat`` (a copy: bit for bit, any dtype).

Why: a fused ``concat`` of the int8 convolutions' reshaped outputs computed
every output element through the reshapes' divisions and a select chain
(SqueezeNet's fire concats 1.5 ms a call at one thread, ShuffleNet's group
concats 1 ms); as a kernel of its own it is a memory copy, and the producers'
reshapes are views.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from tvm import relax, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from .intops import dtype_of, shape_of

#: Bytes one vector store of the copy moves (a 512-bit register; AVX2 splits it in two).
VECTOR_BYTES = 64
#: Elements of one row from which its copy is split across the thread pool.
PARALLEL_MIN_BYTES = 1 << 15


def make_concat(outer: int, lengths: Sequence[int], dtype: str) -> tirx.PrimFunc:
    """The PrimFunc ``(X_0, ..., X_k-1, Y)``: ``X_i (outer, lengths[i])`` of ``dtype``,
    ``Y (outer, sum(lengths))`` with ``X_i`` at columns ``sum(lengths[:i])`` onwards.

    Each row of each input is copied in vectors of :data:`VECTOR_BYTES` then an
    element-wise tail; rows run in parallel when there are several, else the
    vectors of a long row do.
    """
    total = int(sum(lengths))
    with IRBuilder() as ib, T.prim_func(private=True, s_tir=True):
        xs = [T.arg(f"X{i}", T.buffer((outer, n), dtype)) for i, n in enumerate(lengths)]
        y = T.arg("Y", T.buffer((outer, total), dtype))
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            rows = T.parallel(0, outer) if outer > 1 else T.serial(0, outer)
            with rows as o, T.sblock("concat"):
                T.reads(*(x[0:outer, 0:n] for x, n in zip(xs, lengths, strict=True)))
                T.writes(y[0:outer, 0:total])
                offset = 0
                for x, n in zip(xs, lengths, strict=True):
                    _copy_row(x, y, o, n, offset, parallel=outer == 1)
                    offset += n
    return (
        ib.get()
        .with_attr("op_pattern", 8)
        .with_attr("tirx.is_scheduled", True)
        .with_attr("npuc.schedule_rule", "concat_copy")
    )


def _copy_row(x: Any, y: Any, o: Any, n: int, offset: int, *, parallel: bool) -> None:
    """``y[o, offset + j] = x[o, j]`` for ``j < n``: whole vectors, then the tail, in the
    current IR-builder frame (vectors across the thread pool when ``parallel`` and long)."""
    itemsize = np.dtype(str(x.dtype)).itemsize
    lanes = max(1, VECTOR_BYTES // itemsize)
    vectors, tail = divmod(n, lanes)
    if vectors:
        wide = parallel and n * itemsize >= PARALLEL_MIN_BYTES
        with T.parallel(0, vectors) if wide else T.serial(0, vectors) as v:
            src = tirx.Ramp(v * lanes, 1, lanes) if lanes > 1 else v
            dst = tirx.Ramp(offset + v * lanes, 1, lanes) if lanes > 1 else offset + v
            T.buffer_store(y, x[o, src], [o, dst])
    if tail:
        with T.serial(0, tail) as t:
            done = vectors * lanes
            T.buffer_store(y, x[o, done + t], [o, offset + done + t])


def emit_concat(
    bb: relax.BlockBuilder, parts: Sequence[relax.Expr], axis: int, name: str
) -> relax.Expr:
    """``concat(parts, axis)`` through :func:`make_concat` (see the module docstring).

    Shapes: each part ``(*lead, c_i, *trail)`` with the same ``lead`` and
    ``trail``, one dtype; the result ``(*lead, sum(c_i), *trail)``.
    Raises ValueError when the parts' shapes or dtypes disagree.
    """
    shapes = [shape_of(p) for p in parts]
    dtypes = {dtype_of(p) for p in parts}
    rank = len(shapes[0])
    axis = axis + rank if axis < 0 else axis
    if len(dtypes) != 1 or any(
        len(s) != rank or s[:axis] != shapes[0][:axis] or s[axis + 1 :] != shapes[0][axis + 1 :]
        for s in shapes
    ):
        raise ValueError(f"concat {name!r}: parts {shapes} of {sorted(dtypes)} do not line up")
    (dtype,) = dtypes
    outer = math.prod(shapes[0][:axis])
    lengths = [math.prod(s[axis:]) for s in shapes]
    flat = [bb.emit(relax.op.reshape(p, (outer, n))) for p, n in zip(parts, lengths, strict=True)]
    gv = bb.add_func(make_concat(outer, lengths, dtype), "int_concat_" + re.sub(r"\W", "_", name))
    ty = relax.TensorType((outer, sum(lengths)), dtype)
    y = bb.emit(relax.call_tir(gv, flat, ty))
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    return bb.emit(relax.op.reshape(y, out_shape))
