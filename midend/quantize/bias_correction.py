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

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np

from .float_exec import FloatExecutor, clamp
from .graph import Node
from .int_exec import IntegerExecutor, IntTensor
from .qlayers import derive_params
from .qmodel import QLayer, QuantizedModel
from .threads import blas_one_thread

R = TypeVar("R")
WORKERS = 2
"""Threads that run the batches of one layer at once (the build machine has 2 cores)."""


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
    # The batches are independent between corrections: each node runs on them in two
    # threads (numpy releases the GIL in its kernels); anything summed over batches is
    # summed in batch order afterwards, so the result does not depend on the threads.
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="bias") as pool:
        for index, node in enumerate(model.graph.nodes):
            layer = layers[node.name]
            unclamped: list[np.ndarray] = []
            sums: list[tuple[np.ndarray, int]] = []
            if layer.run_on == "npu" and node.op in ("conv2d", "dense"):
                layer, shift, unclamped, sums = _correct_layer(
                    model, node, layer, fx, ix, envs_f, envs_q, pool
                )
                layers[node.name] = layer
                shifts[node.name] = shift

            def advance(
                k: int,
                index: int = index,
                node: Node = node,
                layer: QLayer = layer,
                unclamped: list[np.ndarray] = unclamped,
                sums: list[tuple[np.ndarray, int]] = sums,
            ) -> None:
                env_f, env_q = envs_f[k], envs_q[k]
                if unclamped:  # the float output is the unclamped one clamped: no second run
                    env_f[node.name] = clamp(unclamped[k], node).astype(np.float32, copy=False)
                else:
                    env_f[node.name] = fx.run_node(node, [env_f[n] for n in node.inputs], env_f)
                if sums:  # same weights: only the bias changed, the sums still hold
                    out = model.tensors[node.name]
                    env_q[node.name] = IntTensor(
                        ix.conv_output(node, layer.params, sums[k], out), out
                    )
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

            _each_batch(pool, advance, len(envs_f))
    return replace(model, layers=layers), shifts


def _each_batch(pool: ThreadPoolExecutor, func: Callable[[int], R], count: int) -> list[R]:
    """``[func(0), ..., func(count - 1)]`` run in ``pool`` under the caller's numpy error
    settings (numpy keeps them per thread)."""
    settings = np.geterr()

    def run(k: int) -> R:
        with np.errstate(**settings):
            return func(k)

    return list(pool.map(run, range(count)))


def _correct_layer(
    model: QuantizedModel,
    node: Node,
    layer: QLayer,
    fx: FloatExecutor,
    ix: IntegerExecutor,
    envs_f: list[dict[str, Any]],
    envs_q: list[dict[str, Any]],
    pool: ThreadPoolExecutor,
) -> tuple[QLayer, float, list[np.ndarray], list[tuple[np.ndarray, int]]]:
    """One layer's corrected parameters, the largest bias shift applied, the float
    outputs before the clamp (float32, one per environment), and the integer sums
    (:meth:`~.int_exec.IntegerExecutor.conv_sums`, one per environment; empty when the
    corrected layer's weights differ, so the sums do not hold for it). The
    environments are measured in ``pool``; their errors are summed in order."""
    unclamped = replace(node, attrs={**node.attrs, "act_min": None, "act_max": None})
    out = model.tensors[node.name]
    axis = 1 if node.op == "conv2d" else -1

    def measure(k: int) -> tuple[np.ndarray, tuple[np.ndarray, int], np.ndarray, int]:
        env_f, env_q = envs_f[k], envs_q[k]
        want = fx.run_node(unclamped, [env_f[n] for n in node.inputs], env_f)
        x = ix.as_int(env_q[node.inputs[0]], model.tensors[node.inputs[0]])
        sums = ix.conv_sums(node, layer.params, x)
        got = ix.conv_output(node, layer.params, sums, None, as_float=True)
        got *= out.scale
        diff = np.moveaxis(np.subtract(want, got, out=got), axis, -1)  # want - got
        diff = diff.reshape(-1, diff.shape[-1])
        return want, sums, diff.sum(axis=0), diff.shape[0]

    measured = _each_batch(pool, measure, len(envs_f))
    floats = [m[0] for m in measured]
    sums = [m[1] for m in measured]
    total: np.ndarray | None = None
    count = 0
    for _, _, part, rows in measured:
        total = part if total is None else total + part
        count += rows
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
