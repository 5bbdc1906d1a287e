"""The chosen scheme and range of each layer, and weight-outlier warnings, for the report.

:func:`layer_scheme` reads a :class:`~.qmodel.QuantizedModel`'s tensor
parameters, ranges and per-layer config into a JSON-ready dict;
:func:`weight_warnings` runs :mod:`.weight_outliers` on every integer
conv/FC layer's float weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .qmodel import QuantizedModel
from .weight_outliers import find_weight_outliers


def layer_scheme(model: QuantizedModel, name: str) -> dict[str, Any]:
    """The chosen scheme and range of the tensor/layer ``name`` (JSON-ready)."""
    scheme: dict[str, Any] = {}
    q = model.tensors.get(name)
    if q is not None:
        scheme.update(dtype=q.dtype, scale=float(q.scale), zero_point=int(q.zero_point))
    if name in model.ranges:
        lo, hi = model.ranges[name]
        scheme["range"] = [float(lo), float(hi)]
    layer = model.layers.get(name)
    if layer is None:
        return scheme
    cfg = layer.config
    scheme.update(
        q_mode_activation=cfg.q_mode_activation,
        q_bits_activation=cfg.q_bits_activation,
        q_strategy_activation=cfg.q_strategy_activation,
    )
    p = layer.params
    if "weights" in p:
        ws = np.asarray(p["weight_scales"], np.float64)
        scheme.update(
            q_mode_weight=cfg.q_mode_weight,
            q_strategy_weight=cfg.q_strategy_weight,
            weight_scale_min=float(ws.min()),
            weight_scale_max=float(ws.max()),
        )
    for key in ("pre_shift", "post_shift", "bias_shift", "scale_error", "lut_bits"):
        if key in p:
            scheme[key] = float(p[key]) if key == "scale_error" else int(p[key])
    return scheme


def weight_warnings(model: QuantizedModel) -> list[str]:
    """Outlier messages (:mod:`.weight_outliers`) for every integer conv/FC layer's weights."""
    found = []
    for node in model.graph.nodes:
        layer = model.layers[node.name]
        if layer.run_on != "npu" or node.op not in ("conv2d", "dense"):
            continue
        per_channel = layer.config.q_mode_weight == "per_channel"
        axis = 0 if node.op == "conv2d" else 1
        result = find_weight_outliers(
            node.consts["weight"], axis, layer=node.name, per_channel=per_channel
        )
        if result:
            found.append(result.message())
    return found
