"""Tap packing: a convolution with few input channels as im2col (DMA) + a deep convolution.

A 3-channel first layer fills only 3 of the MAC array's ``mac_cols`` input
columns, so each of its ``kh * kw`` taps is a fold of its own. Packing the
taps into the channel dimension (:class:`NpuIm2col`, lowered by DMA in
:mod:`npuc.backend.npu.lower_taps`) turns it into

- **full** packing: a 1x1 convolution over ``kh * kw * c`` channels
  (``ceil(kh kw c / mac_cols)`` folds per output-channel block instead of
  ``kh kw``), or
- **row** packing: a ``kh x 1`` convolution over ``kw * c`` channels (the
  packed tensor is about ``sh / kh`` of the full one; vertical padding stays
  the CONV instruction's own).

The weights need no reordering beyond a reshape: OHWI ``(cout, kh, kw, c)``
flattened over ``(kh, kw, c)`` is exactly the packed channel order
``(ky * kw + kx) * c + ci``, and ``(cout, kh, 1, kw * c)`` for row packing.
Bit-exactness: every output sums the same products ``(x - ifm_zp) * w``
(padded taps hold ``ifm_zp`` in the packed tensor, as in the CONV's
padding), adds the same bias, and saturates (48 bits), shifts ahead and
requantizes the full sum once, with the same operands.

Either variant runs as two ops (the im2col, then the convolution: the
convolution's output stores queue behind the whole gather on DMA-out) or
as one interleaved plan (:class:`NpuTapConv2d`, the gather a few bands
ahead of the convolution, :mod:`npuc.backend.npu.lower_tap_conv`).

Choice (:func:`pack_graph`): for each regular convolution with fewer input
channels than ``mac_cols`` and more than one tap, the candidate with the
fewest estimated cycles (two ops: the sum of their estimates; interleaved:
the replay of its steps) wins if it beats the plain convolution by more
than ``MIN_GAIN``.
"""

from __future__ import annotations

import dataclasses

from npuc.backend.npu.lower_tap_conv import plan_tap_conv
from npuc.backend.npu.lower_taps import plan_im2col
from npuc.backend.npu.ops import NpuConv2d, NpuGraph, NpuOp
from npuc.backend.npu.ops_taps import NpuIm2col, NpuTapConv2d
from npuc.backend.npu.tiling import WindowTiling, choose_window_tiling, tiling_key
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import HwConfig

MIN_GAIN = 0.05  # packing must save more than this fraction of the plain estimate
VARIANTS = ("full", "rows")
IFM_C_MAX = 65535  # widest packed tensor a CONV instruction can read


def eligible(op: NpuOp, hw: HwConfig) -> bool:
    """A regular convolution with several taps and fewer input channels than array columns."""
    return (
        isinstance(op, NpuConv2d)
        and not op.depthwise
        and op.kernel != (1, 1)
        and op.ifm.shape[3] < hw.mac_cols
    )


def packed(op: NpuConv2d, variant: str) -> tuple[NpuIm2col, NpuConv2d]:
    """The im2col op and the convolution over its output that together compute ``op``.

    ``variant`` is ``"full"`` or ``"rows"`` (module docstring). The new
    convolution keeps ``op``'s name and output tensor; the im2col op is
    ``<name>.taps`` (so errors map to the layer) writing ``<name>.taps_ifm``.
    """
    (kh, kw), (sh, sw), (dh, dw) = op.kernel, op.stride, op.dilation
    top, left, bottom, right = op.padding
    c = op.ifm.shape[3]
    if variant == "full":
        gather = ((kh, kw), (sh, sw), (dh, dw), op.padding)
        conv = {"stride": (1, 1), "dilation": (1, 1), "padding": (0, 0, 0, 0)}
        wshape = (-1, 1, 1, kh * kw * c)
    elif variant == "rows":
        gather = ((1, kw), (1, sw), (1, dw), (0, left, 0, right))
        conv = {"stride": (sh, 1), "dilation": (dh, 1), "padding": (top, 0, bottom, 0)}
        wshape = (-1, kh, 1, kw * c)
    else:
        raise ValueError(f"tap packing variant {variant!r} is not one of {VARIANTS}")
    kernel, stride, dilation, padding = gather
    probe = NpuIm2col(
        name=f"{op.name}.taps",
        ifm=op.ifm,
        ofm=op.ifm,
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        padding=padding,
    )
    oh, ow = probe.out_hw
    taps = dataclasses.replace(
        op.ifm, name=f"{op.name}.taps_ifm", shape=(1, oh, ow, kernel[0] * kernel[1] * c)
    )
    im2col = dataclasses.replace(probe, ofm=taps)
    weights = op.weights.reshape(wshape)
    return im2col, dataclasses.replace(op, ifm=taps, weights=weights, **conv)  # type: ignore[arg-type]


