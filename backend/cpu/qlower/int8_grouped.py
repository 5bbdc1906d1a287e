"""Grouped integer conv2d (``1 < groups``, not depthwise) through the int8 kernels, one
call per group.

Requires: an integer ``conv2d`` layer with ``groups = G`` in ``(1,``
:data:`MAX_GROUPS` ``]`` dividing both channel counts, at least two input
channels per group (not depthwise), and each group's convolution eligible for
:func:`~.int8_conv.plan_conv` (its requirements, per group: int8/uint8 input,
weights within int8, accumulator bound below 2^31, shifts and multipliers in
range). Anything else returns None and keeps the generic lowering of
:mod:`.conv`.

Guarantees: the stored output integers of the integer executor, bit for bit.
Output channel ``o`` of a grouped convolution is the dot product of its
weights with the ``C / G`` input channels of its group, then the per-channel
output stage; group ``g`` is therefore exactly the ungrouped convolution of
input channels ``[g C/G, (g+1) C/G)`` with output channels ``[g O/G, (g+1)
O/G)`` and their biases and multipliers, which :func:`~.int8_conv.emit_int8_conv`
computes exactly; the groups' outputs are concatenated along the channels
(:func:`~.concat_kernel.emit_concat`).
(ShuffleNet's 1x1 group convolutions ran on the generic path: the int8
kernels took ``groups == 1`` only.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tvm import relax

from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qparams import QParams

from .concat_kernel import emit_concat
from .int8_conv import emit_int8_conv, plan_conv
from .intops import shape_of

#: Most groups lowered this way (each is a slice, an input packing and a kernel call).
MAX_GROUPS = 32
#: Per-output-channel parameters of a conv layer (sliced per group when per channel).
PER_CHANNEL = ("b16", "ofm_multiplier")


def _group_params(p: Mapping[str, Any], g: int, oc_g: int, oc: int) -> dict[str, Any]:
    sliced = dict(p)
    sliced["weights"] = np.asarray(p["weights"])[g * oc_g : (g + 1) * oc_g]
    for key in PER_CHANNEL:
        value = np.asarray(p[key])
        if value.size == oc and oc > 1:
            sliced[key] = value.reshape(-1)[g * oc_g : (g + 1) * oc_g]
    return sliced


def emit_int8_grouped_conv(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    x: relax.Expr,
    xq: QParams,
    out: QParams,
) -> relax.Expr | None:
    """Stored output integers of a grouped conv2d through the int8 kernel, one call per
    group, or None (not eligible; nothing emitted). Shapes: ``x (n, C, h, w)``,
    ``weights (O, C / G, kh, kw)`` -> ``(n, O, oh, ow)`` of ``out.dtype``."""
    if node.op != "conv2d":
        return None
    groups = int(node.attr("groups"))
    x_shape = shape_of(x)
    weights = np.asarray(p["weights"])
    if groups <= 1 or len(x_shape) != 4 or weights.ndim != 4:
        return None
    n, c, h, w = x_shape
    oc = weights.shape[0]
    if c % groups or oc % groups or weights.shape[1] * groups != c:
        return None
    c_g, oc_g = c // groups, oc // groups
    if c_g < 2 or groups > MAX_GROUPS:  # depthwise-like: per-channel calls would not pay
        return None
    single = Node(
        name=node.name, op="conv2d", inputs=node.inputs, out=node.out,
        attrs={**node.attrs, "groups": 1},
    )  # fmt: skip
    params = [_group_params(p, g, oc_g, oc) for g in range(groups)]
    if any(plan_conv(single, q, (n, c_g, h, w), xq, out) is None for q in params):
        return None
    parts = []
    for g, q in enumerate(params):
        part = Node(
            name=f"{node.name}_g{g}", op="conv2d", inputs=node.inputs, out=node.out,
            attrs=single.attrs,
        )  # fmt: skip
        xg = bb.emit(relax.op.strided_slice(x, axes=[1], begin=[g * c_g], end=[(g + 1) * c_g]))
        y = emit_int8_conv(bb, part, q, xg, xq, out)
        assert y is not None  # planned above
        parts.append(y)
    return emit_concat(bb, parts, 1, node.name)
