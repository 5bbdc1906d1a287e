"""Flatbuffer plumbing shared by the in-memory TFLite model builders of the tests.

:func:`finish_model` writes the subgraph, buffers and model tables the
``tflite`` package's generated builders need (no TensorFlow); the op and
tensor tables stay with each builder (``tests/frontend/test_tflite_ops.py``,
``tests/tooling/tflite_int8.py``).
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
import tflite


def ints(b: flatbuffers.Builder, values: list[int]) -> int:
    """An int32 vector."""
    return b.CreateNumpyVector(np.asarray(values, np.int32))


def offsets(b: flatbuffers.Builder, offs: list[int]) -> int:
    """A vector of table offsets."""
    b.StartVector(4, len(offs), 4)
    for off in reversed(offs):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def finish_model(
    b: flatbuffers.Builder,
    *,
    code_offs: list[int],
    tensor_offs: list[int],
    op_offs: list[int],
    inputs: list[int],
    outputs: list[int],
    buffers: list[bytes],
    path: Path,
) -> Path:
    """One subgraph of ``tensor_offs``/``op_offs`` with ``inputs``/``outputs`` (tensor
    indices), the ``buffers`` (empty bytes: no data) and the model table, written to
    ``path`` as a TFLite (``TFL3``) file."""
    t_vec, o_vec = offsets(b, tensor_offs), offsets(b, op_offs)
    in_vec, out_vec = ints(b, inputs), ints(b, outputs)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, t_vec)
    tflite.SubGraphAddOperators(b, o_vec)
    tflite.SubGraphAddInputs(b, in_vec)
    tflite.SubGraphAddOutputs(b, out_vec)
    sub = tflite.SubGraphEnd(b)
    buf_offs = []
    for data in buffers:
        vec = b.CreateNumpyVector(np.frombuffer(data, np.uint8)) if data else None
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        buf_offs.append(tflite.BufferEnd(b))
    c_vec, s_vec, b_vec = offsets(b, code_offs), offsets(b, [sub]), offsets(b, buf_offs)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, c_vec)
    tflite.ModelAddSubgraphs(b, s_vec)
    tflite.ModelAddBuffers(b, b_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path
