"""Evaluate at compile time every operation whose inputs are all constants.

Two stages:

1. a numpy evaluator for small elementwise ops whose numpy semantics are the
   same as TVM's (``isnan``, ``where``, ``maximum``, float arithmetic, ...).
   The ONNX importer emits such chains on scalars for every ``Clip``
   (``where(isnan(bound), -inf, bound)``); TVM's ``FoldConstant`` compiles an
   LLVM kernel for each one, about 0.2 s apiece (19 s for a 36-Clip model);
   numpy takes microseconds;
2. TVM's ``relax.transform.FoldConstant`` for everything else (it legalises
   each constant sub-expression, runs it on the host and binds the result).

Requires: constants bound into the module (the frontend imports weights as
constants); dataflow blocks (the importer emits them).

Guarantees: no call inside a dataflow block has only constant inputs (except
the few ops TVM will not fold, such as those creating large tensors from
shapes); a variable bound to a folded value is replaced by the constant at
every use; semantics unchanged. Idempotent.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tvm
from tvm import relax

from ._rewrite import rewrite_module

# Ops numpy evaluates exactly as TVM's kernels do, for the dtypes listed.
_FLOAT = ("float16", "float32", "float64")
_ANY = None  # every dtype
_NUMPY_OPS: dict[str, tuple[Callable[..., np.ndarray], tuple[str, ...] | None]] = {
    "relax.isnan": (np.isnan, _FLOAT),
    "relax.isinf": (np.isinf, _FLOAT),
    "relax.isfinite": (np.isfinite, _FLOAT),
    "relax.where": (np.where, _ANY),
    "relax.maximum": (np.maximum, _ANY),
    "relax.minimum": (np.minimum, _ANY),
    "relax.negative": (np.negative, _FLOAT),
    "relax.add": (np.add, _FLOAT),
    "relax.subtract": (np.subtract, _FLOAT),
    "relax.multiply": (np.multiply, _FLOAT),
    "relax.divide": (np.divide, _FLOAT),
    "relax.logical_not": (np.logical_not, ("bool",)),
    "relax.logical_and": (np.logical_and, ("bool",)),
    "relax.logical_or": (np.logical_or, ("bool",)),
}
# Larger tensors go to TVM: numpy is exact only elementwise, and large folds
# are rare enough that TVM's compile cost does not matter there.
_MAX_NUMPY_ELEMENTS = 4096


@tvm.transform.module_pass(opt_level=0, name="npuc.FoldConstants")
class FoldConstants:
    """Fold constant sub-expressions (numpy for small elementwise ops, then TVM). No options."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = rewrite_module(mod, lambda m, _f: _NumpyFolder(m))
        return relax.transform.FoldConstant()(mod)


@relax.expr_functor.mutator
class _NumpyFolder(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.constants: dict[relax.Var, relax.Expr] = {}

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = binding.value
        folded = self._fold(value) if isinstance(value, relax.Call) else None
        if folded is None:
            super().visit_var_binding_(binding)
        else:
            self.constants[binding.var] = folded  # uses are replaced; the binding dies

    def visit_var_(self, op: relax.Var) -> relax.Expr:
        const = self.constants.get(op)
        return super().visit_var_(op) if const is None else const

    def visit_dataflow_var_(self, op: relax.DataflowVar) -> relax.Expr:
        const = self.constants.get(op)
        return super().visit_dataflow_var_(op) if const is None else const

    def _fold(self, call: relax.Call) -> relax.Expr | None:
        if not isinstance(call.op, tvm.ir.Op) or call.op.name not in _NUMPY_OPS:
            return None
        func, dtypes = _NUMPY_OPS[call.op.name]
        args = [self.visit_expr(arg) for arg in call.args]
        if not all(isinstance(arg, tvm.ir.GenericConst) for arg in args):
            return None
        arrays = [arg.value.numpy() for arg in args]
        ty = call.ty
        if not isinstance(ty, relax.TensorType) or not isinstance(ty.shape, relax.ShapeExpr):
            return None
        if dtypes is not None and any(str(a.dtype) not in dtypes for a in arrays):
            return None
        if any(a.size > _MAX_NUMPY_ELEMENTS for a in arrays):
            return None
        if call.op.name in ("relax.maximum", "relax.minimum") and any(
            a.dtype.kind == "f" and np.isnan(a).any() for a in arrays
        ):
            return None  # NaN propagation of max/min is not guaranteed to match
        with np.errstate(all="ignore"):  # inf/nan results are folded as TVM would compute them
            result = np.asarray(func(*arrays))
        shape = tuple(int(dim) for dim in ty.shape.values)
        if result.shape != shape or not np.can_cast(result.dtype, str(ty.dtype), "same_kind"):
            return None
        return relax.const(result.astype(str(ty.dtype)), str(ty.dtype))
