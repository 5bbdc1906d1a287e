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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import onnx

from npuc.core.model_info import TensorInfo
from npuc.frontend.macs import COUNTED_OPS, node_macs
from npuc.frontend.summary import MACS_NOTE, ImportProblem, LayerMacs, ModelSummary

if TYPE_CHECKING:
    pass

__all__ = ["MACS_NOTE", "ImportProblem", "LayerMacs", "ModelSummary", "summarize"]


def summarize(
    source: str | os.PathLike[str] | onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
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
            from npuc.frontend.inspect_relax import summarize_imported

            summary: ModelSummary = summarize_imported(source, fmt, input_shapes)
            return summary
    from npuc.frontend.onnx.prepare import prepare_onnx
    from npuc.frontend.onnx.support import find_unsupported, static_types

    prepared = prepare_onnx(source, input_shapes)
    model = prepared.model
    shapes, dtypes = static_types(model)
    for t in model.graph.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
    layers = tuple(
        LayerMacs(node.name or f"{node.op_type}_{i}", node.op_type, node_macs(node, shapes))
        for i, node in enumerate(model.graph.node)
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
        op_histogram=dict(Counter(n.op_type for n in prepared.original.graph.node).most_common()),
        parameter_count=_parameter_count(model),
        layers=layers,
        total_macs=sum(x.macs or 0 for x in layers),
        unsupported=tuple(find_unsupported(model)),
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
