"""Rewrite inference-time composite operators into elementwise arithmetic.

Wraps TVM's ``relax.transform.DecomposeOpsForInference``: a batch norm that
:class:`~npuc.midend.fold_batchnorm.FoldBatchnorm` left (its statistics are
runtime inputs, or its statistics outputs are read) becomes
``(x - mean) / sqrt(var + eps) * gamma + beta``, elementwise ops that legalize
and fuse with their neighbours like any other. It also rewrites
``tensor_to_shape``.

Requires: run after FoldBatchnorm, so that constant batch norms have already
been folded into two ops instead of four.

Guarantees: no ``relax.nn.batch_norm`` in inference mode is left; the leftover
``(y, mean, var)`` tuple is dead after CanonicalizeBindings. Idempotent.
"""

from __future__ import annotations

import tvm
from tvm import relax


@tvm.transform.module_pass(opt_level=0, name="npuc.DecomposeInferenceOps")
class DecomposeInferenceOps:
    """Decompose batch norm (and tensor_to_shape) for inference. No options."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return relax.transform.DecomposeOpsForInference()(mod)
