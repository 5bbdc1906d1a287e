"""Whole-graph support check, run before conversion.

Guarantees: :func:`find_unsupported` visits every node and returns one
:class:`UnsupportedNode` per node npuc cannot compile (unknown operator,
foreign domain, opset outside the claimed range, a failed legality check, or
an element type npuc does not import); :func:`check_supported` raises one
:class:`~npuc.core.errors.UnsupportedError` listing all of them, never just the
first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from npuc.core.errors import UnsupportedError
from npuc.frontend.onnx.registry import SUPPORTED_DTYPES, NodeView
from npuc.frontend.onnx.rules import RULES_BY_OP


@dataclass(frozen=True, slots=True)
class UnsupportedNode:
    """One node npuc cannot compile, and why."""

    node_name: str
    op_type: str
    domain: str
    opset: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        op = f"{self.domain}.{self.op_type}" if self.domain else self.op_type
        return f"{self.node_name} ({op}, opset {self.opset}): {self.reason}"


def default_opset(model: onnx.ModelProto) -> int:
    """The model's ai.onnx opset version."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def known_constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by tensor name."""
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
                elif attr.name in ("value_float", "value_int"):
                    consts[node.output[0]] = np.asarray(onnx.helper.get_attribute_value(attr))
    return consts


def static_types(model: onnx.ModelProto) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Static shapes and element types of every tensor shape inference typed."""
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    values = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    for value in values:
        ttype = value.type.tensor_type
        if ttype.elem_type:
            dtypes[value.name] = onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type).name
        if ttype.HasField("shape") and all(d.HasField("dim_value") for d in ttype.shape.dim):
            shapes[value.name] = tuple(int(d.dim_value) for d in ttype.shape.dim)
    for t in model.graph.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
        dtypes[t.name] = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
    return shapes, dtypes


def find_unsupported(model: onnx.ModelProto) -> list[UnsupportedNode]:
    """Every node of ``model`` that npuc cannot compile (empty when all are fine).

    ``model`` should have static input shapes and have been through
    :func:`npuc.frontend.onnx.cleanup.clean_up`, so that shape tensors are
    constants and shapes are inferred.
    """
    opset = default_opset(model)
    consts = known_constants(model)
    shapes, dtypes = static_types(model)
    for name, value in consts.items():
        shapes.setdefault(name, tuple(value.shape))
    return _graph_unsupported(model.graph.node, "", opset, consts, shapes, dtypes)


_CONTROL_FLOW_REASONS = {
    "If": "control flow is not compiled: the condition is computed at run time; if it "
    "depends only on inputs that are constant in practice, fix them with "
    "--input-value NAME=VALUE so the If folds to the branch taken",
    "Loop": "control flow (Loop) is not compiled; export the model with the loop unrolled",
    "Scan": "control flow (Scan) is not compiled; export the model with the scan unrolled",
}


def _graph_unsupported(
    nodes: Sequence[onnx.NodeProto],
    prefix: str,
    opset: int,
    consts: dict[str, np.ndarray],
    shapes: dict[str, tuple[int, ...]],
    dtypes: dict[str, str],
) -> list[UnsupportedNode]:
    """Unsupported nodes of ``nodes`` and, recursively, of their subgraphs (If/Loop bodies).

    Nodes inside a subgraph are named ``<outer node>/<attribute>/<node>``; they
    see the outer scope's constants, shapes and types as well as their own.
    """
    found: list[UnsupportedNode] = []
    for index, node in enumerate(nodes):
        name = prefix + (node.name or f"{node.op_type}_{index}")
        reason = _CONTROL_FLOW_REASONS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
        reason = reason or _why_unsupported(node, opset, consts, shapes, dtypes)
        if reason:
            found.append(UnsupportedNode(name, node.op_type, node.domain, opset, reason))
        for attr in node.attribute:
            graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in graphs:
                sub_consts = {**consts, **_graph_constants(sub)}
                sub_shapes, sub_dtypes = _graph_types(sub)
                sub_shapes = {**shapes, **sub_shapes}
                for key, value in sub_consts.items():
                    sub_shapes.setdefault(key, tuple(value.shape))
                found.extend(
                    _graph_unsupported(
                        sub.node,
                        f"{name}/{attr.name}/",
                        opset,
                        sub_consts,
                        sub_shapes,
                        {**dtypes, **sub_dtypes},
                    )
                )
    return found


def _graph_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and Constant outputs of one (sub)graph."""
    holder = onnx.ModelProto()
    holder.graph.CopyFrom(graph)
    return known_constants(holder)


def _graph_types(graph: onnx.GraphProto) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Static shapes and element types declared in one (sub)graph."""
    holder = onnx.ModelProto()
    holder.graph.CopyFrom(graph)
    return static_types(holder)


def _why_unsupported(
    node: onnx.NodeProto,
    opset: int,
    consts: dict[str, np.ndarray],
    shapes: dict[str, tuple[int, ...]],
    dtypes: dict[str, str],
) -> str:
    if node.domain not in ("", "ai.onnx"):
        return (
            f"operators of domain {node.domain!r} are not supported (only the default ONNX domain)"
        )
    rule = RULES_BY_OP.get(node.op_type)
    if rule is None:
        return "operator not supported by npuc (see docs/supported_ops.md)"
    if not rule.since_opset <= opset <= rule.until_opset:
        return f"supported for opsets {rule.since_opset}..{rule.until_opset} only"
    bad_types = sorted(
        {dtypes[n] for n in [*node.input, *node.output] if n in dtypes} - SUPPORTED_DTYPES
    )
    if bad_types:
        return f"element type {', '.join(bad_types)} is not supported (npuc imports float32 models)"
    if rule.check is None:
        return ""
    ok, reason = rule.check(NodeView(node, opset, consts, shapes, dtypes))
    return "" if ok else reason


def check_supported(model: onnx.ModelProto, where: str) -> None:
    """Raise one UnsupportedError listing every unsupported node of ``model``.

    The message is one line naming every node and its reason; the error's
    ``nodes`` attribute holds the same list as :class:`UnsupportedNode` values.
    """
    found = find_unsupported(model)
    if not found:
        return
    raise unsupported_error(found, where)


def unsupported_error(found: list[UnsupportedNode], where: str) -> UnsupportedError:
    """One UnsupportedError for ``found`` (non-empty): a one-line message, ``.nodes`` attached."""
    ops = sorted({f.op_type for f in found})
    listing = "; ".join(" ".join(f.describe().split()) for f in found)
    error = UnsupportedError(
        f"{where}: {len(found)} node(s) cannot be compiled (operators: {', '.join(ops)}): "
        f"{listing}",
        hint="see docs/supported_ops.md for the supported operators and their rules; "
        "re-export the model without these operators or with a supported opset",
        nodes=found,
    )
    return error
