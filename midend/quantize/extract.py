"""Extract the layer graph (:mod:`.graph`) from the midend's float Relax module.

Requires: a Relax module after :func:`npuc.midend.pipeline.graph_passes` (constants
folded, batch norms folded into convolutions, static shapes), whose ``main``
is one dataflow block. Operators are read in Relax's semantics (``NCHW``
convolutions as the ONNX and PyTorch importers write them).

Guarantees: every binding of ``main`` becomes part of exactly one node; the
nodes are in the module's (topological) order; running the graph with
:mod:`.float_exec` computes what the module computes. Recognised patterns are
folded into one node each, since the NPU runs them as one instruction:

- ``conv2d -> add(per-channel constant)`` and ``matmul(x, constant) -> add``
  become ``conv2d``/``dense`` with a bias;
- a clamp after them (``relu``, ``clip``, ``maximum(x, c)``, ``minimum(x, c)``,
  as importers emit ONNX ``Clip``) becomes the node's ``act_min``/``act_max``;
- ``x * sigmoid(x)`` becomes ``unary(silu)``; ``x / c`` becomes ``x * (1/c)``.

Any operator not listed in :mod:`.graph` becomes a ``relax`` node that the
CPU runs through TVM; the quantizer never fails on it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import tvm
from tvm import relax

from npuc.core.errors import UnsupportedError

from .graph import Graph, TensorType
from .relax_read import (
    BINARY,
    UNARY,
    Raw,
    binary_raw,
    const,
    ints,
    is_float_tensor,
    op_name,
    prim,
    resize_raw,
    slice_raw,
    tensor_type,
)


class _Extractor:
    """Walks ``main``'s bindings once, then folds patterns over the raw nodes."""

    def __init__(self, mod: tvm.IRModule) -> None:
        self.mod = mod
        self.raws: dict[str, Raw] = {}
        self.tuples: dict[str, list[Raw]] = {}
        self.alias: dict[str, str] = {}
        self.tuple_alias: dict[str, list[str]] = {}
        self.keys: dict[Any, str] = {}
        self.taken: set[str] = set()

    def define(self, var: relax.Var) -> str:
        """A unique key for a newly bound variable (Relax names need not be unique)."""
        base = str(var.name)
        key, k = base, 1
        while key in self.taken:
            key, k = f"{base}#{k}", k + 1
        self.taken.add(key)
        self.keys[var] = key
        return key

    def key(self, var: Any) -> str:
        """The key of a variable defined earlier (a function parameter keeps its name)."""
        if not isinstance(var, relax.Var):
            raise UnsupportedError(f"operand {type(var).__name__} is not a tensor variable")
        found = self.keys.get(var)
        return found if found is not None else str(var.name)

    # -- reading bindings -------------------------------------------------
    def _arg_name(self, expr: Any, where: str) -> str:
        if isinstance(expr, relax.Var):
            return self.key(expr)
        raise UnsupportedError(f"{where}: operand {type(expr).__name__} is not a tensor variable")

    def read(self, binding: relax.VarBinding) -> None:
        var, value = binding.var, binding.value
        name = self.define(var)
        if isinstance(value, relax.TupleGetItem):
            tuple_name = self._arg_name(value.tuple_value, name)
            if tuple_name in self.tuples:
                part = self.tuples[tuple_name][value.index]
                self.raws[name] = replace(part, source=[name])
                return
            self.raws[name] = Raw(
                op="tuple_item",
                inputs=[tuple_name],
                out=tensor_type(var.ty, name),
                attrs={"index": int(value.index)},
                source=[name],
            )
            return
        if isinstance(value, relax.Var):
            key = self.key(value)
            self.alias[name] = self.alias.get(key, key)
            return
        if isinstance(value, tvm.ir.GenericConst):
            self.raws[name] = Raw(
                op="constant",
                inputs=[],
                out=tensor_type(var.ty, name),
                consts={"value": np.asarray(value.value.numpy())},
                source=[name],
            )
            return
        if isinstance(value, relax.Tuple) and all(isinstance(f, relax.Var) for f in value.fields):
            self.tuple_alias[name] = [self.key(f) for f in value.fields]  # several outputs
            return
        if not isinstance(value, relax.Call):
            raise UnsupportedError(
                f"{name}: a {type(value).__name__} binding is not supported by the quantizer",
                hint="keep this part of the model on the CPU target (npuc build --target cpu)",
            )
        if name in self.raws:
            raise UnsupportedError(f"{name}: bound twice")
        if value.op == tvm.ir.Op.get("relax.split"):
            self._read_split(name, var, value)
            return
        if isinstance(var.ty, relax.TupleType):
            self.raws[name] = Raw(
                op="relax",
                inputs=[self.key(v) for v in relax.analysis.free_vars(value)],
                out=TensorType(shape=(), dtype="tuple"),
                attrs={"relax_op": op_name(value)},
                source=[name],
                relax_call=value,
            )
            return
        self.raws[name] = self._convert(name, var, value)

    def _read_split(self, name: str, var: relax.Var, call: relax.Call) -> None:
        x = self._arg_name(call.args[0], name)
        axis = int(call.attrs.axis)
        parts = []
        start = 0
        fields = var.ty.fields
        for i, sinfo in enumerate(fields):
            ty = tensor_type(sinfo, f"{name}[{i}]")
            length = ty.shape[axis if axis >= 0 else axis + len(ty.shape)]
            parts.append(
                Raw(
                    op="slice",
                    inputs=[x],
                    out=ty,
                    attrs={
                        "axes": [axis],
                        "begin": [start],
                        "end": [start + length],
                        "strides": [1],
                    },
                    source=[f"{name}[{i}]"],
                )
            )
            start += length
        self.tuples[name] = parts

    def _convert(self, name: str, var: relax.Var, call: relax.Call) -> Raw:
        out = tensor_type(var.ty, name)
        op = op_name(call)
        args = call.args
        attrs = call.attrs
        fallback = Raw(
            op="relax",
            inputs=[self.key(v) for v in relax.analysis.free_vars(call)],
            out=out,
            attrs={"relax_op": op},
            source=[name],
            relax_call=call,
        )
        if not out.is_float or any(
            isinstance(a, relax.Var) and not is_float_tensor(a) for a in args
        ):
            return fallback
        if op == "relax.nn.conv2d":
            weight = const(args[1])
            if (
                weight is None
                or str(attrs.data_layout) != "NCHW"
                or str(attrs.kernel_layout) != "OIHW"
            ):
                return fallback
            return Raw(
                op="conv2d",
                inputs=[self._arg_name(args[0], name)],
                out=out,
                attrs={
                    "strides": ints(attrs.strides),
                    "padding": ints(attrs.padding),
                    "dilation": ints(attrs.dilation),
                    "groups": int(attrs.groups),
                    "act_min": None,
                    "act_max": None,
                },
                consts={"weight": weight.astype(np.float32)},
                source=[name],
            )
        if op == "relax.matmul":
            weight = const(args[1])
            if weight is None or weight.ndim != 2 or not isinstance(args[0], relax.Var):
                return fallback
            return Raw(
                op="dense",
                inputs=[self.key(args[0])],
                out=out,
                attrs={"act_min": None, "act_max": None},
                consts={"weight": weight.astype(np.float32)},
                source=[name],
            )
        if op in BINARY or op in ("call_tir:maximum", "call_tir:minimum"):
            kind = BINARY[op] if op in BINARY else op.split(":")[1]
            lhs, rhs = (args[0], args[1]) if op in BINARY else tuple(args[1].fields)
            return binary_raw(name, kind, lhs, rhs, out, fallback, self.key)
        if op == "relax.nn.relu":
            return Raw(
                op="clip",
                inputs=[self.key(args[0])],
                out=out,
                attrs={"act_min": 0.0, "act_max": None},
                source=[name],
            )
        if op == "relax.clip":
            lo_v, hi_v = prim(args[1]), prim(args[2])
            if lo_v is None or hi_v is None:
                return fallback
            return Raw(
                op="clip",
                inputs=[self.key(args[0])],
                out=out,
                attrs={"act_min": lo_v, "act_max": hi_v},
                source=[name],
            )
        if op == "relax.nn.leakyrelu":
            return Raw(
                op="unary",
                inputs=[self.key(args[0])],
                out=out,
                attrs={"func": "leaky_relu", "alpha": float(attrs.alpha)},
                source=[name],
            )
        if op in UNARY:
            return Raw(
                op="unary",
                inputs=[self.key(args[0])],
                out=out,
                attrs={"func": UNARY[op]},
                source=[name],
                relax_call=call,
            )
        if op in ("relax.nn.max_pool2d", "relax.nn.avg_pool2d"):
            if str(attrs.layout) != "NCHW" or bool(attrs.ceil_mode):
                return fallback
            return Raw(
                op=op.split(".")[-1],
                inputs=[self.key(args[0])],
                out=out,
                attrs={
                    "kernel": ints(attrs.pool_size),
                    "strides": ints(attrs.strides),
                    "padding": ints(attrs.padding),
                    "dilation": ints(attrs.dilation),
                    "count_include_pad": bool(attrs.count_include_pad),
                },
                source=[name],
            )
        if op == "relax.nn.adaptive_avg_pool2d" and out.shape[2:] == (1, 1):
            return Raw(op="global_avg_pool", inputs=[self.key(args[0])], out=out, source=[name])
        if op == "relax.mean":
            in_ty = tensor_type(args[0].ty, name)
            axes = sorted(int(a) % len(in_ty.shape) for a in attrs.axis)
            if len(in_ty.shape) == 4 and axes == [2, 3] and bool(attrs.keepdims):
                return Raw(op="global_avg_pool", inputs=[self.key(args[0])], out=out, source=[name])
            return fallback
        if op == "relax.concat" and isinstance(args[0], relax.Tuple):
            if not all(isinstance(f, relax.Var) for f in args[0].fields):
                return fallback
            axis = int(attrs.axis) if attrs.axis is not None else 0
            return Raw(
                op="concat",
                inputs=[self.key(f) for f in args[0].fields],
                out=out,
                attrs={"axis": axis % len(out.shape)},
                source=[name],
            )
        if op in ("relax.reshape", "relax.flatten", "relax.squeeze", "relax.expand_dims"):
            return Raw(
                op="reshape",
                inputs=[self.key(args[0])],
                out=out,
                attrs={"shape": list(out.shape)},
                source=[name],
            )
        if op == "relax.permute_dims":
            rank = len(out.shape)
            axes = ints(attrs.axes) if attrs.axes is not None else list(range(rank))[::-1]
            return Raw(
                op="transpose",
                inputs=[self.key(args[0])],
                out=out,
                attrs={"axes": axes},
                source=[name],
            )
        if op == "relax.strided_slice":
            return slice_raw(name, call, out, fallback, self.key(call.args[0]))
        if op == "relax.nn.softmax":
            return Raw(
                op="softmax",
                inputs=[self.key(args[0])],
                out=out,
                attrs={"axis": int(attrs.axis)},
                source=[name],
            )
        if op == "relax.image.resize2d":
            return resize_raw(name, call, out, fallback, self.key(call.args[0]))
        return fallback


