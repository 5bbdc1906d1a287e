"""Annotate NPU composites in the float Relax module and merge them into NPU regions.

Requires: the float Relax module a :class:`~npuc.midend.quantize.qmodel.QuantizedModel`
was extracted from (``qm.graph.relax_module``: ``main`` is one dataflow block) and
a :class:`LayerMap` naming, for every binding of ``main``, the layer it was folded
into and whether that layer may run on the NPU.

Guarantees: :class:`AnnotateNpuComposites` returns the module after
``FuseOpsByPattern`` (one pattern family per NPU composite kind of :data:`KINDS`,
composite names ``npuc_npu.<kind>``) and ``MergeCompositeFunctions`` (adjacent
composites merged into functions with ``Codegen = "npuc_npu"``, never forming a
cycle with the CPU code between them). A composite is made only when every
binding it matches belongs to one NPU-legal layer (a ``split`` stands for the
NPU-legal slices among the tuple items reading it); each composite function
carries the attributes ``npuc_layers`` (the layer names, comma separated) and
``npuc_bindings`` (the binding keys it covers). Everything else stays in
``main`` (the CPU). The module's meaning is unchanged.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import tvm
from tvm import relax
from tvm.relax.dpl import CallPattern, DFPattern, ExprPattern, OrPattern, is_op, wildcard
from tvm.relax.transform import FusionPattern, PatternCheckContext

CODEGEN = "npuc_npu"

_UNARY_OPS = (
    "relax.sigmoid",
    "relax.tanh",
    "relax.exp",
    "relax.nn.silu",
    "relax.nn.gelu",
    "relax.nn.gelu_tanh",
    "relax.erf",
    "relax.sqrt",
    "relax.rsqrt",
    "relax.log",
    "relax.nn.softplus",
    "relax.negative",
    "relax.abs",
    "relax.nn.leakyrelu",
)
_BINARY_OPS = (
    "relax.add",
    "relax.subtract",
    "relax.multiply",
    "relax.divide",
    "relax.maximum",
    "relax.minimum",
)
_POOL_OPS = ("relax.nn.max_pool2d", "relax.nn.avg_pool2d", "relax.nn.adaptive_avg_pool2d")
_RESHAPE_OPS = ("relax.reshape", "relax.flatten", "relax.squeeze", "relax.expand_dims")


def _call(op: str, *args: DFPattern) -> DFPattern:
    """``op(args...)``; trailing operands (attributes given as values) match anything."""
    return is_op(op)(*args, varg_default_wildcard=True)


def _call_tir() -> DFPattern:
    """A ``call_tir`` (the importers' maximum/minimum with a broadcast scalar)."""
    return _call("relax.call_tir", wildcard(), wildcard())


def _clamps(p: DFPattern) -> list[DFPattern]:
    """``p`` followed by each clamp form the extraction folds into a layer's activation."""
    return [
        _call("relax.nn.relu", p),
        _call("relax.clip", p),
        _call("relax.maximum", p, wildcard()),
        _call("relax.minimum", p, wildcard()),
    ]


def _with_clamps(bases: list[DFPattern]) -> list[DFPattern]:
    """Each base with a clamp first (higher priority), then the bases alone."""
    return [c for b in bases for c in _clamps(b)] + bases


def _linear(op: str) -> list[DFPattern]:
    x = _call(op, wildcard(), wildcard())
    return _with_clamps([_call("relax.add", x, wildcard()), x])


def _silu() -> list[DFPattern]:
    x = wildcard()
    sig = _call("relax.sigmoid", x)
    return [_call("relax.multiply", x, sig), _call("relax.multiply", sig, x)]


def _hardswish() -> list[DFPattern]:
    """``x * (clip(x + 3, 0, 6) * (1/6))`` (or ``/ 6``) and ``x * clip(x + 3, 0, 6) * (1/6)``."""
    x = wildcard()
    relu6 = _call("relax.clip", _call("relax.add", x, wildcard()))
    forms = []
    for scale in ("relax.multiply", "relax.divide"):
        forms.append(_call("relax.multiply", x, _call(scale, relu6, wildcard())))
        forms.append(_call(scale, _call("relax.multiply", x, relu6), wildcard()))
    return forms


def _ops(ops: tuple[str, ...], arity: int = 1) -> list[DFPattern]:
    return [_call(op, *(wildcard() for _ in range(arity))) for op in ops]


KINDS: tuple[tuple[str, str, Callable[[], list[DFPattern]]], ...] = (
    ("conv2d", "convolution with its bias add and clamp", lambda: _linear("relax.nn.conv2d")),
    ("dense", "fully connected layer with its bias add and clamp", lambda: _linear("relax.matmul")),
    ("hardswish", "hard-swish as the importers spell it (one lookup table)", _hardswish),
    ("silu", "x * sigmoid(x) (one lookup table)", _silu),
    (
        "lut",
        "a unary function run as a lookup table, with a clamp",
        lambda: _with_clamps(_ops(_UNARY_OPS)),
    ),
    (
        "pool",
        "max, average and global average pooling, with a clamp",
        lambda: _with_clamps(_ops((*_POOL_OPS, "relax.mean"))),
    ),
    (
        "eltwise",
        "binary element-wise op, with a clamp",
        lambda: _with_clamps([*_ops(_BINARY_OPS, 2), _call_tir()]),
    ),
    ("clamp", "a clamp of its own", lambda: _ops(("relax.nn.relu", "relax.clip"))),
    ("concat", "concatenation", lambda: _ops(("relax.concat",))),
    ("reshape", "reshape", lambda: _ops(_RESHAPE_OPS)),
    ("transpose", "transpose", lambda: _ops(("relax.permute_dims",))),
    ("slice", "slice", lambda: _ops(("relax.strided_slice",))),
    ("split", "split (stands for the slices reading it)", lambda: _ops(("relax.split",))),
    ("resize", "nearest resize", lambda: _ops(("relax.image.resize2d",))),
)
"""The NPU composite kinds in priority order (a binding goes to the first kind matching
it): name, what it is, a function giving its DFPatterns (the longest forms first)."""


def kind_ops(kind: str) -> list[str]:
    """The Relax operators the patterns of composite ``kind`` match (the clamps last).

    Raises KeyError for an unknown kind."""
    make = {name: make for name, _, make in KINDS}[kind]
    found: list[str] = []

    def walk(p: object) -> None:
        if isinstance(p, OrPattern):
            walk(p.left)
            walk(p.right)
        elif isinstance(p, CallPattern):
            for arg in p.args or ():
                walk(arg)
            walk(p.op)
        elif isinstance(p, ExprPattern) and isinstance(p.expr, tvm.ir.Op):
            found.append(str(p.expr.name))

    for pattern in make():
        walk(pattern)
    clamps = ("relax.nn.relu", "relax.clip", "relax.maximum", "relax.minimum")
    return sorted(dict.fromkeys(found), key=lambda op: op in clamps)  # the clamps last


@dataclass(frozen=True, slots=True)
class LayerMap:
    """Which layer each binding of ``main`` belongs to, and which layers may run on the NPU.

    ``keys``: binding variable -> key (its name, ``name#k`` for the k-th repeat, as
    :mod:`npuc.midend.quantize.extract` names them); ``layer_of``: key -> layer name;
    ``npu``: the layers the partitioner lets the NPU run.
    """

    keys: dict[relax.Var, str]
    layer_of: dict[str, str]
    npu: frozenset[str]


def binding_keys(func: relax.Function) -> dict[relax.Var, str]:
    """Every parameter and binding variable of ``func`` -> its unique key (extraction's rule)."""
    keys: dict[relax.Var, str] = {}
    taken: set[str] = set()

    def define(var: relax.Var) -> None:
        base = str(var.name)
        key, k = base, 1
        while key in taken:
            key, k = f"{base}#{k}", k + 1
        taken.add(key)
        keys[var] = key

    for param in func.params:
        define(param)
    for block in func.body.blocks:
        for binding in block.bindings:
            define(binding.var)
    return keys


def _is_op(expr: relax.Expr, name: str) -> bool:
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name


class _Checker:
    """The ``check`` and ``attrs_getter`` callbacks: a match is a composite only when all its
    bindings belong to one NPU layer (a ``split`` when some slice it feeds is one)."""

    def __init__(self, layers: LayerMap) -> None:
        self.layers = layers
        self.accepted: dict[str, str] = {}

    def covered(self, ctx: PatternCheckContext) -> tuple[set[str], list[str]] | None:
        """The layers and binding keys the match stands for, or None when it is no composite."""
        if _is_op(ctx.matched_expr, "relax.split"):
            return self.split_parts(ctx)
        keys = [self.layers.keys.get(v) for v in ctx.matched_bindings]
        names = {self.layers.layer_of.get(k) for k in keys if k is not None}
        if None in keys or len(names) != 1 or not names <= self.layers.npu:
            return None
        return {str(n) for n in names}, [str(k) for k in keys]

    def split_parts(self, ctx: PatternCheckContext) -> tuple[set[str], list[str]] | None:
        """A split stands for the NPU-legal slices among the tuple items reading it (the
        extraction makes each item a slice layer); None when there is none."""
        users = ctx.var_usages.get(next(iter(ctx.matched_bindings)), [])
        keys = [k for k in (self.layers.keys.get(u) for u in users) if k is not None]
        legal = [k for k in keys if self.layers.layer_of.get(k) in self.layers.npu]
        if not legal:
            return None
        return {self.layers.layer_of[k] for k in legal}, legal

    def check(self, ctx: PatternCheckContext) -> bool:
        got = self.covered(ctx)
        if got is None:
            return False
        names, keys = got
        self.accepted = {
            "npuc_layers": ",".join(sorted(names)),
            "npuc_bindings": ",".join(sorted(keys)),
        }
        return True

    def attrs(self, _annotated: object) -> dict[str, str]:
        return self.accepted  # called right after an accepted check, for that match


def fusion_patterns(layers: LayerMap) -> list[FusionPattern]:
    """The :data:`KINDS` patterns as ``FusionPattern`` s named ``npuc_npu.<kind>``, gated by
    ``layers`` (see :class:`_Checker`)."""
    checker = _Checker(layers)
    return [
        FusionPattern(
            f"{CODEGEN}.{kind}",
            functools.reduce(operator.or_, make()),  # the alternatives in priority order
            check=checker.check,
            attrs_getter=checker.attrs,
        )
        for kind, _, make in KINDS
    ]


@tvm.transform.module_pass(opt_level=0, name="npuc.AnnotateNpuComposites")
class AnnotateNpuComposites:
    """``FuseOpsByPattern`` with :func:`fusion_patterns`, then ``MergeCompositeFunctions``."""

    def __init__(self, layers: LayerMap) -> None:
        self.layers = layers

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        fused = relax.transform.FuseOpsByPattern(fusion_patterns(self.layers), bind_constants=True)(
            mod
        )
        return relax.transform.MergeCompositeFunctions()(fused)


def npu_regions(mod: tvm.IRModule) -> Iterator[tuple[str, list[tvm.ir.Attrs]]]:
    """Each ``Codegen = "npuc_npu"`` function of ``mod`` (by name) with the attributes of
    the composites it calls."""
    for gv, func in sorted(mod.functions.items(), key=lambda item: str(item[0].name_hint)):
        if not isinstance(func, relax.Function) or func.attrs is None:
            continue
        if str(func.attrs.get("Codegen", "")) != CODEGEN:
            continue
        found: list[tvm.ir.Attrs] = []

        def visit(expr: relax.Expr, found: list[tvm.ir.Attrs] = found) -> None:
            # a composite is bound to a local variable and called through it
            if isinstance(expr, relax.Function) and "Composite" in (expr.attrs or {}):
                found.append(expr.attrs)

        relax.analysis.post_order_visit(func.body, visit)
        yield str(gv.name_hint), found
