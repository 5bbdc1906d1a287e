"""The quantized model: the one representation every consumer reads.

A :class:`QuantizedModel` is the float layer graph (:mod:`.graph`) plus

- ``tensors``: the :class:`~.qparams.QParams` (scale, zero point, storage
  type) of every tensor stored as integers;
- ``layers``: one :class:`QLayer` per graph node with its integer parameters
  in the ISA's names (``ofm_multiplier``, ``pre_shift``, ``post_shift``,
  ``b16``, ``bias_shift``, ``ifm_multiplier``/``ifm2_multiplier``,
  ``act_min``/``act_max`` as stored integers, int8 ``weights``, ``lut``), or
  ``run_on == "cpu"`` with the reason it stays float.

Consumers: the integer executor (:mod:`.int_exec`, the golden model), the
fake-quant executor, the accuracy report, the NPU compiler (which lowers
``run_on == "npu"`` layers to :mod:`npuc.backend.npu.ops`) and the CPU
integer path. docs/quantization.md draws it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import LayerQuantConfig, QuantConfig
from .graph import Graph, Node
from .qparams import QParams

# Layer kinds whose integer output equals a re-indexing of their integer input.
PASS_THROUGH = ("reshape", "transpose", "slice", "max_pool2d", "resize")


@dataclass(frozen=True, slots=True, kw_only=True)
class QLayer:
    """One layer's quantization: where it runs, its config and integer parameters.

    ``params`` values are ints or numpy integer arrays (see the module
    docstring for the names); ``display`` holds read-only numbers for reports
    (float scales, the worst scale error of the multipliers).
    """

    name: str
    kind: str
    run_on: str
    reason: str
    config: LayerQuantConfig
    params: Mapping[str, Any] = field(default_factory=dict)
    display: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizedModel:
    """A float graph with the quantization of each tensor and layer (module docstring)."""

    graph: Graph
    tensors: Mapping[str, QParams]
    layers: Mapping[str, QLayer]
    config: QuantConfig
    calibration: Mapping[str, Any] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def layer(self, node: Node) -> QLayer:
        return self.layers[node.name]

    def is_integer(self, tensor: str) -> bool:
        return tensor in self.tensors

    def npu_layers(self) -> list[QLayer]:
        return [
            self.layers[n.name] for n in self.graph.nodes if self.layers[n.name].run_on == "npu"
        ]


def layer_kind(node: Node) -> str:
    """The user-facing kind of a node: its op, or the function of a ``unary`` node."""
    return str(node.attr("func")) if node.op == "unary" else node.op


def int_array(values: Any, dtype: Any) -> np.ndarray:
    """``values`` as a read-only numpy array of ``dtype``."""
    arr = np.array(values, dtype=dtype)
    arr.setflags(write=False)
    return arr
