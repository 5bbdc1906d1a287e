"""Replace each ``If`` whose condition is a constant by the branch it takes.

Models branch on inputs that are constant in practice (a sample rate, a
mode); once the input is fixed (``--input-value``) and constants are folded,
the condition is an initializer. This fix-up inlines the taken branch into
the graph: its nodes and initializers are copied with every name the branch
defines prefixed by ``<If node name>/`` (so nothing clashes with the outer
graph), names the branch reads from the outer scope stay as they are, and
each If output becomes an ``Identity`` of the matching branch output. Nested
``If`` nodes inlined this way are handled by repeating until none is left
with a constant condition.

Guarantee: the graph computes what the ``If`` would for that condition (the
branch not taken is never evaluated, as in ONNX). Shapes are re-inferred and
static shape arithmetic of the inlined nodes folded. Idempotent.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .fold_static_shapes import fold_static_shapes

MAX_ROUNDS = 16


def inline_constant_if(model: onnx.ModelProto) -> onnx.ModelProto:
    """Inline every If with a constant condition (see the module docstring)."""
    changed = False
    for _ in range(MAX_ROUNDS):
        rewritten = _inline_once(model)
        if rewritten is None:
            break
        model, changed = rewritten, True
    if not changed:
        return model
    model = fold_static_shapes(model)
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # onnx raises several types; the support check names missing shapes
        return model


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _inline_once(model: onnx.ModelProto) -> onnx.ModelProto | None:
    consts = _constants(model.graph)
    for index, node in enumerate(model.graph.node):
        if node.op_type != "If" or node.domain not in ("", "ai.onnx"):
            continue
        cond = consts.get(node.input[0])
        if cond is None or np.asarray(cond).size != 1:
            continue
        branch_name = "then_branch" if bool(np.asarray(cond).reshape(())) else "else_branch"
        branch = next(a.g for a in node.attribute if a.name == branch_name)
        out = onnx.ModelProto()
        out.CopyFrom(model)
        nodes, inits = _renamed_branch(branch, node)
        new_nodes = list(out.graph.node[:index]) + nodes + list(out.graph.node[index + 1 :])
        del out.graph.node[:]
        out.graph.node.extend(new_nodes)
        out.graph.initializer.extend(inits)
        return out
    return None


def _renamed_branch(
    branch: onnx.GraphProto, if_node: onnx.NodeProto
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    prefix = f"{if_node.name or 'If'}/"
    defined = {t.name for t in branch.initializer}
    for node in branch.node:
        defined.update(o for o in node.output if o)
    rename = {name: prefix + name for name in defined}
    inits = []
    for t in branch.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(t)
        copy.name = rename[t.name]
        inits.append(copy)
    nodes = []
    for node in branch.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = prefix + (node.name or node.op_type)
        _rename(copy, rename)
        nodes.append(copy)
    for branch_out, if_out in zip(branch.output, if_node.output, strict=True):
        source = rename.get(branch_out.name, branch_out.name)
        nodes.append(helper.make_node("Identity", [source], [if_out], name=prefix + if_out))
    return nodes, inits


def _rename(node: onnx.NodeProto, rename: dict[str, str]) -> None:
    """Apply ``rename`` to the node's inputs and outputs and to reads inside its subgraphs."""
    for i, name in enumerate(node.input):
        node.input[i] = rename.get(name, name)
    for i, name in enumerate(node.output):
        node.output[i] = rename.get(name, name)
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for sub in graphs:
            for inner in sub.node:
                for i, name in enumerate(inner.input):
                    inner.input[i] = rename.get(name, name)