def extract_graph(mod: tvm.IRModule) -> Graph:
    """The layer graph of ``mod["main"]`` (see the module docstring for what is folded).

    Zero pads are first folded into the conv/pool reading them
    (:class:`npuc.midend.fold_pad.FoldPad`) and channels-last (NHWC)
    convolutions rewritten to NCHW (:class:`npuc.midend.channels_first.ChannelsFirst`).

    Raises
    ------
    UnsupportedError
        If ``main`` has symbolic shapes or bindings other than calls, tuple
        items, constants and aliases (never for an unknown operator: those
        become ``relax`` nodes).
    """
    from npuc.midend.channels_first import ChannelsFirst
    from npuc.midend.fold_pad import FoldPad

    from .patterns import fold_patterns, name_nodes

    # TFLite: standalone PADs into their conv/pool, NHWC convolutions -> NCHW (else no-ops).
    mod = tvm.transform.Sequential([FoldPad(), ChannelsFirst()])(mod)
    func = mod["main"]
    extractor = _Extractor(mod)
    for param in func.params:
        extractor.define(param)
    body = func.body
    for block in body.blocks:
        for binding in block.bindings:
            extractor.read(binding)
    alias = extractor.alias

    def resolve(name: str) -> str:
        return alias.get(name, name)

    raws = extractor.raws
    for raw in raws.values():
        raw.inputs = [resolve(n) for n in raw.inputs]
    result = body.body
    fields = list(result.fields) if isinstance(result, relax.Tuple) else [result]
    outputs: list[str] = []
    for f in fields:
        if not isinstance(f, relax.Var):
            raise UnsupportedError(f"main returns a {type(f).__name__}; expected tensor variables")
        key = resolve(extractor.key(f))
        outputs.extend(resolve(k) for k in extractor.tuple_alias.get(key, [key]))
    inputs = tuple((p.name, tensor_type(p.ty, p.name)) for p in func.params)
    fold_patterns(raws, outputs)
    nodes, renamed = name_nodes(raws)
    return Graph(
        inputs=inputs,
        nodes=tuple(nodes),
        outputs=tuple(renamed.get(n, n) for n in outputs),
        relax_module=mod,
    )
