"""Channels-last convolutions (TFLite's NHWC) -> NCHW, the layout the quantizer reads.

Requires: a well-formed module with static shapes (after
:func:`npuc.midend.pipeline.graph_passes`).

Guarantees: every ``relax.nn.conv2d`` (and pool) becomes ``NCHW``/``OIHW``
(TVM's ``ConvertLayout``, which puts ``permute_dims`` around each converted
op and on its constant weights; the constant ones are folded here); then transposes are pushed down
through layout-free ops and cancelled against their inverse:

- ``f(permute_dims(x, P))`` with ``f`` elementwise unary (clip, relu, ...) ->
  ``permute_dims(f(x), P)``;
- ``g(permute_dims(a, P), permute_dims(b, P))`` with ``g`` elementwise binary
  and equal shapes -> ``permute_dims(g(a, b), P)``; the same with a constant
  operand, which is transposed (after broadcasting its rank);
- ``mean/sum/max(permute_dims(x, P), axes)`` without keepdims, when the kept
  axes stay in order -> the reduction of ``x`` over the mapped axes (keepdims)
  and a reshape to the original result's shape (also for an NCHW
  ``mean(x, [2, 3])`` without keepdims: the quantizer reads global pooling so);
- ``permute_dims(permute_dims(x, P), Q)`` with ``P`` then ``Q`` the identity -> ``x``.

Values are unchanged (only data movement is rearranged); the graph inputs and
outputs keep their shapes. A module without channels-last convolutions is
returned as it is.
"""

from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from ._rewrite import rewrite_module

__all__ = ["ChannelsFirst", "has_channels_last_conv"]

_UNARY = frozenset(
    {
        "relax.clip",
        "relax.nn.relu",
        "relax.nn.gelu",
        "relax.nn.silu",
        "relax.sigmoid",
        "relax.tanh",
        "relax.exp",
        "relax.negative",
        "relax.abs",
    }
)
_BINARY = frozenset(
    {"relax.add", "relax.subtract", "relax.multiply", "relax.maximum", "relax.minimum"}
)
_REDUCE = frozenset({"relax.mean", "relax.sum", "relax.max"})
# Pools take no desired layout in ConvertLayout: they follow their input's.
_LAYOUTS = {"relax.nn.conv2d": ["NCHW", "OIHW"]}


def has_channels_last_conv(mod: tvm.IRModule) -> bool:
    """True when a Relax function of ``mod`` holds a conv2d whose data layout is not NCHW."""
    found = False

    def visit(expr: relax.Expr) -> None:
        nonlocal found
        if (
            isinstance(expr, relax.Call)
            and isinstance(expr.op, tvm.ir.Op)
            and expr.op.name == "relax.nn.conv2d"
            and str(expr.attrs.data_layout) != "NCHW"
        ):
            found = True

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return found


