"""Fuse an 8-bit table lookup into the kernel that produces its input (:class:`FuseLookups`).

Requires: a Relax module after the CPU schedule pass (:mod:`npuc.backend.cpu.lowering`:
legalized, fused, scheduled; still in dataflow blocks), in which 8-bit lookups are
calls of :func:`npuc.backend.cpu.qlower.lut.make_lookup`'s kernels (attribute
``npuc.schedule_rule == "lut_lookup"``): ``Y[i] = TBL[X[i] mod 256]``, ``TBL`` 256 int32 entries.

Guarantees: on a target with AVX-512 VBMI, every chain ``y = call_tir(K, args)`` ->
reshapes -> ``call_tir(lookup, (y', TBL))`` where ``y`` and each reshape feed only
the next step becomes one call of a new kernel ``K'``: ``K`` with the table's 256
bytes as an extra parameter (before the output) and each store ``Y[idx] = v``
rewritten to ``Y[idx] = TBL[v mod 256]`` (a vector ``v`` of 16 to 64 lanes: two
``vpermi2b`` over the four 64-byte quarters of the table and a blend on the sign
bit); the lookup's result is then the (reshaped) output of ``K'``. Values are
identical to the two kernels': the lookup is applied to every value ``K`` writes,
and ``K`` never reads its output back. ``K`` keeps its schedule and attributes (only stores change).

The pass declines (leaves the lookup kernel) when: the lookup's input has another
consumer, ``K`` is not a PrimFunc with one output of the lookup's input type,
or ``K`` touches its output other than by ``BufferStore`` (loads it back, hands
its pointer to a call, matches a sub-buffer of it). Lookups whose output type
differs from their input type are left as they are. Without VBMI the pass does
nothing: a per-lane gather in the kernel (LLVM extracts and inserts each lane)
measured 1.5x slower than the separate lookup kernel.

Why: a lookup kernel reads and writes the whole tensor once more (MobileNetV3's
hardswish: 22 extra kernels, 15% of the classifier's kernel time at one thread).
"""

from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from tvm import ir, relax, s_tir, tirx

from npuc.core.target import CpuTarget

LOOKUP_RULE = "lut_lookup"
#: Target features the fused lookup needs (``vpermi2b`` on 512-bit vectors of bytes).
REQUIRED_FEATURES = ("avx512f", "avx512bw", "avx512vbmi")
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


#: Lanes of one ``vpermi2b`` (a 512-bit vector of bytes): the widest store the rewrite takes.
PERMUTE_LANES = 64
#: Narrowest vector store fused: with 8 or 4 lanes (depthwise kernels on 14x14 and 7x7
#: planes) the two permutes per store cost more than the separate lookup saves.
MIN_LANES = 16
_PERMUTE = "llvm.x86.avx512.vpermi2var.qi.512"


def _bytes(value: ir.PrimExpr, dtype: str) -> ir.PrimExpr:
    """``value`` (int8/uint8 lanes) reinterpreted as ``dtype`` lanes of the same width."""
    return value if str(value.ty.dtype) == dtype else tirx.reinterpret(dtype, value)


