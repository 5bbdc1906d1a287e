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

Two loop nests compute it (:func:`make_kernel` takes the one with fewer vector
operations, or the flat one for planes over its band budget: :func:`prefers_flat`): the
row kernel below, and the flat kernel of
:mod:`~npuc.backend.cpu.schedules.int_depthwise_flat` (strips over the
row-major output grid at the plane's width, in bands of rows that stay in L1).

Row kernel: each parallel task takes a run of (image, input channel) planes
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

from typing import Any

from tvm import tirx
from tvm.script import tirx as T

from npuc.backend.cpu.schedules.int_depthwise_flat import (
    BAND_BYTES,
    column_pairs,
    flat_strip,
    make_flat_kernel,
)
from npuc.backend.cpu.schedules.int_depthwise_stage import (
    SPEC_ATTR,
    DepthwiseSpec,
    PhaseBounds,
    acc_lanes,
    broadcast,
    channels_per_task,
    choose_strip,
    output_stage,
    ramp,
    vec,
)
from npuc.core.target import CpuTarget

__all__ = [
    "REFERENCE_LANES",
    "SPEC_ATTR",
    "DepthwiseSpec",
    "IntDepthwiseRule",
    "acc_lanes",
    "channels_per_task",
    "choose_strip",
    "make_kernel",
    "prefers_flat",
]

#: Lanes of the reference kernel qlower emits (any CPU); the rule re-makes it for the target.
REFERENCE_LANES = 4


def prefers_flat(spec: DepthwiseSpec, lanes: int) -> bool:
    """Whether the flat kernel needs at most 5/4 of the row kernel's vector operations per
    plane (vectors of ``lanes``; AVX2 code, flat at 1.04x the row kernel's operations
    measured 0.93x of its time, MobileNetV2's 56x56; at 1.14x 0.70x, the orientation
    classifier's 14x14 5x5), except strided planes narrower than half a vector without the
    column-pair fill (:func:`~.int_depthwise_flat.column_pairs`; measured slower with
    LLVM's fill: MobileNetV2's 14x14 to 7x7, 1.13x of the row kernel; with pairs 0.86x),
    or the row kernel's whole plane exceeds the flat kernel's band (:data:`BAND_BYTES`; the
    flat kernel's bands stay in L1: MobileNetV2's 32 x 112x112 stride 1, 0.86x)."""
    if spec.stride_w > 1 and 2 * spec.ow < lanes and not column_pairs(spec):
        return False
    if spec.stride_w * spec.hp * spec.wq * (4 if spec.acc == "float32" else 8) > BAND_BYTES:
        return True
    row = choose_strip(spec.ow, lanes)
    row_ops = spec.oh * -(-spec.ow // row) * -(-row // lanes)
    flat = (spec.oh - 1) * spec.wq + spec.ow
    strip = flat_strip(flat, lanes)
    return 4 * -(-flat // strip) * -(-strip // lanes) <= 5 * row_ops


def make_kernel(spec: DepthwiseSpec, lanes: int, flat: bool | None = None) -> tirx.PrimFunc:
    """The PrimFunc ``(X, W, B, M, Y)`` of ``spec`` with accumulator vectors of ``lanes``:
    the flat kernel if ``flat`` (default: :func:`prefers_flat`), else the row kernel."""
    if prefers_flat(spec, lanes) if flat is None else flat:
        return make_flat_kernel(spec, lanes)
    return make_row_kernel(spec, lanes)


def make_row_kernel(spec: DepthwiseSpec, lanes: int) -> tirx.PrimFunc:
    """The PrimFunc ``(X, W, B, M, Y)`` of ``spec`` with accumulator vectors of ``lanes``."""
    s = spec
    strip = choose_strip(s.ow, lanes)
    strips = -(-s.ow // strip)
    taps = s.kh * s.kw
    hp, wq, sw = s.hp, s.wq, s.stride_w
    rows_in = max(0, min(s.h, hp - s.pad_t))

    cols = PhaseBounds(s.pad_l, s.w, sw, wq)
    # Phase columns every phase fills, [q_in, q_in_end): one loop of all phases, which
    # LLVM vectorises as interleaved loads of consecutive input columns.
    q_in, q_in_end = cols.common, cols.common_end
    q_main, q_tail = cols.blocks()

    def column(q: Any, ph: Any) -> Any:
        """The input column at phase column ``q`` of phase ``ph``."""
        return q * sw + ph - s.pad_l

    per_task = channels_per_task(s.n * s.c)
    groups = s.n * s.c // per_task

    def centred(value: Any, count: int) -> Any:
        return T.Cast(vec(s.acc, count), value) - broadcast(T.FloatImm(s.acc, float(s.zp)), count)

    def job_of(g: Any, jj: Any) -> Any:
        """The (image, input channel) plane ``jj`` of task ``g``: ``image * c + channel``."""
        return g * per_task + jj

    def centred_at(x: Any, job: Any, y: Any, col: Any) -> Any:
        """``X[image, channel, y, col] - zp`` of plane ``job`` as a scalar ``acc``."""
        return centred(x[job // s.c, job % s.c, y, col], 1)

    def zero(count: int) -> Any:
        return broadcast(T.FloatImm(s.acc, 0.0), count)

    def tap_sum(plane: Any, weights: Any, o: Any, oy: Any, x0: Any) -> Any:
        """Sum over the taps (unrolled here, in Python) of plane vector x broadcast weight."""
        total = None
        for ky in range(s.kh):
            for kx in range(s.kw):
                phase, shift = divmod(kx * s.dil_w, sw)[::-1]
                row = oy * s.stride_h + ky * s.dil_h
                term = plane[phase, row, ramp(x0 + shift, strip)] * broadcast(
                    weights[o, ky * s.kw + kx], strip
                )
                total = term if total is None else total + term
        return total

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
                                for q in range(cols.start(ph), T.min(q_in, cols.end(ph))):
                                    P[ph, y + s.pad_t, q] = centred_at(
                                        X, job_of(g, jj), y, column(q, ph)
                                    )
                                for q in range(T.max(q_in_end, cols.start(ph)), cols.end(ph)):
                                    P[ph, y + s.pad_t, q] = centred_at(
                                        X, job_of(g, jj), y, column(q, ph)
                                    )
                        for j, oy, sx in T.grid(s.mult, s.oh, strips):
                            Y[
                                job_of(g, jj) // s.c,
                                (job_of(g, jj) % s.c) * s.mult + j,
                                oy,
                                ramp(T.min(sx * strip, s.ow - strip), strip),
                            ] = output_stage(
                                s,
                                strip,
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
