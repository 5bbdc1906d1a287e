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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import onnx

from npuc.core.model_info import TensorInfo
from npuc.frontend.macs import COUNTED_OPS, node_macs

if TYPE_CHECKING:
    from npuc.frontend.inspect_relax import ImportProblem
    from npuc.frontend.onnx.support import UnsupportedNode

MACS_NOTE = (
    "MACs = multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul "
    "(grouped/depthwise convs count the channels each filter reads); "
    "element-wise, pooling and normalisation ops count 0"
)


@dataclass(frozen=True, slots=True)
class LayerMacs:
    """MACs of one counted node (``None`` when its shapes are unknown)."""

    node_name: str
    op_type: str
    macs: int | None


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """What ``npuc inspect`` reports about a model."""

    source_path: str
    source_format: str
    opset: int | None
    declared_inputs: tuple[TensorInfo, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    op_histogram: dict[str, int]
    parameter_count: int
    layers: tuple[LayerMacs, ...]
    total_macs: int
    unsupported: tuple[UnsupportedNode | ImportProblem, ...] = field(default_factory=tuple)
    macs_note: str = MACS_NOTE

    def to_json(self) -> dict[str, Any]:
        return {
            "source_path": self.source_path,
            "source_format": self.source_format,
            "opset": self.opset,
            "declared_inputs": [t.to_json() for t in self.declared_inputs],
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "op_histogram": dict(self.op_histogram),
            "parameter_count": self.parameter_count,
            "total_macs": self.total_macs,
            "macs_note": self.macs_note,
            "layers": [
                {"node_name": x.node_name, "op_type": x.op_type, "macs": x.macs}
                for x in self.layers
            ],
            "unsupported": [u.to_json() for u in self.unsupported],
        }


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
