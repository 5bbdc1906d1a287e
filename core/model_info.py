"""Description of a model's interface, shared by every stage.

The frontend produces a :class:`ModelInfo` next to the Relax module; the
backends store it in their artifacts (JSON sidecar of a ``.so``, I/O table of
an NPU program) and the runtime checks user inputs against it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorInfo:
    """One graph input or output.

    ``shape`` holds ints for fixed dimensions and strings for symbolic ones
    (as exported models name them: ``"batch"``, ``"height"``); a compiled
    artifact only ever holds ints.
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def shape_str(self) -> str:
        return "x".join(str(d) for d in self.shape) if self.shape else "scalar"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorInfo:
        return cls(name=data["name"], shape=tuple(data["shape"]), dtype=data["dtype"])


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """What a model takes and gives, and where it came from.

    ``layout`` is ``"NCHW"`` (ONNX, PyTorch), ``"NHWC"`` (TFLite) or
    ``"unknown"`` for models without image inputs.
    """

    source_path: str
    source_format: str
    source_sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    layout: str = "unknown"
    opset: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def input_named(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = [t.to_json() for t in self.inputs]
        data["outputs"] = [t.to_json() for t in self.outputs]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        return cls(
            source_path=data["source_path"],
            source_format=data["source_format"],
            source_sha256=data["source_sha256"],
            inputs=tuple(TensorInfo.from_json(t) for t in data["inputs"]),
            outputs=tuple(TensorInfo.from_json(t) for t in data["outputs"]),
            layout=data.get("layout", "unknown"),
            opset=data.get("opset"),
            extra=dict(data.get("extra", {})),
        )
