"""Choose ranges, quantize weights, derive integer parameters: graph + statistics -> model.

Requires: a layer graph and one :class:`~.observers.Observer` per float
tensor (:func:`~.calibrate.calibrate`). Guarantees, in order:

1. every layer is marked ``npu`` (runs in integers) or ``cpu`` (stays float)
   with the reason, from :func:`integer_rule` and the configuration; with
   ``float_coarse_concats`` a concat whose one scale would leave an input
   fewer than 16 steps runs float (:mod:`.coarse_concat`);
2. every tensor an integer layer reads or writes gets quantization
   parameters from its range strategy; data movement and max pooling pass
   their input's parameters through (exact); with
   ``unify_scales_for_concat`` a concat's producers write in the concat's
   scale, so it needs no requant copies;
3. every integer layer gets its parameters from :mod:`.qlayers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError, NpucError

from .coarse_concat import find_coarse_concats, keep_coarse_concats_float
from .config import QuantConfig
from .graph import Graph, Node
from .observers import Observer
from .qlayers import derive_params
from .qmodel import PASS_THROUGH, QLayer, QuantizedModel, layer_kind
from .qparams import QParams, choose_qparams
from .ranges import parse_strategy

LUT_FUNCS = (
    "sigmoid", "tanh", "exp", "silu", "softplus", "leaky_relu", "hardswish", "hardsigmoid",
    "gelu", "gelu_tanh", "erf", "negative", "abs",
)  # fmt: skip
INTEGER_OPS = (
    "conv2d", "dense", "add", "subtract", "multiply", "maximum", "minimum", "clip",
    "max_pool2d", "avg_pool2d", "global_avg_pool", "concat", "reshape", "transpose", "slice",
    "resize", "unary",
)  # fmt: skip


def integer_rule(node: Node, graph: Graph) -> tuple[bool, str]:
    """Whether the quantizer can express ``node`` in the NPU's integer formulas, and why not.

    Rules: float inputs and output; an operator with an integer formula
    (convolution, fully connected, element-wise add/sub/mul/max/min, clamps,
    pools, concat, reshape/transpose/slice, nearest resize, and table lookups
    for unary functions); average pools count the padding (the divisor is
    folded into one multiplier).
    """
    if node.op == "relax":  # an operator the layer graph keeps as a Relax call: name it
        op = str(node.attr("relax_op") or "this operator")
        why = (
            " in this form (npuc reads NCHW, floor-mode pools)"
            if "pool" in op
            else " (npuc has no integer formula for it)"
        )
        return False, f"{op} has no integer form on the NPU{why}; it runs float on the CPU"
    if node.op not in INTEGER_OPS:
        return False, f"{layer_kind(node)} has no integer form on the NPU; it runs float on the CPU"
    types = [graph.tensor_type(n) for n in node.inputs]
    if not node.out.is_float or not all(t.is_float for t in types):
        return False, "it reads or writes non-float tensors"
    if node.op == "resize" and node.attr("method") != "nearest":
        return False, f"{node.attr('method')} resize has no integer formula yet (nearest has)"
    if node.op == "avg_pool2d" and not node.attr("count_include_pad") and any(node.attr("padding")):
        return False, "average pool that excludes padding divides by a varying count"
    if node.op == "unary" and node.attr("func") not in LUT_FUNCS:
        return False, f"{node.attr('func')} is not available as a lookup table"
    if node.op == "dense" and len(types[0].shape) < 2:
        return False, "fully connected input must be at least 2-D"
    return True, ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedQuant:
    """Quantization decided before calibration: a pre-quantized model's own (:mod:`.prequant`).

    ``tensors``: tensor name -> its QParams, used instead of a range strategy;
    ``weights``: conv/FC layer -> (weight scales ``(C,)``, int8 weights in the
    layer's layout); ``float_layers``: layer -> why it stays float.
    """

    tensors: Mapping[str, QParams] = field(default_factory=dict)
    weights: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    float_layers: Mapping[str, str] = field(default_factory=dict)


def _producers(graph: Graph) -> dict[str, Node]:
    return {node.name: node for node in graph.nodes}


def quantize_model(
    graph: Graph,
    observers: Mapping[str, Observer],
    config: QuantConfig,
    *,
    calibration: Mapping[str, Any] | None = None,
    fixed: FixedQuant | None = None,
) -> QuantizedModel:
    """The quantized model of ``graph`` (module docstring).

    ``fixed`` holds scales, weights and float layers decided beforehand (a
    pre-quantized model); ``observers`` then need only cover the other tensors.

    Raises
    ------
    InvalidInputError
        A per-layer override names an unknown layer or field; a tensor has
        neither a fixed scale nor statistics (named).
    UnsupportedError
        A layer's parameters cannot be represented (named in the message).
    """
    config.check_layer_names({n.name for n in graph.nodes}, {layer_kind(n) for n in graph.nodes})
    run_on: dict[str, tuple[str, str]] = {}
    for node in graph.nodes:
        cfg = config.for_layer(node.name, layer_kind(node))
        ok, reason = integer_rule(node, graph)
        if cfg.run_on == "cpu":
            ok, reason = False, "configured to run float (run_on = cpu)"
        elif fixed is not None and node.name in fixed.float_layers:
            ok, reason = False, fixed.float_layers[node.name]
        run_on[node.name] = ("npu", "") if ok else ("cpu", reason)

    producers = _producers(graph)
    tensors: dict[str, QParams] = {}
    ranges: dict[str, tuple[float, float]] = {}
    spans: dict[str, tuple[float, float]] = {}

    def calibrated_range(name: str) -> tuple[float, float] | None:
        """The range strategy's ``(lo, hi)`` of a calibrated tensor; None for a fixed scale."""
        if fixed is not None and name in fixed.tensors:
            return None
        if name not in observers:
            return None
        if name not in spans:
            producer = producers.get(name)
            cfg = config.for_layer(name, layer_kind(producer)) if producer else config.default
            spans[name] = observers[name].range(
                parse_strategy(cfg.q_strategy_activation),
                dtype=cfg.activation_dtype,
                symmetric=cfg.symmetric,
            )
        return spans[name]

    def own_qparams(name: str) -> QParams:
        if fixed is not None and name in fixed.tensors:
            return fixed.tensors[name]
        span = calibrated_range(name)
        if span is None:
            raise InvalidInputError(
                f"tensor {name!r} has no scale in the pre-quantized model and no statistics",
                hint="pass --calib to calibrate it, or keep the layers that read or write it "
                "float with --float-layers",
            )
        producer = producers.get(name)
        cfg = config.for_layer(name, layer_kind(producer)) if producer else config.default
        ranges[name] = span
        return choose_qparams(
            span[0], span[1], dtype=cfg.activation_dtype, symmetric=cfg.symmetric, name=name
        )

    coarse = find_coarse_concats(graph, run_on, calibrated_range, own_qparams)
    keep_coarse_concats_float(coarse, run_on, enabled=config.float_coarse_concats)
    ranges.clear()  # refilled below for the tensors that are quantized

    integer: set[str] = set()
    for node in graph.nodes:
        if run_on[node.name][0] == "npu":
            integer.update(node.inputs)
            integer.add(node.name)

    for name, _ in graph.inputs:
        if name in integer:
            tensors[name] = own_qparams(name)
    for node in graph.nodes:
        if node.name not in integer:
            continue
        for name in node.inputs:
            # A float (CPU) layer's inputs need no scale when the pre-quantized file has none.
            skip = run_on[node.name][0] == "cpu" and (
                # A float layer's bool/integer operand (PReLU exported by torch as
                # where(x > 0, x, a * x)) is no real-valued tensor: it stays as it is.
                not graph.tensor_type(name).is_float
                or (fixed is not None and name not in observers and name not in fixed.tensors)
            )
            if name not in tensors and not skip:
                tensors[name] = own_qparams(name)
        if run_on[node.name][0] == "npu" and node.op in PASS_THROUGH:
            tensors[node.name] = tensors[node.inputs[0]]
        else:
            tensors[node.name] = own_qparams(node.name)

    if config.unify_scales_for_concat:
        _unify_concats(graph, tensors, run_on, producers)

    layers: dict[str, QLayer] = {}
    for node in graph.nodes:
        kind = layer_kind(node)
        cfg = config.for_layer(node.name, kind)
        where, reason = run_on[node.name]
        params: dict[str, Any] = {}
        if where == "npu":
            ins = [tensors[n] for n in node.inputs]
            shapes = [graph.tensor_type(n).shape for n in node.inputs]
            weights = fixed.weights.get(node.name) if fixed is not None else None
            try:
                params = derive_params(
                    node, ins, tensors[node.name], cfg, shapes, fixed_weights=weights
                )
            except NpucError as err:
                raise type(err)(
                    f"layer {node.name!r} ({kind}): {err.message}", hint=err.hint
                ) from err
        layers[node.name] = QLayer(
            name=node.name, kind=kind, run_on=where, reason=reason, config=cfg, params=params
        )
    return QuantizedModel(
        graph=graph,
        tensors=tensors,
        layers=layers,
        config=config,
        calibration=dict(calibration or {}),
        ranges=ranges,
    )


def _unify_concats(
    graph: Graph,
    tensors: dict[str, QParams],
    run_on: Mapping[str, tuple[str, str]],
    producers: Mapping[str, Node],
) -> None:
    """Let each integer concat's producers write in the concat's scale where that is free."""
    users: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            users[name] = users.get(name, 0) + 1
    for node in graph.nodes:
        if node.op != "concat" or run_on[node.name][0] != "npu":
            continue
        target = tensors[node.name]
        for name in node.inputs:
            producer = producers.get(name)
            if (
                producer is not None
                and run_on[producer.name][0] == "npu"
                and producer.op not in PASS_THROUGH
                and producer.op != "concat"
                and users.get(name) == 1
                and tensors[name].dtype == target.dtype
            ):
                tensors[name] = target
