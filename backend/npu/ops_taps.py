"""Tap packing's data-movement op (part of the seam, re-exported by :mod:`npuc.backend.npu.ops`).

:class:`NpuIm2col` gathers the input pixels of several kernel taps into the
channel dimension by DMA (im2col), so a convolution with few input channels
becomes one with ``kh * kw * c`` channels that fills the MAC array's columns
(:mod:`npuc.backend.npu.tap_pack` decides when). Bytes move unchanged, so
input and output are quantized alike; padded positions hold the zero point,
exactly as the CONV instruction's own padding does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuc.backend.npu.ops_conv import NpuConv2d
from npuc.backend.npu.tensor import NpuTensor, fail, same_quant, window_out
from npuc.core.errors import UnsupportedError


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuIm2col:
    """``ofm[0, oy, ox, (ky * kw + kx) * c + ci] = xp[oy * sh + ky * dh, ox * sw + kx * dw, ci]``.

    ``xp`` is the ifm padded by ``padding`` (top, left, bottom, right) with its
    zero point; ``ofm`` is ``(1, oh, ow, kh * kw * c)`` with ``oh``, ``ow`` the
    window's output size. With ``kernel = (1, kw)`` and ``stride = (1, sw)``
    only the taps of a row are packed (``ofm`` keeps the input's rows).
    Rules (InvalidInputError otherwise): same quantization in and out, each
    pad below the dilated kernel extent, stride and dilation in [1, 15].
    With ``fused`` the op only owns its DRAM output; the :class:`NpuTapConv2d`
    that reads it emits the gather interleaved with the convolution.
    """

    name: str
    ifm: NpuTensor
    ofm: NpuTensor
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    fused: bool = False  # True: the NpuTapConv2d reading ofm emits this op's DMA (interleaved)

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output rows and columns of the window."""
        h, w, _ = self.ifm.hwc
        top, left, bottom, right = self.padding
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        return window_out(h, top, bottom, kh, sh, dh), window_out(w, left, right, kw, sw, dw)

    def validate(self) -> None:
        """Raise naming the op (rules: class docstring)."""
        same_quant(self.name, self.ifm, self.ofm)
        (kh, kw), (dh, dw) = self.kernel, self.dilation
        if not all(1 <= v <= 15 for v in (*self.stride, *self.dilation)) or min(kh, kw) < 1:
            raise UnsupportedError(
                f"NPU op {self.name!r}: kernel {self.kernel}, stride {self.stride} or dilation"
                f" {self.dilation} outside the ISA's ranges"
            )
        top, left, bottom, right = self.padding
        if min(self.padding) < 0 or max(top, bottom) > dh * (kh - 1):
            raise fail(self.name, f"padding {self.padding} not below the kernel's extent")
        if max(left, right) > dw * (kw - 1):
            raise fail(self.name, f"padding {self.padding} not below the kernel's extent")
        oh, ow = self.out_hw
        want = (1, oh, ow, kh * kw * self.ifm.shape[3])
        if self.ofm.shape != want:
            raise fail(self.name, f"ofm shape {self.ofm.shape}, the geometry gives {want}")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuTapConv2d:
    """A tap-packed convolution emitted as one interleaved plan: ``conv`` over ``gather``'s output.

    ``gather`` is the graph's (``fused``) :class:`NpuIm2col` that owns the
    packed tensor; this op reads the original input (``ifm``, for the gather)
    and the packed tensor, and writes ``conv``'s output. Same name as ``conv``.
    """

    name: str
    gather: NpuIm2col
    conv: NpuConv2d

    @property
    def ifm(self) -> NpuTensor:
        return self.gather.ifm

    @property
    def ofm(self) -> NpuTensor:
        return self.conv.ofm

    @property
    def macs(self) -> int:
        return self.conv.macs

    def validate(self) -> None:
        """Both parts valid, the convolution reads the gather's output, one name."""
        self.gather.validate()
        self.conv.validate()
        if self.conv.ifm != self.gather.ofm or self.conv.name != self.name:
            raise fail(self.name, "the convolution must read the gather's output, under one name")


def im2col_reference(op: NpuIm2col, x: np.ndarray) -> np.ndarray:
    """The op on an NHWC array ``x`` (numpy, untiled): what the program must produce."""
    top, left, bottom, right = op.padding
    xp = np.pad(
        x,
        ((0, 0), (top, bottom), (left, right), (0, 0)),
        constant_values=op.ifm.zero_point,
    )
    (kh, kw), (sh, sw), (dh, dw) = op.kernel, op.stride, op.dilation
    oh, ow = op.out_hw
    taps = [
        xp[
            :,
            ky * dh : ky * dh + (oh - 1) * sh + 1 : sh,
            kx * dw : kx * dw + (ow - 1) * sw + 1 : sw,
        ]
        for ky in range(kh)
        for kx in range(kw)
    ]
    return np.concatenate(taps, axis=3)
