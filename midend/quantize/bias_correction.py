"""Empirical bias correction on the calibration data (Nagel et al. 2019, AIMET's "empirical").

Requires: a :class:`~.qmodel.QuantizedModel` and calibration samples.
Guarantees: each integer conv/FC layer's bias is shifted by the mean, per
output channel, of (float output - integer output) before the clamp, measured
with the *quantized* model's own inputs to the layer, layer by layer in
order, so the correction of a layer already sees its corrected predecessors.
The corrected bias is re-quantized (16-bit ``b16 << bias_shift``), so the
mean error this removes includes the rounding of the 16-bit bias itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from .float_exec import FloatExecutor, clamp
from .graph import Node
from .int_exec import IntegerExecutor, IntTensor
from .qlayers import derive_params
from .qmodel import QLayer, QuantizedModel
from .threads import blas_one_thread


def _last_uses(model: QuantizedModel) -> dict[str, int]:
    last: dict[str, int] = {}
    for index, node in enumerate(model.graph.nodes):
        for name in node.inputs:
            last[name] = index
    return last


@blas_one_thread
def correct_bias(
    model: QuantizedModel, samples: Iterable[Mapping[str, np.ndarray]]
) -> tuple[QuantizedModel, dict[str, float]]:
    """The model with corrected conv/FC biases, and the largest correction per layer (float units).

    The samples are held in memory layer by layer (one tensor per sample at a
    time, freed after its last use), so pass a modest number (the config's
    ``bias_correction_samples``).
    """
    feeds = list(samples)
    if not feeds:
        return model, {}
    layers: dict[str, QLayer] = dict(model.layers)
    fx = FloatExecutor(model.graph)
    ix = IntegerExecutor(model, fx)
    envs_f: list[dict[str, Any]] = []
    envs_q: list[dict[str, Any]] = []
    for feed in feeds:
        envs_f.append({n: np.asarray(feed[n]).astype(ty.dtype) for n, ty in model.graph.inputs})
        env_q: dict[str, Any] = {}
        for name, _ty in model.graph.inputs:
            value = np.asarray(feed[name])
            q = model.tensors.get(name)
            env_q[name] = IntTensor(q.quantize(value).astype(np.int64), q) if q else value
        envs_q.append(env_q)
    last = _last_uses(model)
    keep = set(model.graph.outputs)
    shifts: dict[str, float] = {}
    for index, node in enumerate(model.graph.nodes):
        layer = layers[node.name]
        unclamped: list[np.ndarray] = []
        sums: list[tuple[np.ndarray, int]] = []
        if layer.run_on == "npu" and node.op in ("conv2d", "dense"):
            layer, shift, unclamped, sums = _correct_layer(
                model, node, layer, fx, ix, envs_f, envs_q
            )
            layers[node.name] = layer
            shifts[node.name] = shift
        for k, (env_f, env_q) in enumerate(zip(envs_f, envs_q, strict=True)):
            if unclamped:  # the float output is the unclamped one clamped: no second run
                env_f[node.name] = clamp(unclamped[k], node).astype(np.float32, copy=False)
            else:
                env_f[node.name] = fx.run_node(node, [env_f[n] for n in node.inputs], env_f)
            if sums:  # same weights: only the bias changed, the sums still hold
                out = model.tensors[node.name]
                env_q[node.name] = IntTensor(ix.conv_output(node, layer.params, sums[k], out), out)
            elif layer.run_on == "npu":
                ins = [ix.as_int(env_q[n], model.tensors[n]) for n in node.inputs]
                out = model.tensors[node.name]
                env_q[node.name] = IntTensor(ix.compute(node, layer, ins, out), out)
            else:
                inputs = [ix.as_float(env_q[n]) for n in node.inputs]
                env_q[node.name] = fx.run_node(
                    node, inputs, {**env_q, **dict(zip(node.inputs, inputs, strict=True))}
                )
            for name in node.inputs:
                if last.get(name) == index and name not in keep:
                    env_f.pop(name, None)
                    env_q.pop(name, None)
    return replace(model, layers=layers), shifts


def _correct_layer(
    model: QuantizedModel,
    node: Node,
    layer: QLayer,
    fx: FloatExecutor,
    ix: IntegerExecutor,
    envs_f: list[dict[str, Any]],
    envs_q: list[dict[str, Any]],
) -> tuple[QLayer, float, list[np.ndarray], list[tuple[np.ndarray, int]]]:
    """One layer's corrected parameters, the largest bias shift applied, the float
    outputs before the clamp (float32, one per environment), and the integer sums
    (:meth:`~.int_exec.IntegerExecutor.conv_sums`, one per environment; empty when the
    corrected layer's weights differ, so the sums do not hold for it)."""
    unclamped = replace(node, attrs={**node.attrs, "act_min": None, "act_max": None})
    out = model.tensors[node.name]
    axis = 1 if node.op == "conv2d" else -1
    total: np.ndarray | None = None
    count = 0
    floats: list[np.ndarray] = []
    sums: list[tuple[np.ndarray, int]] = []
    for env_f, env_q in zip(envs_f, envs_q, strict=True):
        floats.append(fx.run_node(unclamped, [env_f[n] for n in node.inputs], env_f))
        x = ix.as_int(env_q[node.inputs[0]], model.tensors[node.inputs[0]])
        sums.append(ix.conv_sums(node, layer.params, x))
        got = ix.conv_output(node, layer.params, sums[-1], None, as_float=True)
        got *= out.scale
        diff = np.moveaxis(np.subtract(floats[-1], got, out=got), axis, -1)  # want - got
        diff = diff.reshape(-1, diff.shape[-1])
        total = diff.sum(axis=0) if total is None else total + diff.sum(axis=0)
        count += diff.shape[0]
    assert total is not None
    error = total / count
    bias = node.consts.get("bias")
    new_bias = (np.zeros_like(error) if bias is None else np.asarray(bias, np.float64)) + error
    corrected = replace(node, consts={**node.consts, "bias": new_bias.astype(np.float32)})
    ins = [model.tensors[n] for n in node.inputs]
    shapes = [model.graph.tensor_type(n).shape for n in node.inputs]
    params = derive_params(corrected, ins, out, layer.config, shapes)
    display = {**layer.display, "bias_correction_max": float(np.abs(error).max())}
    same = np.array_equal(params["weights"], layer.params["weights"])
    corrected_layer = replace(layer, params=params, display=display)
    return corrected_layer, float(np.abs(error).max()), floats, sums if same else []
