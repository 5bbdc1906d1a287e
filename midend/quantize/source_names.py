"""Source-model names -> layer-graph names: which layer computes each ONNX tensor and node.

The Relax module keeps no ONNX names, and the midend's passes and the layer
extraction fold several source operators into one layer (a convolution with
its bias and clamp). :func:`map_source_names` recovers the correspondence by
structure, walking the layer graph in order from the inputs (whose names are
the source's):

1. a layer's source node is the first not yet matched source node whose
   operator can produce the layer's kind (:data:`LAYER_OPS`) and that reads
   exactly the source tensors of the layer's inputs; a convolution or fully
   connected layer takes the candidate whose recorded (dequantized) weights
   equal its own, else whose weights' L1 norm equals its own (branches
   reading one tensor), else the first;
2. from that node's output it follows the operators the layer folded: a bias
   ``Add``, ``BatchNormalization``, a ``Relu``/``Clip`` when the layer has a
   clamp, the ``Mul`` of ``x * sigmoid(x)`` (SiLU), and always ``Identity``
   and ``Dropout``; the last tensor of that chain is the layer's output, the
   ones before it are *inside* the layer;
3. shape-preserving reshapes, ``Identity`` and ``Dropout`` (which the midend
   removes) make their outputs aliases of their input;
4. a ``transpose`` layer with no source ``Transpose`` is a layout change the
   midend inserted (a TFLite model's NHWC -> channels first): the layers
   reading it are matched as if they read its input (listed in
   ``NameMap.layout_changes``, not in ``unmatched``).

A layer with no candidate is taken as a piece of a source operator the
importer decomposed into several layers (``HardSigmoid`` -> multiply, add
with clamp): the first piece takes the first unmatched node of any operator
reading exactly its inputs, the layers reading a piece join that node, and
the last piece holds the node's output (the others are inside it). A layer
that fits neither (a node a pass created) is listed in ``NameMap.unmatched``;
layers after it that read only its output are unmatched too. The map is
the seam for anything that shows source names (quantizer reports,
pre-quantized scales).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from npuc.frontend.source_quant import SourceGraph, SourceNode, WeightQuant

from .graph import Graph, Node

UNARY_OPS = (
    "Sigmoid", "Tanh", "Exp", "Softplus", "LeakyRelu", "HardSwish", "HardSigmoid", "Gelu",
    "Erf", "Neg", "Abs", "Elu", "Selu", "Log", "Sqrt", "Reciprocal", "Mish",
)  # fmt: skip
LAYER_OPS: Mapping[str, tuple[str, ...]] = {
    "conv2d": ("Conv",),
    "dense": ("Gemm", "MatMul"),
    "add": ("Add", "Sum"),
    "subtract": ("Sub",),
    "multiply": ("Mul", "Div"),
    "maximum": ("Max", "Relu"),
    "minimum": ("Min",),
    "clip": ("Clip", "Relu"),
    "max_pool2d": ("MaxPool",),
    "avg_pool2d": ("AveragePool",),
    "global_avg_pool": ("GlobalAveragePool", "ReduceMean", "AveragePool"),
    "concat": ("Concat",),
    "reshape": ("Reshape", "Flatten", "Squeeze", "Unsqueeze"),
    "transpose": ("Transpose",),
    "slice": ("Slice", "Split"),
    "pad": ("Pad",),
    "resize": ("Resize", "Upsample"),
    "softmax": ("Softmax",),
    "unary": UNARY_OPS,
}
"""Layer kind -> the source operators that can be its first node."""
TRANSPARENT = ("Identity", "Dropout")
RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast")


@dataclass(frozen=True, slots=True, kw_only=True)
class NameMap:
    """Source names against layer names (module docstring).

    ``tensors``: source tensor -> the layer tensor holding its value (a graph
    input or a layer's output); ``inside``: source tensor -> the layer that
    computes it internally (e.g. a convolution's output before its folded
    clamp); ``nodes``: source node -> layer; ``layers``: layer -> its source
    nodes in order; ``unmatched``: layers without a source node, except the
    layout transposes the midend inserted (``layout_changes``).
    """

    tensors: Mapping[str, str] = field(default_factory=dict)
    inside: Mapping[str, str] = field(default_factory=dict)
    nodes: Mapping[str, str] = field(default_factory=dict)
    layers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unmatched: tuple[str, ...] = ()
    layout_changes: tuple[str, ...] = ()

    def source_tensors(self, layer_tensor: str) -> list[str]:
        """The source tensors whose value is ``layer_tensor``, in no particular order."""
        return [src for src, dst in self.tensors.items() if dst == layer_tensor]


class _Matcher:
    def __init__(
        self, graph: Graph, source: SourceGraph, weights: Mapping[str, WeightQuant]
    ) -> None:
        self.graph = graph
        self.source = source
        self.weights = weights
        self.users = source.consumers()
        self.order = {id(n): i for i, n in enumerate(source.nodes)}
        self.used: set[int] = set()
        self.tensors: dict[str, str] = {}
        self.inside: dict[str, str] = {}
        self.nodes: dict[str, str] = {}
        self.layers: dict[str, tuple[str, ...]] = {}
        self.canon: dict[str, str] = {}
        self.pieces: dict[str, SourceNode] = {}
        self.layout: dict[str, str] = {}  # inserted layout transpose -> the tensor it reorders

    def bind(self, src: str, layer_tensor: str, *, force: bool = False) -> None:
        """``src`` and its transparent aliases hold ``layer_tensor`` (``force``: rebind)."""
        stack = [src]
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen or (name in self.tensors and not force):
                continue
            seen.add(name)
            self.tensors[name] = layer_tensor
            for user in self.users.get(name, []):
                if len(user.inputs) == 1 and self._transparent(user, name):
                    self.used.add(id(user))
                    self.nodes[user.name] = layer_tensor
                    stack.extend(user.outputs[:1])

    def _transparent(self, node: SourceNode, src: str) -> bool:
        if node.op_type in TRANSPARENT:
            return True
        shapes = self.source.shapes
        return (
            node.op_type in RESHAPES
            and src in shapes
            and shapes.get(node.outputs[0]) == shapes[src]
        )

    def match(self, layer: Node) -> None:
        if any(name not in self.canon for name in layer.inputs):
            return
        inputs = {self.layout.get(i, i) for i in layer.inputs}
        aliases = {a for a, t in self.tensors.items() if t in inputs}
        ops = LAYER_OPS.get(layer.op)
        found: dict[int, SourceNode] = {}
        for alias in aliases:
            for n in self.users.get(alias, []):
                if (
                    id(n) not in self.used
                    and (ops is None or n.op_type in ops)
                    and set(n.inputs) <= aliases
                    and {self.tensors[i] for i in n.inputs} == inputs
                ):
                    found[id(n)] = n
        candidates = sorted(found.values(), key=lambda n: self.order[id(n)])
        if not candidates and layer.op == "transpose" and len(inputs) == 1:
            # A layout change the midend inserted (NHWC source -> channels first): the
            # layers after it read the same source tensor.
            (source_input,) = inputs
            self.layout[layer.name] = source_input
            self.canon[layer.name] = self.canon[layer.inputs[0]]
            return
        if not candidates:
            self._piece(layer, aliases)
            return
        chosen = candidates[0]
        if "weight" in layer.consts and len(candidates) > 1:
            l1 = float(np.abs(np.asarray(layer.consts["weight"], np.float64)).sum())
            same = [n for n in candidates if self._same_weight(layer, n)] or [
                n
                for n in candidates
                if n.weight_l1 is not None and abs(n.weight_l1 - l1) <= 1e-5 * max(l1, 1e-30)
            ]
            chosen = same[0] if same else chosen
        self.used.add(id(chosen))
        chain = [chosen]
        out = chosen.outputs[0]
        while True:
            nxt = self._folded(layer, out, chain)
            if nxt is None:
                break
            self.used.add(id(nxt))
            self.inside[out] = layer.name
            chain.append(nxt)
            out = nxt.outputs[0]
        for node in chain:
            self.nodes[node.name] = layer.name
        self.layers[layer.name] = tuple(n.name for n in chain)
        self.canon[layer.name] = out
        self.bind(out, layer.name)

    def _piece(self, layer: Node, aliases: set[str]) -> None:
        """``layer`` as one piece of a source node the importer decomposed into several layers.

        It continues the node a piece it reads belongs to, or starts the first
        unmatched node (any operator) that reads exactly its inputs; the last
        piece holds the node's output.
        """
        owners = {id(self.pieces[i]): self.pieces[i] for i in layer.inputs if i in self.pieces}
        if len(owners) == 1:
            (node,) = owners.values()
            others = [i for i in layer.inputs if i not in self.pieces]
            if not all(self.canon[i] in node.inputs for i in others):
                return
        elif not owners:
            inputs = set(layer.inputs)
            found = [
                n
                for a in sorted(aliases)
                for n in self.users.get(a, [])
                if id(n) not in self.used
                and set(n.inputs) <= aliases
                and {self.tensors[i] for i in n.inputs} == inputs
            ]
            if not found:
                return
            node = min(found, key=lambda n: self.order[id(n)])
            self.used.add(id(node))
        else:
            return
        self.pieces[layer.name] = node
        self.nodes[node.name] = layer.name
        self.layers[layer.name] = (node.name,)
        self.canon[layer.name] = node.outputs[0]
        self.bind(node.outputs[0], layer.name, force=True)

    def _folded(self, layer: Node, out: str, chain: list[SourceNode]) -> SourceNode | None:
        users = [u for u in self.users.get(out, []) if id(u) not in self.used]
        if len(users) != 1 or len(self.users.get(out, [])) != 1:
            return None
        user = users[0]
        clamp = layer.attr("act_min") is not None or layer.attr("act_max") is not None
        if user.op_type in TRANSPARENT:
            return user
        if user.inputs != (out,):
            silu = layer.op == "unary" and layer.attr("func") == "silu"
            first = chain[0]
            if silu and user.op_type == "Mul" and set(user.inputs) == {out, *first.inputs}:
                return user
            return None
        if layer.op in ("conv2d", "dense") and user.op_type in ("Add", "BatchNormalization"):
            return user
        if clamp and user.op_type in ("Relu", "Clip", "Max", "Min"):
            return user
        if clamp and layer.op in ("conv2d", "dense") and user.op_type == "HardSigmoid":
            return user  # the midend folds its scale and offset into the weights and bias
        return None

    def _same_weight(self, layer: Node, node: SourceNode) -> bool:
        record = self.weights.get(node.weight or "")
        if record is None:
            return False
        return layer_weight_ints(layer, record) is not None


def dequantized(record: WeightQuant) -> np.ndarray:
    """The float32 weight a :class:`WeightQuant` stands for, in the file's layout."""
    shape = [1] * record.values.ndim
    if record.scale.ndim:
        shape[record.axis] = -1
    zp = record.zero_point.reshape(shape) if record.zero_point.ndim else record.zero_point
    return ((record.values - zp) * record.scale.reshape(shape)).astype(np.float32)


def layer_weight_ints(layer: Node, record: WeightQuant) -> tuple[np.ndarray, bool] | None:
    """The file's stored weight integers in the layer's layout and whether they were transposed.

    ``None`` if ``record`` is not the layer's weight. A convolution's weight
    has the file's layout; a fully connected layer's ``(K, N)`` weight may be
    the transpose of the file's ``(N, K)`` (Gemm ``transB``).
    """
    weight = np.asarray(layer.consts["weight"], np.float32)
    deq = dequantized(record)
    if deq.shape == weight.shape and np.array_equal(deq, weight):
        return record.values, False
    if deq.ndim == 2 and deq.T.shape == weight.shape and np.array_equal(deq.T, weight):
        return record.values.T, True
    return None


def map_source_names(
    graph: Graph, source: SourceGraph, weights: Mapping[str, WeightQuant] | None = None
) -> NameMap:
    """The :class:`NameMap` of ``graph`` against the imported ``source`` (module docstring)."""
    matcher = _Matcher(graph, source, weights or {})
    for name, _ in graph.inputs:
        if name in source.inputs:
            matcher.canon[name] = name
            matcher.bind(name, name)
    for layer in graph.nodes:
        matcher.match(layer)
    return NameMap(
        tensors=dict(matcher.tensors),
        inside=dict(matcher.inside),
        nodes=dict(matcher.nodes),
        layers=dict(matcher.layers),
        unmatched=tuple(
            n.name
            for n in graph.nodes
            if n.name not in matcher.layers and n.name not in matcher.layout
        ),
        layout_changes=tuple(matcher.layout),
    )
