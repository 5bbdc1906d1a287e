"""Fix ONNX graph inputs to constant values (``--input-value name=VALUE``).

A model may take an input that is constant in practice (a sample rate, a
mode flag) and branch on it with ``If``. Fixing it turns the input into an
initializer before clean-up, so constant folding evaluates what depends on
it and :mod:`npuc.frontend.fixups.inline_constant_if` replaces each ``If``
on it by the branch taken.

Guarantees: the returned model no longer has the fixed inputs; each value
has the input's element type and its declared shape (a single number fills
a one-element shape; symbolic dims take the value's sizes). Raises
:class:`~npuc.core.errors.InvalidInputError` naming the input for an unknown
name, a value that does not parse or does not fit the shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from npuc.core.errors import InvalidInputError
from npuc.frontend.onnx.shapes import declared_dims, dtype_name, graph_inputs

InputValues = Mapping[str, "str | float | int | np.ndarray"]


def parse_value(text: str, *, name: str) -> np.ndarray:
    """``"16000"``, ``"0.5"``, ``"1,2,3"`` or a ``.npy`` file -> an array (float64 or int64)."""
    if text.endswith(".npy"):
        path = Path(text)
        if not path.is_file():
            raise InvalidInputError(f"--input-value {name}: {text} is not a file")
        try:
            return np.asarray(np.load(path, allow_pickle=False))
        except (ValueError, OSError) as err:
            raise InvalidInputError(f"--input-value {name}: cannot read {text}: {err}") from err
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
        return np.asarray(values if len(values) > 1 else values[0], np.int64)
    except ValueError:
        pass
    try:
        floats = [float(p) for p in parts]
    except ValueError:
        raise InvalidInputError(
            f"--input-value {name}={text!r}: not a number, a comma-separated list or a .npy file",
            hint=f"e.g. --input-value {name}=16000",
        ) from None
    return np.asarray(floats if len(floats) > 1 else floats[0], np.float64)


def fix_input_values(model: onnx.ModelProto, values: InputValues, where: str) -> onnx.ModelProto:
    """A copy of ``model`` whose inputs named in ``values`` are initializers."""
    if not values:
        return model
    inputs = {v.name: v for v in graph_inputs(model)}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for name, raw in values.items():
        if name not in inputs:
            raise InvalidInputError(
                f"{where}: --input-value names {name!r}, which is not a model input",
                hint=f"inputs are: {', '.join(inputs) or '(none)'}",
            )
        value = raw if isinstance(raw, np.ndarray) else parse_value(str(raw), name=name)
        array = _fit(value, inputs[name], where)
        out.graph.initializer.append(numpy_helper.from_array(array, name))
        for index, declared in enumerate(out.graph.input):
            if declared.name == name:
                del out.graph.input[index]
                break
    return out


def _fit(value: np.ndarray, declared: onnx.ValueInfoProto, where: str) -> np.ndarray:
    dtype = np.dtype(dtype_name(declared))
    if np.issubdtype(dtype, np.integer) and not np.all(np.mod(value, 1) == 0):
        raise InvalidInputError(
            f"{where}: input {declared.name!r} is {dtype.name}; value {value.tolist()} is not whole"
        )
    dims = declared_dims(declared)
    array = np.asarray(value).astype(dtype)
    if dims is None:
        return array
    if all(isinstance(d, int) for d in dims):
        shape = tuple(int(d) for d in dims)
        if array.size != math.prod(shape):
            raise InvalidInputError(
                f"{where}: input {declared.name!r} has shape {list(shape)}; "
                f"value {array.tolist()} has {array.size} element(s)"
            )
        return array.reshape(shape)
    if array.ndim != len(dims):
        raise InvalidInputError(
            f"{where}: input {declared.name!r} has rank {len(dims)}; "
            f"the value has rank {array.ndim}",
            hint="give the value as a .npy file of the input's rank",
        )
    return array
