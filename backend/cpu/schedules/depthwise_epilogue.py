"""The fused epilogue of a convolution as an expression of the output index and the conv value.

A kernel built as TIR (not scheduled from the fused function, as
:mod:`depthwise_flat`) still has to apply the epilogue FuseOps fused after
the convolution (bias, activation, clip, residual add). :func:`epilogue_of`
inlines the epilogue blocks into the last one (:func:`inline_epilogue`) and
returns that block's stored expression as a function of the output index
``(n, c, y, x)`` and the convolution's value there.

Requires: the function's convolution matched by :func:`match_conv2d`.
Guarantees: the expression computes what the epilogue blocks compute (the
same operations on the same values), or ``None`` when it holds a node
:func:`rebuild` does not know or reads a buffer that is not a parameter.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import s_tir, tirx
from tvm.tirx import expr as E

from npuc.backend.cpu.schedules.conv_match import ConvNest, inline_epilogue

#: The epilogue's output value at an index ``(n, c, y, x)`` given the convolution's value there.
ValueAt = Callable[[list[tvm.ir.Expr], tvm.ir.Expr], tvm.ir.Expr | None]


def rebuild(
    expr: tvm.ir.Expr, leaf: Callable[[tvm.ir.Expr], tvm.ir.Expr | None]
) -> tvm.ir.Expr | None:
    """``expr`` with every variable and buffer load replaced by ``leaf`` of it.

    ``None`` when ``leaf`` returns ``None`` or ``expr`` holds a node this
    walker does not know (a let, a reduction).
    """
    if isinstance(expr, (E.Var, tvm.ir.TensorLoad)):
        return leaf(expr)
    if isinstance(expr, (E.IntImm, E.FloatImm, tvm.ir.StringImm)):
        return expr
    if isinstance(expr, (E.BinaryOpExpr, E.CmpExpr, E.And, E.Or)):
        a, b = rebuild(expr.a, leaf), rebuild(expr.b, leaf)
        return None if a is None or b is None else type(expr)(a, b)
    if isinstance(expr, E.Not):
        a = rebuild(expr.a, leaf)
        return None if a is None else tirx.Not(a)
    if isinstance(expr, E.Cast):
        a = rebuild(expr.value, leaf)
        return None if a is None else tirx.Cast(str(expr.ty), a)
    if isinstance(expr, E.Select):
        parts = [rebuild(e, leaf) for e in (expr.condition, expr.true_value, expr.false_value)]
        return None if any(p is None for p in parts) else tirx.Select(*parts)
    if isinstance(expr, tvm.ir.Call) and isinstance(expr.op, tvm.ir.Op):
        args = [rebuild(a, leaf) for a in expr.args]
        return (
            None
            if any(a is None for a in args)
            else tvm.ir.Call(expr.op, args, expr.attrs, ret_ty=expr.ty)
        )
    return None


def epilogue_of(sch: s_tir.Schedule, nest: ConvNest) -> tuple[tirx.Buffer, ValueAt] | None:
    """The output parameter and a builder of the output value at an index.

    The builder takes the output index ``(n, c, y, x)`` and the convolution's
    value there, and returns the epilogue block's expression with its
    iterators replaced by the index (``None`` if it reads anything but the
    convolution and the function's parameters).
    """
    conv = sch.get_sblock(nest.block)
    out = sch.get(inline_epilogue(sch, conv, nest))
    conv_buffer = sch.get(conv).writes[0].source
    store = out.body
    params = list(sch.mod["main"].params)
    if not isinstance(store, tirx.BufferStore) or not any(store.buffer.same_as(b) for b in params):
        return None
    vars_ = [iv.var for iv in out.iter_vars]
    return store.buffer, store_value_builder(store, vars_, conv_buffer, params)


def store_value_builder(
    store: tirx.BufferStore,
    vars_: list[E.Var],
    acc_buffer: tirx.Buffer,
    params: list[tirx.Buffer],
    *,
    exact: bool = False,
) -> ValueAt:
    """A builder of ``store``'s value at an index, given the accumulator's value there.

    The block iterators ``vars_`` are replaced by the index, reads of
    ``acc_buffer`` by the value, and other reads must be of ``params`` (else
    the builder returns ``None``). With ``exact`` (the pool row kernel), an
    index whose dtype differs from its iterator's is cast to it, and a read
    of ``acc_buffer`` anywhere but at the block's own iterators gives ``None``.
    """

    def value_at(index: list[tvm.ir.Expr], value: tvm.ir.Expr) -> tvm.ir.Expr | None:
        def leaf(e: tvm.ir.Expr) -> tvm.ir.Expr | None:
            if isinstance(e, E.Var):
                found = next((i for v, i in zip(vars_, index, strict=True) if v.same_as(e)), e)
                if exact and str(found.ty) != str(e.ty):
                    return tirx.Cast(str(e.ty), found)
                return found
            if e.source.same_as(acc_buffer):
                if exact and not all(
                    isinstance(i, E.Var) and i.same_as(v)
                    for i, v in zip(e.indices, vars_, strict=True)
                ):
                    return None
                return value
            if not any(e.source.same_as(b) for b in params):
                return None
            indices = [rebuild(i, leaf) for i in e.indices]
            if any(i is None for i in indices):
                return None
            return E.BufferLoad(e.source, indices)

        return rebuild(store.value, leaf)

    return value_at
