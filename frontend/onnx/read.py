"""Reading an ONNX model from a path or a ModelProto.

Guarantees: the returned ``ModelProto`` is a private copy (the caller's proto
is never modified), has its external weights loaded, passes
``onnx.checker.check_model`` and has a graph. Every way a file can be wrong
(missing, a folder, not protobuf, truncated, missing external data, not a
model, a weight whose data size disagrees with its dims and type, an unknown
element type on a weight or a graph value) raises
:class:`~npuc.core.errors.InvalidInputError` naming the file and the tensor.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from npuc.core.errors import InvalidInputError
from npuc.core.fileio import sha256_file

IN_MEMORY = "<onnx.ModelProto>"
# onnx.checker demands a shape on every typed value, which the IR does not require.
_MISSING_SHAPE = "Field 'shape' of 'type' is required but missing"


@dataclass(frozen=True, slots=True)
class ReadModel:
    """A checked model and where it came from."""

    model: onnx.ModelProto
    source_path: str
    source_sha256: str


def read_onnx(source: str | os.PathLike[str] | onnx.ModelProto) -> ReadModel:
    """Read and check an ONNX model; see the module docstring for guarantees."""
    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString()
        model = onnx.ModelProto()
        model.CopyFrom(source)
        read = ReadModel(model, IN_MEMORY, hashlib.sha256(data).hexdigest())
    else:
        path = Path(source)
        read = ReadModel(_load_file(path), str(path), sha256_file(path))
    check_tensor_data(read.model, read.source_path)
    _check(read.model, read.source_path)
    return read


def _load_file(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise InvalidInputError(f"ONNX file {path} does not exist", hint="check the path")
    if path.is_dir():
        raise InvalidInputError(
            f"ONNX path {path} is a folder, not a file", hint="pass the .onnx file itself"
        )
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise InvalidInputError(
            f"{path} is not a valid ONNX file: its protobuf cannot be parsed ({exc})",
            hint="the file may be truncated or not an ONNX model; re-export or re-download it",
        ) from exc
    _load_external_data(model, path)
    return model


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Load weights stored beside the model; a missing data file is a clear error."""
    from onnx.external_data_helper import (
        ExternalDataInfo,
        load_external_data_for_model,
        uses_external_data,
    )

    base = path.parent
    for tensor in _all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        data_path = base / location
        if not data_path.is_file():
            raise InvalidInputError(
                f"{path}: weight {tensor.name!r} is stored in external data file "
                f"{location!r}, which is missing from {base}",
                hint="keep the model's external data files in the same folder as the .onnx file",
            )
    try:
        load_external_data_for_model(model, str(base))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise InvalidInputError(
            f"{path}: cannot load external weights ({exc})",
            hint="the external data file may be truncated; re-export the model",
        ) from exc


def _all_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    from onnx.external_data_helper import _get_all_tensors

    return list(_get_all_tensors(model))


def _check(model: onnx.ModelProto, where: str) -> None:
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise InvalidInputError(
            f"{where} is not an ONNX model: it has no graph",
            hint="pass a model exported to ONNX (e.g. with torch.onnx.export)",
        )
    if model.ir_version < 3:
        raise InvalidInputError(
            f"{where}: ONNX IR version {model.ir_version} is too old (npuc needs >= 3)",
            hint="upgrade the model with onnx.version_converter",
        )
    if model.ByteSize() >= onnx.checker.MAXIMUM_PROTOBUF:
        return  # the in-memory checker cannot take >2 GB; conversion still validates
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        if _MISSING_SHAPE in str(exc):
            return  # an output without a declared shape is legal ONNX; inference fills it
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(
            f"{where} is not a valid ONNX model: {first_line}",
            hint="the file may be truncated or hand-edited; re-export it",
        ) from exc


# Bits per element of the packed sub-byte types (2 or 4 elements to a byte).
_SUB_BYTE_BITS = {"int4": 4, "uint4": 4, "float4_e2m1fn": 4, "int2": 2, "uint2": 2}


def check_tensor_data(model: onnx.ModelProto, where: str) -> None:
    """Check every weight's element type and data size, and every graph value's type.

    Raises :class:`InvalidInputError` naming the tensor when a weight (initializer
    or ``Constant`` value) has an element type onnx does not define, or data
    whose size disagrees with its dims and type; or when a graph input, output
    or ``value_info`` entry declares an unknown element type.
    """
    for tensor in _weights(model):
        _check_weight(tensor, where)
    graph = model.graph
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in values:
            _check_value_type(value, kind, where)
    for value in graph.value_info:
        _check_value_type(value, "intermediate tensor", where)


def _weights(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    found = list(model.graph.initializer)
    for node in model.graph.node:
        found.extend(a.t for a in node.attribute if a.HasField("t"))
    return found


def _element_type(code: int) -> str | None:
    """numpy-style name of an ONNX element type code, or ``None`` when onnx does not know it."""
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(code).name)
    except (KeyError, ValueError, TypeError):
        return None


def _check_weight(tensor: onnx.TensorProto, where: str) -> None:
    from onnx import numpy_helper

    name = tensor.name or "<unnamed>"
    dtype = _element_type(tensor.data_type)
    if dtype is None or tensor.data_type == onnx.TensorProto.UNDEFINED:
        raise InvalidInputError(
            f"{where}: weight {name!r} has element type code {tensor.data_type}, "
            "which is not an ONNX tensor type",
            hint="the file is corrupt or was written by a broken exporter; re-export it",
        )
    if any(d < 0 for d in tensor.dims):
        raise InvalidInputError(
            f"{where}: weight {name!r} has a negative dimension ({list(tensor.dims)})",
            hint="the file is corrupt; re-export it",
        )
    count = 1
    for d in tensor.dims:
        count *= int(d)
    if tensor.HasField("raw_data") and tensor.data_location != onnx.TensorProto.EXTERNAL:
        bits = _SUB_BYTE_BITS.get(dtype)
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        expected = (count * bits + 7) // 8 if bits else count * itemsize
        if len(tensor.raw_data) != expected:
            raise InvalidInputError(
                f"{where}: weight {name!r} ({dtype}, shape {list(tensor.dims)}) should hold "
                f"{expected} bytes of data but holds {len(tensor.raw_data)}",
                hint="the file is truncated or corrupt; re-export it",
            )
        return
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return
    try:
        numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidInputError(
            f"{where}: weight {name!r} ({dtype}, shape {list(tensor.dims)}) has data that "
            f"does not fit its dims ({exc})",
            hint="the file is corrupt; re-export it",
        ) from exc


def _check_value_type(value: onnx.ValueInfoProto, kind: str, where: str) -> None:
    if value.type.WhichOneof("value") != "tensor_type":
        return
    code = value.type.tensor_type.elem_type
    if code and _element_type(code) is None:
        raise InvalidInputError(
            f"{where}: {kind} {value.name!r} has element type code {code}, "
            "which is not an ONNX tensor type",
            hint="the file is corrupt or was written by a broken exporter; re-export it",
        )
