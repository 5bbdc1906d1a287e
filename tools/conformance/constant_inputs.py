"""Which graph inputs of a conformance case npuc receives as constants.

npuc compiles ahead of time for static shapes and constant weights, so an
operator input that decides the *shape* of a result (Reshape's ``shape``,
Pad's ``pads``, a reduction's ``axes``...) or is a trained *parameter*
(Conv's weight, BatchNormalization's statistics, PRelu's slope...) must be a
constant, as every exporter writes it. onnx's node cases feed such inputs at
run time. The conformance adapter therefore moves them into initializers
(with the case's own values, and checks at run time that the fed values are
those) when, and only when:

- every node that reads the input reads it at a position listed in
  :data:`SHAPE_INPUTS` or :data:`PARAMETER_INPUTS` for its operator, and
- at least one other graph input stays a run-time input, so that the case
  still computes something at run time instead of being folded whole into a
  constant by the frontend (Range, ConstantOfShape or window cases whose
  inputs are all shape inputs run unchanged and fail as dynamic).

The data inputs of an operator are never frozen.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx

# Operator -> names (as in the ONNX schema) of the inputs that fix a result's shape
# or a static parameter.
SHAPE_INPUTS: Mapping[str, tuple[str, ...]] = {
    "CenterCropPad": ("shape",),
    "Col2Im": ("image_shape", "block_shape"),
    "CumSum": ("axis",),
    "DFT": ("dft_length", "axis"),
    "Dropout": ("ratio", "training_mode"),
    "Expand": ("shape",),
    "MaxUnpool": ("output_shape",),
    "OneHot": ("depth",),
    "Pad": ("pads", "constant_value", "axes"),
    "ReduceL1": ("axes",),
    "ReduceL2": ("axes",),
    "ReduceLogSum": ("axes",),
    "ReduceLogSumExp": ("axes",),
    "ReduceMax": ("axes",),
    "ReduceMean": ("axes",),
    "ReduceMin": ("axes",),
    "ReduceProd": ("axes",),
    "ReduceSum": ("axes",),
    "ReduceSumSquare": ("axes",),
    "Reshape": ("shape",),
    "Resize": ("roi", "scales", "sizes"),
    "Slice": ("starts", "ends", "axes", "steps"),
    "Split": ("split",),
    "Squeeze": ("axes",),
    "STFT": ("frame_step", "frame_length"),
    "Tile": ("repeats",),
    "TopK": ("K",),
    "Trilu": ("k",),
    "Unsqueeze": ("axes",),
    "Upsample": ("scales",),
}


# Operator -> names of the inputs that are trained parameters or fixed constants in
# exported models (npuc's legality rules require them constant).
PARAMETER_INPUTS: Mapping[str, tuple[str, ...]] = {
    "BatchNormalization": ("scale", "B", "input_mean", "input_var"),
    "Clip": ("min", "max"),
    "Conv": ("W", "B"),
    "ConvTranspose": ("W", "B"),
    "Gather": ("indices",),
    "Pow": ("Y",),
    "PRelu": ("slope",),
}


def _shape_positions(op_type: str) -> frozenset[int]:
    names = SHAPE_INPUTS.get(op_type, ()) + PARAMETER_INPUTS.get(op_type, ())
    if not names:
        return frozenset()
    formal = [i.name for i in onnx.defs.get_schema(op_type).inputs]
    return frozenset(formal.index(n) for n in names)


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[str, int]]]:
    uses: dict[str, list[tuple[str, int]]] = {}
    for node in graph.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
        for position, name in enumerate(node.input):
            if name:
                uses.setdefault(name, []).append((op, position))
        for attr in node.attribute:  # a subgraph's use is never a shape position
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                for name in _subgraph_reads(sub):
                    uses.setdefault(name, []).append((op, -1))
    return uses


def _subgraph_reads(graph: onnx.GraphProto) -> set[str]:
    return {name for node in graph.node for name in node.input if name}


def inputs_to_freeze(model: onnx.ModelProto) -> list[str]:
    """Names of ``model``'s graph inputs to give npuc as constants (see module doc)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    uses = _consumers(model.graph)
    frozen = [
        name
        for name in inputs
        if uses.get(name) and all(position in _shape_positions(op) for op, position in uses[name])
    ]
    return frozen if len(frozen) < len(inputs) else []
