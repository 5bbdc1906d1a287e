"""Pre-quantized models: the file's own scales, zero points and int8 weights on the NPU datapath.

Requires: the layer graph of the float model the importer made from a QDQ
file, and the file's recorded quantization
(:class:`~npuc.frontend.source_quant.SourceQuant`). Guarantees:

* every activation tensor the file quantizes keeps its scale, zero point and
  type (found through :func:`~.source_names.map_source_names`);
* every conv/FC layer keeps the file's per-channel weight scales and int8
  weights, bit for bit (checked: a mismatch is an internal error);
* a layer whose tensors the file leaves float runs float on the CPU, as
  onnxruntime runs it, unless calibration statistics are given for those
  tensors (then they are calibrated and the layer runs on the NPU);
* every place where the datapath forces a different number is listed as a
  :class:`ForcedChange` with the layer and the numbers: a weight zero point
  other than 0 or unsigned/16-bit weights, a per-channel activation scale,
  uint16 activations, a pass-through layer (max pool, reshape, ...) whose
  file output scale differs from its input's, a bias that needs
  ``bias_shift > 0`` (16-bit bias), a ``pre_shift > 0`` (accumulator bits
  dropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuc.frontend.source_quant import ActivationQuant, SourceQuant, WeightQuant

from .graph import Graph, Node
from .qmodel import PASS_THROUGH, QuantizedModel
from .qparams import QParams, choose_qparams, choose_weight_qparams, qrange
from .source_names import NameMap, layer_weight_ints, map_source_names

NOTE = "pre-quantized: scales taken from the model"


@dataclass(frozen=True, slots=True, kw_only=True)
class ForcedChange:
    """One place where the NPU cannot use the file's number as is.

    ``layer`` is the layer (or tensor) name, ``kind`` a short key
    (``weight_zero_point``, ``weight_dtype``, ``per_channel_activation``,
    ``activation_dtype``, ``pass_through_scale``, ``bias_shift``,
    ``pre_shift``, ``weights_requantized``), ``detail`` the sentence with the
    numbers. ``weights_requantized`` also covers a layer whose float weights
    are not the file's because the midend folded an operation into them.
    """

    layer: str
    kind: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"layer": self.layer, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True, slots=True, kw_only=True)
class PreQuantPlan:
    """What the file fixes: tensor QParams, conv/FC weights, float layers, and the changes."""

    tensors: Mapping[str, QParams]
    weights: Mapping[str, tuple[np.ndarray, np.ndarray]]
    float_layers: Mapping[str, str]
    names: NameMap
    changes: tuple[ForcedChange, ...]
    file_weights: Mapping[str, np.ndarray]


def _activation_qparams(name: str, record: ActivationQuant, changes: list[ForcedChange]) -> QParams:
    scale, zp, dtype = record.scale, record.zero_point, record.dtype
    if dtype == "uint16":
        changes.append(
            ForcedChange(
                layer=name,
                kind="activation_dtype",
                detail=f"uint16 tensor {name!r} is stored as int16 with zero point "
                f"{int(zp.max()) - 32768} (= {int(zp.max())} - 32768; the same values, exact)",
            )
        )
        zp, dtype = zp - 32768, "int16"
    if scale.ndim == 0:
        return QParams(float(np.float32(scale)), int(zp), dtype)
    qmin, qmax = qrange(dtype)
    lo = float(np.min((qmin - zp) * scale))
    hi = float(np.max((qmax - zp) * scale))
    q = choose_qparams(lo, hi, dtype=dtype, symmetric=False, name=name)
    changes.append(
        ForcedChange(
            layer=name,
            kind="per_channel_activation",
            detail=f"tensor {name!r} has {scale.size} per-channel scales "
            f"[{scale.min():.6g}, {scale.max():.6g}] (axis {record.axis}); the NPU has one "
            f"scale per tensor: {q.scale:.6g}, zero point {q.zero_point} (covers every channel)",
        )
    )
    return q


def _weights(
    layer: Node, record: WeightQuant, changes: list[ForcedChange]
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray] | None:
    """(scales (C,), int8 weights) for ``layer`` from the file's weight, and the file's ints."""
    found = layer_weight_ints(layer, record)
    if found is None:
        return None
    ints, transposed = found
    weight = np.asarray(layer.consts["weight"], np.float64)
    axis = 0 if layer.op == "conv2d" else 1
    cout = weight.shape[axis]
    file_axis = 1 - record.axis if transposed else record.axis
    per_channel = record.scale.ndim == 1 and record.scale.size > 1
    zp = record.zero_point.reshape(-1)
    if per_channel and (file_axis != axis or record.scale.size != cout):
        scales, w_int = choose_weight_qparams(weight, axis, per_channel=True, narrow_range=False)
        changes.append(
            ForcedChange(
                layer=layer.name,
                kind="weights_requantized",
                detail=f"weight scales run along axis {record.axis} of {record.tensor!r}, not "
                "along the output channels; weights requantized per output channel",
            )
        )
        return (np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (cout,)), w_int), ints
    scale = np.broadcast_to(record.scale.reshape(-1), (cout,)).astype(np.float64)
    shape = [1] * weight.ndim
    shape[axis] = cout
    centered = ints - (np.broadcast_to(zp, (cout,)).reshape(shape) if zp.size > 1 else zp)
    if record.dtype != "int8" or np.any(zp != 0):
        if centered.min() >= -128 and centered.max() <= 127:
            changes.append(
                ForcedChange(
                    layer=layer.name,
                    kind="weight_zero_point",
                    detail=f"{record.dtype} weights {record.tensor!r} with zero point(s) "
                    f"{sorted(set(zp.tolist()))[:4]}: the MAC array takes int8 weights with zero "
                    "point 0; stored as q - zero_point (the same values, exact)",
                )
            )
        else:
            scales, w_int = choose_weight_qparams(
                weight, axis, per_channel=per_channel, narrow_range=False
            )
            scale = np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (cout,))
            changes.append(
                ForcedChange(
                    layer=layer.name,
                    kind="weight_dtype",
                    detail=f"{record.dtype} weights {record.tensor!r} (zero point(s) "
                    f"{sorted(set(zp.tolist()))[:4]}) span {int(centered.max() - centered.min())}"
                    f" steps; requantized to int8 with scales [{scale.min():.6g}, "
                    f"{scale.max():.6g}]",
                )
            )
            return (scale, w_int), ints
    w_int = np.asarray(centered).astype(np.int8)
    check = np.rint(weight / scale.reshape(shape))
    if not np.array_equal(check, w_int.astype(np.float64)):
        raise RuntimeError(
            f"layer {layer.name!r}: the file's weights {record.tensor!r} are not reproduced "
            "exactly by npuc's weight quantization (internal error)"
        )
    return (scale, w_int), ints


def plan_prequant(
    graph: Graph, source: SourceQuant, *, calibrated: frozenset[str] = frozenset()
) -> PreQuantPlan:
    """The file's quantization on ``graph`` (module docstring).

    ``calibrated`` names the tensors that have calibration statistics: a layer
    whose tensors the file leaves float runs on the NPU when all of them do.
    """
    names = map_source_names(graph, source.graph, source.weights)
    changes: list[ForcedChange] = []
    tensors: dict[str, QParams] = {}
    for src, record in source.activations.items():
        target = names.tensors.get(src)
        if target is None or (target in tensors and src != _canonical(names, target, source)):
            continue
        tensors[target] = _activation_qparams(src, record, changes)
    weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    file_weights: dict[str, np.ndarray] = {}
    for layer in graph.nodes:
        if layer.op not in ("conv2d", "dense"):
            continue
        sources = [n for n in source.graph.nodes if names.nodes.get(n.name) == layer.name]
        record_name = next((n.weight for n in sources if n.weight), None)
        if record_name is None:
            continue
        weight_record = source.weights[record_name]
        got = _weights(layer, weight_record, changes)
        if got is not None:
            weights[layer.name], file_weights[layer.name] = got
        else:
            changes.append(
                ForcedChange(
                    layer=layer.name,
                    kind="weights_requantized",
                    detail=f"the layer's weights are not the file's {weight_record.tensor!r}: the "
                    "midend folded an operation into them (a batch norm, a HardSigmoid's "
                    "scale); requantized per output channel from the folded float weights",
                )
            )
    float_layers: dict[str, str] = {}
    known = set(tensors) | set(calibrated)
    for layer in graph.nodes:
        ins = [t for t in layer.inputs if graph.tensor_type(t).is_float]
        missing = [t for t in ins if t not in known]
        if layer.op in PASS_THROUGH and not missing and layer.name not in known:
            known.add(layer.name)
            continue
        if layer.name not in known:
            missing.append(layer.name)
        if missing:
            float_layers[layer.name] = (
                f"the pre-quantized model leaves {', '.join(repr(m) for m in missing)} float; "
                "it runs float on the CPU (pass --calib to calibrate it instead)"
            )
    return PreQuantPlan(
        tensors=tensors,
        weights=weights,
        float_layers=float_layers,
        names=names,
        changes=tuple(changes),
        file_weights=file_weights,
    )


def _canonical(names: NameMap, target: str, source: SourceQuant) -> str:
    """The source tensor recorded for ``target`` that wins (the last one in graph order)."""
    found = [s for s in names.source_tensors(target) if s in source.activations]
    return found[-1] if found else ""


def datapath_changes(model: QuantizedModel, plan: PreQuantPlan) -> list[ForcedChange]:
    """Changes the derived integer parameters force: pass-through scales, bias and pre shifts."""
    changes: list[ForcedChange] = []
    for node in model.graph.nodes:
        layer = model.layers[node.name]
        if layer.run_on != "npu":
            continue
        wanted = plan.tensors.get(node.name)
        if node.op in PASS_THROUGH and wanted is not None and wanted != model.tensors[node.name]:
            got = model.tensors[node.name]
            changes.append(
                ForcedChange(
                    layer=node.name,
                    kind="pass_through_scale",
                    detail=f"the file quantizes its output with scale {wanted.scale:.6g}, zero "
                    f"point {wanted.zero_point}; a {layer.kind} keeps its input's "
                    f"({got.scale:.6g}, {got.zero_point})",
                )
            )
        changes.extend(_conv_changes(node, layer.params, model))
    return changes


def _conv_changes(
    node: Node, params: Mapping[str, Any], model: QuantizedModel
) -> list[ForcedChange]:
    if node.op not in ("conv2d", "dense") or not params:
        return []
    out: list[ForcedChange] = []
    shift = int(params["bias_shift"])
    if shift > 0:
        x_scale = model.tensors[node.inputs[0]].scale
        acc_scale = x_scale * np.asarray(params["weight_scales"], np.float64)
        bias = np.asarray(node.consts.get("bias", np.zeros(acc_scale.shape)), np.float64)
        exact = bias / acc_scale
        err = np.abs(exact - np.asarray(params["b16"], np.float64) * 2.0**shift)
        y_scale = model.tensors[node.name].scale
        worst = float(np.max(err * acc_scale / y_scale))
        big = int(np.sum(np.abs(exact) > 32767.5))
        out.append(
            ForcedChange(
                layer=node.name,
                kind="bias_shift",
                detail=f"{big} of {exact.size} int32 biases exceed 16 bits (largest "
                f"{int(np.max(np.abs(np.rint(exact))))}): bias_shift {shift}, each bias rounded "
                f"to a multiple of {2**shift} (at most {worst:.3g} output LSB)",
            )
        )
    pre = int(params["pre_shift"])
    if pre > 0:
        out.append(
            ForcedChange(
                layer=node.name,
                kind="pre_shift",
                detail=f"the accumulator bound needs pre_shift {pre}: its {pre} low bits are "
                "rounded before the 32-bit multiply",
            )
        )
    return out
