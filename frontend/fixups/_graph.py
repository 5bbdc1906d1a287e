"""Small ONNX graph queries shared by the fix-ups (no rewriting here)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Fully static shapes of the graph's tensors, by name, after ONNX shape inference.

    Tensors whose shape has a symbolic or unknown dimension are left out.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError):
        inferred = model
    graph = inferred.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        ttype = info.type.tensor_type
        if not ttype.HasField("shape"):
            continue
        dims = ttype.shape.dim
        if all(d.HasField("dim_value") and d.dim_value >= 0 for d in dims):
            shapes[info.name] = tuple(int(d.dim_value) for d in dims)
    for init in graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes


def has_subgraph(node: onnx.NodeProto) -> bool:
    """True for control-flow nodes (If, Loop, Scan) that carry graphs."""
    return any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
    )


def all_used_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name read by a node (including inside subgraphs) or output by the graph."""
    used = {out.name for out in graph.output}
    for node in graph.node:
        used.update(name for name in node.input if name)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                used |= all_used_names(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    used |= all_used_names(sub)
    return used


def evaluate_node(
    node: onnx.NodeProto, values: Mapping[str, np.ndarray], opset: int
) -> list[np.ndarray] | None:
    """Run one standard-domain node on constant inputs with ``onnx.reference``.

    Returns None when the reference cannot evaluate the node or a result is
    not a plain tensor (sequences, optionals): such nodes are left in place.
    """
    from onnx.reference import ReferenceEvaluator

    inputs = [name for name in node.input if name]
    graph = helper.make_graph(
        [node],
        "fold",
        [helper.make_value_info(name, onnx.TypeProto()) for name in dict.fromkeys(inputs)],
        [helper.make_value_info(name, onnx.TypeProto()) for name in node.output if name],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {name: values[name] for name in inputs}
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception:
        # The reference raises many exception types; any of them only means
        # "do not fold this node", never a failed import.
        return None
    if not all(isinstance(r, np.ndarray | np.generic) for r in results):
        return None
    return [np.asarray(r) for r in results]
