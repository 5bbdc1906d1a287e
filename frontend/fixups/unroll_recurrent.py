"""Unroll ``LSTM`` and ``GRU`` nodes into MatMul / Add / Sigmoid / Tanh / Mul steps.

TVM 0.27's Relax ONNX importer has no converter for the recurrent operators.
With static input shapes the sequence length is known, so each node becomes
its time steps written out in operators npuc compiles (the CPU path runs
them; they are not NPU work). Per direction ``d``:

* the input projection of every step at once: ``X @ W[d]^T + Wb[d]`` (plus
  ``Rb[d]`` where the recurrence adds it unconditionally);
* per step ``t`` (backwards for ``reverse``): ``gates = xw[t] + H @ R[d]^T``,
  split into the gates of the ONNX equations (LSTM order i, o, f, c; GRU z,
  r, h, with ``linear_before_reset`` either way);
* ``Y`` (``seq x dirs x batch x hidden``, or ``batch x seq x dirs x hidden``
  for ``layout=1``), ``Y_h`` and ``Y_c`` assembled by Concat, under the
  node's own output names.

What is unrolled (:func:`recurrent_unsupported_reason` says why anything
else is not): constant W, R and B; default activations; no ``clip``; no
peepholes; ``input_forget=0``; ``sequence_lens`` absent or a constant equal
to the full length for every batch entry; static ``X`` shape. Other nodes are
left as they are and the support check declines them with that reason.

Guarantee: the same equations as the ONNX operator definitions, in fp32;
compared with onnxruntime on torch-exported ``nn.LSTM`` / ``nn.GRU`` in
``tests/frontend/fixups/test_unroll_recurrent.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ._graph import static_shapes

RECURRENT_OPS = ("LSTM", "GRU")
_GATES = {"LSTM": 4, "GRU": 3}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        out[a.name] = value
    return out


def _input(node: onnx.NodeProto, index: int) -> str:
    return node.input[index] if index < len(node.input) else ""


def recurrent_unsupported_reason(
    node: onnx.NodeProto,
    consts: Mapping[str, np.ndarray],
    shapes: Mapping[str, tuple[int, ...]],
    opset: int,
) -> str:
    """Why ``node`` (LSTM or GRU) cannot be unrolled, or ``""`` when it can."""
    attrs = _attrs(node)
    direction = attrs.get("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    x_shape = shapes.get(node.input[0])
    if opset < 13:
        return "LSTM and GRU are unrolled for models of opset 13 and later only"
    if x_shape is None or len(x_shape) != 3:
        return "the input X has no static 3-D shape after shape inference"
    for index, what in ((1, "W"), (2, "R"), (3, "B")):
        name = _input(node, index)
        if name and name not in consts:
            return f"{what} ({name!r}) must be a constant, but is computed at run time"
    lens = _input(node, 4)
    if lens:
        seq = x_shape[1] if attrs.get("layout", 0) else x_shape[0]
        if lens not in consts or not np.all(np.asarray(consts[lens]) == seq):
            return "sequence_lens must be absent or a constant equal to the sequence length"
    if node.op_type == "LSTM" and _input(node, 7):
        return "peephole weights (input P) are not supported"
    activations = attrs.get("activations")
    if activations is not None and [str(a) for a in activations] != (
        _DEFAULT_ACTIVATIONS[node.op_type] * dirs
    ):
        return f"activations {activations} are not supported (only the defaults)"
    if "clip" in attrs:
        return "the clip attribute is not supported"
    if int(attrs.get("input_forget", 0) or 0):
        return "input_forget=1 is not supported"
    if direction not in ("forward", "reverse", "bidirectional"):
        return f"direction={direction!r} is not supported"
    return ""


class _Builder:
    """Appends nodes and initializers with names unique to one rewritten node."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, value: np.ndarray) -> str:
        name = self._name("c")
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        name = out or self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name

    def split(self, x: str, parts: int, size: int) -> list[str]:
        outs = [self._name("gate") for _ in range(parts)]
        sizes = self.const(np.full(parts, size, np.int64))
        self.nodes.append(helper.make_node("Split", [x, sizes], outs, name=outs[0], axis=-1))
        return outs

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{self.prefix}/{kind}_{self.count}"


