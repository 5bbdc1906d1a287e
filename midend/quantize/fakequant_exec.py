"""Fake-quant executor: the float simulation of a :class:`~.qmodel.QuantizedModel`.

Runs the float graph in float32 (:class:`~.float_exec.FloatExecutor`'s
kernels) with the quantization of the model applied as rounding in float:

- *weights* (``weights=True``): every integer conv/FC layer computes with its
  int8 weights times their per-channel (or per-tensor) scales, and with its
  bias as the datapath stores it, ``(b16 << bias_shift) * s_in * s_w``; a
  constant operand of an element-wise layer is its stored integers times
  their scale;
- *activations* (``activations=True``): every tensor stored as integers
  (graph inputs, integer layers' outputs, float tensors read by integer
  layers) is replaced by ``dequantize(quantize(x))`` with its
  :class:`~.qparams.QParams` (round half to even, saturate).

With both switches off it equals the float executor; with one off it
separates the weight-only and activation-only contributions to the error
(AIMET's quant-analyzer). It is an *approximation* of the integer executor:
it ignores the multipliers' scale error, the pre-shift rounding, LUT
sampling and rounding order. The accuracy report (:mod:`.analysis`) shows
where the two differ; accuracy numbers come from the integer executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError

from .float_exec import FloatExecutor
from .graph import Node
from .qmodel import QuantizedModel
from .qparams import QParams


def fake_quantize(x: np.ndarray, q: QParams) -> np.ndarray:
    """``dequantize(quantize(x))`` in float32: ``x`` rounded onto ``q``'s grid and saturated."""
    return q.dequantize(q.quantize(x)).astype(np.float32)


def dequantized_weights(node: Node, params: Mapping[str, Any]) -> np.ndarray:
    """A conv/FC layer's int8 weights times their scales, in the float weight's layout.

    Conv weights are ``(O, I/g, kh, kw)`` with scales along axis 0, FC
    weights ``(K, N)`` with scales along axis 1; float32.
    """
    w = np.asarray(params["weights"], np.float64)
    scales = np.asarray(params["weight_scales"], np.float64).reshape(-1)
    shape = [1] * w.ndim
    axis = 0 if node.op == "conv2d" else 1
    shape[axis] = w.shape[axis]
    return (w * np.broadcast_to(scales, (w.shape[axis],)).reshape(shape)).astype(np.float32)


def stored_bias(node: Node, params: Mapping[str, Any], in_scale: float) -> np.ndarray:
    """The bias the datapath adds, ``(b16 << bias_shift) * s_in * s_w`` in real units, float32."""
    acc = np.asarray(params["b16"], np.int64) << int(params["bias_shift"])
    scales = np.asarray(params["weight_scales"], np.float64).reshape(-1)
    return (acc * in_scale * scales).astype(np.float32)


class FakeQuantExecutor:
    """Runs a quantized model in float with quantization simulated by rounding.

    Parameters
    ----------
    model
        The quantized model.
    float_executor
        The float executor of ``model.graph`` (shares compiled CPU fallbacks);
        a new one when ``None``.
    weights
        Fake-quantize the weights, biases and constant operands of integer layers.
    activations
        Fake-quantize every tensor that the model stores as integers.

    Raises
    ------
    InvalidInputError
        Both switches are off (that is the float executor; use it instead).
    """

    def __init__(
        self,
        model: QuantizedModel,
        float_executor: FloatExecutor | None = None,
        *,
        weights: bool = True,
        activations: bool = True,
    ) -> None:
        if not (weights or activations):
            raise InvalidInputError(
                "a fake-quant executor with neither weights nor activations quantized is the "
                "float executor",
                hint="use FloatExecutor, or set weights=True or activations=True",
            )
        self.model = model
        self.float = float_executor or FloatExecutor(model.graph)
        self.weights = weights
        self.activations = activations
        self._nodes = {node.name: self._fake_node(node) for node in model.graph.nodes}

    @property
    def mode(self) -> str:
        """``"full"``, ``"weights_only"`` or ``"activations_only"``."""
        if self.weights and self.activations:
            return "full"
        return "weights_only" if self.weights else "activations_only"

    def _fake_node(self, node: Node) -> Node:
        """``node`` with its constants replaced by their quantized values (weights switch)."""
        layer = self.model.layers[node.name]
        if not self.weights or layer.run_on != "npu":
            return node
        p = layer.params
        consts = dict(node.consts)
        if node.op in ("conv2d", "dense") and "weights" in p:
            consts["weight"] = dequantized_weights(node, p)
            in_scale = self.model.tensors[node.inputs[0]].scale
            consts["bias"] = stored_bias(node, p, in_scale)
        elif "rhs" in consts and "const" in p:
            q = QParams(float(p["const_scale"]), int(p["const_zp"]), "int16")
            consts["rhs"] = q.dequantize(np.asarray(p["const"])).astype(np.float32)
        else:
            return node
        return replace(node, consts=consts)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor of the graph for one sample, float32 (inputs included).

        Raises
        ------
        InvalidInputError
            A graph input is missing from ``feeds`` or has the wrong shape.
        """
        tensors = self.model.tensors if self.activations else {}
        env: dict[str, Any] = {}
        for name, ty in self.model.graph.inputs:
            if name not in feeds:
                raise InvalidInputError(f"input {name!r} is missing")
            value = np.asarray(feeds[name])
            batched = getattr(self.float, "batchable", False) and value.shape[1:] == ty.shape[1:]
            if value.shape != ty.shape and not batched:
                raise InvalidInputError(
                    f"input {name!r} has shape {value.shape}; the model expects {ty.shape}"
                )
            value = value.astype(ty.dtype, copy=False)
            env[name] = fake_quantize(value, tensors[name]) if name in tensors else value
        for node in self.model.graph.nodes:
            env[node.name] = self.run_node(node, env, inputs_quantized=True)
        return env

    def run_node(
        self, node: Node, env: Mapping[str, Any], *, inputs_quantized: bool = False
    ) -> np.ndarray:
        """One layer's fake-quant output (float32) from the float tensors in ``env``.

        Unless ``inputs_quantized``, the layer's integer inputs are first
        fake-quantized with their QParams (activations switch), so a float
        model's tensors give this layer's error alone.
        """
        tensors = self.model.tensors if self.activations else {}
        fake = self._nodes[node.name]
        inputs = [np.asarray(env[n]) for n in node.inputs]
        if not inputs_quantized:
            inputs = [
                fake_quantize(x, tensors[n]) if n in tensors else x
                for n, x in zip(node.inputs, inputs, strict=True)
            ]
        local = {**env, **dict(zip(node.inputs, inputs, strict=True))}
        y = self.float.run_node(fake, inputs, local)
        return fake_quantize(y, tensors[node.name]) if node.name in tensors else y
