"""Float layers of an integer model as compiled TVM kernels, one definition for everyone.

A float layer (``run_on == "cpu"``) whose result an integer layer quantizes
must give the same float32 bits wherever it runs, or a rounding moves a
stored code. So the integer executor does not compute float layers in numpy:
it runs, per layer, the kernel :func:`build_kernel` makes, and the integer
CPU library (``npuc.backend.cpu.qlower``) embeds the same kernel with
:func:`emit_kernel`. The kernel is the layer's Relax arithmetic
(:mod:`.float_relax`) legalised with TVM's stock ``LegalizeOps`` and fused
within the layer only, and scheduled by
:func:`.float_schedule.schedule_float_kernel` (reductions vectorised over the
output's last axis, outer spatial loops in ``parallel``; no reduction is split
or reordered, so the bits do not depend on threads); its PrimFuncs are tagged
opaque (``op_pattern`` 8, never fused with a neighbour) and scheduled
(``tirx.is_scheduled``: no schedule rule touches them), so both sides compile
the same TIR with the same LLVM target (the host's,
:func:`npuc.core.target.host_target`: the same FMA contraction and the same
``exp``) and get the same bits.

Requires: static shapes; every input of the layer a tensor (not a tuple).

Guarantees: :class:`FloatKernels` returns, for such a layer, exactly what the
library's embedded kernel returns for the same inputs on the same CPU model.
Layers that only move values (:data:`.float_relax.NO_ARITHMETIC`) have no
kernel: any implementation is exact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import relax, tirx

from .float_relax import NO_ARITHMETIC, emit_float_op
from .float_schedule import schedule_float_kernel
from .graph import Graph, Node

#: Relax's ``kOpaque`` operator pattern: FuseOps never groups such a PrimFunc.
OPAQUE_PATTERN = 8
SCHEDULED_ATTR = "tirx.is_scheduled"


@dataclass(frozen=True, slots=True)
class FloatKernel:
    """One float layer's kernel.

    ``module["main"]`` takes one tensor per layer input (the graph's shapes and
    dtypes) and returns the layer's output through ``call_tir`` of the
    module's PrimFuncs, all tagged opaque and scheduled.
    """

    node_name: str
    module: tvm.IRModule

    @property
    def param_types(self) -> list[relax.TensorType]:
        """The Relax type of each parameter of ``main``."""
        return [p.ty for p in self.module["main"].params]


def kernel_param_types(graph: Graph, node: Node) -> list[relax.TensorType] | None:
    """The kernel's parameter types (the graph's types of ``node.inputs``), or None when
    the layer has no kernel (value movement only, or a tuple input)."""
    if node.op in NO_ARITHMETIC:
        return None
    types = []
    for name in node.inputs:
        ty = graph.tensor_type(name)
        if ty.dtype == "tuple":
            return None
        types.append(relax.TensorType(tuple(ty.shape), ty.dtype))
    return types


def source_functions(graph: Graph) -> dict[tvm.ir.GlobalVar, Any]:
    """The non-Relax functions (PrimFuncs) of the graph's source module, by GlobalVar."""
    base = graph.relax_module
    if base is None:
        return {}
    return {gv: f for gv, f in base.functions.items() if not isinstance(f, relax.Function)}


def build_kernel(
    node: Node,
    param_types: Sequence[relax.TensorType],
    functions: Mapping[tvm.ir.GlobalVar, Any],
) -> FloatKernel:
    """The kernel of float layer ``node`` for inputs of ``param_types``.

    ``functions``: PrimFuncs by GlobalVar, among them those the node's stored
    call references (:func:`source_functions`); only those are used.
    Deterministic: the same node, types and functions give a structurally
    equal module.

    Raises
    ------
    UnsupportedError
        A ``relax`` node without a usable stored call.
    """
    params = [relax.Var(f"p{i}", ty) for i, ty in enumerate(param_types)]
    called = relax.analysis.all_global_vars(node.relax_call) if node.relax_call is not None else []
    bb = relax.BlockBuilder(tvm.IRModule({gv: functions[gv] for gv in called if gv in functions}))
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(emit_float_op(bb, node, params))
        bb.emit_func_output(out)
    lower = tvm.transform.Sequential(
        [
            relax.transform.DeadCodeElimination(["main"]),
            relax.backend.DispatchSampling(),
            relax.backend.DispatchSortScan(),
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FuseOps(2),  # within the layer only: it is the whole module
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(["main"]),
        ]
    )
    with tvm.target.Target({"kind": "llvm"}):
        mod = lower(bb.get())
    tagged = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            func = schedule_float_kernel(func)
            func = func.with_attr("op_pattern", OPAQUE_PATTERN).with_attr(SCHEDULED_ATTR, True)
        tagged[gv] = func
    return FloatKernel(node.name, tvm.IRModule(tagged))


@relax.expr_functor.mutator
class _Rebind(relax.PyExprMutator):
    """Replaces variables by the caller's expressions and GlobalVars by the caller's."""

    def __init__(self, values: dict[Any, relax.Expr], gvars: dict[Any, tvm.ir.GlobalVar]) -> None:
        super().__init__()
        self.values = values
        self.gvars = gvars

    def visit_var_(self, op: relax.Var) -> relax.Expr:
        return self.values.get(op, op)

    def visit_dataflow_var_(self, op: relax.DataflowVar) -> relax.Expr:
        return self.values.get(op, op)

    def visit_global_var_(self, op: tvm.ir.GlobalVar) -> relax.Expr:
        return self.gvars.get(op, op)


