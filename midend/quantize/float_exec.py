"""Float executor: runs a layer graph (:mod:`.graph`) in numpy float32, every tensor kept.

Calibration reads every intermediate tensor, so it runs here rather than in
a compiled library that only returns outputs. Convolutions are im2col +
BLAS; ``relax`` nodes (operators the quantizer does not model) are compiled
once each through TVM for the host CPU and cached on the executor.

Guarantees: outputs match the Relax module the graph came from (and so
onnxruntime) within float32 rounding; see tests/midend/quantize.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError

from . import kernels
from .graph import Graph, Node
from .relax_fallback import RelaxFallback
from .threads import blas_one_thread

UNARY_FUNCS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "sigmoid": lambda x, a: 0.5 * (1.0 + np.tanh(0.5 * x)),
    "tanh": lambda x, a: np.tanh(x),
    "exp": lambda x, a: np.exp(x),
    "silu": lambda x, a: x * 0.5 * (1.0 + np.tanh(0.5 * x)),
    "softplus": lambda x, a: np.logaddexp(0.0, x),
    "leaky_relu": lambda x, a: np.where(x >= 0, x, x * a),
    "hardswish": lambda x, a: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "hardsigmoid": lambda x, a: np.clip(x * a + 0.5, 0.0, 1.0),
    "log": lambda x, a: np.log(x),
    "sqrt": lambda x, a: np.sqrt(x),
    "rsqrt": lambda x, a: 1.0 / np.sqrt(x),
    "negative": lambda x, a: -x,
    "abs": lambda x, a: np.abs(x),
}


def apply_post(y: np.ndarray, post: list[list[Any]] | None) -> np.ndarray:
    """Scalar steps folded after a unary function (``attrs["post"]``), in order."""
    for step in post or ():
        op = step[0]
        if op == "clip":
            y = np.clip(
                y, -np.inf if step[1] is None else step[1], np.inf if step[2] is None else step[2]
            )
        elif op == "add":
            y = y + step[1]
        elif op == "subtract":
            y = y - step[1]
        elif op == "multiply":
            y = y * step[1]
        else:
            raise KeyError(op)
    return y


def clamp(y: np.ndarray, node: Node, *, inplace: bool = False) -> np.ndarray:
    """Apply a node's float ``act_min``/``act_max`` (either may be None); ``inplace``
    overwrites ``y`` (an array the caller owns)."""
    lo, hi = node.attr("act_min"), node.attr("act_max")
    if lo is not None or hi is not None:
        bounds = (-np.inf if lo is None else lo, np.inf if hi is None else hi)
        y = np.clip(y, *bounds, out=y) if inplace else np.clip(y, *bounds)
    return y


def binary(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise ``op`` with numpy broadcasting."""
    funcs = {
        "add": np.add,
        "subtract": np.subtract,
        "multiply": np.multiply,
        "maximum": np.maximum,
        "minimum": np.minimum,
        "divide": np.divide,
    }
    return funcs[op](a, b)


