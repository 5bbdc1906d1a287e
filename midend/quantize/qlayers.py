"""Derive each integer layer's NPU parameters from its float node and tensor scales.

Requires: the :class:`~.qparams.QParams` of the layer's integer inputs and
output. Guarantees: every parameter is inside the ISA's range (multipliers
<= 32767, shifts within their fields, bias as int16 ``b16 << bias_shift``)
and follows docs/npu_spec.md's formula for the layer's instruction; the
derivation for conv/FC proves the accumulator never overflows
(:func:`~.scaling.conv_requant`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .config import LayerQuantConfig
from .float_exec import UNARY_FUNCS, apply_post
from .graph import Node
from .qmodel import int_array
from .qparams import QParams, choose_qparams, choose_weight_qparams, qrange
from .scaling import conv_requant, eltwise_requant, single_requant

WEIGHT_SCALE_FLOOR = 2.0**-16
"""Smallest per-channel weight scale, relative to the layer's largest."""


def bias_scale_floor(w_scale: np.ndarray, bias: np.ndarray, x_scale: float) -> np.ndarray:
    """Per-channel lower bound on the weight scale so that every bias fits one bias_shift.

    The shift is the one the live channels need (those whose weight scale is at
    least 1/256 of the largest); channels below get the scale at which their
    bias fits ``int16 << shift``. Also never below 2^-16 of the largest scale.
    """
    peak = float(w_scale.max()) if w_scale.size else 0.0
    live = w_scale >= peak / 256
    need = np.abs(bias[live]) / (x_scale * w_scale[live]) if live.any() else np.zeros(1)
    shift = 0
    while shift < 31 and float(need.max(initial=0.0)) > 32767.0 * 2.0**shift:
        shift += 1
    fit = np.abs(bias) / (x_scale * 32767.0 * 2.0**shift)
    return np.maximum(fit, peak * WEIGHT_SCALE_FLOOR)


def act_bounds(node: Node, out: QParams) -> tuple[int, int]:
    """The node's float clamp as stored-integer bounds within the output type."""
    lo, hi = out.qmin, out.qmax
    if node.attr("act_min") is not None:
        lo = max(lo, int(out.quantize(np.asarray([node.attr("act_min")]))[0]))
    if node.attr("act_max") is not None:
        hi = min(hi, int(out.quantize(np.asarray([node.attr("act_max")]))[0]))
    return lo, max(lo, hi)


def max_centered(q: QParams) -> int:
    """``max |x - zero_point|`` over the storage type."""
    return max(q.zero_point - q.qmin, q.qmax - q.zero_point)