def emit_kernel(
    bb: relax.BlockBuilder, kernel: FloatKernel, args: Sequence[relax.Expr]
) -> relax.Expr:
    """Emit ``kernel``'s bindings into ``bb`` (inside a dataflow block) over ``args``.

    Its PrimFuncs are added to ``bb``'s module unchanged (a structurally equal
    function already there is reused). Returns the layer's output.
    """
    main = kernel.module["main"]
    gvars = {
        gv: bb.add_func(func, f"float_{kernel.node_name}_{gv.name_hint}")
        for gv, func in kernel.module.functions_items()
        if isinstance(func, tirx.PrimFunc)
    }
    values: dict[Any, relax.Expr] = dict(zip(main.params, args, strict=True))
    rebind = _Rebind(values, gvars)
    for block in main.body.blocks:
        for binding in block.bindings:
            values[binding.var] = bb.emit(rebind.visit_expr(binding.value))
    return rebind.visit_expr(main.body.body)


def _finalize_passes() -> tvm.transform.Pass:
    """Relax dataflow -> VM code; the kernels' PrimFuncs pass through untouched."""
    return tvm.transform.Sequential(
        [
            relax.transform.RewriteDataflowReshape(),
            relax.transform.ToNonDataflow(),
            relax.transform.RemovePurityChecking(),
            relax.transform.CallTIRRewrite(),
            relax.transform.StaticPlanBlockMemory(),
            relax.transform.LowerAllocTensor(),
            relax.transform.KillAfterLastUse(),
            relax.transform.LowerRuntimeBuiltin(),
            relax.transform.ComputePrimValue(),
            relax.transform.VMShapeLower(),
            relax.transform.AttachGlobalSymbol(),
        ]
    )


class FloatKernels:
    """Runs the float layers ``names`` of ``graph`` through their kernels.

    All kernels are compiled together, once, on first use (one ``relax.build``
    for the host CPU). Thread-safe (one lock: a Relax VM is not).

    Parameters
    ----------
    graph
        The layer graph.
    names
        The float layers to serve; layers without a kernel are ignored.
    """

    def __init__(self, graph: Graph, names: Iterable[str]) -> None:
        self.graph = graph
        wanted = set(names)
        self.nodes = [n for n in graph.nodes if n.name in wanted]
        self._types: dict[str, list[relax.TensorType]] = {}
        for node in self.nodes:
            types = kernel_param_types(graph, node)
            if types is not None:
                self._types[node.name] = types
        self._index = {name: f"k{i}" for i, name in enumerate(self._types)}
        self._vm: Any = None
        self._lock = threading.RLock()

    def has_kernel(self, name: str) -> bool:
        return name in self._types

    def _build(self) -> Any:
        from npuc.core.target import host_target

        functions = source_functions(self.graph)
        bb = relax.BlockBuilder()
        for node in self.nodes:
            if node.name not in self._types:
                continue
            kernel = build_kernel(node, self._types[node.name], functions)
            params = [relax.Var(f"p{i}", ty) for i, ty in enumerate(kernel.param_types)]
            with bb.function(self._index[node.name], params):
                with bb.dataflow():
                    out = bb.emit_output(emit_kernel(bb, kernel, params))
                bb.emit_func_output(out)
        executable = relax.build(
            bb.get(), host_target().to_tvm(), relax_pipeline=_finalize_passes()
        )
        return relax.VirtualMachine(executable, tvm.cpu())

    def run(self, node: Node, inputs: Sequence[Any]) -> Any:
        """The layer's output for numpy ``inputs`` (an array or a tuple of arrays), or None
        when the layer has no kernel or the inputs do not have the graph's shapes (nor a
        batch of them along axis 0)."""
        types = self._types.get(node.name)
        if types is None:
            return None
        shapes = [tuple(int(d) for d in ty.shape.values) for ty in types]
        with self._lock:
            if self._vm is None:
                self._vm = self._build()
            return self._run(node.name, types, shapes, inputs)

    def _run(
        self,
        name: str,
        types: list[relax.TensorType],
        shapes: list[tuple[int, ...]],
        inputs: Sequence[Any],
    ) -> Any:
        arrays = [np.asarray(x) for x in inputs]
        if all(a.shape == s for a, s in zip(arrays, shapes, strict=True)):
            args = [
                tvm.runtime.tensor(np.ascontiguousarray(a, dtype=str(ty.dtype)))
                for a, ty in zip(arrays, types, strict=True)
            ]
            return _to_numpy(self._vm[self._index[name]](*args))
        batch = {a.shape[0] for a in arrays if a.ndim}
        one = all(
            s[:1] == (1,) and a.shape[1:] == s[1:] for a, s in zip(arrays, shapes, strict=True)
        )
        if len(batch) != 1 or not one:
            return None
        parts = [
            self._run(name, types, shapes, [a[i : i + 1] for a in arrays])
            for i in range(batch.pop())
        ]
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate(p, axis=0) for p in zip(*parts, strict=True))
        return np.concatenate(parts, axis=0)


def _to_numpy(value: Any) -> Any:
    if isinstance(value, (tuple, list)) or type(value).__name__ == "Array":
        return tuple(_to_numpy(v) for v in value)
    return value.numpy()
