"""Gathers with run-time indices read in bounds (``take`` mode ``clip``).

TVM's ONNX importer turns ``Gather`` into ``relax.take`` in its ``fast``
mode, which reads out of bounds (and can crash the process) for an index
outside the axis. With indices computed at run time (token ids of an
embedding lookup) npuc cannot check them at compile time, so every ``take``
whose indices are not a constant gets mode ``clip``: an index below 0 reads
element 0 and one past the end reads the last element.

Guarantee: results are unchanged for every in-bounds index (negative ONNX
indices are already normalised by the importer); an out-of-bounds index,
which onnxruntime refuses with an error, gives the clipped element instead
of undefined memory. ``take`` with constant indices is untouched. Idempotent.
"""

from __future__ import annotations

import tvm
from tvm import relax


def clip_take_indices(mod: tvm.IRModule) -> tvm.IRModule:
    """Rewrite every non-constant-index ``relax.take`` of every Relax function to mode clip."""
    updates = {}
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            new = _ClipTake(mod).visit_expr(func)
            if not new.same_as(func):
                updates[gvar] = new
    if not updates:
        return mod
    out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gvar, func in updates.items():
        out[gvar] = func
    return out


@relax.expr_functor.mutator
class _ClipTake(relax.PyExprMutator):
    def visit_call_(self, op: relax.Call) -> relax.Expr:
        call = super().visit_call_(op)
        take = tvm.ir.Op.get("relax.take")
        if not isinstance(call, relax.Call) or not call.op.same_as(take):
            return call
        if isinstance(call.args[1], tvm.ir.GenericConst) or str(call.attrs.mode) != "fast":
            return call
        axis = call.attrs.axis
        return relax.op.take(
            call.args[0], call.args[1], None if axis is None else int(axis), "clip"
        )
