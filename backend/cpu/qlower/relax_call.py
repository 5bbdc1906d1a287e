"""Re-emit a graph node's stored Relax call with new arguments.

Requires: ``node.relax_call`` (set for ``relax`` fallback nodes, table-less
unary functions and resize) whose free variables are, in
``relax.analysis.free_vars`` order, the node's inputs (the convention
:mod:`npuc.midend.quantize.extract` and
:class:`~npuc.midend.quantize.relax_fallback.RelaxFallback` share).

Guarantees: the same call with each free variable replaced by the matching
expression of ``args``. Calls into the source module's PrimFuncs keep their
``GlobalVar``: the module being built must hold those functions
(:func:`source_functions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tvm
from tvm import relax

from npuc.core.errors import UnsupportedError
from npuc.midend.quantize.graph import Graph, Node
from npuc.midend.quantize.relax_fallback import Substitute


def substitute_call(node: Node, args: Sequence[relax.Expr]) -> relax.Expr:
    """``node.relax_call`` over ``args`` (one per free variable, in order).

    Raises
    ------
    UnsupportedError
        The node has no stored call, or its free variables do not match ``args``.
    """
    call = node.relax_call
    if call is None:
        raise UnsupportedError(
            f"layer {node.name!r} ({node.op}) has no Relax call to run on the CPU",
            hint="report this model: the quantizer's graph lost the operator",
        )
    free = list(relax.analysis.free_vars(call))
    if len(free) != len(args):
        raise UnsupportedError(
            f"layer {node.name!r}: its Relax call reads {len(free)} tensors, "
            f"the graph gives {len(args)}"
        )
    return Substitute(dict(zip(free, args, strict=True))).visit_expr(call)


def source_functions(graph: Graph) -> dict[tvm.ir.GlobalVar, Any]:
    """The non-Relax functions (PrimFuncs) of the graph's source module, by GlobalVar."""
    base = graph.relax_module
    if base is None:
        return {}
    return {gv: f for gv, f in base.functions.items() if not isinstance(f, relax.Function)}
