"""Remove operations that return their input unchanged.

Requires: nothing beyond a well-formed module (shapes known where a rule
compares them; a rule whose shapes are unknown does not fire).

Guarantees: each of these is replaced by its input ``x``, and nothing else
changes (the ONNX importer already drops ``Identity`` nodes; these are the
other ways an exported graph spells "no-op"):

- ``dropout(x)[0]`` — ONNX ``Dropout`` at inference (the mask output, if
  read, is kept);
- ``astype(x, dtype)`` when ``x`` already has ``dtype`` — ``Cast`` to its own type;
- ``broadcast_to(x, shape)`` when ``x`` already has ``shape`` — ``Expand``;
- ``permute_dims(x, axes)`` when ``axes`` is ``0, 1, ..., n-1`` — ``Transpose``;
- ``x + 0``, ``0 + x``, ``x - 0``, ``x * 1``, ``1 * x``, ``x / 1`` with a
  constant ``0``/``1`` that broadcasting does not grow ``x`` by and of the same
  dtype.

Idempotent. Shape-changing forms (a broadcast that grows ``x``) are left alone.
No-op reshapes are :class:`~npuc.midend.remove_noop_reshapes.RemoveNoopReshapes`'s job.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import DFPattern, is_const, is_op, wildcard

from ._rewrite import rewrite_module


@tvm.transform.module_pass(opt_level=0, name="npuc.RemoveIdentities")
class RemoveIdentities:
    """Replace identity operations by their input; see the module docstring. No options."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return rewrite_module(mod, lambda m, f: _IdentityRemover(m, f))


# A pattern and a condition on (the matched expression, its sub-matches).
Rule = tuple[DFPattern, Callable[[relax.Expr, dict[DFPattern, relax.Expr]], bool]]


@relax.expr_functor.mutator
class _IdentityRemover(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule, func: relax.Function) -> None:
        super().__init__(mod)
        self.var2val = relax.analysis.get_var2val(func)
        self.x = wildcard()
        self.const = is_const()
        x, c = self.x, self.const
        self.dropout = is_op("relax.nn.dropout")(x)
        # Matched without var2val so that ``x`` is the operand variable, not its value.
        self.rules: list[Rule] = [
            (is_op("relax.astype")(x), self._same_type),
            (is_op("relax.broadcast_to")(x, wildcard()), self._same_type),
            (is_op("relax.permute_dims")(x), self._identity_axes),
            (_commutative("relax.add", x, c), lambda e, m: self._neutral_const(e, m, 0.0)),
            (is_op("relax.subtract")(x, c), lambda e, m: self._neutral_const(e, m, 0.0)),
            (_commutative("relax.multiply", x, c), lambda e, m: self._neutral_const(e, m, 1.0)),
            (is_op("relax.divide")(x, c), lambda e, m: self._neutral_const(e, m, 1.0)),
        ]

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        new = self._rewrite(op)
        return super().visit_call_(op) if new is None else new

    def visit_tuple_getitem_(self, op: relax.TupleGetItem) -> relax.Expr:
        value = self.var2val.get(op.tuple_value) if op.index == 0 else None
        matches = None if value is None else self.dropout.extract_matched_expr(value)
        if matches is None:
            return super().visit_tuple_getitem_(op)
        return self.visit_expr(matches[self.x])

    def _rewrite(self, expr: relax.Expr) -> relax.Expr | None:
        for pattern, holds in self.rules:
            matches = pattern.extract_matched_expr(expr)
            if matches is not None and holds(expr, matches):
                return self.visit_expr(matches[self.x])
        return None

    def _same_type(self, expr: relax.Expr, matches: dict[DFPattern, relax.Expr]) -> bool:
        x = matches[self.x]
        return _known_tensor(x) and tvm_ffi.structural_equal(x.ty, expr.ty)

    def _identity_axes(self, expr: relax.Expr, matches: dict[DFPattern, relax.Expr]) -> bool:
        axes = expr.attrs.axes
        x_ty = matches[self.x].ty
        if axes is None:  # reverses the axes: identity only up to rank 1
            return _known_tensor(matches[self.x]) and x_ty.ndim <= 1
        return [int(a) for a in axes] == list(range(len(axes)))

    def _neutral_const(
        self, expr: relax.Expr, matches: dict[DFPattern, relax.Expr], neutral: float
    ) -> bool:
        values = matches[self.const].value.numpy()
        return (
            self._same_type(expr, matches)
            and values.dtype == np.dtype(str(matches[self.x].ty.dtype))
            and bool(np.all(values == neutral))
        )


def _commutative(op_name: str, x: DFPattern, const: DFPattern) -> DFPattern:
    return is_op(op_name)(x, const) | is_op(op_name)(const, x)


def _known_tensor(expr: relax.Expr) -> bool:
    ty = expr.ty
    return isinstance(ty, relax.TensorType) and ty.shape is not None and ty.ndim >= 0
