"""The arithmetic of one float layer (``run_on == "cpu"``) as Relax operators.

This is the single definition of what a float layer computes in an integer
model: :mod:`.float_kernels` compiles it per layer for the integer executor,
and the integer CPU library (``npuc.backend.cpu.qlower``) embeds the very
same kernels, so both give the same float32 bits.

Requires: a graph node whose inputs are real values (float32, or the
non-float tensors a ``relax`` fallback reads, e.g. indices) given as Relax
expressions of the graph's shapes.

Guarantees: the formulas of
:meth:`npuc.midend.quantize.float_exec.FloatExecutor.run_node` (the float
executor used for calibration) in float32: sigmoid as ``0.5 * (1 + tanh(x /
2))``, softmax as ``exp(x - max) / sum``, clamps with optional bounds;
operators the quantizer does not model re-emit their stored Relax call
(:func:`substitute_call`), except a non-overlapping transposed convolution,
emitted as a 1x1 convolution and a depth-to-space move
(:mod:`.float_transpose`). Agrees with the numpy executor within float32
rounding (TVM's ``exp``/``tanh`` and summation order differ from numpy's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tvm import relax

from npuc.core.errors import UnsupportedError

from .float_exec import UNARY_FUNCS
from .float_transpose import emit_as_conv
from .graph import Node
from .relax_fallback import Substitute

F32 = "float32"

#: Float layers that only move or pick values (exact in any implementation): no kernel.
NO_ARITHMETIC = ("reshape", "transpose", "slice", "concat", "constant", "tuple_item")


def _f(value: float) -> relax.Constant:
    return relax.const(float(value), F32)


def clamp(x: relax.Expr, lo: float | None, hi: float | None) -> relax.Expr:
    """``np.clip`` with optional bounds (None: unbounded on that side)."""
    if lo is not None:
        x = relax.op.maximum(x, _f(lo))
    if hi is not None:
        x = relax.op.minimum(x, _f(hi))
    return x


def _node_clamp(x: relax.Expr, node: Node) -> relax.Expr:
    return clamp(x, node.attr("act_min"), node.attr("act_max"))


def _sigmoid(x: relax.Expr) -> relax.Expr:
    half = relax.op.multiply(x, _f(0.5))
    return relax.op.multiply(_f(0.5), relax.op.add(_f(1.0), relax.op.tanh(half)))


UNARY: dict[str, Callable[[relax.Expr, float], relax.Expr]] = {
    "sigmoid": lambda x, a: _sigmoid(x),
    "tanh": lambda x, a: relax.op.tanh(x),
    "exp": lambda x, a: relax.op.exp(x),
    "silu": lambda x, a: relax.op.multiply(x, _sigmoid(x)),
    "softplus": lambda x, a: relax.op.add(
        relax.op.maximum(x, _f(0.0)),
        relax.op.log(relax.op.add(_f(1.0), relax.op.exp(relax.op.negative(relax.op.abs(x))))),
    ),
    "leaky_relu": lambda x, a: relax.op.where(
        relax.op.greater_equal(x, _f(0.0)), x, relax.op.multiply(x, _f(a))
    ),
    "hardswish": lambda x, a: relax.op.divide(
        relax.op.multiply(x, clamp(relax.op.add(x, _f(3.0)), 0.0, 6.0)), _f(6.0)
    ),
    "hardsigmoid": lambda x, a: clamp(relax.op.add(relax.op.multiply(x, _f(a)), _f(0.5)), 0, 1),
    "log": lambda x, a: relax.op.log(x),
    "sqrt": lambda x, a: relax.op.sqrt(x),
    "rsqrt": lambda x, a: relax.op.divide(_f(1.0), relax.op.sqrt(x)),
    "negative": lambda x, a: relax.op.negative(x),
    "abs": lambda x, a: relax.op.abs(x),
}
assert set(UNARY) == set(UNARY_FUNCS), "keep in step with the float executor"

BINARY = {
    "add": relax.op.add,
    "subtract": relax.op.subtract,
    "multiply": relax.op.multiply,
    "maximum": relax.op.maximum,
    "minimum": relax.op.minimum,
    "divide": relax.op.divide,
}


def apply_post(x: relax.Expr, post: list[list[Any]] | None) -> relax.Expr:
    """The scalar steps folded after a unary function (``attrs["post"]``), in order."""
    for step in post or ():
        x = clamp(x, step[1], step[2]) if step[0] == "clip" else BINARY[step[0]](x, _f(step[1]))
    return x


def substitute_call(node: Node, args: Sequence[relax.Expr]) -> relax.Expr:
    """``node.relax_call`` over ``args`` (one per free variable, in
    ``relax.analysis.free_vars`` order: the convention of :mod:`.extract` and
    :class:`~.relax_fallback.RelaxFallback`).

    Calls into the source module's PrimFuncs keep their ``GlobalVar``: the
    module being built must hold those functions.

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


