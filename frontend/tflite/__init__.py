"""TFLite flatbuffer -> Relax IRModule (float models, NHWC).

:func:`load_tflite` reads a ``.tflite`` file, checks it, reports every
operator it cannot import at once (:class:`npuc.core.errors.UnsupportedError`),
and converts the main subgraph with TVM's Relax TFLite importer plus npuc's
fixes (:mod:`npuc.frontend.tflite.converter`). It guarantees: the returned
module's ``main`` takes the model's inputs in subgraph order under their
TFLite tensor names, its weights are bound as constants, and ``info``
describes inputs/outputs with ``layout="NHWC"`` and ``source_format="tflite"``.
No optimisation happens here. This module imports tvm lazily.

A full-integer model (int8/uint8 activations with quantization parameters)
is imported as a float graph and its own scales, zero points and int8
weights come back as ``ImportedModel.source_quant``
(:mod:`npuc.frontend.tflite.quantized`); its int8 inputs become float32.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.fileio import sha256_file
from npuc.core.model_info import ModelInfo
from npuc.frontend.imported import ImportedModel
from npuc.frontend.tflite.read import read_tflite

__all__ = ["load_tflite"]


def load_tflite(
    path: str | os.PathLike[str],
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> ImportedModel:
    """Import a float or full-integer TFLite model (module docstring).

    Parameters
    ----------
    path
        A ``.tflite`` flatbuffer.
    input_shapes
        Optional new static shapes by input tensor name (same rank as in the
        model); unknown names are an error.

    Returns
    -------
    ImportedModel
        ``(mod, info)``: the Relax module and its :class:`ModelInfo`; for a
        full-integer model also ``source_quant`` and ``source_graph``.

    Raises
    ------
    InvalidInputError
        The file is missing, not a TFLite flatbuffer, or ``input_shapes`` is wrong.
    UnsupportedError
        Some operators cannot be imported; the message lists all of them.
    """
    path = Path(path)
    model = read_tflite(path)
    subgraph = model.Subgraphs(0)
    shape_dict = _checked_shapes(path, subgraph, input_shapes)

    import tvm
    from tvm import relax
    from tvm.relax.frontend.tflite import from_tflite

    from npuc.frontend.tflite import quantized
    from npuc.frontend.tflite.converter import ConversionFailure, NpucTFLiteConverter
    from npuc.frontend.tflite.interface import main_inputs, main_outputs

    full_int = quantized.is_full_integer(model, subgraph)
    converter = quantized.Int8AsFloatConverter if full_int else NpucTFLiteConverter
    probe = converter(model, subgraph, None, relax.BlockBuilder())
    problems = probe.unsupported_ops()
    if problems:
        raise _unsupported(path, [p.describe() for p in problems])
    dtypes = quantized.input_dtypes(subgraph) if full_int else None
    source_quant = None
    if full_int:
        source_quant = quantized.read_source_quant(
            model, subgraph, lambda op: probe.op_name(op)[0], []
        )
    try:
        mod = from_tflite(model, shape_dict=shape_dict, dtype_dict=dtypes, op_converter=converter)
    except ConversionFailure as err:
        raise _unsupported(path, [err.problem.describe()]) from err
    except (tvm.error.OpNotImplemented, NotImplementedError) as err:
        raise _unsupported(path, [str(err).strip()]) from err
    # The importer also copies every weight into a "params" attribute; the
    # constants are already bound in the body, so drop the duplicate.
    mod["main"] = mod["main"].without_attr("params")
    info = ModelInfo(
        source_path=str(path),
        source_format="tflite",
        source_sha256=sha256_file(path),
        inputs=main_inputs(mod),
        outputs=main_outputs(mod, _tensor_names(subgraph, subgraph.OutputsAsNumpy())),
        layout="NHWC",
        extra={"tflite_version": int(model.Version()), "operators": subgraph.OperatorsLength()},
    )
    graph = source_quant.graph if source_quant is not None else None
    return ImportedModel(mod, info, source_quant=source_quant, source_graph=graph)


def _tensor_names(subgraph: Any, indices: Sequence[int]) -> list[str]:
    from tvm.relax.frontend.tflite.tflite_frontend import get_tensor_name

    return [get_tensor_name(subgraph, int(i)) for i in indices]


def _checked_shapes(
    path: Path, subgraph: Any, input_shapes: Mapping[str, Sequence[int]] | None
) -> dict[str, tuple[int, ...]]:
    """Model input shapes as Python ints, with ``input_shapes`` applied and checked."""
    shapes: dict[str, tuple[int, ...]] = {}
    for index in subgraph.InputsAsNumpy():
        tensor = subgraph.Tensors(int(index))
        (name,) = _tensor_names(subgraph, [int(index)])
        shapes[name] = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    for name, shape in (input_shapes or {}).items():
        if name not in shapes:
            raise InvalidInputError(
                f"{path}: --input-shape names '{name}', which is not a model input",
                hint=f"inputs are: {', '.join(shapes) or '(none)'}",
            )
        new = tuple(int(d) for d in shape)
        if len(new) != len(shapes[name]) or any(d <= 0 for d in new):
            raise InvalidInputError(
                f"{path}: input '{name}' shape {list(new)} does not fit the model's "
                f"{list(shapes[name])}",
                hint="give positive sizes, one per dimension of the model's input",
            )
        shapes[name] = new
    return shapes


def _unsupported(path: Path, lines: list[str]) -> UnsupportedError:
    from npuc.frontend.tflite.quantized import HINT_INT8

    hint = "re-export the model without these operators (float32/fp16 builtins only)"
    return UnsupportedError(
        f"{path}: {len(lines)} operator(s) cannot be imported: {'; '.join(lines)}",
        hint=HINT_INT8 if any("quantiz" in line or "int16" in line for line in lines) else hint,
        nodes=lines,
    )
