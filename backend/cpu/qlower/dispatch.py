"""Dispatch of one layer to its lowering (:func:`emit_layer`); see the package docstring
for the value representation and the guarantees."""

from __future__ import annotations

from collections.abc import Sequence

from tvm import relax

from npuc.core.errors import UnsupportedError
from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.midend.quantize.qparams import QParams

from .conv import emit_conv
from .depthwise import emit_depthwise
from .eltwise import BINARY, emit_binary, emit_requant_layer
from .float_layers import emit_float_layer
from .intops import dequantize, is_stored_int, quantize
from .lut import emit_lut
from .movement import MOVEMENT, emit_int_concat, emit_int_max_pool, emit_int_resize, emit_movement


def _as_int(bb: relax.BlockBuilder, qm: QuantizedModel, name: str, x: relax.Expr) -> relax.Expr:
    """Stored integers of tensor ``name``: ``x`` itself, or ``x`` quantized (a float input)."""
    if is_stored_int(x, name, qm.tensors):
        return x
    return bb.emit(quantize(x, qm.tensors[name]))


def _as_float(bb: relax.BlockBuilder, qm: QuantizedModel, name: str, x: relax.Expr) -> relax.Expr:
    """Real values of tensor ``name``: ``x`` dequantized when it holds stored integers."""
    if is_stored_int(x, name, qm.tensors):
        return bb.emit(dequantize(x, qm.tensors[name]))
    return x


def emit_layer(
    bb: relax.BlockBuilder, qm: QuantizedModel, node: Node, args: Sequence[relax.Expr]
) -> relax.Expr:
    """Emit one layer of ``qm`` into ``bb`` (inside a dataflow block) and return its value.

    Parameters
    ----------
    bb
        The builder, inside ``bb.function`` and ``bb.dataflow``.
    qm
        The quantized model the node belongs to.
    node
        One of ``qm.graph.nodes``.
    args
        One emitted expression per ``node.inputs``, each in either
        representation (module docstring); converted here as needed.

    Returns
    -------
    relax.Expr
        Stored integers (``qm.tensors[node.name].dtype``) for an integer
        layer; real values for a float layer.

    Raises
    ------
    UnsupportedError
        An integer layer of a kind the integer executor does not run.
    """
    layer = qm.layers[node.name]
    if layer.run_on != "npu":
        floats = [_as_float(bb, qm, n, a) for n, a in zip(node.inputs, args, strict=True)]
        return emit_float_layer(bb, node, floats)
    ints = [_as_int(bb, qm, n, a) for n, a in zip(node.inputs, args, strict=True)]
    qs: list[QParams] = [qm.tensors[n] for n in node.inputs]
    out = qm.tensors[node.name]
    p = layer.params
    op = node.op
    if op == "conv2d" and (dw := emit_depthwise(bb, node, p, ints[0], qs[0], out)) is not None:
        return dw
    if op in ("conv2d", "dense"):
        return emit_conv(bb, node, p, ints[0], qs[0], out)
    if op in BINARY:
        return emit_binary(bb, node, p, list(zip(ints, qs, strict=True)), out)
    if op in ("clip", "avg_pool2d", "global_avg_pool"):
        return emit_requant_layer(bb, node, p, ints[0], qs[0], out)
    if op == "max_pool2d":
        return emit_int_max_pool(bb, node, ints[0], out)
    if op == "unary":
        return emit_lut(bb, p, ints[0], qs[0], out)
    if op == "concat":
        return emit_int_concat(bb, node, p, list(zip(ints, qs, strict=True)), out)
    if op == "resize":
        return emit_int_resize(bb, node, ints[0])
    if op in MOVEMENT:
        return emit_movement(bb, node, ints)
    raise UnsupportedError(
        f"layer {node.name!r}: integer {op} has no CPU lowering",
        hint="keep the layer float (--float-layers) or report the model",
    )
