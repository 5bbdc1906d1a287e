"""Float layers (``run_on == "cpu"``) in Relax, as the float executor computes them.

Requires: a graph node whose inputs are real values (float32, or the
non-float tensors a ``relax`` fallback reads, e.g. indices).

Guarantees: the operations of
:meth:`npuc.midend.quantize.float_exec.FloatExecutor.run_node`, in float32
with the same formulas (sigmoid as ``0.5 * (1 + tanh(x / 2))``, softmax as
``exp(x - max) / sum``, clamps with optional bounds); other operators re-emit
their stored Relax call (:mod:`.relax_call`). Results agree with the
executor within float32 rounding (summation order differs), not bit for
bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tvm import relax

from npuc.midend.quantize.float_exec import UNARY_FUNCS
from npuc.midend.quantize.graph import Node

from .movement import MOVEMENT, emit_movement
from .relax_call import substitute_call

F32 = "float32"


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

_BINARY = {
    "add": relax.op.add,
    "subtract": relax.op.subtract,
    "multiply": relax.op.multiply,
    "maximum": relax.op.maximum,
    "minimum": relax.op.minimum,
    "divide": relax.op.divide,
}


def _apply_post(x: relax.Expr, post: list[list[Any]] | None) -> relax.Expr:
    """The scalar steps folded after a unary function (``attrs["post"]``), in order."""
    for step in post or ():
        x = clamp(x, step[1], step[2]) if step[0] == "clip" else _BINARY[step[0]](x, _f(step[1]))
    return x


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


def _const_of(value: np.ndarray) -> relax.Constant:
    arr = np.asarray(value)
    return relax.const(arr, str(arr.dtype))


def emit_float_layer(bb: relax.BlockBuilder, node: Node, args: Sequence[relax.Expr]) -> relax.Expr:
    """The node's float output from its real-valued ``args`` (one per ``node.inputs``)."""
    op = node.op
    x = args[0] if args else None
    if op == "conv2d":
        y = relax.op.nn.conv2d(
            x,
            _const_of(node.consts["weight"].astype(np.float32)),
            strides=tuple(node.attr("strides")),
            padding=tuple(node.attr("padding")),
            dilation=tuple(node.attr("dilation")),
            groups=int(node.attr("groups")),
        )
        if "bias" in node.consts:
            bias = node.consts["bias"].astype(np.float32).reshape(1, -1, 1, 1)
            y = relax.op.add(y, _const_of(bias))
        return bb.emit(_node_clamp(y, node))
    if op == "dense":
        y = relax.op.matmul(x, _const_of(node.consts["weight"].astype(np.float32)))
        if "bias" in node.consts:
            y = relax.op.add(y, _const_of(node.consts["bias"].astype(np.float32)))
        return bb.emit(_node_clamp(y, node))
    if op in _BINARY:
        if "rhs" in node.consts:
            c = _const_of(node.consts["rhs"])
            a, b = (c, x) if node.attr("const_side") == "lhs" else (x, c)
        else:
            a, b = args[0], args[1]
        y = _node_clamp(_BINARY[op](a, b), node)
        return bb.emit(relax.op.astype(y, F32))
    if op == "clip":
        return bb.emit(_node_clamp(x, node))
    if op == "unary":
        func = node.attr("func")
        if func in UNARY:
            y = bb.emit(UNARY[func](x, float(node.attr("alpha", 0.0))))
        else:
            y = bb.emit(substitute_call(node, args))
        return bb.emit(relax.op.astype(_apply_post(y, node.attr("post")), F32))
    if op in ("max_pool2d", "avg_pool2d"):
        return bb.emit(_pool(node, x))
    if op == "global_avg_pool":
        return bb.emit(_node_clamp(relax.op.mean(x, axis=[2, 3], keepdims=True), node))
    if op in MOVEMENT:
        return emit_movement(bb, node, args)
    if op == "softmax":
        axis = int(node.attr("axis"))
        shifted = relax.op.subtract(x, relax.op.max(x, axis=[axis], keepdims=True))
        e = bb.emit(relax.op.exp(shifted))
        return bb.emit(relax.op.divide(e, relax.op.sum(e, axis=[axis], keepdims=True)))
    if op == "constant":
        return bb.emit(_const_of(node.consts["value"]))
    if op == "tuple_item":
        return bb.emit(relax.TupleGetItem(x, int(node.attr("index"))))
    return bb.emit(substitute_call(node, args))
