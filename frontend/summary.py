"""What ``npuc inspect`` reports: the summary types both inspectors return.

:mod:`npuc.frontend.inspect` (ONNX, and the dispatcher for every format)
and :mod:`npuc.frontend.inspect_relax` (TFLite and ``.pt2``, read from the
imported Relax module) both build a :class:`ModelSummary`; the types live
here, below both, so that neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from npuc.core.model_info import TensorInfo

if TYPE_CHECKING:
    from npuc.frontend.onnx.support import UnsupportedNode


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """One reason an importer (TFLite, torch) gave for refusing a model."""

    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason}

    def describe(self) -> str:
        return self.reason


MACS_NOTE = (
    "MACs = multiply-accumulates of Conv, ConvTranspose, Gemm, MatMul, LSTM and GRU "
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
