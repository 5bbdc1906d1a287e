"""What a pre-quantized model says about its own quantization, in a format-neutral form.

A QDQ ONNX model (onnxruntime ``quantize_static``, NNCF, AIMET) carries its
scales and zero points in QuantizeLinear/DequantizeLinear nodes. The importer
strips those nodes into a float graph (weights become ``scale * (q - zp)``
exactly) and returns a :class:`SourceQuant` next to the Relax module: the
recorded quantization of every activation tensor and weight, and the
structure of the float graph it imported (:class:`SourceGraph`), by the
source file's own tensor and node names. The midend maps those names onto its
layer graph (:mod:`npuc.midend.quantize.source_names`) and quantizes with the
recorded parameters instead of calibrating
(:mod:`npuc.midend.quantize.prequant`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationQuant:
    """The recorded quantization of one activation tensor.

    ``scale`` (float64) and ``zero_point`` (int64) have shape ``()`` for a
    per-tensor quantization, ``(C,)`` for a per-channel one along ``axis``;
    ``dtype`` is the stored type (``int8``, ``uint8``, ``int16``, ``uint16``);
    ``node`` names the source node that quantizes the tensor (for messages).
    """

    scale: np.ndarray
    zero_point: np.ndarray
    dtype: str
    axis: int | None
    node: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightQuant:
    """The recorded quantization of one constant weight, in the source file's layout.

    ``values`` are the stored integers (int64 array, the file's shape);
    ``scale`` (float64) and ``zero_point`` (int64) are ``()`` or ``(C,)``
    along ``axis``; ``dtype`` the stored type; ``tensor`` the source tensor.
    """

    values: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    dtype: str
    axis: int
    tensor: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceNode:
    """One node of the imported float graph: its operator and tensor names.

    ``inputs`` holds only the non-constant inputs (activations); ``weight``
    names the recorded quantized weight it reads (a key of
    :attr:`SourceQuant.weights`), if any; ``weight_l1`` is the sum of the
    absolute values of a constant weight (float64), which tells apart
    branches that read the same tensor.
    """

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weight: str | None = None
    weight_l1: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceGraph:
    """The float graph as imported: inputs, nodes in order, outputs, known static shapes."""

    inputs: tuple[str, ...]
    nodes: tuple[SourceNode, ...]
    outputs: tuple[str, ...]
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def consumers(self) -> dict[str, list[SourceNode]]:
        """Tensor name -> the nodes that read it, in graph order."""
        users: dict[str, list[SourceNode]] = {}
        for node in self.nodes:
            for name in node.inputs:
                users.setdefault(name, []).append(node)
        return users


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceQuant:
    """A pre-quantized model's own quantization (module docstring).

    ``activations`` and ``weights`` are keyed by source tensor name;
    ``notes`` lists what the importer had to decide (e.g. a tensor quantized
    twice with different parameters).
    """

    format: str
    activations: Mapping[str, ActivationQuant]
    weights: Mapping[str, WeightQuant]
    graph: SourceGraph
    notes: tuple[str, ...] = ()
