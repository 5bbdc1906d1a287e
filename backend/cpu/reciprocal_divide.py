"""Float32 division by a constant as multiplication by its reciprocal.

TVM's ONNX importer writes HardSwish as ``x * (clip(x + 3, 0, 6) / 6)``: after
every convolution of MobileNetV3-style models (the orientation classifier,
PP-OCR's LCNet) the fused epilogue then divides each value, and a vector
division is far slower than a multiplication (AVX-512 ``vdivps`` has about a
tenth of ``vfmadd``'s throughput). ONNX itself defines HardSwish as
``x * max(0, min(1, alpha * x + beta))`` with ``alpha = 1/6``: a multiplication,
which is also what onnxruntime computes. Measured by replacing the division in
the orientation classifier's kernels (one thread, AVX-512): the 16->32 pointwise
convolution at 112x112 217 -> 170 us, the 5x5 depthwise at 14x14 40 -> 34 us.

Requires: a Relax module before :class:`~npuc.backend.cpu.legalize_ops.LegalizeOps`.

Guarantees: every ``relax.divide(x, c)`` whose result is float32 and whose
divisor ``c`` is a float32 constant (scalar or tensor) with every element and
its reciprocal finite and normal becomes ``relax.multiply(x, 1/c)``, the
reciprocal rounded once to float32 from float64. Each result then differs from
the correctly rounded quotient by at most 2 ulp (two roundings, relative error
below 2^-23); special values are unchanged (x = 0, inf or NaN give what the
division gives, since ``1/c`` is finite and non-zero). Left alone: float64
divisions (the int8 path's input quantization divides in float64 and must
round exactly as the integer executor), integer divisions, variable divisors,
and constants with a zero, subnormal, infinite or NaN element or a subnormal
reciprocal. Idempotent.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

F32 = "float32"
_SMALLEST_NORMAL = float(np.finfo(np.float32).tiny)


def reciprocal(values: np.ndarray) -> np.ndarray | None:
    """``1 / values`` as float32 (computed in float64), or ``None`` when any element
    or its reciprocal is zero, subnormal, infinite or NaN (module docstring)."""
    wide = values.astype(np.float64)
    if not np.isfinite(wide).all() or (np.abs(wide) < _SMALLEST_NORMAL).any():
        return None
    inverse = (1.0 / wide).astype(np.float32)
    if not np.isfinite(inverse).all() or (np.abs(inverse) < _SMALLEST_NORMAL).any():
        return None
    return inverse


@tvm.transform.module_pass(opt_level=0, name="npuc.ReciprocalDivide")
class ReciprocalDivide:
    """Rewrite float32 divisions by constants as multiplications; see the module docstring."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        updates: dict[tvm.ir.GlobalVar, relax.Function] = {}
        for gvar, func in mod.functions_items():
            if not isinstance(func, relax.Function):
                continue
            rewriter = _DivideRewriter(mod)
            new_func = rewriter.visit_expr(func)
            if rewriter.rewritten:
                updates[gvar] = new_func
        if not updates:
            return mod
        mod = mod.clone()  # never mutate the caller's module
        for gvar, new_func in updates.items():
            mod[gvar] = new_func
        return mod


@relax.expr_functor.mutator
class _DivideRewriter(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.rewritten = 0

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not isinstance(call, relax.Call) or call.op != tvm.ir.Op.get("relax.divide"):
            return call
        value = getattr(call.args[1], "value", None)  # a tensor constant's data
        if not isinstance(value, tvm.runtime.Tensor) or str(value.dtype) != F32:
            return call
        if str(getattr(call.ty, "dtype", "")) != F32:
            return call
        inverse = reciprocal(value.numpy())
        if inverse is None:
            return call
        self.rewritten += 1
        return relax.op.multiply(call.args[0], relax.const(inverse, F32))
