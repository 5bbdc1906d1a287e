"""The convolution op of the NPU seam (re-exported by :mod:`npuc.backend.npu.ops`).

A module of its own so that ops built on a convolution (tap packing's
:class:`~npuc.backend.npu.ops_taps.NpuTapConv2d`) can hold one without an
import cycle through ``ops.py``. Conventions: see :mod:`npuc.backend.npu.ops`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuc.backend.npu.tensor import (
    DTYPE_RANGES,
    MULTIPLIER_MAX,
    NpuTensor,
    check_act,
    check_shift,
    fail,
    window_out,
)
from npuc.core.errors import UnsupportedError


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuConv2d:
    """Convolution (regular, depthwise with ``groups == cin``, FC as a 1x1 conv on a 1x1 map).

    Rules (UnsupportedError otherwise): groups is 1 or ``cin`` (depthwise,
    ``cout`` a multiple of ``cin``); int8/uint8 or int16 ifm; stride and
    dilation in [1, 15]; kernel and padding at most 255; each pad smaller
    than the dilated kernel extent (every output row sees a real input row).
    With ``lut`` set, the output stage looks the requantized value (saturated
    to ``lut_in_dtype``) up in the table instead of clamping (a fused
    activation such as sigmoid); the table has entries of the ofm dtype.
    """

    name: str
    ifm: NpuTensor
    ofm: NpuTensor
    weights: np.ndarray
    bias: np.ndarray | None
    bias_shift: int = 0
    ofm_multiplier: np.ndarray
    pre_shift: int = 0
    post_shift: int
    act_min: int
    act_max: int
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1
    lut: np.ndarray | None = None
    lut_in_dtype: str = "int8"
    lut_bits: int = 8
    lut_x_min: int = -32768
    lut_f: int = 8

    @property
    def lut_entries(self) -> int:
        """Fused table entries: 256 for an 8-bit ``lut_in_dtype``, else ``2^lut_bits + 1``."""
        return (1 << self.lut_bits) + 1 if self.lut_in_dtype == "int16" else 256

    @property
    def depthwise(self) -> bool:
        return self.groups != 1

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weights.shape[1]), int(self.weights.shape[2])

    @property
    def macs(self) -> int:
        _, oh, ow, oc = self.ofm.shape
        return oh * ow * oc * int(np.prod(self.weights.shape[1:]))

    def validate(self) -> None:
        """Raise InvalidInputError / UnsupportedError naming the op (rules: class docstring)."""
        n = self.name
        h, w, cin = self.ifm.hwc
        _, oh, ow, cout = self.ofm.shape
        if self.weights.dtype != np.int8 or self.weights.ndim != 4:
            raise fail(
                n, f"weights must be int8 OHWI, got {self.weights.dtype} {self.weights.shape}"
            )
        if self.groups not in (1, cin):
            raise UnsupportedError(
                f"NPU op {n!r}: groups = {self.groups}; the NPU runs groups 1 or depthwise"
                f" (groups = cin = {cin})",
                hint="split the grouped convolution into per-group convolutions",
            )
        cin_pg = 1 if self.depthwise else cin
        kh, kw = self.kernel
        if self.weights.shape != (cout, kh, kw, cin_pg) or (self.depthwise and cout % cin):
            raise fail(
                n,
                f"weights {self.weights.shape} do not match ifm {self.ifm.shape}"
                f" / ofm {self.ofm.shape} / groups {self.groups}",
            )
        if self.bias is not None and (self.bias.dtype != np.int16 or self.bias.shape != (cout,)):
            raise fail(n, f"bias must be int16 ({cout},), got {self.bias.dtype} {self.bias.shape}")
        m = self.ofm_multiplier
        if m.dtype != np.uint16 or m.shape not in ((cout,), (1,)) or int(m.max()) > MULTIPLIER_MAX:
            raise fail(n, f"ofm_multiplier must be uint16 <= {MULTIPLIER_MAX}, ({cout},) or (1,)")
        check_shift(n, "bias_shift", self.bias_shift, 31)
        check_shift(n, "pre_shift", self.pre_shift, 16)
        check_shift(n, "post_shift", self.post_shift, 47)
        check_act(n, self.act_min, self.act_max, self.ofm)
        for v, what, hi in ((self.stride, "stride", 15), (self.dilation, "dilation", 15)):
            if not all(1 <= s <= hi for s in v):
                raise UnsupportedError(f"NPU op {n!r}: {what} {v} outside [1, {hi}]")
        if kh > 255 or kw > 255 or not all(0 <= p <= 255 for p in self.padding):
            raise UnsupportedError(f"NPU op {n!r}: kernel or padding above 255")
        top, left, bottom, right = self.padding
        dh, dw = self.dilation
        if max(top, bottom) >= dh * (kh - 1) + 1 or max(left, right) >= dw * (kw - 1) + 1:
            raise UnsupportedError(
                f"NPU op {n!r}: padding {self.padding} reaches past the dilated kernel;"
                " an output row would see only padding",
                hint="express the extra padding as an NpuPad before the convolution",
            )
        eh = window_out(h, top, bottom, kh, self.stride[0], dh)
        ew = window_out(w, left, right, kw, self.stride[1], dw)
        if (eh, ew) != (oh, ow):
            raise fail(n, f"ofm is {oh}x{ow} but the geometry gives {eh}x{ew}")
        if self.lut is not None:
            if self.lut_in_dtype not in DTYPE_RANGES:
                raise fail(n, f"lut_in_dtype {self.lut_in_dtype!r} is not int8, uint8 or int16")
            if self.lut.shape != (self.lut_entries,) or str(self.lut.dtype) != self.ofm.dtype:
                raise fail(
                    n,
                    f"fused table must be {self.ofm.dtype} ({self.lut_entries},),"
                    f" got {self.lut.dtype} {self.lut.shape}",
                )