def unroll_recurrent(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every LSTM/GRU node that can be unrolled; see the module docstring."""
    graph = model.graph
    if not any(n.op_type in RECURRENT_OPS for n in graph.node):
        return model
    opset = next((e.version for e in model.opset_import if e.domain in ("", "ai.onnx")), 1)
    shapes = static_shapes(model)
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes: list[onnx.NodeProto] = []
    changed = False
    for index, node in enumerate(out.graph.node):
        if (
            node.op_type not in RECURRENT_OPS
            or node.domain not in ("", "ai.onnx")
            or recurrent_unsupported_reason(node, consts, shapes, opset)
        ):
            nodes.append(node)
            continue
        builder = _Builder(f"{node.name or node.op_type}__unrolled{index}")
        _unroll(node, builder, consts, shapes[node.input[0]])
        nodes.extend(builder.nodes)
        out.graph.initializer.extend(builder.inits)
        changed = True
    if not changed:
        return model
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    try:
        return onnx.shape_inference.infer_shapes(out, data_prop=True)
    except Exception:  # onnx raises several types; the support check then names missing shapes
        return out


def _unroll(
    node: onnx.NodeProto,
    b: _Builder,
    consts: Mapping[str, np.ndarray],
    x_shape: tuple[int, ...],
) -> None:
    attrs = _attrs(node)
    lstm = node.op_type == "LSTM"
    gates = _GATES[node.op_type]
    layout = int(attrs.get("layout", 0) or 0)
    direction = str(attrs.get("direction", "forward"))
    w, r = consts[node.input[1]], consts[node.input[2]]
    dirs, hidden = w.shape[0], w.shape[1] // gates
    bias_name = _input(node, 3)
    bias = consts[bias_name] if bias_name else np.zeros((dirs, 2 * gates * hidden), np.float32)
    seq, batch = (x_shape[1], x_shape[0]) if layout else (x_shape[0], x_shape[1])
    x = b.op("Transpose", [node.input[0]], perm=[1, 0, 2]) if layout else node.input[0]
    linear_before_reset = bool(attrs.get("linear_before_reset", 0))
    ys, hs, cs = [], [], []
    for d in range(dirs):
        reverse = direction == "reverse" or (direction == "bidirectional" and d == 1)
        wb, rb = bias[d, : gates * hidden], bias[d, gates * hidden :]
        in_bias = wb + rb if lstm else wb + np.concatenate([rb[: 2 * hidden], 0 * rb[2 * hidden :]])
        xw = b.op("MatMul", [x, b.const(np.ascontiguousarray(w[d].T))])
        xw = b.op("Add", [xw, b.const(in_bias.astype(np.float32))])
        h = _initial(node, 5, d, b, batch, hidden)
        c = _initial(node, 6, d, b, batch, hidden) if lstm else ""
        r_t = b.const(np.ascontiguousarray(r[d].T))
        steps = []
        for t in reversed(range(seq)) if reverse else range(seq):
            x_t = b.op("Gather", [xw, b.const(np.array(t, np.int64))], axis=0)
            if lstm:
                h, c = _lstm_step(b, x_t, h, c, r_t, hidden)
            else:
                h = _gru_step(b, x_t, h, r[d], rb[2 * hidden :], hidden, linear_before_reset)
            steps.append(h)
        if reverse:
            steps.reverse()
        axis0 = b.const(np.array([0], np.int64))
        ys.append(b.op("Concat", [b.op("Unsqueeze", [s, axis0]) for s in steps], axis=0))
        hs.append(b.op("Unsqueeze", [h, axis0]))
        if lstm:
            cs.append(b.op("Unsqueeze", [c, axis0]))
    axis1 = b.const(np.array([1], np.int64))
    outs = [_input_out(node, i) for i in range(3)]
    if outs[0]:
        y = b.op("Concat", [b.op("Unsqueeze", [y_d, axis1]) for y_d in ys], axis=1)
        _named(b, y, outs[0], [2, 0, 1, 3] if layout else None)
    for index, parts in ((1, hs), (2, cs)):
        if outs[index]:
            _named(b, b.op("Concat", parts, axis=0), outs[index], [1, 0, 2] if layout else None)


def _named(b: _Builder, value: str, name: str, perm: list[int] | None) -> None:
    """``value`` under the node's output ``name``, transposed by ``perm`` (layout=1)."""
    if perm is None:
        b.op("Identity", [value], name)
    else:
        b.op("Transpose", [value], name, perm=perm)


def _input_out(node: onnx.NodeProto, index: int) -> str:
    return node.output[index] if index < len(node.output) else ""


def _initial(node: onnx.NodeProto, index: int, d: int, b: _Builder, batch: int, hidden: int) -> str:
    """Direction ``d``'s initial state (batch x hidden): from input ``index`` or zeros."""
    name = _input(node, index)
    if not name:
        return b.const(np.zeros((batch, hidden), np.float32))
    layout = int(_attrs(node).get("layout", 0) or 0)
    return b.op("Gather", [name, b.const(np.array(d, np.int64))], axis=1 if layout else 0)


def _lstm_step(b: _Builder, x_t: str, h: str, c: str, r_t: str, hidden: int) -> tuple[str, str]:
    gates = b.op("Add", [x_t, b.op("MatMul", [h, r_t])])
    i, o, f, cand = b.split(gates, 4, hidden)
    i, o, f = (b.op("Sigmoid", [g]) for g in (i, o, f))
    cand = b.op("Tanh", [cand])
    c = b.op("Add", [b.op("Mul", [f, c]), b.op("Mul", [i, cand])])
    h = b.op("Mul", [o, b.op("Tanh", [c])])
    return h, c


def _gru_step(
    b: _Builder,
    x_t: str,
    h: str,
    r: np.ndarray,
    rbh: np.ndarray,
    hidden: int,
    linear_before_reset: bool,
) -> str:
    rzr = b.const(np.ascontiguousarray(r[: 2 * hidden].T))
    rh = b.const(np.ascontiguousarray(r[2 * hidden :].T))
    xz, xr, xh = b.split(x_t, 3, hidden)
    hz, hr = b.split(b.op("MatMul", [h, rzr]), 2, hidden)
    z = b.op("Sigmoid", [b.op("Add", [xz, hz])])
    reset = b.op("Sigmoid", [b.op("Add", [xr, hr])])
    rbh_c = b.const(rbh.astype(np.float32))
    if linear_before_reset:
        hh = b.op("Add", [b.op("MatMul", [h, rh]), rbh_c])
        cand = b.op("Tanh", [b.op("Add", [xh, b.op("Mul", [reset, hh])])])
    else:
        hh = b.op("Add", [b.op("MatMul", [b.op("Mul", [reset, h]), rh]), rbh_c])
        cand = b.op("Tanh", [b.op("Add", [xh, hh])])
    # H = (1 - z) * cand + z * H  ==  cand + z * (H - cand)
    return b.op("Add", [cand, b.op("Mul", [z, b.op("Sub", [h, cand])])])
