"""Canonicalise variable bindings and delete what nothing reads.

Wraps TVM's ``CanonicalizeBindings`` (``y = x`` aliases and ``(a, b)[0]``
tuple lookups are replaced by what they name) followed by
``DeadCodeElimination`` (unused pure bindings and unreachable functions go).
The rewrite passes leave aliases and dead tuples behind; this is the sweep.

Requires: a well-formed module.

Guarantees: no binding whose value is a bare variable, no unused pure
binding, no function unreachable from an exported one. Idempotent.
"""

from __future__ import annotations

import tvm
from tvm import relax


@tvm.transform.module_pass(opt_level=0, name="npuc.RemoveDeadCode")
class RemoveDeadCode:
    """Canonicalise bindings, then eliminate dead code. No options."""

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        seq = tvm.transform.Sequential(
            [relax.transform.CanonicalizeBindings(), relax.transform.DeadCodeElimination()]
        )
        return seq(mod)
