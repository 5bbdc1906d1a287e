"""Fuse an 8-bit table lookup into the kernel that produces its input (:class:`FuseLookups`).

Requires: a Relax module after the CPU schedule pass (:mod:`npuc.backend.cpu.lowering`:
legalized, fused, scheduled; still in dataflow blocks), in which 8-bit lookups are
calls of :func:`npuc.backend.cpu.qlower.lut.make_lookup`'s kernels (attribute
``npuc.schedule_rule == "lut_lookup"``): ``Y[i] = TBL[X[i] mod 256]``, ``TBL`` 256 int32 entries.

Guarantees: on a target with AVX-512 VBMI or AVX2, every chain ``y = call_tir(K, args)`` ->
reshapes -> ``call_tir(lookup, (y', TBL))`` where ``y`` and each reshape feed only
the next step becomes one call of a new kernel ``K'``: ``K`` with the table's bytes
as an extra parameter (before the output) and each store ``Y[idx] = v``
rewritten to ``Y[idx] = TBL[v mod 256]`` (a vector ``v`` through
:mod:`npuc.backend.cpu.lut_lanes`: two ``vpermi2b`` and a blend with VBMI, 16 to 64
lanes; one ``vpgatherdd`` per 8 lanes with AVX2, 4 lanes or a multiple of 8); the
lookup's result is then the (reshaped) output of ``K'``. Values are
identical to the two kernels': the lookup is applied to every value ``K`` writes,
and ``K`` never reads its output back. ``K`` keeps its schedule and attributes (only stores change).

The pass declines (leaves the lookup kernel) when: the lookup's input has another
consumer, ``K`` is not a PrimFunc with one output of the lookup's input type,
or ``K`` touches its output other than by ``BufferStore`` (loads it back, hands
its pointer to a call, matches a sub-buffer of it). Lookups whose output type
differs from their input type are left as they are. Without VBMI or AVX2 the pass
does nothing (LLVM makes a per-lane extract, load and insert of a vector index:
measured 1.5x slower than the separate lookup kernel).

Why: a lookup kernel reads and writes the whole tensor once more (MobileNetV3's
hardswish: 22 extra kernels, 15% of the classifier's kernel time at one thread).
"""

from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from tvm import ir, relax, s_tir, tirx

from npuc.backend.cpu.lut_lanes import (
    TABLE_BYTES,
    LookupIsa,
    looked_up,
    lookup_isa,
    vector_lanes_ok,
)
from npuc.core.target import CpuTarget

LOOKUP_RULE = "lut_lookup"
#: dtypes of a lookup's input and output the rewrite handles (one byte, table of 256).
BYTE_TYPES = ("int8", "uint8")


def is_lookup(func: object) -> bool:
    """Whether ``func`` is an 8-bit lookup kernel of
    :func:`npuc.backend.cpu.qlower.lut.make_lookup`."""
    if not isinstance(func, tirx.PrimFunc) or func.attrs is None:
        return False
    return str(func.attrs.get("npuc.schedule_rule", "")) == LOOKUP_RULE


def _touches_output_only_by_stores(kernel: tirx.PrimFunc, out: ir.Var) -> int:
    """How many ``BufferStore`` write ``out`` in ``kernel``; 0 when anything else touches it.

    Allowed: ``BufferStore`` to ``out`` and ``out`` in a block's write regions.
    Anything else naming ``out`` (a load, a read region, a matched sub-buffer,
    a pointer handed to a call, an alias) makes the kernel unfusable.
    """
    counts = {"all": 0, "stores": 0, "writes": 0}

    def var(node: ir.Var) -> None:
        if node.same_as(out):
            counts["all"] += 1

    def store(node: tirx.BufferStore) -> None:
        if node.buffer.same_as(out):
            counts["stores"] += 1

    def block(node: s_tir.stmt.SBlock) -> None:
        counts["writes"] += sum(1 for r in node.writes if r.source.same_as(out))

    tvm_ffi.structural_walk(
        kernel.body, [(ir.Var, var), (tirx.BufferStore, store), (s_tir.stmt.SBlock, block)]
    )
    if counts["all"] != counts["stores"] + counts["writes"]:
        return 0
    return counts["stores"]


def _store_lanes(kernel: tirx.PrimFunc, out: ir.Var) -> set[int]:
    """The lane counts of the values ``kernel`` stores into ``out``."""
    lanes: set[int] = set()

    def store(node: tirx.BufferStore) -> None:
        if node.buffer.same_as(out):
            lanes.add(int(tvm.DataType(str(node.value.ty.dtype)).lanes))

    tvm_ffi.structural_walk(kernel.body, [(tirx.BufferStore, store)])
    return lanes


