"""Data movement in Relax: reshape, transpose, slice, concat, max pool and nearest resize.

Requires: the layer's inputs in one representation (all stored integers of
one type, or all float). Guarantees: the executor's re-indexing
(:func:`npuc.midend.quantize.float_exec.data_movement`), on any dtype:

- ``slice`` follows ``kernels.slice_index`` (Python's clamping); a positive
  step is a ``strided_slice`` with the clamped bounds, a negative one a
  ``take`` of the explicit indices;
- integer ``concat`` requantizes each input whose ``input_requant`` is not
  the identity (``rshift_round((x - zp) * m, shift) + ofm_zp``, clamped to
  the output type), as the executor does, in the narrowest exact type
  (:func:`~.intops.narrow_type`), then copies the parts with
  :func:`~.concat_kernel.emit_concat`;
- integer ``max_pool2d`` takes the window maximum (padding never wins) in the
  stored type when the output type holds every input value, else in int32,
  clamped to the output type;
- ``resize`` (nearest) re-runs the layer's own Relax call on the integers as
  float32 (exact below 2^24): a pure gather, so the values are the input's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tvm import relax

from npuc.core.intref.arith import dtype_range
from npuc.midend.quantize import kernels
from npuc.midend.quantize.exact_eltwise import peak
from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qparams import QParams

from .concat_kernel import emit_concat
from .intops import (
    centered,
    clamp_cast,
    dtype_of,
    narrow_type,
    shape_of,
    shift_round,
    typed_const,
)
from .relax_call import substitute_call

MOVEMENT = ("reshape", "transpose", "slice", "concat")


def emit_slice(bb: relax.BlockBuilder, node: Node, x: relax.Expr) -> relax.Expr:
    """A strided slice with the executor's (Python) semantics."""
    shape = shape_of(x)
    index = kernels.slice_index(
        shape, node.attr("axes"), node.attr("begin"), node.attr("end"), node.attr("strides")
    )
    for axis, sl in enumerate(index):
        if sl == slice(None):
            continue
        if sl.step is not None and sl.step < 0:
            picked = np.arange(shape[axis])[sl].astype(np.int64)
            x = bb.emit(relax.op.take(x, relax.const(picked, "int64"), axis=axis, mode="clip"))
            continue
        start, stop, step = sl.indices(shape[axis])
        stop = max(stop, start)
        x = bb.emit(
            relax.op.strided_slice(x, axes=[axis], begin=[start], end=[stop], strides=[step])
        )
    return x


def emit_movement(bb: relax.BlockBuilder, node: Node, args: Sequence[relax.Expr]) -> relax.Expr:
    """Reshape, transpose, slice or (same-representation) concat of ``args``."""
    x = args[0]
    op = node.op
    if op == "reshape":
        return bb.emit(relax.op.reshape(x, node.out.shape))
    if op == "transpose":
        return bb.emit(relax.op.permute_dims(x, list(node.attr("axes"))))
    if op == "slice":
        return emit_slice(bb, node, x)
    if op == "concat":
        return bb.emit(relax.op.concat(list(args), axis=int(node.attr("axis"))))
    raise KeyError(op)


def emit_int_concat(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    args: list[tuple[relax.Expr, QParams]],
    out: QParams,
) -> relax.Expr:
    """Integer concat: inputs requantized to the output's scale where needed."""
    parts = []
    for (x, q), (m, shift) in zip(args, p["input_requant"], strict=True):
        if (int(m), int(shift)) == (1, 0) and q == out:
            parts.append(x if dtype_of(x) == out.dtype else bb.emit(relax.op.astype(x, out.dtype)))
            continue
        wide = narrow_type(peak(q) * abs(int(m)) + abs(out.zero_point), int(shift))
        scaled = relax.op.multiply(centered(x, q.zero_point, wide), typed_const(int(m), wide))
        y = relax.op.add(shift_round(scaled, int(shift), wide), typed_const(out.zero_point, wide))
        parts.append(bb.emit(clamp_cast(y, (out.qmin, out.qmax), wide, out.dtype)))
    return emit_concat(bb, parts, int(node.attr("axis")), node.name)


def emit_int_max_pool(
    bb: relax.BlockBuilder, node: Node, x: relax.Expr, out: QParams
) -> relax.Expr:
    """Integer max pool: window maximum (padding never wins), clamped to the output type."""
    lo, hi = dtype_range(dtype_of(x))
    stored = out.qmin <= lo and hi <= out.qmax and dtype_range(out.dtype) == (lo, hi)
    pooled = relax.op.nn.max_pool2d(
        x if stored else relax.op.astype(x, "int32"),
        pool_size=tuple(node.attr("kernel")),
        strides=tuple(node.attr("strides")),
        padding=tuple(node.attr("padding")),
        dilation=tuple(node.attr("dilation")),
    )
    if stored:  # same type, every value fits: the clamp is the identity
        return bb.emit(pooled)
    return bb.emit(clamp_cast(pooled, (out.qmin, out.qmax), "int32", out.dtype))


def emit_int_resize(bb: relax.BlockBuilder, node: Node, x: relax.Expr) -> relax.Expr:
    """Nearest resize of stored integers through the layer's own Relax call."""
    as_float = bb.emit(relax.op.astype(x, "float32"))
    resized = bb.emit(substitute_call(node, [as_float]))
    return bb.emit(relax.op.astype(resized, dtype_of(x)))