@tvm.transform.module_pass(opt_level=0, name="npuc.ChannelsFirst")
class ChannelsFirst:
    """NHWC convolutions -> NCHW with as few transposes as possible; see the module docstring."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if not has_channels_last_conv(mod):
            return mod
        mod = relax.transform.ConvertLayout(_LAYOUTS)(mod)
        return rewrite_module(mod, lambda m, f: _TransposeSinker(m))


def _perm(call: relax.Call) -> tuple[int, ...] | None:
    axes = call.attrs.axes
    if axes is None:
        return None
    return tuple(int(a) for a in axes)


@relax.expr_functor.mutator
class _TransposeSinker(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        # Variable -> (variable it is a transpose of, permutation), for emitted variables.
        self.transposed: dict[relax.Var, tuple[relax.Var, tuple[int, ...]]] = {}
        # Variables bound to a transposed constant: read as the constant itself.
        self.constants: dict[relax.Var, relax.Expr] = {}

    def visit_var_(self, op: relax.Var) -> relax.Expr:
        return self.constants.get(op, op)

    def visit_dataflow_var_(self, op: relax.DataflowVar) -> relax.Expr:
        return self.constants.get(op, op)

    def _source(self, expr: relax.Expr) -> tuple[relax.Var, tuple[int, ...]] | None:
        return self.transposed.get(expr) if isinstance(expr, relax.Var) else None

    def _emit_as(self, var: relax.Var, value: relax.Expr) -> None:
        self.builder_.emit_normalized(relax.VarBinding(var, self.builder_.normalize(value)))

    def _emit_transposed(
        self, binding: relax.VarBinding, inner: relax.Expr, perm: tuple[int, ...]
    ) -> None:
        """Bind ``binding.var`` to ``permute_dims(inner, perm)`` (``inner`` emitted first)."""
        moved = self.builder_.emit(inner, binding.var.name + "_cf")
        self._emit_as(binding.var, relax.op.permute_dims(moved, list(perm)))
        self.transposed[binding.var] = (moved, perm)

    def _emit_pool_reshape(
        self, binding: relax.VarBinding, x: relax.Expr, axes: list[int], name: str = "relax.mean"
    ) -> None:
        """Bind ``binding.var`` to ``reshape(reduce(x, axes, keepdims=True))``: the quantizer
        reads global pooling in that form."""
        reducer = getattr(relax.op, name.split(".")[-1])
        kept = self.builder_.emit(reducer(x, axes, keepdims=True), binding.var.name + "_cf")
        self._emit_as(binding.var, relax.op.reshape(kept, binding.var.ty.shape))

    def _binary_operands(
        self, args: list[relax.Expr]
    ) -> tuple[tuple[relax.Expr, relax.Expr], tuple[int, ...]] | None:
        """Both operands in the untransposed layout and the permutation, when the operands are
        transposes by the same permutation (equal shapes) or one is and the other a constant."""
        first, second = self._source(args[0]), self._source(args[1])
        if first is not None and second is not None:
            if first[1] == second[1] and _same_shape(first[0], second[0]):
                return (first[0], second[0]), first[1]
            return None
        if first is not None and isinstance(args[1], tvm.ir.GenericConst):
            return (first[0], _untranspose(args[1], first[1])), first[1]
        if second is not None and isinstance(args[0], tvm.ir.GenericConst):
            return (_untranspose(args[0], second[1]), second[0]), second[1]
        return None

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = self.visit_expr(binding.value)
        if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)):
            self._emit_as(binding.var, value)
            return
        name = value.op.name
        args = list(value.args)
        first = self._source(args[0]) if args else None
        if name == "relax.permute_dims" and (perm := _perm(value)) is not None:
            if isinstance(args[0], tvm.ir.GenericConst):  # ConvertLayout's weight transposes
                moved = np.ascontiguousarray(np.transpose(args[0].value.numpy(), perm))
                self.constants[binding.var] = relax.const(moved, str(moved.dtype))
                return
            if first is not None:
                src, inner = first
                if all(inner[p] == i for i, p in enumerate(perm)):
                    self._emit_as(binding.var, src)  # the two transposes cancel
                    return
            self._emit_as(binding.var, value)
            if isinstance(args[0], relax.Var):
                self.transposed[binding.var] = (args[0], perm)
            return
        if first is not None and name in _UNARY:
            src, perm = first
            inner = relax.Call(value.op, [src, *args[1:]], value.attrs, value.ty_args)
            self._emit_transposed(binding, inner, perm)
            return
        if name in _BINARY and len(args) == 2:
            operands = self._binary_operands(args)
            if operands is not None:
                (lhs, rhs), perm = operands
                inner = relax.Call(value.op, [lhs, rhs], value.attrs, value.ty_args)
                self._emit_transposed(binding, inner, perm)
                return
        if first is None and name == "relax.mean" and _global_pool(value):
            self._emit_pool_reshape(binding, args[0], [2, 3])
            return
        if first is not None and name in _REDUCE and not bool(value.attrs.keepdims):
            src, perm = first
            axes = value.attrs.axis
            if axes is not None:
                reduced = {int(a) % len(perm) for a in axes}
                kept = [perm[i] for i in range(len(perm)) if i not in reduced]
                if kept == sorted(kept):
                    mapped = sorted(perm[i] for i in reduced)
                    self._emit_pool_reshape(binding, src, mapped, name)
                    return
        self._emit_as(binding.var, value)


def _same_shape(a: relax.Var, b: relax.Var) -> bool:
    ta, tb = a.ty, b.ty
    if not isinstance(ta, relax.TensorType) or not isinstance(tb, relax.TensorType):
        return False
    if ta.shape is None or tb.shape is None:
        return False
    return bool(tvm_ffi.structural_equal(ta.shape, tb.shape))


def _untranspose(constant: tvm.ir.GenericConst, perm: tuple[int, ...]) -> relax.Expr:
    """The constant operand of ``g(permute_dims(x, perm), c)`` for ``g(x, .)`` (broadcast kept)."""
    value = constant.value.numpy()
    full = value.reshape((1,) * (len(perm) - value.ndim) + value.shape)
    moved = np.ascontiguousarray(np.transpose(full, np.argsort(perm)))
    return relax.const(moved, str(moved.dtype))


def _global_pool(call: relax.Call) -> bool:
    """``mean(x, [2, 3])`` of a 4-D tensor without keepdims (ConvertLayout's NCHW pooling)."""
    ty = call.args[0].ty
    if not isinstance(ty, relax.TensorType) or ty.ndim != 4 or bool(call.attrs.keepdims):
        return False
    axes = call.attrs.axis
    return axes is not None and sorted(int(a) % 4 for a in axes) == [2, 3]
