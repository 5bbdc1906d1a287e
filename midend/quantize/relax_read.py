"""Reading Relax expressions for :mod:`.extract`: types, constants, operator names.

Helpers only (no pass): they turn TVM 0.27's Relax objects (``.ty`` types,
``GenericConst`` constants, prim values) into plain Python values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tvm
from tvm import relax

from npuc.core.errors import UnsupportedError

from .graph import TensorType

UNARY = {
    "relax.sigmoid": "sigmoid",
    "relax.tanh": "tanh",
    "relax.exp": "exp",
    "relax.nn.silu": "silu",
    "relax.nn.gelu": "gelu",
    "relax.nn.gelu_tanh": "gelu_tanh",
    "relax.erf": "erf",
    "relax.sqrt": "sqrt",
    "relax.rsqrt": "rsqrt",
    "relax.log": "log",
    "relax.nn.softplus": "softplus",
    "relax.negative": "negative",
    "relax.abs": "abs",
}
BINARY = {
    "relax.add": "add",
    "relax.subtract": "subtract",
    "relax.multiply": "multiply",
    "relax.divide": "divide",
    "relax.maximum": "maximum",
    "relax.minimum": "minimum",
}


@dataclass(slots=True)
class Raw:
    """A node under construction (mutable while patterns are folded)."""

    op: str
    inputs: list[str]
    out: TensorType
    attrs: dict[str, Any] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    source: list[str] = field(default_factory=list)
    relax_call: Any = None
    alive: bool = True


def tensor_type(sinfo: Any, where: str) -> TensorType:
    if not isinstance(sinfo, relax.TensorType) or sinfo.shape is None:
        raise UnsupportedError(f"{where}: the quantizer needs tensors of static shape")
    dims = []
    for d in sinfo.shape.values:
        if not type(d).__name__ == "IntImm":
            raise UnsupportedError(
                f"{where}: dimension {d} is symbolic",
                hint="fix input shapes with --input-shape",
            )
        dims.append(int(d))
    return TensorType(shape=tuple(dims), dtype=str(sinfo.dtype))


def const(expr: Any) -> np.ndarray | None:
    if isinstance(expr, tvm.ir.GenericConst):
        return np.asarray(expr.value.numpy())
    return None


def ints(values: Any) -> list[int]:
    return [int(v) for v in values]


def op_name(call: relax.Call) -> str:
    op = call.op
    if isinstance(op, tvm.ir.Op):
        if op.name == "relax.call_tir":
            return "call_tir:" + gv_name(call.args[0]).rstrip("0123456789")
        return str(op.name)
    return "call:" + str(op)


def is_prim(expr: Any) -> bool:
    return type(expr).__name__ in ("IntImm", "FloatImm")


def gv_name(gv: Any) -> str:
    return str(getattr(gv, "name_hint", None) or getattr(gv, "name", ""))


def is_float_tensor(var: relax.Var) -> bool:
    sinfo = var.ty
    return isinstance(sinfo, relax.TensorType) and str(sinfo.dtype).startswith("float")


def prim(expr: Any) -> float | None:
    if is_prim(expr):
        return float(expr.value)
    c = const(expr)
    return float(c.reshape(())) if c is not None and c.size == 1 else None


def tuple_ints(expr: Any) -> list[int] | None:
    if isinstance(expr, relax.Tuple):
        out = []
        for f in expr.fields:
            if not is_prim(f):
                return None
            out.append(int(f.value))
        return out
    if isinstance(expr, relax.ShapeExpr):
        return [int(v) for v in expr.values]
    c = const(expr)
    return [int(v) for v in c.reshape(-1)] if c is not None else None


def slice_raw(name: str, call: relax.Call, out: TensorType, fallback: Raw, src: str) -> Raw:
    """A strided slice with constant bounds, or ``fallback``."""
    args = call.args
    vals = []
    for a in args[1:5] if len(args) >= 5 else args[1:4]:
        c = tuple_ints(a)
        if c is None:
            return fallback
        vals.append(c)
    axes, begin, end = vals[0], vals[1], vals[2]
    strides = vals[3] if len(vals) > 3 else [1] * len(axes)
    return Raw(
        op="slice",
        inputs=[src],
        out=out,
        attrs={"axes": axes, "begin": begin, "end": end, "strides": strides},
        source=[name],
    )


def resize_raw(name: str, call: relax.Call, out: TensorType, fallback: Raw, src: str) -> Raw:
    """An NCHW nearest/linear resize without a region of interest, or ``fallback``."""
    attrs = call.attrs
    if str(attrs.layout) != "NCHW" or str(attrs.method) not in ("nearest_neighbor", "linear"):
        return fallback
    if any(float(r) != 0.0 for r in attrs.roi):
        return fallback
    return Raw(
        op="resize",
        inputs=[src],
        out=out,
        attrs={
            "size": list(out.shape[2:]),
            "method": "nearest" if str(attrs.method) == "nearest_neighbor" else "linear",
            "coordinate_transformation_mode": str(attrs.coordinate_transformation_mode),
            "rounding_method": str(attrs.rounding_method),
        },
        source=[name],
        relax_call=call,
    )


def binary_raw(
    name: str,
    kind: str,
    lhs: Any,
    rhs: Any,
    out: TensorType,
    fallback: Raw,
    key: Callable[[Any], str],
) -> Raw:
    """A binary element-wise op; a constant operand goes to ``consts["rhs"]``."""
    lhs_c, rhs_c = const(lhs), const(rhs)
    if is_prim(rhs):
        rhs_c = np.asarray(float(rhs.value), np.float32)
    if lhs_c is not None and rhs_c is not None:
        return fallback
    if lhs_c is None and rhs_c is None:
        if not (isinstance(lhs, relax.Var) and isinstance(rhs, relax.Var)):
            return fallback
        return Raw(op=kind, inputs=[key(lhs), key(rhs)], out=out, source=[name])
    var = rhs if lhs_c is not None else lhs
    if not isinstance(var, relax.Var):
        return fallback
    raw_const = lhs_c if lhs_c is not None else rhs_c
    if raw_const is None:
        return fallback
    value_c = raw_const.astype(np.float32)
    side = "lhs" if lhs_c is not None else "rhs"
    if kind == "divide":
        if side == "lhs":
            return fallback
        return Raw(
            op="multiply",
            inputs=[key(var)],
            out=out,
            attrs={"const_side": "rhs"},
            consts={"rhs": (1.0 / value_c).astype(np.float32)},
            source=[name],
        )
    if kind in ("maximum", "minimum") and value_c.size == 1:
        value = float(value_c.reshape(()))
        attrs = (
            {"act_min": value, "act_max": None}
            if kind == "maximum"
            else {"act_min": None, "act_max": value}
        )
        return Raw(op="clip", inputs=[key(var)], out=out, attrs=attrs, source=[name])
    return Raw(
        op=kind,
        inputs=[key(var)],
        out=out,
        attrs={"const_side": side},
        consts={"rhs": value_c},
        source=[name],
    )