def fuse_lookup(kernel: tirx.PrimFunc, isa: LookupIsa = "vbmi") -> tirx.PrimFunc | None:
    """``kernel`` (params ``(..., Y)``) with a lookup applied to every value it stores in ``Y``.

    The result has params ``(..., TBL, Y)``, ``TBL (TABLE_BYTES,)`` int8: the table's
    bytes indexed by the stored byte mod 256, then padding (:func:`lookup_bytes`); a
    vector store looks up its lanes with ``isa``'s sequence
    (:func:`npuc.backend.cpu.lut_lanes.looked_up`; the caller checks the target has
    it). ``None`` when ``Y`` is not int8/uint8, a vector store's lane count is not one
    ``isa`` takes (:func:`~npuc.backend.cpu.lut_lanes.vector_lanes_ok`), ``isa`` is
    ``"avx2"`` and every store into ``Y`` is scalar (each value a byte load from the
    table in LLVM's vectorised loop; BlazeFace's 11 requantization tables, fused into
    its scalar-store pad/add kernels as a second output, measured 1.07x slower), or
    ``kernel`` touches ``Y`` other than by stores (:func:`_touches_output_only_by_stores`).
    """
    if not kernel.params:
        return None
    out = kernel.params[-1]
    if not isinstance(out.ty, tirx.BufferType) or str(out.ty.dtype) not in BYTE_TYPES:
        return None
    if not _touches_output_only_by_stores(kernel, out):
        return None
    vectors = _store_lanes(kernel, out) - {1}
    if not all(vector_lanes_ok(isa, lanes) for lanes in vectors):
        return None
    if isa == "avx2" and not vectors:
        return None  # scalar stores only: no gather; the lookup kernel's vpgatherdd is faster
    table = tirx.decl_buffer((TABLE_BYTES,), "int8", "TBL")

    def store(node: tirx.BufferStore) -> tirx.BufferStore:
        if not node.buffer.same_as(out):
            return node
        return tirx.BufferStore(node.buffer, looked_up(table, node.value, isa), node.indices)

    body = tvm_ffi.structural_map(kernel.body, [(tirx.BufferStore, store)])
    params = [*kernel.params[:-1], table, out]
    return tirx.PrimFunc(params, body, kernel.ret_type, kernel.attrs)


def lookup_bytes(table: np.ndarray) -> np.ndarray:
    """The int32 table of :func:`.lut.make_lookup` (256 values within int8 or uint8) as
    the fused kernel's ``TBL``: 256 bytes and zero padding to ``TABLE_BYTES``."""
    values = np.asarray(table, np.int64)
    padded = np.zeros(TABLE_BYTES, np.uint8)
    padded[: values.size] = values & 0xFF
    return padded.view(np.int8)


def _use_counts(func: relax.Function) -> dict[relax.Var, int]:
    """How many times each variable is used in ``func`` (bindings and the output)."""
    counts: dict[relax.Var, int] = {}

    def visit(expr: relax.Expr) -> None:
        if isinstance(expr, relax.Var):
            counts[expr] = counts.get(expr, 0) + 1

    relax.analysis.post_order_visit(func.body, visit)
    return counts


@tvm.transform.module_pass(opt_level=0, name="FuseLookups")
class FuseLookups:
    """The pass (module docstring). Idempotent: a fused kernel is no longer followed by a lookup.

    ``target``: the CPU the module is compiled for; it picks the lookup sequence
    (:func:`npuc.backend.cpu.lut_lanes.lookup_isa`); with neither AVX-512 VBMI nor AVX2
    the pass changes nothing.
    """

    def __init__(self, target: CpuTarget) -> None:
        self.isa = lookup_isa(target.features)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if self.isa is None:
            return mod
        funcs = {gv.name_hint: f for gv, f in mod.functions.items()}
        builder = relax.BlockBuilder(mod)
        fused = _FusedKernels(builder, self.isa)
        for gv, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                new_func = _fuse_function(func, funcs, fused)
                if new_func is not None:
                    builder.update_func(gv, new_func)
        if not fused.replaced:
            return mod
        mod = relax.transform.CanonicalizeBindings()(builder.get())
        return _drop_unused(mod, fused.replaced)


class _FusedKernels:
    """The fused version of each producer kernel, added to the module once (``None``: unfusable)."""

    def __init__(self, builder: relax.BlockBuilder, isa: LookupIsa) -> None:
        self.builder = builder
        self.isa = isa
        self.cache: dict[str, relax.GlobalVar | None] = {}
        self.replaced: set[str] = set()

    def get(self, name: str, kernel: object) -> relax.GlobalVar | None:
        if name not in self.cache:
            new = fuse_lookup(kernel, self.isa) if isinstance(kernel, tirx.PrimFunc) else None
            self.cache[name] = None if new is None else self.builder.add_func(new, name + "_lut")
            if new is not None:
                self.replaced.add(name)
        return self.cache[name]


def _fuse_function(
    func: relax.Function, funcs: dict[str, object], fused: _FusedKernels
) -> relax.Function | None:
    """``func`` with its fusable chains rewritten (new kernels recorded in ``fused``)."""
    if not isinstance(func.body, relax.SeqExpr):
        return None
    uses = _use_counts(func)
    blocks = []
    changed = False
    for block in func.body.blocks:
        if not isinstance(block, relax.DataflowBlock):
            blocks.append(block)
            continue
        bindings = list(block.bindings)
        new_bindings = _fuse_block(bindings, uses, funcs, fused)
        changed |= new_bindings is not None
        blocks.append(relax.DataflowBlock(new_bindings if new_bindings else bindings))
    if not changed:
        return None
    body = relax.SeqExpr(blocks, func.body.body)
    return relax.Function(func.params, body, func.ret_ty, func.is_pure, func.attrs)


