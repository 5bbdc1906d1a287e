"""Exact integer depthwise convolution as TIR: vector strips over the output width, the NPU
output stage computed on each strip in float64.

The kernel computes one integer depthwise conv2d layer (lowered by
:mod:`npuc.backend.cpu.qlower.depthwise`, which checks the bounds below and
prepares the constants) with the parameters of a :class:`DepthwiseSpec`:

- ``X``: the stored input integers ``(n, c, h, w)`` (int8, uint8 or int16);
- ``W``: ``(c * mult, kh * kw)`` weights as ``acc`` floats (exact: int8);
- ``B``: ``(c * mult,)`` float64, the first-stage addend (see :func:`stage_constants`);
- ``M``: ``(c * mult,)`` float64, ``M[o] * 2^-post_shift`` (exact: a power-of-two scale);
- ``Y``: ``(n, c * mult, oh, ow)``, the stored output integers.

Each parallel task takes a run of (image, input channel) planes
(:func:`channels_per_task`) and zeroes its workspace ``P`` once (the padding
positions are the same for every plane); per plane it writes the centred input
plane ``x - zp`` into ``P`` (split into
``stride_w`` column phases, so every tap of a strided convolution reads
consecutive columns), then for each of the channel's ``mult`` output channels
and each output row, strips of ``strip`` columns: the sum over the kernel taps
of a vector of ``P`` times a broadcast weight (a multiply-add per tap), then
the output stage on the vector, stored once. Strips that do not divide the
width overlap the previous one (the same values are written twice).

Exactness (the caller's obligations, checked by ``qlower.depthwise``): with
``acc == "float32"`` every partial sum is an integer below 2^24 in magnitude,
with ``"float64"`` below 2^52, so the tap sums are exact whatever the order;
the output stage is :mod:`npuc.midend.quantize.exact_stage`'s float64 form,
each step an integer below 2^53 or its exact power-of-two scaling:
``rshift_round(v, s) == floor((v + 2^(s-1)) * 2^-s)``.

Integer tail (``tail_k = K > 0``; no pre-shift, no saturation before the
multiply, the planner's bounds): ``B`` holds ``(b * M + 2^(post-1)) * 2^-post
+ ofm_zp + K`` and one float64 multiply-add gives ``x + K`` exactly, ``x`` the
rounded, shifted, zero-pointed value before its floor; ``x + K`` lies in
``(0, 2^31)``, so truncating to int32 is the floor, and subtracting ``K``,
clamping and narrowing run on int32 lanes (no float rounding, half the
float64 clamps).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from tvm import tirx
from tvm.script import tirx as T

from npuc.core.target import CpuTarget

#: Function attribute holding the :class:`DepthwiseSpec` of a kernel.
SPEC_ATTR = "npuc.int_depthwise"

#: Lanes of the reference kernel qlower emits (any CPU); the rule re-makes it for the target.
REFERENCE_LANES = 4

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


def _broadcast(value: Any, lanes: int) -> Any:
    return T.broadcast(value, lanes) if lanes > 1 else value


def _ramp(base: Any, lanes: int) -> Any:
    return T.ramp(base, 1, lanes) if lanes > 1 else base


def _vec(dtype: str, lanes: int) -> str:
    return f"{dtype}x{lanes}" if lanes > 1 else dtype


def make_kernel(spec: DepthwiseSpec, lanes: int) -> tirx.PrimFunc:
    """The PrimFunc ``(X, W, B, M, Y)`` of ``spec`` with accumulator vectors of ``lanes``."""
    s = spec
    strip = choose_strip(s.ow, lanes)
    strips = -(-s.ow // strip)
    taps = s.kh * s.kw
    hp, wq, sw = s.hp, s.wq, s.stride_w
    rows_in = max(0, min(s.h, hp - s.pad_t))

    # Phase columns of phase ``ph`` that hold input columns: [q_start, q_end), written
    # without dividing the loop variable (TVM 0.27 miscompiled ``(c - ph) // sw`` here).
    k_lo, r_lo = divmod(s.pad_l, sw)
    k_hi, r_hi = divmod(s.w - 1 + s.pad_l, sw)

    def q_start(ph: Any) -> Any:
        """``ceil((pad_l - ph) / sw)``: the first phase column holding an input column."""
        return T.Select(ph < r_lo, k_lo + 1, k_lo)

    def q_end(ph: Any) -> Any:
        """``floor((w - 1 + pad_l - ph) / sw) + 1``, at most ``wq``."""
        return T.min(T.Select(ph > r_hi, k_hi, k_hi + 1), wq)

    # Phase columns every phase fills, [q_in, q_in_end): one loop of all phases, which
    # LLVM vectorises as interleaved loads of consecutive input columns.
    q_in = k_lo + (1 if r_lo else 0)
    q_in_end = max(q_in, min(k_hi + (1 if r_hi == sw - 1 else 0), wq))
    # Split so that LLVM's vectorised loop leaves no scalar remainder: whole blocks of
    # FILL_BLOCK columns, then one block ending at q_in_end (overlapping; same values).
    q_main = q_in + (q_in_end - q_in) // FILL_BLOCK * FILL_BLOCK
    q_tail = max(q_in, q_in_end - FILL_BLOCK) if q_main < q_in_end else q_in_end

    def column(q: Any, ph: Any) -> Any:
        """The input column at phase column ``q`` of phase ``ph``."""
        return q * sw + ph - s.pad_l

    per_task = channels_per_task(s.n * s.c)
    groups = s.n * s.c // per_task

    r_pre = float(1 << (s.pre_shift - 1)) if s.pre_shift else 0.0
    second = (0.5 if s.post_shift else 0.0) + (s.ofm_zp if s.zp_folded else 0)

    def const(value: float) -> Any:
        return _broadcast(T.float64(float(value)), strip)

    def centred(value: Any, count: int) -> Any:
        return T.Cast(_vec(s.acc, count), value) - _broadcast(T.FloatImm(s.acc, float(s.zp)), count)

    def job_of(g: Any, jj: Any) -> Any:
        """The (image, input channel) plane ``jj`` of task ``g``: ``image * c + channel``."""
        return g * per_task + jj

    def centred_at(x: Any, job: Any, y: Any, col: Any) -> Any:
        """``X[image, channel, y, col] - zp`` of plane ``job`` as a scalar ``acc``."""
        return centred(x[job // s.c, job % s.c, y, col], 1)

    def zero(count: int) -> Any:
        return _broadcast(T.FloatImm(s.acc, 0.0), count)

    def tap_sum(plane: Any, weights: Any, o: Any, oy: Any, x0: Any) -> Any:
        """Sum over the taps (unrolled here, in Python) of plane vector x broadcast weight."""
        total = None
        for ky in range(s.kh):
            for kx in range(s.kw):
                phase, shift = divmod(kx * s.dil_w, sw)[::-1]
                row = oy * s.stride_h + ky * s.dil_h
                term = plane[phase, row, _ramp(x0 + shift, strip)] * _broadcast(
                    weights[o, ky * s.kw + kx], strip
                )
                total = term if total is None else total + term
        return total

    def int_const(value: int) -> Any:
        return _broadcast(T.int32(value), strip)

    def tail(total: Any, bias: Any, mul: Any) -> Any:
        """The output stage of one strip as ``trunc(sum * M + B) - K`` (module docstring)."""
        v = T.Cast(_vec("float64", strip), total) * _broadcast(mul, strip) + _broadcast(bias, strip)
        t = T.Cast(_vec("int32", strip), v) - int_const(s.tail_k)
        t = T.min(T.max(t, int_const(s.lo)), int_const(s.hi))
        return T.Cast(_vec(s.out_dtype, strip), t)

    def stage(total: Any, bias: Any, mul: Any) -> Any:
        """The output stage of one strip (float64, exact; module docstring)."""
        if s.tail_k:
            return tail(total, bias, mul)
        v = T.Cast(_vec("float64", strip), total)
        b = _broadcast(bias, strip)
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
        v = v * _broadcast(mul, strip) + const(second)
        if s.post_shift:
            v = T.floor(v)
        if not s.zp_folded:
            v = v + const(s.ofm_zp)
        v = T.min(T.max(v, const(s.lo)), const(s.hi))
        return T.Cast(_vec(s.out_dtype, strip), v)

    @T.prim_func(private=True, s_tir=True)
    def kernel(
        X: T.Buffer((s.n, s.c, s.h, s.w), s.in_dtype),  # type: ignore[valid-type]
        W: T.Buffer((s.c * s.mult, taps), s.acc),  # type: ignore[valid-type]
        B: T.Buffer((s.c * s.mult,), "float64"),  # type: ignore[valid-type]
        M: T.Buffer((s.c * s.mult,), "float64"),  # type: ignore[valid-type]
        Y: T.Buffer((s.n, s.c * s.mult, s.oh, s.ow), s.out_dtype),  # type: ignore[valid-type]
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            for g in T.parallel(groups):
                with T.sblock("int_depthwise"):
                    T.reads(
                        X[0 : s.n, 0 : s.c, 0 : s.h, 0 : s.w],
                        W[0 : s.c * s.mult, 0:taps],
                        B[0 : s.c * s.mult],
                        M[0 : s.c * s.mult],
                    )
                    T.writes(Y[0 : s.n, 0 : s.c * s.mult, 0 : s.oh, 0 : s.ow])
                    P = T.alloc_buffer((sw, hp, wq), s.acc)  # this task's plane
                    for ph, yy, xq in T.grid(sw, hp, wq):
                        P[ph, yy, xq] = zero(1)
                    for jj in range(per_task):
                        for y in range(rows_in):
                            for q in range(q_in, q_main):
                                for ph in T.unroll(sw):
                                    P[ph, y + s.pad_t, q] = centred_at(
                                        X, job_of(g, jj), y, column(q, ph)
                                    )
                            for q in range(q_tail, q_in_end):
                                for ph in T.unroll(sw):
                                    P[ph, y + s.pad_t, q] = centred_at(
                                        X, job_of(g, jj), y, column(q, ph)
                                    )
                            for ph in T.unroll(sw):
                                for q in range(q_start(ph), T.min(q_in, q_end(ph))):
                                    P[ph, y + s.pad_t, q] = centred_at(
                                        X, job_of(g, jj), y, column(q, ph)
                                    )
                                for q in range(T.max(q_in_end, q_start(ph)), q_end(ph)):
                                    P[ph, y + s.pad_t, q] = centred_at(
                                        X, job_of(g, jj), y, column(q, ph)
                                    )
                        for j, oy, sx in T.grid(s.mult, s.oh, strips):
                            Y[
                                job_of(g, jj) // s.c,
                                (job_of(g, jj) % s.c) * s.mult + j,
                                oy,
                                _ramp(T.min(sx * strip, s.ow - strip), strip),
                            ] = stage(
                                tap_sum(
                                    P,
                                    W,
                                    (job_of(g, jj) % s.c) * s.mult + j,
                                    oy,
                                    T.min(sx * strip, s.ow - strip),
                                ),
                                B[(job_of(g, jj) % s.c) * s.mult + j],
                                M[(job_of(g, jj) % s.c) * s.mult + j],
                            )

    return kernel.with_attr(SPEC_ATTR, s.to_attr()).with_attr("op_pattern", 8)


class IntDepthwiseRule:
    """Re-make an integer depthwise kernel (:data:`SPEC_ATTR`) for the target's vector width."""

    name = "int_depthwise"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The kernel for ``target``, or ``None`` unless ``func`` is one of ours."""
        attrs = func.attrs
        if attrs is None or SPEC_ATTR not in attrs:
            return None
        spec = DepthwiseSpec.from_attr(attrs[SPEC_ATTR])
        return make_kernel(spec, acc_lanes(target, spec.acc))