def interleaved(op: NpuConv2d, variant: str) -> tuple[NpuIm2col, NpuTapConv2d]:
    """:func:`packed`, emitted as one plan: the gather (``fused``) only owns the packed tensor."""
    im2col, conv = packed(op, variant)
    gather = dataclasses.replace(im2col, fused=True)
    return gather, NpuTapConv2d(name=op.name, gather=gather, conv=conv)


def rewrite(op: NpuConv2d, choice: str) -> tuple[NpuOp, ...]:
    """The ops replacing ``op`` for a :func:`choose` result (``"plain"``: ``op`` itself)."""
    if choice == "plain":
        return (op,)
    variant, _, mode = choice.partition("+")
    return interleaved(op, variant) if mode else packed(op, variant)


def _tiling(
    op: NpuConv2d,
    hw: HwConfig,
    budget: int,
    cache: dict[tuple[object, ...], WindowTiling] | None,
) -> WindowTiling:
    key = tiling_key(op)
    t = cache.get(key) if cache is not None else None
    if t is None:
        t = choose_window_tiling(op, hw, budget)
        if cache is not None:
            cache[key] = t
    return t


def choose(
    op: NpuConv2d,
    hw: HwConfig,
    budget: int,
    cache: dict[tuple[object, ...], WindowTiling] | None = None,
) -> tuple[str | None, dict[str, int]]:
    """The choice (None: plain) and every candidate's estimated cycles ("plain" too).

    Candidates: ``"full"``, ``"rows"`` (two ops, estimates added) and
    ``"full+interleaved"``, ``"rows+interleaved"`` (one merged plan,
    :mod:`npuc.backend.npu.lower_tap_conv`, its replayed estimate).

    A candidate that does not fit the SRAM budget or whose packed channels
    exceed the ISA's ``ifm_c`` range is left out; if the plain
    convolution itself does not fit, its UnsupportedError propagates.
    """
    ests = {"plain": _tiling(op, hw, budget, cache).est_cycles}
    for variant in VARIANTS:
        im2col, conv = packed(op, variant)
        if conv.ifm.shape[3] > IFM_C_MAX:  # the CONV's ifm_c field
            continue
        try:
            ests[variant] = (
                plan_im2col(im2col, hw, budget).est_cycles
                + _tiling(conv, hw, budget, cache).est_cycles
            )
            ests[f"{variant}+interleaved"] = plan_tap_conv(
                interleaved(op, variant)[1], hw, budget
            ).est_cycles
        except UnsupportedError:
            continue
    best = min(ests, key=lambda v: ests[v])
    if best != "plain" and ests[best] < ests["plain"] * (1 - MIN_GAIN):
        return best, ests
    return None, ests


def pack_graph(
    graph: NpuGraph,
    hw: HwConfig,
    budget: int,
    cache: dict[tuple[object, ...], WindowTiling] | None = None,
) -> NpuGraph:
    """``graph`` with every eligible convolution tap-packed where the estimate says it helps.

    A convolution that already reads an :class:`NpuIm2col`'s output is left alone.
    """
    ops: list[NpuOp] = []
    gathered = {op.ofm.name for op in graph.ops if isinstance(op, NpuIm2col)}
    for op in graph.ops:
        if isinstance(op, NpuConv2d) and eligible(op, hw) and op.ifm.name not in gathered:
            choice, _ = choose(op, hw, budget, cache)
            if choice is not None:
                ops.extend(rewrite(op, choice))
                continue
        ops.append(op)
    return dataclasses.replace(graph, ops=tuple(ops))


__all__ = [
    "MIN_GAIN",
    "VARIANTS",
    "choose",
    "eligible",
    "interleaved",
    "pack_graph",
    "packed",
    "rewrite",
]
