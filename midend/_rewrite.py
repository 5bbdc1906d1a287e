"""Shared plumbing for the midend's own rewrite passes.

Not a pass: helpers that every mutator-based pass needs and that would
otherwise be copied into each of them — which functions of a module to
rewrite, how often each variable is used, and the drive loop that runs a
:class:`relax.PyExprMutator` over every Relax function and drops the bindings
the rewrite left dead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import tvm
from tvm import relax


def rewritable_functions(mod: tvm.IRModule) -> Iterator[tuple[tvm.ir.GlobalVar, relax.Function]]:
    """Yield the Relax functions of ``mod`` that graph passes may rewrite.

    Fused sub-functions (``Primitive``) and functions handed to an external
    codegen (``Codegen``) are left alone: their bodies are a unit that a later
    stage owns.
    """
    for gvar, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue
        attrs = func.attrs or {}
        if int(attrs.get("Primitive", 0)) != 0 or "Codegen" in attrs:
            continue
        yield gvar, func


@relax.expr_functor.visitor
class _UseCounter(relax.PyExprVisitor):
    """Counts the uses (not the definitions) of every variable in a function."""

    def __init__(self) -> None:
        super().__init__()
        self.uses: Counter[relax.Var] = Counter()

    def visit_var_(self, op: relax.Var) -> None:
        self.uses[op] += 1

    def visit_dataflow_var_(self, op: relax.DataflowVar) -> None:
        self.uses[op] += 1


def count_uses(func: relax.Function) -> Counter[relax.Var]:
    """Number of times each variable of ``func`` is read (its return value included)."""
    counter = _UseCounter()
    counter.visit_expr(func)
    return counter.uses


def rewrite_module(
    mod: tvm.IRModule, make_mutator: Callable[[tvm.IRModule, relax.Function], relax.PyExprMutator]
) -> tvm.IRModule:
    """Run a fresh mutator over each rewritable function and drop dead bindings.

    Parameters
    ----------
    mod
        The module to rewrite; it is not modified.
    make_mutator
        Builds the mutator for one function; it gets the function so it can
        precompute use counts and the variable-to-value map of that function.

    Returns
    -------
    tvm.IRModule
        A new module; functions the mutator did not change stay the same objects.
    """
    updates: dict[tvm.ir.GlobalVar, relax.Function] = {}
    for gvar, func in rewritable_functions(mod):
        mutator = make_mutator(mod, func)
        new_func = mutator.visit_expr(func)
        if not new_func.same_as(func):
            updates[gvar] = relax.analysis.remove_all_unused(new_func)
    if not updates:
        return mod
    new_mod = mod.clone()
    for gvar, func in updates.items():
        new_mod.update_func(gvar, func)
    return new_mod
