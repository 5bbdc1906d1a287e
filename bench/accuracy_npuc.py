"""npuc's column of bench/accuracy.py: quantize, then evaluate on the integer executor.

``quantize`` uses ``npuc.driver.quantize_file`` when the driver has it, else
the pipeline underneath (frontend load -> graph passes -> extract -> calibrate
-> quantize_model). Every number is computed by
:class:`npuc.midend.quantize.int_exec.IntegerExecutor`, never by fake-quant.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from npuc.midend.quantize.config import LayerQuantConfig, QuantConfig
from npuc.midend.quantize.int_exec import IntegerExecutor

Feeds = dict[str, np.ndarray]


def _lower_level(path: Path, calib: list[Feeds], config: QuantConfig) -> Any:
    from npuc.frontend import load
    from npuc.midend.pipeline import Pipeline, graph_passes
    from npuc.midend.quantize.api import quantize_module

    name = next(iter(calib[0]))
    mod, _info = load(str(path), input_shapes={name: tuple(calib[0][name].shape)})
    return quantize_module(Pipeline(graph_passes())(mod), calib, config)


def quantize(path: Path, calib: list[Feeds], config: QuantConfig) -> tuple[Any, str]:
    """``(quantized model, api used)`` for ``path`` calibrated on ``calib``."""
    try:
        from npuc.driver import quantize_file  # type: ignore[attr-defined]
    except ImportError:
        api = "midend.quantize.api.quantize_module (npuc.driver.quantize_file not there yet)"
        return _lower_level(path, calib, config), api
    name = next(iter(calib[0]))
    qmodel = quantize_file(
        str(path), calib=calib, config=config, input_shapes={name: calib[0][name].shape}
    )
    return qmodel, "npuc.driver.quantize_file"


def evaluate(qmodel: Any, feeds: list[Feeds]) -> list[np.ndarray]:
    """First graph output of every feed, dequantized to float32."""
    ix = IntegerExecutor(qmodel)
    out_name = qmodel.graph.outputs[0]
    outs = []
    for f in feeds:
        value = ix.run(f)[out_name]
        value = value.dequantize() if hasattr(value, "dequantize") else value
        outs.append(np.asarray(value, np.float32))
    return outs


def config_for(strategy: str | None, *, bias_correction: bool = True) -> QuantConfig:
    """W8A8 per-channel weights, asymmetric int8 activations; ``None``: npuc's default strategy."""
    if strategy is None:
        return QuantConfig(bias_correction=bias_correction)
    return QuantConfig(
        default=LayerQuantConfig(q_strategy_activation=strategy),
        bias_correction=bias_correction,
    )


def run_setting(
    path: Path,
    calib: list[Feeds],
    feeds: list[Feeds],
    config: QuantConfig,
    score: Callable[[list[np.ndarray]], dict[str, float]],
) -> tuple[dict[str, float], float, float, str]:
    """``(metrics, quantize seconds, evaluate seconds, api)`` of one npuc setting."""
    t0 = time.perf_counter()
    qmodel, api = quantize(path, calib, config)
    t1 = time.perf_counter()
    metrics = score(evaluate(qmodel, feeds))
    return metrics, t1 - t0, time.perf_counter() - t1, api
