"""The structure of the float ONNX graph as imported, by the file's own names.

:func:`source_graph` fills :class:`~npuc.frontend.source_quant.SourceGraph`
from the cleaned model: every node's operator, its non-constant inputs, its
outputs, the recorded quantized weight it reads and its weight's L1 norm, and
the static shapes. The midend maps these names onto its layers
(:mod:`npuc.midend.quantize.source_names`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from npuc.frontend.source_quant import SourceGraph, SourceNode, SourceQuant, WeightQuant


def node_label(node: onnx.NodeProto, index: int) -> str:
    """A node's name, or ``<OpType>_<index>`` for an unnamed one (as the support check)."""
    return node.name or f"{node.op_type}_{index}"


def source_graph(model: onnx.ModelProto, quant: SourceQuant) -> SourceQuant:
    """``quant`` with the structure of ``model`` (the float model as imported) filled in."""
    graph = model.graph
    consts = {t.name for t in graph.initializer}
    consts |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    inits = {t.name: t for t in graph.initializer}
    weights = dict(quant.weights)
    nodes = []
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue
        weight = next((i for i in node.input if i in quant.weights), None)
        if weight is None and node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1:
            # The clean-up may have renamed or reshaped a weight: find the recorded one
            # whose values it holds.
            weight = _find_weight(inits.get(node.input[1]), quant.weights)
        l1 = None
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1:
            tensor = inits.get(node.input[1])
            if tensor is not None:
                l1 = float(np.abs(numpy_helper.to_array(tensor).astype(np.float64)).sum())
        nodes.append(
            SourceNode(
                name=node_label(node, index),
                op_type=node.op_type,
                inputs=tuple(i for i in node.input if i and i not in consts),
                outputs=tuple(node.output),
                weight=weight,
                weight_l1=l1,
            )
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    structure = SourceGraph(
        inputs=tuple(v.name for v in graph.input if v.name not in consts),
        nodes=tuple(nodes),
        outputs=tuple(v.name for v in graph.output),
        shapes=shapes,
    )
    return SourceQuant(
        format=quant.format,
        activations=quant.activations,
        weights=weights,
        graph=structure,
        notes=quant.notes,
    )


def _find_weight(tensor: onnx.TensorProto | None, weights: Mapping[str, WeightQuant]) -> str | None:
    if tensor is None:
        return None
    value = np.asarray(numpy_helper.to_array(tensor))
    for name, w in weights.items():
        if w.values.size != value.size:
            continue
        shape = [1] * w.values.ndim
        shape[w.axis] = -1 if w.scale.ndim else 1
        deq = ((w.values - w.zero_point.reshape(shape)) * w.scale.reshape(shape)).astype(np.float32)
        if deq.shape == value.shape and np.array_equal(deq, value):
            return name
        if deq.ndim == 2 and deq.T.shape == value.shape and np.array_equal(deq.T, value):
            return name
    return None