def _conv(
    node: Node,
    ins: list[QParams],
    out: QParams,
    cfg: LayerQuantConfig,
    shapes: list[tuple[int, ...]],
    fixed_weights: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Conv/FC parameters; ``fixed_weights`` (scales, int8 weights) are kept as given."""
    weight = node.consts["weight"]
    axis = 0 if node.op == "conv2d" else 1
    if fixed_weights is not None:
        scales, w_int = fixed_weights
    else:
        scales, w_int = choose_weight_qparams(
            weight,
            axis,
            per_channel=cfg.q_mode_weight == "per_channel",
            narrow_range=cfg.weight_narrow_range,
            strategy=cfg.q_strategy_weight,
        )
    cout = weight.shape[axis]
    w_scale = np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (cout,))
    bias = node.consts.get("bias")
    bias_f = np.zeros(cout) if bias is None else np.asarray(bias, np.float64)
    floor = bias_scale_floor(w_scale, bias_f, ins[0].scale)
    if fixed_weights is None and bool(np.any(w_scale < floor)):
        # One bias_shift per instruction: a near-dead channel (weights ~1e-20 after BN
        # folding) with a real bias would force a shift that rounds every other
        # channel's bias away. Its weight scale is raised until its bias fits the shift
        # the live channels need; its tiny weights lose nothing that matters.
        w_scale = np.maximum(w_scale, floor)
        shape = [1] * weight.ndim
        shape[axis] = cout
        qmin = -127 if cfg.weight_narrow_range else -128
        w_int = np.clip(np.rint(weight / w_scale.reshape(shape)), qmin, 127).astype(np.int8)
    acc_scale = ins[0].scale * w_scale
    reduce_axes = tuple(i for i in range(w_int.ndim) if i != axis)
    weight_l1 = np.abs(w_int.astype(np.int64)).sum(axis=reduce_axes)
    requant = conv_requant(
        real_scale=acc_scale / out.scale,
        bias_acc=bias_f / acc_scale,
        weight_l1=weight_l1,
        ifm_max_abs=max_centered(ins[0]),
        layer=node.name,
    )
    act_min, act_max = act_bounds(node, out)
    return {
        "weights": int_array(w_int, np.int8),
        "weight_scales": int_array(w_scale, np.float64),
        "b16": int_array(requant.b16, np.int16),
        "bias_shift": requant.bias_shift,
        "ofm_multiplier": int_array(requant.ofm_multiplier, np.uint16),
        "pre_shift": requant.pre_shift,
        "post_shift": requant.post_shift,
        "act_min": act_min,
        "act_max": act_max,
        "scale_error": requant.scale_error,
        "bias_saturated": int(np.sum(np.abs(bias_f / acc_scale) > 32767.5 * 2.0**31)),
    }


def const_qparams(value: np.ndarray, dtype: str) -> tuple[QParams, np.ndarray]:
    """Per-tensor asymmetric quantization of a constant operand; returns (qparams, ints)."""
    q = choose_qparams(float(value.min()), float(value.max()), dtype=dtype, symmetric=False)
    return q, q.quantize(value)


def _binary(
    node: Node,
    ins: list[QParams],
    out: QParams,
    cfg: LayerQuantConfig,
    shapes: list[tuple[int, ...]],
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    qa = ins[0]
    if "rhs" in node.consts:
        qc, c_int = const_qparams(node.consts["rhs"], cfg.activation_dtype)
        params["const"] = int_array(c_int, c_int.dtype)
        params["const_scale"], params["const_zp"] = qc.scale, qc.zero_point
        qb = qc
        if node.attr("const_side") == "lhs":
            qa, qb = qc, ins[0]
    else:
        qb = ins[1]
    if node.op == "multiply":
        m, shift = single_requant(
            qa.scale * qb.scale / out.scale, max_operand=max_centered(qa) * max_centered(qb)
        )
        params.update(ofm_multiplier=m, post_shift=shift)
    else:
        ma, mb, shift = eltwise_requant(
            qa.scale / out.scale,
            qb.scale / out.scale,
            da_max=max_centered(qa),
            db_max=max_centered(qb),
        )
        params.update(ifm_multiplier=ma, ifm2_multiplier=mb, post_shift=shift)
    params["act_min"], params["act_max"] = act_bounds(node, out)
    return params


def _requant(
    node: Node,
    ins: list[QParams],
    out: QParams,
    cfg: LayerQuantConfig,
    shapes: list[tuple[int, ...]],
) -> dict[str, Any]:
    """clip (requant copy with clamp), avg/global-avg pools (1/area folded into M)."""
    area = 1
    if node.op == "avg_pool2d":
        area = int(np.prod(node.attr("kernel")))
    elif node.op == "global_avg_pool":
        area = int(shapes[0][2] * shapes[0][3])
    ratio = ins[0].scale / (out.scale * area)
    m, shift = single_requant(ratio, max_operand=max_centered(ins[0]) * area)
    lo, hi = act_bounds(node, out)
    return {"ofm_multiplier": m, "post_shift": shift, "act_min": lo, "act_max": hi, "area": area}


def lut_table(
    func: Callable[[np.ndarray], np.ndarray], qin: QParams, out: QParams, bits: int
) -> np.ndarray:
    """The ITP table (docs/npu_spec.md section 5): dequantize -> f -> quantize.

    int8/uint8 input: 256 entries, one per stored value. int16 input:
    ``2^bits + 1`` entries sampled at ``x_min + i * 2^(16 - bits)`` over the
    full int16 range (the ITP interpolates between them).
    """
    if qin.dtype in ("int8", "uint8"):
        codes = np.arange(qin.qmin, qin.qmax + 1, dtype=np.int64)
    else:
        step = 1 << (16 - bits)
        codes = -32768 + step * np.arange((1 << bits) + 1, dtype=np.int64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        y = func(qin.dequantize(codes))
    y = np.nan_to_num(y, nan=0.0, posinf=np.finfo(np.float64).max, neginf=-np.finfo(np.float64).max)
    return out.quantize(np.clip(y, -1e30, 1e30)).astype(
        np.int16 if out.dtype == "int16" else np.int8 if out.dtype == "int8" else np.uint8
    )


def _unary(
    node: Node,
    ins: list[QParams],
    out: QParams,
    cfg: LayerQuantConfig,
    shapes: list[tuple[int, ...]],
) -> dict[str, Any]:
    func = node.attr("func")
    alpha = node.attr("alpha", 0.0)
    if func in UNARY_FUNCS:
        f = UNARY_FUNCS[func]

        def fn(x: np.ndarray) -> np.ndarray:
            return f(x, alpha)
    elif func in ("gelu", "erf", "gelu_tanh"):
        erf = np.vectorize(math.erf)

        def fn(x: np.ndarray) -> np.ndarray:
            if func == "erf":
                return erf(x)
            if func == "gelu_tanh":
                return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
            return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    else:
        raise KeyError(func)
    post = node.attr("post")

    def composed(x: np.ndarray) -> np.ndarray:
        return apply_post(fn(x), post)

    bits = cfg.lut_items_in_bits
    table = lut_table(composed, ins[0], out, bits)
    return {
        "lut": int_array(table, table.dtype),
        "lut_bits": bits if ins[0].dtype == "int16" else 8,
    }


#: A concat input left with fewer output steps than this over its calibrated range is
#: "coarse": the concat is kept float (:mod:`.coarse_concat`) or, if not, warned about.
CONCAT_MIN_LEVELS = 16


class CoarseConcatWarning(UserWarning):
    """A concat's single output scale leaves one of its inputs only a few steps.

    Raised by :mod:`.coarse_concat` when the concat stays integer
    (``float_coarse_concats = false``, or an integer layer reads the joined
    tensor). Shown by ``npuc quantize`` / ``npuc build`` among their notes; the
    test suite ignores it (random test graphs join unrelated ranges) except
    where a test asserts it.
    """


class CoarseConcatKeptFloat(CoarseConcatWarning):
    """Note: such a concat (and the data movement after it) was kept float on the CPU."""


def _concat(
    node: Node,
    ins: list[QParams],
    out: QParams,
    cfg: LayerQuantConfig,
    shapes: list[tuple[int, ...]],
) -> dict[str, Any]:
    requants = []
    for q in ins:
        if q == out:
            requants.append((1, 0))
        else:
            requants.append(single_requant(q.scale / out.scale, max_operand=max_centered(q)))
    return {"input_requant": requants}


DERIVE: Mapping[
    str,
    Callable[
        [Node, list[QParams], QParams, LayerQuantConfig, list[tuple[int, ...]]], dict[str, Any]
    ],
] = {
    "conv2d": _conv,
    "dense": _conv,
    "add": _binary,
    "subtract": _binary,
    "multiply": _binary,
    "maximum": _binary,
    "minimum": _binary,
    "clip": _requant,
    "avg_pool2d": _requant,
    "global_avg_pool": _requant,
    "unary": _unary,
    "concat": _concat,
}


def derive_params(
    node: Node,
    ins: list[QParams],
    out: QParams,
    cfg: LayerQuantConfig,
    shapes: list[tuple[int, ...]],
    *,
    fixed_weights: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Integer parameters of ``node`` (empty for pass-through data movement).

    ``fixed_weights`` (conv/FC only): the weight scales (``(C,)`` float64) and
    the int8 weights (the layer's weight layout) to use instead of choosing them;
    a pre-quantized model's own (:mod:`.prequant`).
    """
    if fixed_weights is not None and node.op in ("conv2d", "dense"):
        return _conv(node, ins, out, cfg, shapes, fixed_weights)
    derive = DERIVE.get(node.op)
    return derive(node, ins, out, cfg, shapes) if derive else {}


__all__ = ["act_bounds", "derive_params", "lut_table", "max_centered", "qrange"]
