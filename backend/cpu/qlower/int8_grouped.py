"""Grouped integer conv2d (``1 < groups``, not depthwise) as one input packing and one int8
kernel call for all the groups.

Requires: an integer ``conv2d`` layer with ``groups = G > 1`` dividing both
channel counts, at least two input channels per group (not depthwise), and
each group's convolution eligible for :func:`~.int8_conv.plan_conv` (its
requirements, per group: int8/uint8 input, weights within int8, accumulator
bound below 2^31, shifts and multipliers in range). Anything else returns
None and keeps the generic lowering of :mod:`.conv`.

Guarantees: the stored output integers of the integer executor, bit for bit.
Output channel ``o`` of a grouped convolution is the dot product of its
weights with the ``c_g = C / G`` input channels of its group, then the
per-channel output stage; group ``g`` is therefore exactly the ungrouped
convolution of input channels ``[g c_g, (g+1) c_g)`` with output channels
``[g O/G, (g+1) O/G)`` and their biases and multipliers. How it runs:

- the whole input is packed once (:func:`~npuc.backend.cpu.schedules.int8_pack.make_packer`:
  channels in groups of 4), and group ``g`` reads the ``cg`` channel groups
  from the one holding channel ``g c_g``, i.e. input channels ``[4 b_g, 4 (b_g
  + cg))`` with ``b_g = (g c_g) // 4``;
- its weights are placed at channel ``g c_g - 4 b_g`` of those ``4 cg`` and
  are 0 on the other channels (another group's, or padding beyond ``C``
  holding ``zp_u``): a zero weight adds 0 to the sum and to the zero-point
  correction, so each group's sum is its own convolution's, exactly;
- one kernel (:func:`~npuc.backend.cpu.schedules.int8_kernel.make_kernel`
  with ``groups = G``) runs every group's channel tiles in parallel and
  writes output channel ``g O/G + o`` of the one ``(n, O, oh * ow)`` result
  (no slices, no concatenation).

When ``c_g`` is a multiple of 4 the groups' channel groups are disjoint
(``cg = c_g / 4``); otherwise a group may share a channel group with its
neighbour, costing at most one more channel group per group (e.g. ``c_g =
34``: 9 groups of 4, as padding ``c_g`` to 36 would).
(Before: one slice, packing and kernel call per group and a concatenation:
on ShuffleNet as many calls as the work took time.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from tvm import relax

from npuc.backend.cpu.schedules.int8_kernel import GENERIC, GROUP, ConvKernelSpec, make_kernel
from npuc.backend.cpu.schedules.int8_pack import PackSpec, make_packer
from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qparams import QParams

from .int8_conv import pack_constants, plan_conv
from .intops import shape_of

#: Per-output-channel parameters of a conv layer (sliced per group when per channel).
PER_CHANNEL = ("b16", "ofm_multiplier")


def group_channel_groups(c_g: int, groups: int) -> int:
    """Channel groups of 4 every group reads: enough for the group whose first channel
    ``g c_g`` sits furthest into its group of 4."""
    return max(-(-(c_g + g * c_g % GROUP) // GROUP) for g in range(groups))


def _group_params(p: Mapping[str, Any], g: int, groups: int, cg: int, c_g: int) -> dict[str, Any]:
    """Group ``g``'s weights on its ``4 cg`` channels (zero outside its own) and its slice
    of the per-channel parameters."""
    weights = np.asarray(p["weights"])
    oc_g = weights.shape[0] // groups
    own = weights[g * oc_g : (g + 1) * oc_g]
    placed = np.zeros((oc_g, cg * GROUP, *own.shape[2:]), own.dtype)
    start = g * c_g % GROUP
    placed[:, start : start + c_g] = own
    sliced = {**p, "weights": placed}
    for key in PER_CHANNEL:
        value = np.asarray(p[key])
        if value.size == weights.shape[0] and weights.shape[0] > 1:
            sliced[key] = value.reshape(-1)[g * oc_g : (g + 1) * oc_g]
    return sliced


def plan_grouped(
    node: Node, p: Mapping[str, Any], x_shape: tuple[int, ...], xq: QParams, out: QParams
) -> tuple[ConvKernelSpec, list[dict[str, Any]]] | None:
    """The one kernel's spec (``groups = G``) and each group's parameters (weights placed as
    in the module docstring), or None when the layer is outside the module's requirements."""
    if node.op != "conv2d":
        return None
    groups = int(node.attr("groups"))
    weights = np.asarray(p["weights"])
    if groups <= 1 or len(x_shape) != 4 or weights.ndim != 4:
        return None
    n, c, h, w = x_shape
    oc = weights.shape[0]
    if c % groups or oc % groups or weights.shape[1] * groups != c:
        return None
    c_g = c // groups
    if c_g < 2:  # depthwise-like: the depthwise kernels take those
        return None
    cg = group_channel_groups(c_g, groups)
    single = replace(node, attrs={**node.attrs, "groups": 1})
    params = [_group_params(p, g, groups, cg, c_g) for g in range(groups)]
    specs = [plan_conv(single, q, (n, cg * GROUP, h, w), xq, out) for q in params]
    if any(s is None for s in specs):
        return None
    known = [s for s in specs if s is not None]
    # Every group has the same shapes and output stage; the bounds-based shortcuts hold for
    # all groups only when they hold for each (the unshortened forms are exact for any).
    spec = replace(
        known[0], groups=groups, group_cin=c_g,
        need_sat32=max(s.need_sat32 for s in known), narrow=min(s.narrow for s in known),
        fits32=min(s.fits32 for s in known),
    )  # fmt: skip
    return spec, params


