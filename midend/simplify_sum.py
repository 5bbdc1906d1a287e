"""Turn a reduction over a stack of tensors into a chain of binary operations.

The ONNX importer imports the variadic ``Sum``, ``Max`` and ``Min`` as
``broadcast_to`` every input to the common shape, ``stack`` them on a new
axis and reduce that axis. That materialises an (n x shape) tensor and n
broadcast copies and cannot fuse with its neighbours; ``a + b + c`` can.

Requires: a well-formed module with known shapes on the matched expressions.

Guarantees: ``sum/max/min(stack([x0, ..., xn], axis=k), axis=[k],
keepdims=False)`` whose stack has no other reader becomes
``add/maximum/minimum`` of the inputs, left to right; a ``broadcast_to`` that
feeds the stack is skipped (the binary operations broadcast on their own); if
the chain's result would not have the reduction's shape, one ``broadcast_to``
is kept at its end so the result type never changes. Idempotent.
For floats the summation order is the stack's order, as in ONNX's definition.
"""

from __future__ import annotations

from collections import Counter

import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import DFPattern, is_op, wildcard

from ._rewrite import count_uses, rewrite_module

_BINARY_OF_REDUCTION = {
    "relax.sum": relax.op.add,
    "relax.max": relax.op.maximum,
    "relax.min": relax.op.minimum,
}


@tvm.transform.module_pass(opt_level=0, name="npuc.SimplifySum")
class SimplifySum:
    """Rewrite ``reduce(stack(xs))`` as a chain of binary ops; see the module docstring."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_module(mod, lambda m, f: _StackReductionSimplifier(m, f))


@relax.expr_functor.mutator
class _StackReductionSimplifier(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, func: relax.Function) -> None:
        super().__init__(mod)
        self.var2val = relax.analysis.get_var2val(func)
        self.uses: Counter[relax.Var] = count_uses(func)
        self.items = wildcard()
        self.stack = is_op("relax.stack")(self.items)
        reductions = [is_op(name)(self.stack) for name in _BINARY_OF_REDUCTION]
        self.pattern: DFPattern = reductions[0] | reductions[1] | reductions[2]
        self.broadcast_input = wildcard()
        self.broadcast = is_op("relax.broadcast_to")(self.broadcast_input, wildcard())

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        matches = self.pattern.extract_matched_expr(op, self.var2val)
        if matches is None or not self._applies(op, matches):
            return super().visit_call_(op)
        binary = _BINARY_OF_REDUCTION[op.op.name]
        operands = [self.visit_expr(self._unbroadcast(x, op)) for x in self._items(matches)]
        result: relax.Expr = operands[0]
        for position, operand in enumerate(operands[1:], start=2):
            result = binary(result, operand)
            if position < len(operands):
                result = self.builder_.emit(result)
        result = self.builder_.normalize(result)
        if not tvm_ffi.structural_equal(result.ty, op.ty):
            result = relax.op.broadcast_to(self.builder_.emit(result), op.ty.shape)
        return result

    def _items(self, matches: dict[DFPattern, relax.Expr]) -> list[relax.Expr]:
        items = matches[self.items]
        if isinstance(items, relax.Var):
            items = self.var2val.get(items, items)
        return list(items.fields) if isinstance(items, relax.Tuple) else []

    def _applies(self, op: relax.Call, matches: dict[DFPattern, relax.Expr]) -> bool:
        stack = matches[self.stack]
        stack_var = op.args[0]
        if not isinstance(stack_var, relax.Var) or self.uses[stack_var] != 1:
            return False
        if not self._items(matches) or bool(op.attrs.keepdims) or op.attrs.axis is None:
            return False
        ndim = stack.ty.ndim
        axes = [int(a) % ndim for a in op.attrs.axis]
        out = op.ty
        return (
            axes == [int(stack.attrs.axis) % ndim]
            and isinstance(out, relax.TensorType)
            and out.shape is not None
        )

    def _unbroadcast(self, item: relax.Expr, reduction: relax.Call) -> relax.Expr:
        """``x`` for ``broadcast_to(x, shape of the result)``, else ``item`` itself."""
        value = self.var2val.get(item) if isinstance(item, relax.Var) else item
        matches = None if value is None else self.broadcast.extract_matched_expr(value)
        if matches is None:
            return item
        if not tvm_ffi.structural_equal(matches[self.broadcast].args[1], reduction.ty.shape):
            return item
        return matches[self.broadcast_input]
