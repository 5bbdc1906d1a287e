"""Run single Relax calls (``relax`` graph nodes, resize, rare unary functions) through TVM.

Each distinct node is compiled once (``tvm.compile`` for plain ``llvm``) into
a one-call function whose parameters stand for the call's free variables, and
the VM is cached. This keeps the quantizer total: any operator the frontend
imports can be calibrated and run, even one npuc does not model.

Thread-safe: building and running go through one lock per fallback (a Relax
VM and TVM's BlockBuilder are not safe to share across threads, and bias
correction runs batches in threads).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import tvm
from tvm import relax

from .graph import Graph, Node


@relax.expr_functor.mutator
class Substitute(relax.PyExprMutator):
    """Replaces variables by the expressions (here: function parameters) that stand for them."""

    def __init__(self, mapping: dict[Any, relax.Expr]) -> None:
        super().__init__()
        self.mapping = mapping

    def visit_var_(self, op: relax.Var) -> relax.Expr:
        return self.mapping.get(op, op)

    def visit_dataflow_var_(self, op: relax.DataflowVar) -> relax.Expr:
        return self.mapping.get(op, op)


class RelaxFallback:
    """Compiles and runs the ``relax_call`` of graph nodes, one VM per node."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._vms: dict[str, Any] = {}
        self._lock = threading.RLock()

    def _build(self, node: Node) -> Any:
        call = node.relax_call
        free = list(relax.analysis.free_vars(call))
        params = [relax.Var(f"p{i}", v.ty) for i, v in enumerate(free)]
        body = Substitute(dict(zip(free, params, strict=True))).visit_expr(call)
        base = self.graph.relax_module
        functions = {gv: f for gv, f in base.functions.items() if not isinstance(f, relax.Function)}
        bb = relax.BlockBuilder(tvm.IRModule(functions))
        with bb.function("main", params):
            with bb.dataflow():
                out = bb.emit_output(bb.emit(body))
            bb.emit_func_output(out)
        mod = relax.transform.DeadCodeElimination(["main"])(bb.get())
        executable = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
        return relax.VirtualMachine(executable, tvm.cpu())

    def run(self, node: Node, inputs: list[Any]) -> Any:
        """The node's output (an array, or a tuple of arrays) for numpy ``inputs``."""
        with self._lock:
            return self._run(node, inputs)

    def _run(self, node: Node, inputs: list[Any]) -> Any:
        vm = self._vms.get(node.name)
        if vm is None:
            vm = self._vms[node.name] = self._build(node)
        batch = max(
            (np.shape(x)[0] for x in inputs if np.ndim(x) and np.shape(x)[0] > 1), default=1
        )
        chunk = self._compiled_batch(node, inputs)
        if batch > chunk and batch % chunk == 0:
            # Calibration stacks samples along the batch axis: run the call on slices
            # of the batch it was compiled for (1, or the model's own batch).
            parts = [
                self._run(node, [x[i : i + chunk] for x in inputs]) for i in range(0, batch, chunk)
            ]
            if isinstance(parts[0], tuple):
                return tuple(np.concatenate(p, axis=0) for p in zip(*parts, strict=True))
            return np.concatenate(parts, axis=0)
        args = [tvm.runtime.tensor(np.ascontiguousarray(x)) for x in inputs]
        return _to_numpy(vm["main"](*args))

    def _compiled_batch(self, node: Node, inputs: list[Any]) -> int:
        """The static leading dimension the call was compiled for, from its first array input.

        ``inputs`` are in the order of the call's free variables (as in :meth:`_build`).
        1 when it is not static.
        """
        free = relax.analysis.free_vars(node.relax_call)
        for var, x in zip(free, inputs, strict=False):
            values = getattr(getattr(var.ty, "shape", None), "values", None)
            if values is not None and len(values) == np.ndim(x) > 0:
                first = values[0]
                return int(first) if isinstance(first, tvm.tirx.IntImm) and int(first) > 0 else 1
        return 1


def _to_numpy(value: Any) -> Any:
    if isinstance(value, (tuple, list)) or type(value).__name__ == "Array":
        return tuple(_to_numpy(v) for v in value)
    return value.numpy()
