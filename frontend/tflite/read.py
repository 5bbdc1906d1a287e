"""Reading a ``.tflite`` file and checking its flatbuffer before anything uses it.

Python's flatbuffers has no verifier: a truncated or corrupt file reads as
garbage or fails deep inside TVM with ``struct.error``. :func:`read_tflite`
walks every table the importer touches (operator codes, the main subgraph's
tensors and operators, buffers) and checks every index. Guarantees: it
returns a ``tflite.Model`` whose main subgraph is fully readable with all
tensor, buffer and opcode indices in range, or raises
:class:`~npuc.core.errors.InvalidInputError` naming the file and the bad part.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from npuc.core.errors import InvalidInputError, UnsupportedError

TFLITE_IDENTIFIER = b"TFL3"


def read_tflite(path: Path) -> Any:
    """Read, identify and structurally check the TFLite model at ``path``."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InvalidInputError(
            f"cannot read TFLite model {path}: {err.strerror or err}",
            hint="check the path and that the file is readable",
        ) from err
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise InvalidInputError(
            f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier at byte 4)",
            hint="pass a .tflite file written by the TFLite converter",
        )
    try:
        import tflite
    except ImportError as err:
        raise UnsupportedError(
            f"{path}: reading TFLite models needs the 'tflite' package, which is not installed",
            hint="pip install 'npuc[tflite]'",
        ) from err
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        problem = _first_problem(model)
    except (struct.error, IndexError, ValueError, UnicodeDecodeError):
        problem = f"a table points past the end of the file ({len(data)} bytes)"
    if problem is not None:
        raise InvalidInputError(
            f"{path}: corrupt or truncated TFLite flatbuffer: {problem}",
            hint="re-export the model; the file may have been cut short while copying",
        )
    return model


def _first_problem(model: Any) -> str | None:
    """A description of the first structural fault, or None; may raise struct.error."""
    if model.SubgraphsLength() < 1:
        return "the model has no subgraph"
    n_codes, n_buffers = model.OperatorCodesLength(), model.BuffersLength()
    for i in range(n_codes):
        code = model.OperatorCodes(i)
        code.BuiltinCode(), code.DeprecatedBuiltinCode(), code.CustomCode()
    for i in range(n_buffers):
        model.Buffers(i).DataAsNumpy()
    subgraph = model.Subgraphs(0)
    n_tensors = subgraph.TensorsLength()
    for i in range(n_tensors):
        tensor = subgraph.Tensors(i)
        tensor.ShapeAsNumpy(), tensor.Name(), tensor.Type(), tensor.Quantization()
        if not 0 <= tensor.Buffer() < max(n_buffers, 1):
            return f"tensor #{i} refers to buffer {tensor.Buffer()} of {n_buffers}"
    for kind, indices in (
        ("input", subgraph.InputsAsNumpy()),
        ("output", subgraph.OutputsAsNumpy()),
    ):
        bad = [int(t) for t in _as_list(indices) if not 0 <= int(t) < n_tensors]
        if bad:
            return f"graph {kind} tensor index {bad[0]} is out of range ({n_tensors} tensors)"
    for i in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(i)
        if not 0 <= op.OpcodeIndex() < n_codes:
            return f"operator #{i} uses opcode {op.OpcodeIndex()} of {n_codes}"
        for t in [*_as_list(op.InputsAsNumpy()), *_as_list(op.OutputsAsNumpy())]:
            if not -1 <= int(t) < n_tensors:  # -1 marks an omitted optional input
                return f"operator #{i} refers to tensor {int(t)} of {n_tensors}"
    return None


def _as_list(values: Any) -> list[int]:
    """flatbuffers returns 0 (not an empty array) for an absent vector."""
    return [] if isinstance(values, int) else [int(v) for v in values]
