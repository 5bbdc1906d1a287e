"""Model summary for ``npuc inspect``: interface, operators, parameters, MACs, support.

Guarantees: :func:`summarize` runs the same steps as :func:`npuc.frontend.load`
up to (not including) conversion, so the unsupported nodes it lists are
exactly those ``load`` would reject; it lists them instead of raising. The
operator histogram is of the model as written; MACs and output shapes come
from the cleaned-up graph with static shapes (see :mod:`npuc.frontend.macs`
for what is counted).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import onnx

from npuc.core.model_info import TensorInfo
from npuc.frontend.macs import COUNTED_OPS, node_macs
from npuc.frontend.summary import MACS_NOTE, ImportProblem, LayerMacs, ModelSummary

__all__ = ["MACS_NOTE", "ImportProblem", "LayerMacs", "ModelSummary", "summarize"]


def summarize(
    source: str | os.PathLike[str] | onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    input_values: Mapping[str, Any] | None = None,
) -> ModelSummary:
    """Summarise a model of any format :func:`npuc.frontend.load` reads.

    ONNX models are summarised as the module docstring says; TFLite and
    PyTorch ``.pt2`` models by :func:`npuc.frontend.inspect_relax.summarize_imported`.

    Raises
    ------
    InvalidInputError
        As :func:`npuc.frontend.load` does: bad file, or symbolic input dims
        not fixed by ``input_shapes``.
    """
    if isinstance(source, str | os.PathLike):
        from npuc.frontend.dispatch import detect_format

        fmt = detect_format(source)
        if fmt != "onnx":
            from npuc.core.errors import InvalidInputError
            from npuc.frontend.inspect_relax import summarize_imported

            if input_values:
                raise InvalidInputError(
                    f"{source}: --input-value is supported for ONNX models only (this is {fmt})"
                )

            summary: ModelSummary = summarize_imported(source, fmt, input_shapes)
            return summary
    from npuc.frontend.onnx.prepare import prepare_onnx
    from npuc.frontend.onnx.support import find_unsupported, static_types

    prepared = prepare_onnx(source, input_shapes, input_values)
    model = prepared.model
    shapes, dtypes = static_types(model)
    for t in model.graph.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
    layers = tuple(
        LayerMacs(name, node.op_type, node_macs(node, node_shapes))
        for name, node, node_shapes in _all_nodes(model.graph, "", shapes)
        if node.op_type in COUNTED_OPS
    )
    outputs = tuple(
        TensorInfo(name=o.name, shape=shapes.get(o.name, ()), dtype=dtypes.get(o.name, "unknown"))
        for o in model.graph.output
    )
    return ModelSummary(
        source_path=prepared.source_path,
        source_format="onnx",
        opset=prepared.opset,
        declared_inputs=prepared.declared,
        inputs=prepared.inputs,
        outputs=outputs,
        op_histogram=dict(
            Counter(
                n.op_type for _, n, _ in _all_nodes(prepared.original.graph, "", {})
            ).most_common()
        ),
        parameter_count=_parameter_count(model),
        layers=layers,
        total_macs=sum(x.macs or 0 for x in layers),
        unsupported=tuple(find_unsupported(model)),
    )


def _all_nodes(
    graph: onnx.GraphProto, prefix: str, shapes: Mapping[str, tuple[int, ...]]
) -> Iterator[tuple[str, onnx.NodeProto, Mapping[str, tuple[int, ...]]]]:
    """``(name, node, shapes it sees)`` for every node, subgraphs (If/Loop bodies) included.

    Subgraph nodes are named ``<outer node>/<attribute>/<node>`` and see the
    outer shapes plus the shapes their own graph declares.
    """
    from npuc.frontend.onnx.support import static_types

    for index, node in enumerate(graph.node):
        name = prefix + (node.name or f"{node.op_type}_{index}")
        yield name, node, shapes
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                holder = onnx.ModelProto()
                holder.graph.CopyFrom(sub)
                yield from _all_nodes(
                    sub, f"{name}/{attr.name}/", {**shapes, **static_types(holder)[0]}
                )


def _parameter_count(model: onnx.ModelProto) -> int:
    """Elements of the floating-point constants (weights) after constant folding."""
    import math

    floats = {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.BFLOAT16,
    }
    return sum(math.prod(t.dims) for t in model.graph.initializer if t.data_type in floats)
