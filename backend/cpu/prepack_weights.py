"""Pack weights at compile time into the layouts the schedules asked for.

A schedule rule that wants its weights in a blocked layout (the conv2d rule's
``[k // bk, c, ky, kx, k % bk]``) rewrites the weight buffer inside its
PrimFunc through a first block tagged ``meta_schedule.layout_rewrite_preproc``.
This pass moves every such block into a PrimFunc of its own, called from the
graph before the kernel (TVM's ``SplitLayoutRewritePreproc``); since the
weights are constants, ``FoldConstant`` then runs those calls once, at
compile time, and the library stores the packed tensors (the AVX2 int8
kernels' weight preparations are computed with numpy first,
:mod:`~npuc.backend.cpu.fold_ubsw_prepare`: compiling each would cost about
0.3 s per layer). Functions left
unused are removed.

Requires: the schedule pass done (:func:`npuc.backend.cpu.lowering.schedule_passes`).

Guarantees: no layout-rewrite block is left inside a kernel; a rewrite of a
constant weight is a constant in the graph. A weight that is not constant
(an input of the model) is rewritten at run time by its own call, still
correct. Semantics unchanged. Idempotent.
"""

from __future__ import annotations

import tvm
from tvm import relax

from npuc.backend.cpu.fold_ubsw_prepare import FoldUbswPrepare


@tvm.transform.module_pass(opt_level=0, name="npuc.PrepackWeights")
class PrepackWeights:
    """Split layout-rewrite blocks out of the kernels and fold them into constants."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        seq = tvm.transform.Sequential(
            [
                relax.transform.SplitLayoutRewritePreproc(),
                FoldUbswPrepare(),
                relax.transform.FoldConstant(),
                relax.transform.DeadCodeElimination(),
            ]
        )
        return seq(mod)