def operands(node: Node, env: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The two operands of a binary node; a constant operand comes from ``consts["rhs"]``."""
    if "rhs" in node.consts:
        x, c = env[node.inputs[0]], node.consts["rhs"]
        return (c, x) if node.attr("const_side") == "lhs" else (x, c)
    return env[node.inputs[0]], env[node.inputs[1]]


def data_movement(node: Node, inputs: list[np.ndarray], pad_value: float = 0.0) -> np.ndarray:
    """Reshape, transpose, slice, pad, concat, max pool and nearest resize: exact on any dtype."""
    x = inputs[0]
    op = node.op
    if op == "reshape":
        if x.size == int(np.prod(node.out.shape)):
            return x.reshape(node.out.shape)
        return x.reshape((x.shape[0], *node.out.shape[1:]))  # a batch of samples
    if op == "transpose":
        return x.transpose(node.attr("axes"))
    if op == "slice":
        index = kernels.slice_index(
            x.shape, node.attr("axes"), node.attr("begin"), node.attr("end"), node.attr("strides")
        )
        return x[index]
    if op == "concat":
        return np.concatenate(inputs, axis=node.attr("axis"))
    raise KeyError(op)


def batchable(graph: Graph) -> bool:
    """Whether the graph can run N samples at once along axis 0 (batch-1 models whose
    layers never move or mix the batch axis); otherwise executors run one sample at a time."""
    rank_ok = all(ty.shape[:1] == (1,) for _, ty in graph.inputs)
    for node in graph.nodes:
        if not rank_ok or (node.out.shape[:1] != (1,) and node.out.dtype != "tuple"):
            return False
        if node.op == "transpose" and node.attr("axes")[0] != 0:
            return False
        if node.op == "slice" and any(
            a % max(len(node.out.shape), 1) == 0 for a in node.attr("axes")
        ):
            return False
        if node.op in ("concat", "softmax") and node.attr("axis") % len(node.out.shape) == 0:
            return False
        if node.op == "dense" and len(node.out.shape) < 2:
            return False
        if any(
            graph.tensor_type(n).shape[:1] != (1,)
            for n in node.inputs
            if graph.tensor_type(n).dtype != "tuple"
        ):
            return False
    return rank_ok


class FloatExecutor:
    """Runs a :class:`~.graph.Graph` in float32.

    Parameters
    ----------
    graph
        The layer graph.
    fallback
        Compiler of ``relax`` nodes (shared with other executors of the same graph).
    """

    def __init__(self, graph: Graph, fallback: RelaxFallback | None = None) -> None:
        self.graph = graph
        self.fallback = fallback or RelaxFallback(graph)
        self.batchable = batchable(graph)

    @blas_one_thread
    def run(
        self, feeds: Mapping[str, np.ndarray], *, keep: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Every tensor of the graph (or those in ``keep`` plus the outputs) for one sample.

        Raises
        ------
        InvalidInputError
            If a graph input is missing from ``feeds`` or has the wrong shape.
        """
        env: dict[str, Any] = {}
        for name, ty in self.graph.inputs:
            if name not in feeds:
                raise InvalidInputError(f"input {name!r} is missing")
            value = np.asarray(feeds[name])
            batched = self.batchable and value.shape[1:] == ty.shape[1:] and value.ndim >= 1
            if value.shape != ty.shape and not batched:
                raise InvalidInputError(
                    f"input {name!r} has shape {value.shape}; the model expects {ty.shape}"
                )
            env[name] = value.astype(ty.dtype, copy=False)
        for node in self.graph.nodes:
            env[node.name] = self.run_node(node, [env[n] for n in node.inputs], env)
        return env

    def run_node(self, node: Node, inputs: list[Any], env: Mapping[str, Any]) -> Any:
        """One node's float output from its float inputs."""
        op = node.op
        if op == "conv2d":
            y = kernels.conv2d_nchw(
                inputs[0],
                node.consts["weight"],
                strides=node.attr("strides"),
                padding=node.attr("padding"),
                dilation=node.attr("dilation"),
                groups=node.attr("groups"),
            )
            if "bias" in node.consts:  # y is a fresh array: bias and clamp in place
                y += node.consts["bias"].reshape(1, -1, 1, 1)
            return clamp(y, node, inplace=True).astype(np.float32, copy=False)
        if op == "dense":
            y = inputs[0] @ node.consts["weight"]
            if "bias" in node.consts:
                y = y + node.consts["bias"]
            return clamp(y, node, inplace=True).astype(np.float32, copy=False)
        if op in ("add", "subtract", "multiply", "maximum", "minimum", "divide"):
            a, b = operands(node, env)
            return clamp(binary(op, a, b), node).astype(np.float32)
        if op == "clip":
            return clamp(inputs[0], node)
        if op == "unary":
            func = node.attr("func")
            if func in UNARY_FUNCS:
                y = UNARY_FUNCS[func](inputs[0], node.attr("alpha", 0.0))
            else:
                y = self.fallback.run(node, inputs)
            return apply_post(y, node.attr("post")).astype(np.float32)
        if op == "max_pool2d":
            return self._pool(node, inputs[0], "max")
        if op == "avg_pool2d":
            return clamp(self._pool(node, inputs[0], "avg"), node)
        if op == "global_avg_pool":
            return clamp(inputs[0].mean(axis=(2, 3), keepdims=True, dtype=np.float32), node)
        if op in ("reshape", "transpose", "slice", "concat"):
            return data_movement(node, inputs)
        if op == "softmax":
            x = inputs[0]
            e = np.exp(x - x.max(axis=node.attr("axis"), keepdims=True))
            return (e / e.sum(axis=node.attr("axis"), keepdims=True)).astype(np.float32)
        if op == "constant":
            return node.consts["value"]
        if op == "tuple_item":
            return inputs[0][node.attr("index")]
        return self.fallback.run(node, inputs)

    def _pool(self, node: Node, x: np.ndarray, kind: str) -> np.ndarray:
        geometry = {
            "kernel": node.attr("kernel"),
            "strides": node.attr("strides"),
            "padding": node.attr("padding"),
            "dilation": node.attr("dilation"),
        }
        if kind == "max":
            return kernels.pool_sum_nchw(x, pad_value=-np.inf, reduce="max", **geometry)
        total = kernels.pool_sum_nchw(x, pad_value=0.0, reduce="sum", **geometry)
        if node.attr("count_include_pad"):
            count = float(np.prod(node.attr("kernel")))
            return (total / count).astype(np.float32)
        counts = kernels.pool_counts(x.shape, **geometry)
        return (total / counts).astype(np.float32)
