"""``npuc build --target cpu --precision int8``: a float model + calibration data -> an
integer CPU library (``model.so`` + ``model.so.json``) bit-exact with the integer executor.

Stages: import and graph passes, quantization on the calibration samples
exactly as ``npuc build --target npu`` does it (same options, same
:class:`~npuc.midend.quantize.qmodel.QuantizedModel`; a pre-quantized QDQ
model keeps its own scales), :func:`~.module.lower_model` with float inputs,
:func:`npuc.backend.cpu.build.build_library`.

Interface of the library: the model's float inputs (quantized at the model
boundary with round half to even, as the executor does); outputs as the
integer executor holds them — an integer layer's output is its *stored
integers* (the quantized storage type, e.g. int8), a float CPU layer's output
is float32. The sidecar's ``model.outputs`` give those dtypes and
``model.extra["quantized_outputs"]`` the scale, zero point and storage type
of each integer output (``real = (q - zero_point) * scale``), so
``npuc run model.so`` prints exactly what ``npuc run model.npuc --engine ref
--raw`` prints for an NPU build from the same calibration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from npuc.backend.cpu.build import BuildResult, build_library
from npuc.core.model_info import ModelInfo, TensorInfo
from npuc.core.progress import Progress
from npuc.core.target import CpuTarget
from npuc.midend.quantize.config import QuantConfig
from npuc.midend.quantize.qmodel import QuantizedModel

from .module import holds_integers, lower_model


@dataclass(frozen=True, slots=True, kw_only=True)
class Int8Build:
    """What an integer CPU build wrote (``result``) and the quantized model it compiled."""

    result: BuildResult
    qm: QuantizedModel


def quantize_source(
    source: Path,
    calib: str | None,
    *,
    config: QuantConfig | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    calib_limit: int | None = None,
) -> tuple[QuantizedModel, ModelInfo]:
    """The model at ``source`` quantized on ``calib`` (a folder, .npz/.npy or ``"random"``).

    Raises
    ------
    InvalidInputError
        No calibration data for a float model, bad data or options (named).
    UnsupportedError
        A model the frontend or the quantizer cannot handle.
    """
    from npuc.core.errors import InvalidInputError
    from npuc.frontend import load
    from npuc.midend.pipeline import Pipeline, graph_passes
    from npuc.midend.quantize.api import quantize_module, quantize_prequantized
    from npuc.midend.quantize.calib_data import load_calibration
    from npuc.midend.quantize.calib_set import calibration_samples
    from npuc.midend.quantize.config_names import config_by_source_names

    imported = load(source, input_shapes=input_shapes)
    if calib is None and imported.source_quant is None:
        raise InvalidInputError(
            "--precision int8 needs calibration data",
            hint="pass --calib DIR|FILE.npz (or --calib random to try the flow)",
        )
    info = imported.info
    mod = Pipeline(graph_passes())(imported.mod)
    config = config_by_source_names(config, mod, imported.source_graph)
    if imported.source_quant is not None:
        given = load_calibration(calib, info.inputs, limit=calib_limit) if calib else None
        return quantize_prequantized(mod, imported.source_quant, config, samples=given), info
    assert calib is not None
    data_set = load_calibration(calib, info.inputs, limit=calib_limit)
    meta = {"source": Path(str(calib)).name, "is_random": bool(data_set.is_random)}
    trim = bool(config is not None and config.trim_infinity)
    samples = calibration_samples(
        data_set, limit=(config.calibration_samples if config else 0) or None, trim_infinity=trim
    )
    with np.errstate(all="ignore" if trim else "warn"):
        return quantize_module(mod, samples, config, calibration=meta), info


def library_info(qm: QuantizedModel, info: ModelInfo) -> ModelInfo:
    """``info`` with each output's dtype as the library returns it and the output quantization.

    Outputs are matched to the graph's by position (the frontend keeps the order).
    """
    outputs = []
    quantized: dict[str, dict[str, Any]] = {}
    for tensor, name in zip(info.outputs, qm.graph.outputs, strict=True):
        if holds_integers(qm, name):
            q = qm.tensors[name]
            quantized[tensor.name] = {
                "scale": q.scale,
                "zero_point": q.zero_point,
                "dtype": q.dtype,
            }
            tensor = TensorInfo(name=tensor.name, shape=tensor.shape, dtype=q.dtype)
        outputs.append(tensor)
    extra = {**info.extra, "precision": "int8", "quantized_outputs": quantized}
    return dataclasses.replace(info, outputs=tuple(outputs), extra=extra)


def build_int8_library(
    source: Path,
    out_path: Path,
    calib: str | None,
    target: CpuTarget,
    *,
    config: QuantConfig | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    calib_limit: int | None = None,
    progress: Progress | None = None,
) -> Int8Build:
    """Quantize ``source``, lower it to the integer CPU path and write ``out_path`` (+ sidecar).

    Raises InvalidInputError / UnsupportedError as :func:`quantize_source`
    and :func:`~npuc.backend.cpu.build.build_library` do; calibration notes
    (e.g. random data) are Python warnings, for the caller to show.
    """
    qm, info = quantize_source(
        source, calib, config=config, input_shapes=input_shapes, calib_limit=calib_limit
    )
    mod = lower_model(qm)
    result = build_library(mod, library_info(qm, info), target, out_path, progress=progress)
    return Int8Build(result=result, qm=qm)
