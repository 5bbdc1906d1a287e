"""Run 1-D convolutions and pools as 2-D ones over a height of 1.

Audio and sequence models use ``Conv`` (and ``ConvTranspose``, ``MaxPool``,
``AveragePool``, the global pools) on 3-D ``N x C x L`` tensors. npuc
compiles the 2-D forms, so each such node becomes

    Unsqueeze(x, axis 2) -> the same operator on N x C x 1 x L -> Squeeze(axis 2)

with every spatial attribute given a leading height entry: ``kernel_shape``,
``strides``, ``dilations`` and ``output_shape`` gain a 1, ``pads``
``[begin, end]`` become ``[0, begin, 0, end]``, ``output_padding`` gains a 0.
A constant weight ``C_out x C_in/g x k`` becomes the initializer
``C_out x C_in/g x 1 x k``; a computed weight gets its own Unsqueeze.

Guarantee: the outputs are unchanged (a height-1 window with no padding over
a height-1 tensor is the 1-D window, and ``auto_pad`` pads nothing along
it); the squeezed result keeps the node's output name, so consumers and graph
outputs are untouched. A MaxPool whose Indices output is used is left alone
(the support check declines it by name). Shapes are re-inferred afterwards.
Idempotent: the rewritten nodes have 4-D inputs.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ._graph import all_used_names, static_shapes

_log = logging.getLogger(__name__)

LIFTED_OPS = frozenset(
    {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}
)
_PREPEND_ONE = ("kernel_shape", "strides", "dilations", "output_shape")
_HEIGHT_AXIS = 2


def lift_1d_to_2d(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every 1-D conv/pool node as a 2-D one (see the module docstring)."""
    shapes = static_shapes(model)
    targets = [n for n in model.graph.node if _is_1d(n, shapes)]
    if not targets:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    opset = _default_opset(out)
    weights = {t.name: t for t in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        if not _is_1d(node, shapes):
            nodes.append(node)
            continue
        tag = f"{node.name or node.op_type}__1d{index}"
        nodes.extend(_lifted(node, tag, weights, graph, opset))
    del graph.node[:]
    graph.node.extend(nodes)
    used = all_used_names(graph) | {i.name for i in graph.input}
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    try:
        return onnx.shape_inference.infer_shapes(out, data_prop=True)
    except Exception as exc:  # onnx raises several types; the support check reports missing shapes
        _log.debug("shape inference after lifting 1-D ops failed: %s", exc)
        return out


def _is_1d(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> bool:
    if node.op_type not in LIFTED_OPS or node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        return False
    return len(shapes.get(node.input[0], ())) == 3


def _lifted(
    node: onnx.NodeProto,
    tag: str,
    weights: dict[str, onnx.TensorProto],
    graph: onnx.GraphProto,
    opset: int,
) -> list[onnx.NodeProto]:
    """Unsqueeze(s), the 2-D node, Squeeze: the replacement of one 1-D ``node``."""
    before = [_unsqueeze(node.input[0], f"{tag}_x", opset, graph)]
    inputs = [f"{tag}_x", *node.input[1:]]
    if node.op_type in ("Conv", "ConvTranspose"):
        weight = node.input[1]
        if weight in weights:
            value = numpy_helper.to_array(weights[weight])
            graph.initializer.append(
                numpy_helper.from_array(np.expand_dims(value, _HEIGHT_AXIS), f"{tag}_w")
            )
        else:
            before.append(_unsqueeze(weight, f"{tag}_w", opset, graph))
        inputs[1] = f"{tag}_w"
    lifted = helper.make_node(
        node.op_type, inputs, [f"{tag}_y"], name=node.name or tag, domain=node.domain
    )
    lifted.attribute.extend(_lift_attr(a) for a in node.attribute)
    after = _squeeze(f"{tag}_y", node.output[0], opset, graph)
    return [*before, lifted, after]


def _lift_attr(attr: onnx.AttributeProto) -> onnx.AttributeProto:
    if attr.name in _PREPEND_ONE:
        return helper.make_attribute(attr.name, [1, *attr.ints])
    if attr.name == "output_padding":
        return helper.make_attribute(attr.name, [0, *attr.ints])
    if attr.name == "pads" and len(attr.ints) == 2:
        return helper.make_attribute(attr.name, [0, attr.ints[0], 0, attr.ints[1]])
    copy = onnx.AttributeProto()
    copy.CopyFrom(attr)
    return copy


def _axes_node(op: str, src: str, dst: str, opset: int, graph: onnx.GraphProto) -> onnx.NodeProto:
    if opset < 13:
        return helper.make_node(op, [src], [dst], axes=[_HEIGHT_AXIS], name=dst)
    axes = f"{dst}_axes"
    graph.initializer.append(numpy_helper.from_array(np.array([_HEIGHT_AXIS], np.int64), axes))
    return helper.make_node(op, [src, axes], [dst], name=dst)


def _unsqueeze(src: str, dst: str, opset: int, graph: onnx.GraphProto) -> onnx.NodeProto:
    return _axes_node("Unsqueeze", src, dst, opset, graph)


def _squeeze(src: str, dst: str, opset: int, graph: onnx.GraphProto) -> onnx.NodeProto:
    return _axes_node("Squeeze", src, dst, opset, graph)


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1
