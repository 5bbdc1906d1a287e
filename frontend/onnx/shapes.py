"""Fixing a model's input shapes to static ones.

Guarantees: after :func:`fix_input_shapes` every graph input (initializers
excluded) of the returned model has only positive integer dimensions, taken
from the model or from the user's ``input_shapes``. Every inconsistency
raises :class:`~npuc.core.errors.InvalidInputError` naming the input: an unknown
input name, a wrong rank, a value that contradicts a fixed dimension, or a
symbolic dimension nobody fixed (the message shows the ``--input-shape`` flag
to pass). What is valid ONNX but cannot be compiled raises
:class:`~npuc.core.errors.UnsupportedError` instead: a sequence, optional or map
input, and a 0-sized dimension (an empty tensor), declared or given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.model_info import TensorInfo

Dim = int | str


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs that are real inputs (initializers listed as inputs excluded)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def declared_dims(value: onnx.ValueInfoProto) -> tuple[Dim, ...] | None:
    """Dims as declared: ints for fixed, the dim_param (or ``"?"``) for open ones.

    ``None`` when the model does not declare the rank at all.
    """
    ttype = value.type.tensor_type
    if not ttype.HasField("shape"):
        return None
    dims: list[Dim] = []
    for d in ttype.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return tuple(dims)


def dtype_name(value: onnx.ValueInfoProto) -> str:
    """numpy-style dtype name (``"float32"``) of a tensor value."""
    elem = value.type.tensor_type.elem_type
    return onnx.helper.tensor_dtype_to_np_dtype(elem).name if elem else "unknown"


def declared_inputs(model: onnx.ModelProto) -> tuple[TensorInfo, ...]:
    """The inputs as the model declares them (symbolic dims kept as strings)."""
    return tuple(
        TensorInfo(name=v.name, shape=declared_dims(v) or (), dtype=dtype_name(v))
        for v in graph_inputs(model)
    )


def _flag_example(name: str, dims: Sequence[Dim]) -> str:
    shown = "x".join(str(d) if isinstance(d, int) else "N" for d in dims) or "N"
    return f"--input-shape {name}={shown}"


def resolve_input_shapes(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None, where: str
) -> dict[str, tuple[int, ...]]:
    """Static shape of every input, from the model and ``input_shapes``.

    Parameters
    ----------
    model
        The model whose inputs to resolve.
    input_shapes
        User-given shapes by input name; may cover fixed inputs too (they must
        agree with the model).
    where
        The model's path, for messages.
    """
    given = dict(input_shapes or {})
    inputs = graph_inputs(model)
    names = [v.name for v in inputs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidInputError(
            f"{where}: --input-shape names {', '.join(repr(n) for n in unknown)}, "
            f"but the model's inputs are {', '.join(repr(n) for n in names) or 'none'}",
            hint="use one of the model's input names (see `npuc inspect`)",
        )
    for value in inputs:
        _require_compilable(value, where)
    resolved: dict[str, tuple[int, ...]] = {}
    missing: list[str] = []
    for value in inputs:
        dims = declared_dims(value)
        if value.name in given:
            resolved[value.name] = _merge(value.name, dims, given[value.name], where)
            continue
        if dims is None:
            missing.append(f"{value.name!r} (rank unknown)")
            continue
        open_dims = [d for d in dims if isinstance(d, str)]
        if open_dims:
            missing.append(
                f"{value.name!r} (shape {'x'.join(map(str, dims))}, symbolic dims "
                f"{', '.join(map(str, open_dims))}; pass {_flag_example(value.name, dims)})"
            )
            continue
        resolved[value.name] = tuple(int(d) for d in dims)
    if missing:
        raise InvalidInputError(
            f"{where}: input shapes are not fixed for {'; '.join(missing)}",
            hint="give every symbolic dimension a value with --input-shape name=AxBxC "
            "(repeatable; replace N by the size you will run with)",
        )
    return resolved


def _require_compilable(value: onnx.ValueInfoProto, where: str) -> None:
    """Raise UnsupportedError for a valid input npuc cannot compile."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        what = (kind or "untyped").removesuffix("_type")
        raise UnsupportedError(
            f"{where}: input {value.name!r} is a {what} value, not a tensor; "
            "npuc compiles tensor inputs only",
            hint="export the model with tensor inputs (unpack sequences and optionals)",
        )
    ttype = value.type.tensor_type
    if ttype.HasField("shape") and any(
        d.HasField("dim_value") and d.dim_value == 0 for d in ttype.shape.dim
    ):
        raise _empty_input(value.name, where)


def _empty_input(name: str, where: str) -> UnsupportedError:
    return UnsupportedError(
        f"{where}: input {name!r} has a 0-sized dimension (an empty tensor); "
        "npuc compiles non-empty tensors only",
        hint="give every dimension a size >= 1 (with --input-shape for symbolic ones)",
    )


def _merge(
    name: str, dims: tuple[Dim, ...] | None, shape: Sequence[int], where: str
) -> tuple[int, ...]:
    try:
        given = tuple(int(d) for d in shape)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where}: shape for input {name!r} is not a list of ints") from exc
    if any(d < 0 for d in given):
        raise InvalidInputError(
            f"{where}: shape {given} for input {name!r} has a negative dimension",
            hint="every dimension must be >= 1",
        )
    if 0 in given:
        raise _empty_input(name, where)
    if dims is None:
        return given
    if len(given) != len(dims):
        raise InvalidInputError(
            f"{where}: input {name!r} has rank {len(dims)} (shape {'x'.join(map(str, dims))}) "
            f"but --input-shape gives rank {len(given)} ({'x'.join(map(str, given))})",
            hint=f"pass {_flag_example(name, dims)}",
        )
    for axis, (want, got) in enumerate(zip(dims, given, strict=True)):
        if isinstance(want, int) and want != got:
            raise InvalidInputError(
                f"{where}: input {name!r} has fixed size {want} on axis {axis}, "
                f"but --input-shape gives {got}",
                hint=f"keep the fixed dims: {_flag_example(name, dims)}",
            )
    return given


def fix_input_shapes(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> None:
    """Write ``shapes`` into the model's input declarations (in place).

    Intermediate ``value_info`` and output shapes that carried the old
    symbolic dims are cleared so shape inference recomputes them.
    """
    for value in model.graph.input:
        if value.name not in shapes:
            continue
        shape = value.type.tensor_type.shape
        shape.ClearField("dim")
        for d in shapes[value.name]:
            shape.dim.add().dim_value = int(d)
    del model.graph.value_info[:]
    for value in model.graph.output:
        if any(not d.HasField("dim_value") for d in value.type.tensor_type.shape.dim):
            value.type.tensor_type.ClearField("shape")
