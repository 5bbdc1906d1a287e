"""The layer graph: the quantizer's view of a model, and the seam its consumers read.

A :class:`Graph` is a topologically ordered list of :class:`Node` records
extracted from the midend's float Relax module (:mod:`.extract`). Each node is
one *layer* in the sense users and reports use the word: a convolution with
its bias and clamp, an element-wise add, a pool, a table-lookup activation, or
an operator that only the CPU runs. Every node produces one tensor, named
after the node; graph inputs are tensors too.

Layouts follow the source model (Relax's ``NCHW`` for ONNX and PyTorch):
the executors compute in that layout and the NPU compiler transposes to the
NPU's ``HWC`` when it lowers a node.

Node kinds (``Node.op``) and their ``attrs``/``consts``:

==================  ==========================================================
``conv2d``          attrs ``strides``, ``padding`` (top, left, bottom, right),
                    ``dilation``, ``groups``, ``act_min``/``act_max`` (float
                    clamp, ``None`` for none); consts ``weight`` (O, I/g, kh,
                    kw) and ``bias`` (O,)
``dense``           ``x @ weight + bias`` over the last axis; consts
                    ``weight`` (K, N), ``bias`` (N,); clamp attrs as conv2d
``add`` ``subtract`` ``multiply`` ``maximum`` ``minimum``
                    two operands with numpy broadcasting; a constant operand is
                    ``consts["rhs"]`` (attrs ``const_side`` ``"lhs"|"rhs"``)
``clip``            attrs ``act_min``, ``act_max``
``max_pool2d`` ``avg_pool2d``
                    attrs ``kernel``, ``strides``, ``padding``, ``dilation``,
                    ``count_include_pad``
``global_avg_pool`` mean over H and W, keepdims (from adaptive pool or mean)
``concat``          attrs ``axis``
``reshape``         attrs ``shape``
``transpose``       attrs ``axes``
``slice``           attrs ``axes``, ``begin``, ``end``, ``strides``
``pad``             attrs ``pad_width`` (pairs per axis), ``pad_value``
``resize``          attrs ``size`` (H, W), ``method`` ``"nearest"|"linear"``,
                    ``coordinate_transformation_mode``, ``rounding_method``
``unary``           attrs ``func`` (sigmoid, tanh, exp, silu, gelu, hardswish,
                    hardsigmoid, softplus, leaky_relu, erf, ...), ``alpha``
``softmax``         attrs ``axis`` (CPU)
``relax``           any other operator, kept as a Relax call and run through TVM
                    (CPU); attrs ``relax_op`` names it
==================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ELEMENTWISE_BINARY = ("add", "subtract", "multiply", "maximum", "minimum")
DATA_MOVEMENT = ("reshape", "transpose", "slice", "pad", "concat")


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorType:
    """Shape and element type of one tensor (static shapes only)."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float")


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One layer: an operator, its inputs (tensor names), attributes and float constants.

    ``name`` is the layer's stable name (``conv2d_3``: op kind and its index in
    topological order), also the name of the tensor it produces. ``relax_call``
    holds the original Relax expression for ``op == "relax"`` nodes (and is
    ``None`` otherwise); ``source`` names the Relax bindings folded into the
    node, for debugging.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    out: TensorType
    attrs: Mapping[str, Any] = field(default_factory=dict)
    consts: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: tuple[str, ...] = ()
    relax_call: Any = None

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True, slots=True, kw_only=True)
class Graph:
    """A model as layers: graph inputs, nodes in topological order, output tensor names.

    ``relax_module`` is the float module the graph came from; the ``relax``
    fallback nodes are compiled against its functions.
    """

    inputs: tuple[tuple[str, TensorType], ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    relax_module: Any = None

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def tensor_type(self, name: str) -> TensorType:
        for input_name, ty in self.inputs:
            if input_name == name:
                return ty
        return self.node(name).out

    def consumers(self) -> dict[str, list[Node]]:
        """Tensor name -> the nodes that read it."""
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                users.setdefault(name, []).append(node)
        return users

    def op_histogram(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
        return counts
