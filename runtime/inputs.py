"""Check user inputs against a model's interface before running it.

Guarantees: the arrays returned by :func:`check_inputs` are exactly the
model's inputs, in :class:`~npuc.core.model_info.ModelInfo` order, C-contiguous,
with the declared shapes and dtypes (a symbolic dimension, which only
in-memory modules carry, matches any size). Nothing is cast or reshaped silently:
any mismatch raises :class:`~npuc.core.errors.InvalidInputError` naming the input,
what was expected and what was given.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.model_info import ModelInfo, TensorInfo


def _describe(tensor: TensorInfo) -> str:
    return f"{tensor.name} ({tensor.shape_str()} {tensor.dtype})"


def _shape_matches(got: tuple[int, ...], expected: tuple[int | str, ...]) -> bool:
    """Equal rank and sizes; a symbolic (named) dimension matches any size."""
    return len(got) == len(expected) and all(
        isinstance(e, str) or g == e for g, e in zip(got, expected, strict=True)
    )


def check_declared(
    tensor: TensorInfo, shape: tuple[int, ...], dtype: np.dtype, *, source: str = ""
) -> None:
    """Raise InvalidInputError unless ``shape``/``dtype`` are what ``tensor`` declares.

    ``source`` (e.g. ``" (in x.npy)"``) ends the message. Used on arrays and on
    ``.npy`` headers before their data is read.
    """
    if str(dtype) != tensor.dtype:
        raise InvalidInputError(
            f"input {tensor.name!r}: expected dtype {tensor.dtype}, got {dtype}{source}",
            hint=f"convert it first, e.g. x.astype(np.{tensor.dtype})",
        )
    if not _shape_matches(shape, tensor.shape):
        want = "x".join(str(d) for d in tensor.shape) if tensor.shape else "scalar"
        got = "x".join(str(d) for d in shape) if shape else "scalar"
        raise InvalidInputError(
            f"input {tensor.name!r}: expected shape {want}, got {got}{source}",
            hint="the library was compiled for fixed shapes; rebuild with --input-shape "
            "to change them",
        )


def check_inputs(info: ModelInfo, inputs: Mapping[str, object]) -> list[np.ndarray]:
    """Validate ``inputs`` (name -> array) against ``info.inputs``; return them in order."""
    expected_names = [t.name for t in info.inputs]
    unknown = [name for name in inputs if info.input_named(name) is None]
    if unknown:
        raise InvalidInputError(
            f"unknown input {unknown[0]!r}; the model's inputs are "
            + ", ".join(_describe(t) for t in info.inputs),
            hint="name each input as the model does",
        )
    missing = [name for name in expected_names if name not in inputs]
    if missing:
        raise InvalidInputError(
            f"missing input {missing[0]!r}; the model's inputs are "
            + ", ".join(_describe(t) for t in info.inputs),
            hint="give a value for every input",
        )
    arrays: list[np.ndarray] = []
    for tensor in info.inputs:
        value = inputs[tensor.name]
        if not isinstance(value, np.ndarray):
            raise InvalidInputError(
                f"input {tensor.name!r}: expected a numpy array, got {type(value).__name__}"
            )
        check_declared(tensor, value.shape, value.dtype)
        arrays.append(np.asarray(value, order="C"))  # ascontiguousarray would make 0-d 1-d
    return arrays
