"""Fold the AVX2 ``vpmaddubsw`` weight preparation with numpy instead of compiling it.

:mod:`~npuc.backend.cpu.schedules.int8_ubsw` prepares each AVX2 int8
convolution's weights in a TIR block that
:class:`~npuc.backend.cpu.prepack_weights.PrepackWeights` splits out of the
kernel (``SplitLayoutRewritePreproc``) and ``FoldConstant`` would then compile
and run once per layer: about 0.3 s of build time per layer (its TIR pipeline
and LLVM), 10 of the 21 s of building MobileNetV2's int8 library for AVX2.
This pass replaces each such call on a constant by the constant
:func:`~npuc.backend.cpu.schedules.int8_ubsw.prepare_numpy` computes (the same
buffer; ``tests/backend/cpu/test_fold_ubsw_prepare.py`` checks it against the
block's own result).

Requires: ``SplitLayoutRewritePreproc`` done (the preparation is a PrimFunc of
its own, called from Relax). Guarantees: every ``call_tir`` of a PrimFunc
holding the :data:`~.int8_ubsw.PREPARE_BLOCK` block on a constant weight is a
constant; a call on a non-constant weight is left to run (still correct);
semantics unchanged. Idempotent.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax, s_tir

from npuc.backend.cpu.schedules.int8_spec import SPEC_ATTR, ConvKernelSpec
from npuc.backend.cpu.schedules.int8_ubsw import PREPARE_BLOCK, prepare_numpy

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def prepare_spec(func: tvm.tirx.PrimFunc) -> ConvKernelSpec | None:
    """The spec of ``func`` if it holds the weight-preparation block, else ``None``."""
    found: list[ConvKernelSpec] = []

    def block(node: s_tir.stmt.SBlock) -> None:
        if node.name_hint == PREPARE_BLOCK and SPEC_ATTR in node.annotations:
            found.append(ConvKernelSpec.from_attr(node.annotations[SPEC_ATTR]))

    tvm_ffi.structural_walk(func.body, [(s_tir.stmt.SBlock, block)])
    return found[0] if len(found) == 1 else None


@relax.expr_functor.mutator
class _PrepareFolder(relax.PyExprMutator):
    """Replaces ``call_tir(prepare, (constant,))`` by its numpy result."""

    def __init__(self, mod: tvm.IRModule, specs: dict[str, ConvKernelSpec]) -> None:
        super().__init__(mod)
        self.specs = specs

    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        if not isinstance(call, relax.Call) or not call.op.same_as(_CALL_TIR):
            return call
        callee, args = call.args[0], call.args[1]
        if not isinstance(callee, tvm.ir.GlobalVar) or callee.name_hint not in self.specs:
            return call
        if not isinstance(args, relax.Tuple) or len(args.fields) != 1:
            return call
        weight = args.fields[0]
        if not isinstance(weight, tvm.ir.expr.Constant):
            return call
        return relax.const(prepare_numpy(self.specs[callee.name_hint], weight.value.numpy()))


@tvm.transform.module_pass(opt_level=0, name="npuc.FoldUbswPrepare")
class FoldUbswPrepare:
    """Compute the AVX2 ``vpmaddubsw`` weight preparations on constants with numpy."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        specs = {}
        for gvar, func in mod.functions_items():
            if isinstance(func, tvm.tirx.PrimFunc):
                spec = prepare_spec(func)
                if spec is not None:
                    specs[gvar.name_hint] = spec
        if not specs:
            return mod
        folder = _PrepareFolder(mod, specs)
        out = mod.clone()
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                out[gvar] = folder.visit_expr(func)
        return out