def _permute(table: ir.Var, value: ir.PrimExpr, lanes: int) -> ir.PrimExpr:
    """``TBL[value mod 256]`` for ``lanes`` byte lanes with two ``vpermi2b`` and a blend.

    The 256-byte table is four 64-byte vectors; ``vpermi2b`` picks from two of them
    by the low 7 bits of each index byte, the sign bit chooses between the halves.
    A narrower vector is widened to 64 lanes (the upper lanes are ignored).
    """
    idx = _bytes(value, f"int8x{lanes}")
    if lanes < PERMUTE_LANES:
        copies = [idx] * -(-PERMUTE_LANES // lanes)
        idx = tirx.Shuffle(copies, [tirx.IntImm("int32", i) for i in range(PERMUTE_LANES)])
    wide = f"int8x{PERMUTE_LANES}"
    part = [
        tirx.BufferLoad(
            table, [tirx.Ramp(tirx.IntImm("int32", k * PERMUTE_LANES), 1, PERMUTE_LANES)]
        )
        for k in range(4)
    ]
    low = tirx.call_llvm_pure_intrin(wide, _PERMUTE, part[0], idx, part[1])
    high = tirx.call_llvm_pure_intrin(wide, _PERMUTE, part[2], idx, part[3])
    zero = tirx.Broadcast(tirx.IntImm("int8", 0), PERMUTE_LANES)
    looked = tirx.Select(idx < zero, high, low)
    if lanes < PERMUTE_LANES:
        looked = tirx.Shuffle([looked], [tirx.IntImm("int32", i) for i in range(lanes)])
    return looked


def _gather(table: ir.Var, value: ir.PrimExpr) -> ir.PrimExpr:
    """``TBL[value mod 256]`` (``TBL``: 256 int8 bytes) in ``value``'s type, lane for lane."""
    dtype = str(value.ty.dtype)
    lanes = int(tvm.DataType(dtype).lanes)
    if lanes == 1:
        index = tirx.bitwise_and(tirx.Cast("int32", value), tirx.IntImm("int32", 255))
        return _bytes(tirx.BufferLoad(table, [index]), dtype)
    return _bytes(_permute(table, value, lanes), dtype)


def _store_lanes(kernel: tirx.PrimFunc, out: ir.Var) -> set[int]:
    """The lane counts of the values ``kernel`` stores into ``out``."""
    lanes: set[int] = set()

    def store(node: tirx.BufferStore) -> None:
        if node.buffer.same_as(out):
            lanes.add(int(tvm.DataType(str(node.value.ty.dtype)).lanes))

    tvm_ffi.structural_walk(kernel.body, [(tirx.BufferStore, store)])
    return lanes


def fuse_lookup(kernel: tirx.PrimFunc) -> tirx.PrimFunc | None:
    """``kernel`` (params ``(..., Y)``) with a lookup applied to every value it stores in ``Y``.

    The result has params ``(..., TBL, Y)``, ``TBL (256,)`` int8: the table's bytes
    indexed by the stored byte mod 256 (:func:`lookup_bytes`); a vector store looks
    up its lanes with AVX-512 VBMI ``vpermi2b`` (the caller checks the target has
    it). ``None`` when ``Y`` is not int8/uint8, a vector store has fewer than 16 or
    more than 64 lanes, or
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
    if any(lanes < MIN_LANES or lanes > PERMUTE_LANES for lanes in vectors):
        return None
    table = tirx.decl_buffer((256,), "int8", "TBL")

    def store(node: tirx.BufferStore) -> tirx.BufferStore:
        if not node.buffer.same_as(out):
            return node
        return tirx.BufferStore(node.buffer, _gather(table, node.value), node.indices)

    body = tvm_ffi.structural_map(kernel.body, [(tirx.BufferStore, store)])
    params = [*kernel.params[:-1], table, out]
    return tirx.PrimFunc(params, body, kernel.ret_type, kernel.attrs)


def lookup_bytes(table: np.ndarray) -> np.ndarray:
    """The int32 table of :func:`.lut.make_lookup` (values within int8 or uint8) as 256 bytes."""
    values = np.asarray(table, np.int64)
    return (values & 0xFF).astype(np.uint8).view(np.int8)


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

    ``target``: the CPU the module is compiled for; without AVX-512 VBMI (``vpermi2b``)
    the pass changes nothing (a per-lane gather inside the kernel measured slower than
    the separate lookup kernel's ``vpgatherdd`` loop).
    """

    def __init__(self, target: CpuTarget) -> None:
        self.enabled = all(f in target.features for f in REQUIRED_FEATURES)

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if not self.enabled:
            return mod
        funcs = {gv.name_hint: f for gv, f in mod.functions.items()}
        builder = relax.BlockBuilder(mod)
        fused = _FusedKernels(builder)
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

    def __init__(self, builder: relax.BlockBuilder) -> None:
        self.builder = builder
        self.cache: dict[str, relax.GlobalVar | None] = {}
        self.replaced: set[str] = set()

    def get(self, name: str, kernel: object) -> relax.GlobalVar | None:
        if name not in self.cache:
            new = fuse_lookup(kernel) if isinstance(kernel, tirx.PrimFunc) else None
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
