"""What both integer depthwise kernels share: the spec, strip and task sizes, the phase
bounds of the plane fill and the exact output stage (one vector of sums to stored integers).

Requires nothing; guarantees: :func:`output_stage` is
:mod:`npuc.midend.quantize.exact_stage`'s float64 form, each step an integer below
2^53 or its exact power-of-two scaling (``rshift_round(v, s) == floor((v +
2^(s-1)) * 2^-s)``), or, with ``tail_k``, the integer tail that
:mod:`~npuc.backend.cpu.schedules.int_depthwise` describes; :func:`phase_bounds` gives, without
dividing a loop variable (TVM 0.27 miscompiled ``(c - ph) // stride`` there), the
phase indices of one phase that hold input values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from tvm.script import tirx as T

from npuc.core.target import CpuTarget

#: Function attribute holding the :class:`DepthwiseSpec` of a kernel.
SPEC_ATTR = "npuc.int_depthwise"

#: Plane columns per block of the plane fill (a multiple of every vectorisation factor).
FILL_BLOCK = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class DepthwiseSpec:
    """Shapes, types and output stage of one integer depthwise convolution.

    ``hp``/``wq``: rows and phase columns of the padded plane that the taps
    read; ``checked``: the 48-bit saturation may clamp (else the bias and the
    pre-shift rounding are one addend); ``sat32``: the ahead-shifted value may
    leave int32; ``zp_folded``: ``ofm_zp`` is part of the post-shift addend;
    ``lo``/``hi``: the composed activation and type clamp; ``tail_k``: when
    non-zero, the integer tail (module docstring) with this offset, and ``B``
    holds its per-channel addend.
    """

    n: int
    c: int
    mult: int
    h: int
    w: int
    oh: int
    ow: int
    kh: int
    kw: int
    stride_h: int
    stride_w: int
    dil_h: int
    dil_w: int
    pad_t: int
    pad_l: int
    zp: int
    in_dtype: str
    acc: str
    out_dtype: str
    pre_shift: int
    post_shift: int
    checked: int
    sat32: int
    zp_folded: int
    ofm_zp: int
    lo: int
    hi: int
    tail_k: int = 0

    @property
    def hp(self) -> int:
        return (self.oh - 1) * self.stride_h + (self.kh - 1) * self.dil_h + 1

    @property
    def wq(self) -> int:
        width = (self.ow - 1) * self.stride_w + (self.kw - 1) * self.dil_w + 1
        return -(-width // self.stride_w)

    @property
    def hq(self) -> int:
        """Rows of one row phase of the padded plane (the flat kernel splits rows too)."""
        return self.oh + (self.kh - 1) * self.dil_h // self.stride_h

    def to_attr(self) -> dict[str, Any]:
        """The spec as a function attribute value."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_attr(cls, attr: Any) -> DepthwiseSpec:
        """Inverse of :meth:`to_attr` (``attr`` as TVM returns it: a map)."""
        text = {"in_dtype", "acc", "out_dtype"}
        values: dict[str, Any] = {
            str(k): str(v) if str(k) in text else int(v) for k, v in attr.items()
        }
        return cls(**values)


def acc_lanes(target: CpuTarget, acc: str) -> int:
    """Elements of ``acc`` (float32/float64) in one of the target's widest vectors."""
    return target.vector_bits // (32 if acc == "float32" else 64)


