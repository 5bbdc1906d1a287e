"""Fold shape arithmetic that is static once the input shapes are fixed.

Exporters compute shapes at run time even when they are known at export time:

* Paddle2ONNX (PP-OCR rec and cls) builds ``Reshape`` targets from
  ``Shape -> Slice -> Cast -> Concat``; TVM 0.27 fails with
  ``Reshape requires the input new shape to be Shape``;
* ``torch.onnx.export`` builds ``Pad`` pads from ``Shape -> Gather -> Sub``;
  TVM fails with ``Dynamic pads are not supported yet``;
* torch YOLOv8 exports build anchor grids with ``Shape -> Gather -> Cast ->
  Range``; TVM imports them with fresh symbolic lengths, broadcasting then
  loses the output shape and VM codegen fails on an unlegalized
  ``R.subtract``.

Once every graph input has a static shape (``npuc.frontend.load`` fixes
them), all of these are constants. This fix-up infers shapes, then walks the
nodes in order and replaces every node whose result is known without the
input data by an initializer:

* ``Shape`` / ``Size`` of a tensor whose inferred shape is fully static;
* any standard-domain, deterministic node whose inputs are all constants
  (initializers, ``Constant`` nodes or earlier folded results), evaluated
  with ``onnx.reference``, when the result has at most
  ``MAX_FOLDED_ELEMENTS`` elements.

Guarantee: the rewritten graph computes exactly the same outputs (the folded
values are what the original nodes would produce for any input of the fixed
shapes); graph outputs are never replaced. Idempotent.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ._graph import (
    all_used_names,
    evaluate_node,
    has_subgraph,
    static_shapes,
)

MAX_FOLDED_ELEMENTS = 1 << 20
"""Largest folded result kept as an initializer (4 MiB of float32)."""

_NONDETERMINISTIC_OPS = frozenset(
    {
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",
    }
)


MAX_ROUNDS = 32
"""Folding a shape makes the next Reshape's output static: repeat until nothing changes."""


def fold_static_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace nodes whose outputs are static by initializers; see the module docstring.

    Shape inference runs again after each round, because a folded ``Reshape``
    target makes the shapes after it static; rounds stop when one folds
    nothing (at most ``MAX_ROUNDS``).
    """
    for _ in range(MAX_ROUNDS):
        folded = _fold_once(model)
        if folded is model:
            break
        model = folded
    return model


def _fold_once(model: onnx.ModelProto) -> onnx.ModelProto:
    """One pass over the nodes; returns ``model`` itself when nothing folds."""
    graph = model.graph
    opset = _default_opset(model)
    if opset is None:
        return model
    shapes = static_shapes(model)
    known: dict[str, np.ndarray] = {
        init.name: numpy_helper.to_array(init) for init in graph.initializer
    }
    graph_outputs = {out.name for out in graph.output}
    kept: list[onnx.NodeProto] = []
    folded_names: list[str] = []
    for node in graph.node:
        values = _try_fold(node, known, shapes, opset)
        if values is None or graph_outputs.intersection(node.output):
            kept.append(node)
            continue
        for name, value in zip(node.output, values, strict=True):
            if name:
                known[name] = value
                folded_names.append(name)
    if len(kept) == len(graph.node):
        return model

    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    used = all_used_names(out.graph)
    existing = {init.name for init in out.graph.initializer}
    out.graph.initializer.extend(
        numpy_helper.from_array(np.asarray(known[name]), name)
        for name in folded_names
        if name in used and name not in existing
    )
    # Keep initializers that are also declared inputs (IR < 4 style): they are interface.
    declared = {i.name for i in out.graph.input}
    unused = [i for i in out.graph.initializer if i.name not in used and i.name not in declared]
    for init in unused:
        out.graph.initializer.remove(init)
    return out


def _default_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return None


def _try_fold(
    node: onnx.NodeProto,
    known: dict[str, np.ndarray],
    shapes: dict[str, tuple[int, ...]],
    opset: int,
) -> list[np.ndarray] | None:
    """The node's output values if they are static, else None."""
    if node.domain not in ("", "ai.onnx") or has_subgraph(node):
        return None
    if node.op_type in _NONDETERMINISTIC_OPS:
        return None
    if node.op_type in ("Shape", "Size") and node.input[0] not in known:
        shape = shapes.get(node.input[0])
        if shape is None:
            return None
        if node.op_type == "Size":
            return [np.array(int(np.prod(shape)), np.int64)]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        return [np.array(shape[start:end], np.int64)]
    if any(name and name not in known for name in node.input):
        return None
    values = evaluate_node(node, known, opset)
    if values is None or any(np.asarray(v).size > MAX_FOLDED_ELEMENTS for v in values):
        return None
    return values
