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
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class DeclaredInputs:
    """A model's inputs as numpy dtypes and static shapes, for :meth:`exact_arrays`.

    Why: :class:`~npuc.runtime.compiled_model.CompiledModel` checks its inputs on every
    run, right after the previous run's kernels left the caches cold for Python's code
    and data. Measured on the orientation classifier's int8 AVX2 library at two threads
    (per-step time stamps, one process): :func:`check_inputs` 35-55 us per run, 165 us
    in the second run after a 50 ms pause; this check 6-8 us. Anything it does not
    accept goes through :func:`check_inputs`, so errors are unchanged.
    """

    entries: tuple[tuple[str, np.dtype, tuple[int, ...]], ...]

    @staticmethod
    def of(info: ModelInfo) -> DeclaredInputs | None:
        """The declared inputs of ``info``; ``None`` when a dimension is not an ``int``
        (symbolic, or a malformed sidecar's) or a dtype is not numpy's (only
        :func:`check_inputs` handles those)."""
        entries = []
        for t in info.inputs:
            shape = tuple(d for d in t.shape if isinstance(d, int))
            if len(shape) != len(t.shape):
                return None
            try:
                entries.append((t.name, np.dtype(t.dtype), shape))
            except TypeError:
                return None
        return DeclaredInputs(tuple(entries))

    def exact_arrays(self, inputs: Mapping[str, object]) -> list[np.ndarray] | None:
        """The arrays of ``inputs`` (a ``dict``) in declared order when they are exactly the
        declared inputs (same names, ``np.ndarray`` itself, dtype, shape, C-contiguous), the same
        list :func:`check_inputs` returns for them; else ``None``: call
        :func:`check_inputs`, which accepts or names what is wrong."""
        if type(inputs) is not dict or len(inputs) != len(self.entries):
            return None
        arrays: list[np.ndarray] = []
        for name, dtype, shape in self.entries:
            value = inputs.get(name)
            if (
                type(value) is not np.ndarray
                or value.dtype != dtype
                or value.shape != shape
                or not value.flags.c_contiguous
            ):
                return None
            arrays.append(value)
        return arrays
