"""Normalise optional inputs that TVM's importer reads differently from ONNX.

ONNX lets an exporter skip an optional input either by an empty name or by
an empty tensor; ``Resize`` from ``torch.onnx.export`` passes an empty
``roi`` and an empty ``scales`` when it gives ``sizes``. TVM 0.27's Resize
converter treats a present-but-empty ``scales`` as given and fails with
"Only one of scales and sizes can be provided". Guarantees: every empty
constant passed as ``roi`` or ``scales`` of a ``Resize`` becomes an absent
input (empty name); nothing else changes, so results are unchanged.
"""

from __future__ import annotations

import onnx

# op type -> input positions where an empty constant means "not given"
_OPTIONAL_INPUTS: dict[str, tuple[int, ...]] = {"Resize": (1, 2)}


def drop_empty_optional_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace empty constant optional inputs by absent ones (in place; returns ``model``)."""
    empty = {
        t.name
        for t in model.graph.initializer
        if 0 in t.dims or (len(t.dims) == 1 and t.dims[0] == 0)
    }
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and 0 in attr.t.dims:
                    empty.add(node.output[0])
    for node in model.graph.node:
        for index in _OPTIONAL_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] in empty:
                node.input[index] = ""
        while node.op_type in _OPTIONAL_INPUTS and node.input and not node.input[-1]:
            del node.input[-1]
    return model
