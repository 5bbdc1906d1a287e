"""NPU tensor descriptors and the range checks the NPU op dataclasses share.

Requires nothing. Guarantees: an :class:`NpuTensor` that exists is valid
(NHWC with N = 1, a storage type the NPU has, zero point in its range,
positive finite scale); the ``check_*`` helpers raise InvalidInputError
naming the op and field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from npuc.core.errors import InvalidInputError, UnsupportedError

DTYPE_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-32768, 32767),
}
MULTIPLIER_MAX = 32767


@dataclass(frozen=True, slots=True, kw_only=True)
class NpuTensor:
    """An activation: ``shape`` NHWC (N = 1), ``dtype`` int8/uint8/int16, scale, zero point."""

    name: str
    shape: tuple[int, int, int, int]
    dtype: str
    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        where = f"NPU tensor {self.name!r}"
        if len(self.shape) != 4 or self.shape[0] != 1 or min(self.shape) < 1:
            raise InvalidInputError(f"{where}: shape {self.shape} must be (1, h, w, c), positive")
        if self.dtype not in DTYPE_RANGES:
            raise InvalidInputError(f"{where}: dtype {self.dtype!r} is not int8, uint8 or int16")
        lo, hi = DTYPE_RANGES[self.dtype]
        if not lo <= self.zero_point <= hi:
            raise InvalidInputError(f"{where}: zero_point {self.zero_point} outside [{lo}, {hi}]")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise InvalidInputError(f"{where}: scale {self.scale} must be positive and finite")

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "int16" else 1

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.elements * self.itemsize

    @property
    def hwc(self) -> tuple[int, int, int]:
        return self.shape[1], self.shape[2], self.shape[3]


def fail(op: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"NPU op {op!r}: {message}")


def check_act(name: str, act_min: int, act_max: int, ofm: NpuTensor) -> None:
    lo, hi = DTYPE_RANGES[ofm.dtype]
    if not lo <= act_min <= act_max <= hi:
        raise fail(name, f"act_min..act_max = {act_min}..{act_max} not inside [{lo}, {hi}]")


def check_shift(name: str, field_name: str, value: int, hi: int) -> None:
    if not 0 <= value <= hi:
        raise fail(name, f"{field_name} = {value} outside [0, {hi}]")


def window_out(size: int, pad_a: int, pad_b: int, k: int, stride: int, dilation: int = 1) -> int:
    """Output length of a window op along one axis."""
    return (size + pad_a + pad_b - dilation * (k - 1) - 1) // stride + 1


def same_quant(name: str, a: NpuTensor, b: NpuTensor) -> None:
    if (a.dtype, a.scale, a.zero_point) != (b.dtype, b.scale, b.zero_point):
        raise UnsupportedError(
            f"NPU op {name!r}: {a.name} and {b.name} are quantized differently; data movement"
            " copies bytes",
            hint="insert an NpuRequant to the output's scale and zero point first",
        )
