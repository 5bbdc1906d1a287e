"""The ONNX steps before conversion: read, fix shapes, clean up, fix up.

Guarantees: a :class:`PreparedModel` holds a checked model with static input
shapes that has been shape-inferred, constant-folded and through
``apply_onnx_fixups``; ``declared`` keeps the inputs as the model declared
them and ``original`` the model as read (for inspection).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import onnx

from npuc.core.model_info import TensorInfo
from npuc.frontend.onnx.cleanup import apply_fixups, clean_up
from npuc.frontend.onnx.input_values import InputValues, fix_input_values
from npuc.frontend.onnx.qdq import strip_qdq
from npuc.frontend.onnx.read import read_onnx
from npuc.frontend.onnx.shapes import (
    declared_inputs,
    fix_input_shapes,
    graph_inputs,
    resolve_input_shapes,
)
from npuc.frontend.onnx.structure import source_graph
from npuc.frontend.onnx.support import default_opset
from npuc.frontend.source_quant import SourceGraph, SourceQuant


@dataclass(frozen=True, slots=True)
class PreparedModel:
    """A model ready for the support check and conversion."""

    model: onnx.ModelProto
    original: onnx.ModelProto
    shapes: dict[str, tuple[int, ...]]
    inputs: tuple[TensorInfo, ...]
    declared: tuple[TensorInfo, ...]
    opset: int
    source_path: str
    source_sha256: str
    source_quant: SourceQuant | None = None
    source_graph: SourceGraph | None = None


def prepare_onnx(
    source: str | os.PathLike[str] | onnx.ModelProto,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    input_values: InputValues | None = None,
) -> PreparedModel:
    """Read ``source``, fix its input values and shapes, clean it up and apply the fix-ups.

    ``input_values`` (name -> value, see :mod:`.input_values`) turns inputs into
    constants first: they are no longer inputs of the prepared model.
    """
    read = read_onnx(source)
    where = read.source_path
    # A QDQ model becomes its float graph here, before the clean-up folds the
    # DequantizeLinear of each weight away; its numbers are kept aside.
    stripped, quant = strip_qdq(read.model, where)
    original = fix_input_values(stripped, input_values or {}, where)
    shapes = resolve_input_shapes(original, input_shapes, where)
    declared = declared_inputs(original)
    model = onnx.ModelProto()
    model.CopyFrom(original)
    fix_input_shapes(model, shapes)
    model = apply_fixups(clean_up(model, where))
    dtypes = {t.name: t.dtype for t in declared}
    inputs = tuple(
        TensorInfo(name=v.name, shape=shapes[v.name], dtype=dtypes[v.name])
        for v in graph_inputs(original)
    )
    # The node structure by the file's names, for any model (QDQ ones add their numbers).
    nothing = SourceGraph(inputs=(), nodes=(), outputs=())
    empty = SourceQuant(format="onnx", activations={}, weights={}, graph=nothing)
    structure = source_graph(model, quant or empty)
    return PreparedModel(
        model=model,
        original=original,
        shapes=shapes,
        inputs=inputs,
        declared=declared,
        opset=default_opset(original),
        source_path=where,
        source_sha256=read.source_sha256,
        source_quant=structure if quant is not None else None,
        source_graph=structure.graph,
    )
