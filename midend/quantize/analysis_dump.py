"""Dump every tensor of one sample: float, fake-quant and integer (Zhouyi's dump, tpu-mlir's npz).

:func:`dump_tensors` writes, into a directory, one ``.npz`` file per kind of
run, each keyed by tensor name (graph inputs and every layer, the names of
the per-layer config and the report):

==========================  ===================================================
``float.npz``               the float model's tensors, float32
``fakequant.npz``           the fake-quant executor's tensors, float32
``integer.npz``             the integer executor's tensors dequantized, float32
                            (compare directly with ``float.npz``)
``integer_stored.npz``      the stored integers of the integer tensors only
                            (int8 / uint8 / int16, as the NPU holds them)
``qparams.json``            ``{tensor: {"scale", "zero_point", "dtype"}}`` for
                            the tensors of ``integer_stored.npz``
==========================  ===================================================

Arrays keep the graph's layout (NCHW for ONNX models) and batch axis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError

from .fakequant_exec import FakeQuantExecutor
from .float_exec import FloatExecutor
from .int_exec import IntegerExecutor, IntTensor
from .qmodel import QuantizedModel

DUMP_FILES = ("float.npz", "fakequant.npz", "integer.npz", "integer_stored.npz", "qparams.json")
_STORED = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16}


def dump_tensors(
    model: QuantizedModel,
    feeds: Mapping[str, np.ndarray],
    directory: str | Path,
    *,
    float_executor: FloatExecutor | None = None,
    integer_executor: IntegerExecutor | None = None,
) -> list[Path]:
    """Write the files of the module table for one sample; returns their paths.

    Raises
    ------
    InvalidInputError
        ``directory`` exists as a file or cannot be created, or ``feeds`` lacks
        an input or has a wrong shape.
    """
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInputError(
            f"cannot create the dump directory {str(out)!r}: {err.strerror or err}",
            hint="pass a writable directory to --dump",
        ) from err
    fx = float_executor or (integer_executor.float if integer_executor else None)
    fx = fx or FloatExecutor(model.graph)
    ix = integer_executor or IntegerExecutor(model, fx)
    names = [n for n, _ in model.graph.inputs] + [n.name for n in model.graph.nodes]
    floats = fx.run(feeds)
    names = [n for n in names if isinstance(floats[n], np.ndarray)]  # no tuple-valued nodes
    fakes = FakeQuantExecutor(model, fx).run(feeds)
    ints = ix.run(feeds)
    stored: dict[str, np.ndarray] = {}
    qparams: dict[str, dict[str, object]] = {}
    for name in names:
        value = ints[name]
        if isinstance(value, IntTensor):
            q = value.qparams
            stored[name] = value.values.astype(_STORED[q.dtype])
            qparams[name] = {"scale": q.scale, "zero_point": q.zero_point, "dtype": q.dtype}
    tables: dict[str, dict[str, Any]] = {
        "float.npz": {n: np.asarray(floats[n], np.float32) for n in names},
        "fakequant.npz": {n: np.asarray(fakes[n], np.float32) for n in names},
        "integer.npz": {n: np.asarray(ix.as_float(ints[n]), np.float32) for n in names},
        "integer_stored.npz": stored,
    }
    paths = []
    for filename, arrays in tables.items():
        path = out / filename
        np.savez(path, allow_pickle=False, **arrays)
        paths.append(path)
    path = out / "qparams.json"
    path.write_text(json.dumps(qparams, indent=1) + "\n")
    paths.append(path)
    return paths
