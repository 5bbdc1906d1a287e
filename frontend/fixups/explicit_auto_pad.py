"""Replace ``auto_pad`` by the explicit ``pads`` it stands for.

TVM 0.27 sizes ``auto_pad=SAME_LOWER`` pooling with floor instead of ceil
(apache/tvm PR #20404): MaxPool 3x3, stride 2 on a 5x5 input gives 2x2
where ONNX and onnxruntime give 3x3. Rather than trust each converter's own
``auto_pad`` arithmetic, this fix-up computes the pads from the ONNX
operator spec for every node that has the attribute (Conv, MaxPool,
AveragePool at any spatial rank and stride) and writes them as ``pads``.

The ONNX rule for ``SAME_UPPER``/``SAME_LOWER``: each spatial output is
``ceil(in / stride)``; the total padding ``(out - 1) * stride + (kernel -
1) * dilation + 1 - in`` is split in two halves, the odd one at the end
(SAME_UPPER) or at the start (SAME_LOWER). ``VALID`` is zero padding.
Left alone for the support rules to decline: pools with ``ceil_mode=1``
(ONNX shape inference and onnxruntime disagree on their size) and pools
whose SAME padding is negative, dilated SAME Convs (onnxruntime refuses
them) and dilated SAME pools (onnxruntime sizes them without the dilation). A Conv's
negative SAME padding is clamped to 0, as onnxruntime does.

Pools with explicit pads and ``ceil_mode=1`` become ``ceil_mode=0`` with the
end pads that give the ONNX output size (:func:`ceil_mode_pads`): TVM's own
ceil sizing and onnx's shape inference both miss the spec's rule that a
window starting in the end padding is dropped.

Guarantee: each rewritten node computes what the original computes under
the ONNX spec (onnxruntime agrees: tests/frontend/test_onnx_differential.py).
Nodes whose input or kernel shape is not static are left alone.
ConvTranspose is left alone (its ``auto_pad`` sizes the output, not the
input; npuc's rule declines ``auto_pad`` there).
"""

from __future__ import annotations

from typing import cast

import onnx
from onnx import helper

from ._graph import static_shapes

_OPS = ("Conv", "MaxPool", "AveragePool")


def same_pads(
    in_sizes: tuple[int, ...],
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    lower: bool,
    clamp: bool,
) -> list[int]:
    """ONNX pads ``[begin..., end...]`` for ``auto_pad=SAME_UPPER`` (or ``SAME_LOWER``).

    A negative total is clamped to 0 when ``clamp`` (onnxruntime's Conv),
    else returned split into negative pads.
    """
    begins, ends = [], []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = (out - 1) * s + (k - 1) * d + 1 - size
        total = max(0, total) if clamp else total
        small, big = total // 2, total - total // 2
        begins.append(big if lower else small)
        ends.append(small if lower else big)
    return begins + ends


def explicit_auto_pad(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every Conv/MaxPool/AveragePool ``auto_pad`` into ``pads`` (in place; returns it)."""
    nodes = [
        n
        for n in model.graph.node
        if n.op_type in _OPS
        and n.domain in ("", "ai.onnx")
        and (_attr(n, "auto_pad", "NOTSET") not in ("NOTSET", "") or _attr(n, "ceil_mode", 0))
    ]
    if not nodes:
        return model
    shapes = static_shapes(model)
    for node in nodes:
        _rewrite(node, shapes)
    return model


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _ints(node: onnx.NodeProto, name: str) -> tuple[int, ...] | None:
    """An ints attribute as a tuple, or ``None`` when the node does not set it."""
    value = _attr(node, name, None)
    return None if value is None else tuple(int(v) for v in cast("list[int]", value))


def _rewrite(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> None:
    x_shape = shapes.get(node.input[0])
    if x_shape is None or len(x_shape) < 3:
        return
    spatial = tuple(x_shape[2:])
    kernel = _ints(node, "kernel_shape")
    if kernel is None and node.op_type == "Conv":
        w_shape = shapes.get(node.input[1]) if len(node.input) > 1 else None
        kernel = None if w_shape is None else tuple(w_shape[2:])
    if kernel is None or len(kernel) != len(spatial):
        return
    rank = len(spatial)
    strides = _ints(node, "strides") or (1,) * rank
    dilations = _ints(node, "dilations") or (1,) * rank
    mode = str(_attr(node, "auto_pad", "NOTSET"))
    ceil = bool(_attr(node, "ceil_mode", 0))
    if mode in ("NOTSET", "") and ceil and node.op_type != "Conv":
        _floor_mode(node, spatial, tuple(kernel), strides, dilations)
        return
    if ceil:
        return  # ONNX and onnxruntime disagree on the size; the support rule declines it
    if mode == "VALID":
        pads = [0] * (2 * rank)
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        conv = node.op_type == "Conv"
        if any(d > 1 for d in dilations):
            return  # onnxruntime refuses (Conv) or mis-sizes (pools) it; the rules decline it
        pads = same_pads(spatial, tuple(kernel), strides, dilations, mode == "SAME_LOWER", conv)
        if min(pads) < 0:
            return  # onnxruntime refuses negative pool padding; the support rule declines it
    else:
        return
    drop = {"auto_pad", "pads"} | ({"ceil_mode"} if mode != "VALID" else set())
    kept = [a for a in node.attribute if a.name not in drop]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.append(helper.make_attribute("pads", pads))


def ceil_mode_pads(
    in_sizes: tuple[int, ...],
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    pads: list[int],
) -> list[int] | None:
    """Pads that give, with ``ceil_mode=0``, the output size ONNX specifies for ``ceil_mode=1``.

    ONNX: ``out = ceil((in + pads - dilated kernel) / stride) + 1``, less one
    when the last window would start in the end padding (onnxruntime does
    the same). Only end pads grow. ``None`` when the kernel does not fit.
    """
    rank = len(in_sizes)
    ends = list(pads[rank:])
    for axis, (size, k, s, d) in enumerate(zip(in_sizes, kernel, strides, dilations, strict=True)):
        begin, end = pads[axis], pads[axis + rank]
        span = size + begin + end - ((k - 1) * d + 1)
        if span < 0:
            return None
        out = -(-span // s) + 1
        if (out - 1) * s >= size + begin:
            out -= 1
        if span // s + 1 != out:
            ends[axis] = (out - 1) * s + (k - 1) * d + 1 - size - begin
    return list(pads[:rank]) + ends


def _floor_mode(
    node: onnx.NodeProto,
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
) -> None:
    """Turn a pool's ``ceil_mode=1`` into ``ceil_mode=0`` with the end pads it implies.

    Exact for MaxPool (padding never wins a max) and for AveragePool with
    ``count_include_pad=0`` (padding is not counted); an AveragePool that
    counts padding and would gain a window is left for the rule to decline.
    """
    rank = len(spatial)
    pads = list(_attr(node, "pads", None) or [0] * (2 * rank))  # type: ignore[call-overload]
    new = ceil_mode_pads(spatial, kernel, strides, dilations, pads)
    if new is None:
        return
    counts_pad = node.op_type == "AveragePool" and bool(_attr(node, "count_include_pad", 0))
    if counts_pad and new != pads:
        return
    kept = [a for a in node.attribute if a.name not in ("pads", "ceil_mode")]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.append(helper.make_attribute("pads", new))