def choose_strip(ow: int, lanes: int) -> int:
    """Output columns per strip: whole vectors, up to 4, wasting at most 1/8 of the work.

    Widths below one vector use the widest power of two that fits (the strips
    overlap), or the width itself below 4.
    """
    if ow < lanes:
        if ow < 4:
            return ow
        return 1 << (ow.bit_length() - 1)
    for k in (4, 3, 2):
        s = k * lanes
        if s <= ow and (-(-ow // s) * s - ow) * 8 <= ow:
            return s
    return lanes


def channels_per_task(jobs: int, tasks: int = 32) -> int:
    """Planes one parallel task computes: the largest divisor of ``jobs`` leaving at least
    ``tasks`` tasks (1 below that), so a task zeroes its plane's padding once and reuses it."""
    return max(d for d in range(1, jobs + 1) if jobs % d == 0 and (jobs // d >= tasks or d == 1))


def broadcast(value: Any, lanes: int) -> Any:
    return T.broadcast(value, lanes) if lanes > 1 else value


def ramp(base: Any, lanes: int) -> Any:
    return T.ramp(base, 1, lanes) if lanes > 1 else base


def vec(dtype: str, lanes: int) -> str:
    return f"{dtype}x{lanes}" if lanes > 1 else dtype


def output_stage(s: DepthwiseSpec, strip: int, total: Any, bias: Any, mul: Any) -> Any:
    """The stored integers of one strip of tap sums ``total`` (``strip`` lanes of ``s.acc``),
    with the channel's first-stage addend ``bias`` and multiplier ``mul`` (float64 scalars)."""

    def const(value: float) -> Any:
        return broadcast(T.float64(float(value)), strip)

    def int_const(value: int) -> Any:
        return broadcast(T.int32(value), strip)

    if s.tail_k:  # trunc(sum * M + B) - K on int32 lanes
        v = T.Cast(vec("float64", strip), total) * broadcast(mul, strip) + broadcast(bias, strip)
        t = T.Cast(vec("int32", strip), v) - int_const(s.tail_k)
        t = T.min(T.max(t, int_const(s.lo)), int_const(s.hi))
        return T.Cast(vec(s.out_dtype, strip), t)
    r_pre = float(1 << (s.pre_shift - 1)) if s.pre_shift else 0.0
    second = (0.5 if s.post_shift else 0.0) + (s.ofm_zp if s.zp_folded else 0)
    v = T.Cast(vec("float64", strip), total)
    b = broadcast(bias, strip)
    if s.checked:
        v = T.min(T.max(v + b, const(-(2.0**47))), const(2.0**47 - 1))
        if s.pre_shift:
            v = T.floor((v + const(r_pre)) * const(2.0**-s.pre_shift))
    elif s.pre_shift:
        v = T.floor(v * const(2.0**-s.pre_shift) + b)
    else:
        v = v + b
    if s.sat32:
        v = T.min(T.max(v, const(-(2.0**31))), const(2.0**31 - 1))
    v = v * broadcast(mul, strip) + const(second)
    if s.post_shift:
        v = T.floor(v)
    if not s.zp_folded:
        v = v + const(s.ofm_zp)
    v = T.min(T.max(v, const(s.lo)), const(s.hi))
    return T.Cast(vec(s.out_dtype, strip), v)


@dataclass(frozen=True, slots=True)
class PhaseBounds:
    """Phase indices of one axis (padding ``pad``, ``size`` input values, ``stride`` phases,
    ``limit`` indices per phase): phase ``ph`` holds input values at indices
    ``[start(ph), end(ph))``, input index ``i * stride + ph - pad``; every phase holds them
    at ``[common, common_end)``."""

    pad: int
    size: int
    stride: int
    limit: int

    def start(self, ph: Any) -> Any:
        """``ceil((pad - ph) / stride)``."""
        k_lo, r_lo = divmod(self.pad, self.stride)
        return T.Select(ph < r_lo, k_lo + 1, k_lo)

    def end(self, ph: Any) -> Any:
        """``floor((size - 1 + pad - ph) / stride) + 1``, at most ``limit``."""
        k_hi, r_hi = divmod(self.size - 1 + self.pad, self.stride)
        return T.min(T.Select(ph > r_hi, k_hi, k_hi + 1), self.limit)

    @property
    def common(self) -> int:
        k_lo, r_lo = divmod(self.pad, self.stride)
        return k_lo + (1 if r_lo else 0)

    @property
    def common_end(self) -> int:
        k_hi, r_hi = divmod(self.size - 1 + self.pad, self.stride)
        return max(self.common, min(k_hi + (1 if r_hi == self.stride - 1 else 0), self.limit))

    def blocks(self) -> tuple[int, int]:
        """``(main_end, tail_start)``: whole :data:`FILL_BLOCK` blocks from ``common`` to
        ``main_end``, then one block ending at ``common_end`` (overlapping; same values), so
        LLVM's vectorised loops leave no scalar remainder."""
        lo, hi = self.common, self.common_end
        main = lo + (hi - lo) // FILL_BLOCK * FILL_BLOCK
        return main, (max(lo, hi - FILL_BLOCK) if main < hi else hi)
