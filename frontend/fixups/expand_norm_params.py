"""Give LayerNormalization's scale and bias the full normalised shape.

ONNX LayerNormalization normalises over ``X.shape[axis:]`` and broadcasts
``Scale`` and ``B`` to that shape. TVM 0.27 instead derives the normalised
axes from the *rank of Scale* (apache/tvm#18136): a 1-D scale over the last
two axes normalises over one axis only, silently (max error 5.45 on the
handed case). This fix-up makes Scale and B exactly ``X.shape[axis:]``, so
the axes TVM derives are the ONNX ones: a constant is broadcast into a new
initializer, a run-time tensor goes through an ``Expand`` node.

Guarantee: the values are those ONNX broadcasting gives, so results are
unchanged. A Scale or B of higher rank than the normalised shape, or not
broadcastable to it, is left as is (the support rule declines it).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ._graph import static_shapes


def expand_norm_params(model: onnx.ModelProto) -> onnx.ModelProto:
    """Broadcast LayerNormalization's Scale and B to ``X.shape[axis:]`` (in place)."""
    graph = model.graph
    nodes = [
        n for n in graph.node if n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx")
    ]
    if not nodes:
        return model
    shapes = static_shapes(model)
    inits = {t.name: t for t in graph.initializer}
    new_nodes: dict[int, list[onnx.NodeProto]] = {}
    for index, node in enumerate(graph.node):
        if node not in nodes:
            continue
        target = normalised_shape(node, shapes)
        if target is None:
            continue
        for pos in (1, 2):
            if pos >= len(node.input) or not node.input[pos]:
                continue
            name = node.input[pos]
            shape = shapes.get(name)
            if shape is None or shape == target or not _broadcasts(shape, target):
                continue
            new_name = f"{name}__npuc_bcast_{index}_{pos}"
            if name in inits:
                value = np.broadcast_to(numpy_helper.to_array(inits[name]), target).copy()
                graph.initializer.append(numpy_helper.from_array(value, new_name))
            else:
                shape_name = f"{new_name}_shape"
                graph.initializer.append(
                    numpy_helper.from_array(np.asarray(target, dtype=np.int64), shape_name)
                )
                new_nodes.setdefault(index, []).append(
                    helper.make_node("Expand", [name, shape_name], [new_name], name=new_name)
                )
                # later steps read shapes from value_info, inferred before this fix-up
                graph.value_info.append(
                    helper.make_tensor_value_info(new_name, _elem_type(graph, name), target)
                )
            node.input[pos] = new_name
    if new_nodes:
        ordered: list[onnx.NodeProto] = []
        for index, node in enumerate(graph.node):
            ordered.extend(new_nodes.get(index, []))
            ordered.append(node)
        del graph.node[:]
        graph.node.extend(ordered)
    return model


def normalised_shape(
    node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]
) -> tuple[int, ...] | None:
    """``X.shape[axis:]`` of a LayerNormalization node, or ``None`` when X's shape is unknown."""
    x_shape = shapes.get(node.input[0])
    if x_shape is None:
        return None
    axis = -1
    for a in node.attribute:
        if a.name == "axis":
            axis = int(a.i)
    if not -len(x_shape) <= axis < len(x_shape):
        return None
    return tuple(x_shape[axis % len(x_shape) :])


def _broadcasts(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(shape[::-1], target[::-1], strict=False))


def _elem_type(graph: onnx.GraphProto, name: str) -> int:
    """Element type of tensor ``name`` as the graph declares it (float32 if undeclared)."""
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.name == name and value.type.tensor_type.elem_type:
            return int(value.type.tensor_type.elem_type)
    return onnx.TensorProto.FLOAT
