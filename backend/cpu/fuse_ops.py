"""Fuse chains of operators into single TIR kernels for the CPU.

Wraps TVM's ``FuseOps`` (groups bindings by the ``op_pattern`` of their
PrimFuncs: a convolution or matmul with its elementwise epilogue, runs of
elementwise/broadcast/injective ops, a reduction with what feeds it) and
``FuseTIR`` (turns each group into one PrimFunc). This is the whole-graph
part of CPU code generation: after it the backend schedules each PrimFunc
and finishes lowering (:mod:`npuc.backend.cpu.lowering` lists every pass).

Requires: :class:`~npuc.backend.cpu.legalize_ops.LegalizeOps` (every op a
``call_tir`` with an ``op_pattern``).

Guarantees: every fusable group is one ``call_tir`` of one PrimFunc; no
``Primitive`` Relax sub-function is left (FuseTIR inlines them).
Semantics unchanged. Idempotent in effect: a second run finds no new groups
(a fused PrimFunc is never fused again across an ``OutEWiseFusable`` anchor).
"""

from __future__ import annotations

import tvm
from tvm import relax


@tvm.transform.module_pass(opt_level=0, name="npuc.FuseOps")
class FuseOps:
    """Group and fuse operators into one PrimFunc per group.

    Parameters
    ----------
    fuse_opt_level
        TVM's fusion level: 0 fuses nothing, 1 only injective ops, 2 and above
        everything FuseOps can (default 2).
    """

    def __init__(self, fuse_opt_level: int = 2) -> None:
        if fuse_opt_level < 0:
            raise ValueError(f"fuse_opt_level must be >= 0, got {fuse_opt_level}")
        self.fuse_opt_level = fuse_opt_level

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        seq = tvm.transform.Sequential(
            [relax.transform.FuseOps(self.fuse_opt_level), relax.transform.FuseTIR()]
        )
        return seq(mod)