def _pool(node: Node, x: relax.Expr) -> relax.Expr:
    geometry: dict[str, Any] = {
        "pool_size": tuple(node.attr("kernel")),
        "strides": tuple(node.attr("strides")),
        "padding": tuple(node.attr("padding")),
        "dilation": tuple(node.attr("dilation")),
    }
    if node.op == "max_pool2d":
        return relax.op.nn.max_pool2d(x, **geometry)
    pooled = relax.op.nn.avg_pool2d(
        x, count_include_pad=bool(node.attr("count_include_pad")), **geometry
    )
    return _node_clamp(pooled, node)


def const_of(value: np.ndarray) -> relax.Constant:
    """A Relax constant of ``value`` in its own dtype."""
    arr = np.asarray(value)
    return relax.const(arr, str(arr.dtype))


def _conv2d(node: Node, x: relax.Expr) -> relax.Expr:
    y = relax.op.nn.conv2d(
        x,
        const_of(node.consts["weight"].astype(np.float32)),
        strides=tuple(node.attr("strides")),
        padding=tuple(node.attr("padding")),
        dilation=tuple(node.attr("dilation")),
        groups=int(node.attr("groups")),
    )
    if "bias" in node.consts:
        bias = node.consts["bias"].astype(np.float32).reshape(1, -1, 1, 1)
        y = relax.op.add(y, const_of(bias))
    return _node_clamp(y, node)


def _dense(node: Node, x: relax.Expr) -> relax.Expr:
    y = relax.op.matmul(x, const_of(node.consts["weight"].astype(np.float32)))
    if "bias" in node.consts:
        y = relax.op.add(y, const_of(node.consts["bias"].astype(np.float32)))
    return _node_clamp(y, node)


def emit_float_op(bb: relax.BlockBuilder, node: Node, args: Sequence[relax.Expr]) -> relax.Expr:
    """Emit the arithmetic of float layer ``node`` over ``args`` (one per ``node.inputs``).

    Requires ``node.op`` not in :data:`NO_ARITHMETIC`. Returns the emitted
    output (float32 for the modelled operators; whatever the stored call gives
    for a ``relax`` node).

    Raises
    ------
    UnsupportedError
        A ``relax`` node without a usable stored call (:func:`substitute_call`).
    """
    op = node.op
    x = args[0] if args else None
    if op == "conv2d":
        return bb.emit(_conv2d(node, x))
    if op == "dense":
        return bb.emit(_dense(node, x))
    if op in BINARY:
        if "rhs" in node.consts:
            c = const_of(node.consts["rhs"])
            a, b = (c, x) if node.attr("const_side") == "lhs" else (x, c)
        else:
            a, b = args[0], args[1]
        return bb.emit(relax.op.astype(_node_clamp(BINARY[op](a, b), node), F32))
    if op == "clip":
        return bb.emit(_node_clamp(x, node))
    if op == "unary":
        func = node.attr("func")
        if func in UNARY:
            y = bb.emit(UNARY[func](x, float(node.attr("alpha", 0.0))))
        else:
            y = bb.emit(substitute_call(node, args))
        return bb.emit(relax.op.astype(apply_post(y, node.attr("post")), F32))
    if op in ("max_pool2d", "avg_pool2d"):
        return bb.emit(_pool(node, x))
    if op == "global_avg_pool":
        return bb.emit(_node_clamp(relax.op.mean(x, axis=[2, 3], keepdims=True), node))
    if op == "softmax":
        axis = int(node.attr("axis"))
        shifted = relax.op.subtract(x, relax.op.max(x, axis=[axis], keepdims=True))
        e = bb.emit(relax.op.exp(shifted))
        return bb.emit(relax.op.divide(e, relax.op.sum(e, axis=[axis], keepdims=True)))
    call = substitute_call(node, args)
    rewritten = emit_as_conv(bb, call)
    return bb.emit(call) if rewritten is None else rewritten
