"""Remove reshapes that do not change the shape and merge chains of reshapes.

Wraps TVM's ``relax.transform.RemoveRedundantReshape``, which already covers
what the ONNX importer produces for a no-op ``Reshape`` (``reshape(x, S)``
with ``x`` of shape ``S``) and for back-to-back reshapes.

Requires: known shapes (static or symbolic) on the reshape inputs.

Guarantees: no ``reshape(x, S)`` with ``x`` already of shape ``S`` and no
``reshape(reshape(x, _), S)`` (it becomes ``reshape(x, S)``); reshapes that
change the shape stay. Idempotent.
"""

from __future__ import annotations

import tvm
from tvm import relax


@tvm.transform.module_pass(opt_level=0, name="npuc.RemoveNoopReshapes")
class RemoveNoopReshapes:
    """Drop no-op reshapes and merge reshape chains (TVM's RemoveRedundantReshape)."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return relax.transform.RemoveRedundantReshape()(mod)