def emit_int8_grouped_conv(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    x: relax.Expr,
    xq: QParams,
    out: QParams,
) -> relax.Expr | None:
    """Stored output integers of a grouped conv2d through one packing and one int8 kernel
    call, or None (not eligible; nothing emitted). Shapes: ``x (n, C, h, w)``, ``weights
    (O, C / G, kh, kw)`` -> ``(n, O, oh, ow)`` of ``out.dtype``."""
    x_shape = shape_of(x)
    planned = plan_grouped(node, p, x_shape, xq, out)
    if planned is None:
        return None
    spec, params = planned
    n, c, h, w = x_shape
    pt, pl, pb, _ = (int(v) for v in node.attr("padding"))
    pack = PackSpec(
        n=n, c=c, h=h, w=w, dtype=xq.dtype, pt=pt, pl=pl, sh=spec.stride_h, sw=spec.stride_w,
        cg=spec.x_groups, hq=-(-(h + pt + pb) // spec.stride_h), wq=spec.wq, q=spec.q,
        zp_u=spec.zp_u,
    )  # fmt: skip
    packer = bb.add_func(make_packer(pack), f"int8_pack_{node.name}")
    xp_type = relax.TensorType((n, spec.x_groups, spec.phases, spec.q * GROUP), "uint8")
    xp = bb.emit(relax.call_tir(packer, relax.Tuple([x]), xp_type))
    one = replace(spec, groups=1, group_cin=0)
    per_group = [pack_constants(one, q) for q in params]
    consts = [
        relax.const(np.ascontiguousarray(np.concatenate(parts)), str(parts[0].dtype))
        for parts in zip(*per_group, strict=True)
    ]
    kernel = bb.add_func(make_kernel(spec, GENERIC), f"int8_conv_{node.name}")
    oc = spec.groups * spec.oc
    y_type = relax.TensorType((n, oc, spec.oh * spec.ow), out.dtype)
    y = bb.emit(relax.call_tir(kernel, relax.Tuple([xp, *consts]), y_type))
    return bb.emit(relax.op.reshape(y, (n, oc, spec.oh, spec.ow)))