def _callee(value: relax.Expr, funcs: dict[str, object]) -> tuple[str, object] | None:
    """The PrimFunc name and function of a ``call_tir`` value, else ``None``."""
    if not isinstance(value, relax.Call) or value.op != tvm.ir.Op.get("relax.call_tir"):
        return None
    gv = value.args[0]
    if not isinstance(gv, relax.GlobalVar):
        return None
    return gv.name_hint, funcs.get(gv.name_hint)


def _is_reshape(value: relax.Expr, funcs: dict[str, object]) -> bool:
    """A view-like reshape: ``R.reshape`` or a ``call_tir`` of a reshape PrimFunc."""
    if isinstance(value, relax.Call) and value.op == tvm.ir.Op.get("relax.reshape"):
        return True
    callee = _callee(value, funcs)
    if callee is None or not isinstance(callee[1], tirx.PrimFunc) or is_lookup(callee[1]):
        return False
    return bool(relax.analysis.has_reshape_pattern(callee[1]))


def _reshaped(value: relax.Call) -> relax.Expr:
    """The tensor a reshape (``R.reshape`` or ``call_tir``) reads."""
    if value.op == tvm.ir.Op.get("relax.call_tir"):
        return value.args[1][0]
    return value.args[0]


def _fuse_block(
    bindings: list[relax.Binding],
    uses: dict[relax.Var, int],
    funcs: dict[str, object],
    fused: _FusedKernels,
) -> list[relax.Binding] | None:
    """``bindings`` with each fusable chain rewritten, or ``None`` when none is."""
    by_var = {b.var: i for i, b in enumerate(bindings) if isinstance(b, relax.VarBinding)}
    replace: dict[int, relax.Binding] = {}
    for i, binding in enumerate(bindings):
        if not isinstance(binding, relax.VarBinding):
            continue
        callee = _callee(binding.value, funcs)
        if callee is None or not is_lookup(callee[1]):
            continue
        source, table = binding.value.args[1][0], binding.value.args[1][1]
        if not isinstance(table, ir.Constant):
            continue
        if str(binding.var.ty.dtype) != str(source.ty.dtype):
            continue  # the fused kernel would change its output type: not handled
        producer = _find_producer(source, bindings, by_var, uses, funcs)
        if producer is None or by_var[producer.var] in replace:
            continue
        name, kernel = _callee(producer.value, funcs)  # type: ignore[misc]
        gv = fused.get(name, kernel)
        if gv is None:
            continue
        call = producer.value
        args = [*call.args[1], relax.const(lookup_bytes(table.value.numpy()), "int8")]
        new_call = relax.call_tir(gv, relax.Tuple(args), call.ty)
        replace[by_var[producer.var]] = relax.VarBinding(producer.var, new_call)
        replace[i] = relax.VarBinding(binding.var, source)
    if not replace:
        return None
    return [replace.get(i, b) for i, b in enumerate(bindings)]


def _find_producer(
    source: relax.Expr,
    bindings: list[relax.Binding],
    by_var: dict[relax.Var, int],
    uses: dict[relax.Var, int],
    funcs: dict[str, object],
) -> relax.VarBinding | None:
    """The ``call_tir`` binding whose output reaches ``source`` through single-use reshapes."""
    var = source
    while isinstance(var, relax.Var) and var in by_var and uses.get(var, 0) == 1:
        binding = bindings[by_var[var]]
        assert isinstance(binding, relax.VarBinding)
        if _is_reshape(binding.value, funcs):
            var = _reshaped(binding.value)
            continue
        callee = _callee(binding.value, funcs)
        if callee is None or not isinstance(callee[1], tirx.PrimFunc) or is_lookup(callee[1]):
            return None
        if not isinstance(binding.value.ty, relax.TensorType) or len(binding.value.args) > 2:
            return None  # a tuple output or symbolic TIR arguments
        return binding
    return None


def _drop_unused(mod: tvm.IRModule, replaced: set[str]) -> tvm.IRModule:
    """``mod`` without the lookup kernels and ``replaced`` kernels no function calls any more."""
    called: set[str] = set()
    for func in mod.functions.values():
        if isinstance(func, relax.Function):

            def visit(expr: relax.Expr) -> None:
                if isinstance(expr, relax.GlobalVar):
                    called.add(expr.name_hint)

            relax.analysis.post_order_visit(func, visit)
    for gv, func in list(mod.functions.items()):
        unused = isinstance(func, tirx.PrimFunc) and gv.name_hint not in called
        if unused and (is_lookup(func) or gv.name_hint in replaced):
            del mod[gv]
    return mod
