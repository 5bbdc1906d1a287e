"""Post-training quantization in one call: float Relax module + samples -> QuantizedModel.

The stages, in the order :func:`quantize_module` runs them (midend/pipeline.py
lists the same order):

1. ``extract``  — the layer graph (:func:`~.extract.extract_graph`);
2. ``observe``  — statistics of every float tensor over the calibration
   samples (:func:`~.calibrate.calibrate`);
3. ``ranges`` + ``quantize`` + ``derive`` — ranges by strategy, int8 weights,
   NPU integer parameters (:func:`~.quantize.quantize_model`);
4. ``bias_correction`` — optional (:func:`~.bias_correction.correct_bias`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import tvm

from npuc.core.errors import InvalidInputError
from npuc.frontend.source_quant import SourceQuant

from .bias_correction import correct_bias
from .calibrate import calibrate
from .config import QuantConfig
from .extract import extract_graph
from .float_exec import FloatExecutor
from .observers import SENTINEL_ABS
from .prequant import NOTE, datapath_changes, plan_prequant
from .qmodel import QuantizedModel
from .quantize import FixedQuant, quantize_model

BATCH = 8
"""Samples run together through the executors when the graph allows it (BLAS efficiency)."""


def batched(samples: list[Mapping[str, np.ndarray]], size: int) -> list[dict[str, np.ndarray]]:
    """Stack consecutive batch-1 samples along axis 0, ``size`` at a time."""
    if size <= 1:
        return [dict(s) for s in samples]
    out = []
    for start in range(0, len(samples), size):
        group = samples[start : start + size]
        out.append({k: np.concatenate([np.asarray(s[k]) for s in group], axis=0) for k in group[0]})
    return out


def _plain(value: np.ndarray) -> bool:
    """True unless a float array holds NaN, +-inf or sentinels (``|x| >= 1e30``)."""
    value = np.asarray(value)
    return not np.issubdtype(value.dtype, np.floating) or bool((np.abs(value) < SENTINEL_ABS).all())


def quantize_module(
    mod: tvm.IRModule,
    samples: Iterable[Mapping[str, np.ndarray]],
    config: QuantConfig | None = None,
    *,
    calibration: Mapping[str, Any] | None = None,
    show_progress: bool = False,
) -> QuantizedModel:
    """Quantize a midend-optimised float module on ``samples``.

    Parameters
    ----------
    mod
        After :func:`npuc.midend.pipeline.graph_passes` (static shapes).
    samples
        Re-iterable calibration samples (dicts of input arrays), e.g. a
        :class:`~.calib_set.CalibrationSet`; at most ``calibration_samples`` used.
    config
        Options; default :class:`~.config.QuantConfig()`.
    calibration
        Metadata kept in the model for reports (source, ``is_random``).

    Raises
    ------
    InvalidInputError
        No samples, or a sample that does not fit the model.
    UnsupportedError
        A layer whose parameters the NPU cannot represent.
    """
    config = config or QuantConfig()
    graph = extract_graph(mod)
    executor = FloatExecutor(graph)
    limit = config.calibration_samples or None
    chosen = list(itertools.islice(samples, limit))
    if not chosen:
        raise InvalidInputError(
            "no calibration samples",
            hint="pass --calib with representative inputs (or --calib random to try the flow)",
        )
    batches = batched(chosen, BATCH if executor.batchable else 1)
    observers, seen = calibrate(
        graph, batches, config, executor=executor, total=len(chosen), show_progress=show_progress
    )
    meta = {**dict(calibration or {}), "samples": seen}
    model = quantize_model(graph, observers, config, calibration=meta)
    if config.bias_correction:
        # Samples with infinities or sentinels (kept only under trim_infinity) would turn
        # the measured bias errors into NaN: correct on the others.
        usable = [s for s in chosen if all(_plain(v) for v in s.values())]
        subset = usable[: config.bias_correction_samples or None]
        if subset:
            model, _ = correct_bias(model, batched(subset, BATCH if executor.batchable else 1))
    return model


def quantize_prequantized(
    mod: tvm.IRModule,
    source: SourceQuant,
    config: QuantConfig | None = None,
    *,
    samples: Iterable[Mapping[str, np.ndarray]] | None = None,
    show_progress: bool = False,
) -> QuantizedModel:
    """Quantize a pre-quantized (QDQ) model with its own scales: no calibration needed.

    Parameters
    ----------
    mod
        The float module the importer made from the file, after
        :func:`npuc.midend.pipeline.graph_passes`.
    source
        The file's recorded quantization (``ImportedModel.source_quant``).
    config
        Options; the range strategies, weight modes, concat unification and
        bias correction do not apply (the file decides those numbers).
    samples
        Optional calibration samples: only the tensors the file leaves float
        are calibrated from them (those layers otherwise run float on the CPU).

    Returns
    -------
    QuantizedModel
        ``calibration`` holds ``pre_quantized: True``, ``note``,
        ``forced_changes`` (one dict per :class:`~.prequant.ForcedChange`),
        ``source_nodes`` (layer -> the source model's node names) and
        ``unmatched_layers`` (layers no source node was found for).

    Raises
    ------
    UnsupportedError
        A layer whose parameters the NPU cannot represent.
    """
    config = replace(config or QuantConfig(), unify_scales_for_concat=False, bias_correction=False)
    graph = extract_graph(mod)
    observers: dict[str, Any] = {}
    meta: dict[str, Any] = {"source": "model", "pre_quantized": True, "note": NOTE}
    if samples is not None:
        executor = FloatExecutor(graph)
        chosen = list(itertools.islice(samples, config.calibration_samples or None))
        if chosen:
            batches = batched(chosen, BATCH if executor.batchable else 1)
            observers, seen = calibrate(
                graph, batches, config, executor=executor, total=len(chosen),
                show_progress=show_progress,
            )  # fmt: skip
            meta["samples"] = seen
    plan = plan_prequant(graph, source, calibrated=frozenset(observers))
    fixed = FixedQuant(tensors=plan.tensors, weights=plan.weights, float_layers=plan.float_layers)
    model = quantize_model(graph, observers, config, calibration=meta, fixed=fixed)
    changes = [*plan.changes, *datapath_changes(model, plan)]
    calibration = {
        **model.calibration,
        "forced_changes": [c.to_json() for c in changes],
        "source_notes": list(source.notes),
        "unmatched_layers": list(plan.names.unmatched),
        "source_nodes": {layer: list(nodes) for layer, nodes in plan.names.layers.items()},
    }
    return replace(model, calibration=calibration)
