"""Lowering of :class:`NpuIm2col` (tap packing) to DMA hops: DRAM -> SRAM band -> DRAM.

Requires: a validated :class:`NpuIm2col` and the SRAM budget.
Guarantees: the program writes every output byte as :func:`im2col_reference`
does. The gather happens on the SRAM side, where the DMA has no burst rule:
a band of input rows is loaded with long DRAM runs into an SRAM buffer that
also holds the padding (zero-point bytes loaded from a constant row, DRAM
stride 0), and each output row is stored by one 3-D descriptor (planes =
output columns, rows = kernel rows, a row = one kernel row's ``kw`` pixels)
whose DRAM side is one contiguous run. Gathering directly from DRAM instead
would bill every ``kw * c``-byte run as a 64-byte burst. With a dilated
width (``dw > 1``) each tap is its own descriptor of short runs: correct,
slower, and the cycle estimate knows it. Band height: the candidate with
the fewest estimated cycles whose two band buffers fit the budget.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from npuc.backend.npu import encode
from npuc.backend.npu.lower_move import Hop, Transfer, plan_hops
from npuc.backend.npu.ops_taps import NpuIm2col
from npuc.backend.npu.perf import ceil_div
from npuc.backend.npu.plan import OpPlan, blob
from npuc.backend.npu.schedule import Step
from npuc.backend.npu.tiling import align
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import HwConfig


def _fills(op: NpuIm2col, a: int, b: int, zp: str) -> list[Transfer]:
    """Loads of band rows ``[a, b)`` (padded coordinates): the input and the zero-point border."""
    h, w, c = op.ifm.hwc
    px = c * op.ifm.itemsize
    top, left, _, right = op.padding
    prow = (w + left + right) * px
    out = []
    for r0, r1 in ((a, min(b, top)), (max(a, top + h), b)):
        if r1 > r0:
            out.append(
                Transfer(zp, 0, encode.Box(1, r1 - r0, prow, 0, 0, prow, 0), (r0 - a) * prow)
            )
    r0, r1 = max(a, top), min(b, top + h)
    if r1 > r0:
        n = r1 - r0
        at = (r0 - a) * prow
        out.append(
            Transfer(
                op.ifm.name,
                (r0 - top) * w * px,
                encode.Box(1, n, w * px, w * px, 0, prow, 0),
                at + left * px,
            )
        )
        for col, k in ((0, left), (left + w, right)):
            if k:
                out.append(Transfer(zp, 0, encode.Box(1, n, k * px, 0, 0, prow, 0), at + col * px))
    return out


def _stores(op: NpuIm2col, oy0: int, oy1: int, a: int) -> list[Transfer]:
    """Stores of output rows ``[oy0, oy1)`` from the band whose first padded row is ``a``."""
    _, w, c = op.ifm.hwc
    px = c * op.ifm.itemsize
    _, left, _, right = op.padding
    prow = (w + left + right) * px
    (kh, kw), (sh, sw), (dh, dw) = op.kernel, op.stride, op.dilation
    _, ow = op.out_hw
    pix = kh * kw * px  # one output pixel
    run, taps = (kw * px, 1) if dw == 1 else (px, kw)  # contiguous kernel row, or tap by tap
    out = []
    for t in range(taps):
        if kh == 1:  # rows packed only: one descriptor for the whole band
            box = encode.Box(oy1 - oy0, ow, run, pix, ow * pix, sw * px, sh * prow)
            out.append(
                Transfer(
                    op.ofm.name, oy0 * ow * pix + t * px, box, (oy0 * sh - a) * prow + t * dw * px
                )
            )
            continue
        for oy in range(oy0, oy1):
            box = encode.Box(ow, kh, run, kw * px, pix, dh * prow, sw * px)
            out.append(
                Transfer(
                    op.ofm.name, oy * ow * pix + t * px, box, (oy * sh - a) * prow + t * dw * px
                )
            )
    return out


def _hops(op: NpuIm2col, rows: int, zp: str) -> list[Hop]:
    (kh, _), (sh, _), (dh, _) = op.kernel, op.stride, op.dilation
    _, w, c = op.ifm.hwc
    _, left, _, right = op.padding
    prow = (w + left + right) * c * op.ifm.itemsize
    oh, _ = op.out_hw
    hops = []
    for oy0 in range(0, oh, rows):
        oy1 = min(oh, oy0 + rows)
        a, b = oy0 * sh, (oy1 - 1) * sh + dh * (kh - 1) + 1
        hops.append(
            Hop(tuple(_fills(op, a, b, zp)), tuple(_stores(op, oy0, oy1, a)), (b - a) * prow)
        )
    return hops


def _none(dram: Mapping[str, int], sram: Mapping[str, int]) -> list[Step]:
    return []


def plan_im2col(op: NpuIm2col, hw: HwConfig, sram_budget: int) -> OpPlan:
    """Bands of output rows through double-buffered SRAM (see the module docstring).

    A ``fused`` op gets an empty plan: the :class:`NpuTapConv2d` reading its
    output emits its DMA (:mod:`npuc.backend.npu.lower_tap_conv`).
    """
    if op.fused:
        return OpPlan(op.name, type(op).__name__, (), (), 0, "emitted by its convolution", 0, _none)
    _, w, c = op.ifm.hwc
    _, left, _, right = op.padding
    prow = (w + left + right) * c * op.ifm.itemsize
    (kh, _), (sh, _), (dh, _) = op.kernel, op.stride, op.dilation
    oh, _ = op.out_hw
    zp = f"{op.name}/zp"
    constants: tuple[tuple[str, np.ndarray], ...] = ()
    if any(op.padding):
        row = np.full(prow // op.ifm.itemsize, op.ifm.zero_point, dtype=op.ifm.dtype)
        constants = ((zp, blob(row)),)
    best: OpPlan | None = None
    for n in sorted({ceil_div(oh, k) for k in range(1, oh + 1)}, reverse=True):
        band = align(((n - 1) * sh + dh * (kh - 1) + 1) * prow)
        if 2 * band > sram_budget:  # the zero-point row stays in DRAM (loaded into each band)
            continue
        hops = _hops(op, n, zp)
        plan = plan_hops(op, hw, hops, f"{len(hops)} band(s) of {n} output row(s)", constants)
        if best is None or plan.est_cycles < best.est_cycles:
            best = plan
    if best is None:
        raise UnsupportedError(
            f"NPU op {op.name!r}: one output row's input band ({(dh * (kh - 1) + 1) * prow} bytes)"
            " does not fit SRAM twice",
            hint="use a hardware config with more SRAM",
        )
    return best
