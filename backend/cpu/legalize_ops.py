"""Lower every high-level Relax operator to a ``call_tir`` of a TIR PrimFunc.

Wraps TVM's CPU lowering front half: ``DispatchSampling`` and
``DispatchSortScan`` (sort, argsort, top-k, cumsum and multinomial sampling
have no ``LegalizeOps`` rule; these pick their TOPI kernels for the target),
then ``LegalizeOps`` (float transposed convolutions by
:mod:`.transposed_conv`, not TVM's zero-dilating kernel; float sigmoid and
softmax by :mod:`.fast_exp`, a vectorisable exponential) and
``AnnotateTIROpPattern`` (tags each PrimFunc as elementwise / broadcast /
injective / reduction / out-elementwise-fusable, the input of
:class:`~npuc.backend.cpu.fuse_ops.FuseOps`).

Requires: the midend's graph passes done (folding and clean-ups work on
Relax ops, not on PrimFuncs).

Guarantees: every Relax operator call is a ``call_tir`` (or a packed-function
call for the few ops TVM implements that way) and every PrimFunc carries an
``op_pattern`` attribute. Idempotent (a legalised module has nothing left to
legalise).
"""

from __future__ import annotations

import tvm
from tvm import relax

from npuc.backend.cpu import fast_exp, transposed_conv

#: Our lowerings of some operators, used instead of TVM's.
CUSTOM_LEGALIZE = {**transposed_conv.CUSTOM_LEGALIZE, **fast_exp.CUSTOM_LEGALIZE}


@tvm.transform.module_pass(opt_level=0, name="npuc.LegalizeOps")
class LegalizeOps:
    """Lower Relax operators to TIR for a CPU target.

    Parameters
    ----------
    target
        The target whose TOPI kernels sort/scan/sampling dispatch to. Only its
        kind matters here (``llvm``); CPU features are chosen at codegen.
    """

    def __init__(self, target: tvm.target.Target | None = None) -> None:
        self.target = target if target is not None else tvm.target.Target({"kind": "llvm"})

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        seq = tvm.transform.Sequential(
            [
                relax.backend.DispatchSampling(),
                relax.backend.DispatchSortScan(),
                relax.transform.LegalizeOps(customize_legalize_map=CUSTOM_LEGALIZE),
                relax.transform.AnnotateTIROpPattern(),
            ]
        )
        with self.target:
            return seq(mod)
