"""The AVX2 dot product of the int8 convolution kernels: ``vpmaddwd`` on int16, exact.

:func:`~.int8_kernel.make_kernel` builds its ``avx2`` kernels from this
module. Requires a :class:`~.int8_spec.ConvKernelSpec` the caller validated
(``|sum((u - zp_u) * w)| < 2^31``, ``-128 <= w <= 127``, ``0 <= u <= 255``).
Guarantees: :func:`dot` adds the exact products of one step (four input
channels of one tap at eight positions, one output channel) to eight int32
lanes, one per position, and :func:`finish` returns the exact centred sums.

How (Intel SDM, PMADDWD: two int16 x int16 products added into each int32
lane, exact; never ``vpmaddubsw`` here, whose int16 pair sum saturates in general:
:mod:`.int8_ubsw` uses it only on weight pairs proven not to):

- the weights are staged when the kernel has more than one position tile
  (:func:`stages_weights`): per job (:func:`stages_per_job`, each job a channel
  tile over every position tile) or else once per call (:func:`make_stage`): the int32 of four int8
  weights ``w0..w3`` (channel ``4c + g`` in byte ``g``) becomes two int32 of
  two sign-extended int16 each, ``(w0, w2)`` in ``WS[0]`` and ``(w1, w3)`` in
  ``WS[1]``, so a step broadcasts them straight from memory (no shuffles);
  with one position tile each weight is used once, and :func:`weight_pairs`
  makes the same pairs in registers instead (staging would triple the weight
  traffic of a few-row dense layer);
- the 32 input bytes of a step (eight positions x four channels, ``u``) are
  read as sixteen uint16 words ``u0 + 256 u1``, ``u2 + 256 u3`` per position:
  ``word & 255`` holds ``(u0, u2)`` and ``word >> 8`` holds ``(u1, u3)``, so
  ``vpmaddwd`` of each with the staged weights gives ``u0 w0 + u2 w2`` and
  ``u1 w1 + u3 w3`` per position, both in ``[-65280, 65280]``;
- uncentred (:func:`uncentred`: ``255 * 128 * K < 2^31`` for the ``K`` products
  of an output, every real layer): the lanes sum ``u * w`` from 0, every
  partial sum is below ``255 * 128 * K`` in magnitude, and :func:`finish` adds
  ``INIT = -(zp_u * sum w)`` (exact too: the same bound) once, giving
  ``sum((u - zp_u) * w)`` with no int32 wrap anywhere; otherwise the words
  are centred first (``u - zp_u`` in ``[-255, 255]``, the pair sums in
  ``[-65280, 65280]``) and every partial sum is within the caller's bound.

Measured (one thread, AVX2 code and onnxruntime under the CPUID mask, one process,
interleaved: ``/tmp/h/kb.py``; see docs/cpu_backend.md section 8): against the
previous form (zero-extended ``u - zp_u`` per 4 positions, weights sign-extended
per step, 2 x 2 tiles of pair sums) VGG-19's 512-channel 3x3 layer ran 2.2-2.5x
onnxruntime's QLinearConv before, about 1.6x after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tvm.script import tirx as T

from npuc.backend.cpu.schedules.int8_spec import GROUP, ConvKernelSpec
from npuc.backend.cpu.schedules.tir_macro import macro

#: int32 lanes of one AVX2 vector (positions per step).
LANES = 8

_PMADDWD = "llvm.x86.avx2.pmadd.wd"


def uncentred(s: ConvKernelSpec) -> bool:
    """Whether every partial sum of ``u * w`` and ``INIT`` fit int32 unwrapped: ``255 * 128
    * K < 2^31`` for the ``K = 4 cg kh kw`` (padded) products of an output."""
    return 255 * 128 * GROUP * s.cg * s.kh * s.kw < 2**31


def stages_weights(position_tiles: int) -> bool:
    """Whether a kernel of ``position_tiles`` position tiles stages its weights: when
    each weight is used more than once."""
    return position_tiles > 1


#: The fewest jobs (channel tiles) a kernel that stages per job may have: fewer would
#: leave threads idle (each job runs every position tile of its tile).
MIN_JOBS_STAGED_PER_JOB = 16


def stages_per_job(resident: bool, channel_tiles: int) -> bool:
    """Whether a staging kernel stages per job: when each channel tile runs over every
    position tile in turn (``resident``: the input stays in L2) and there are at least
    :data:`MIN_JOBS_STAGED_PER_JOB` channel tiles; then one job is one channel tile over
    all position tiles, staging its own rows (:func:`make_stage_rows`) into a buffer
    that stays in L1/L2, instead of a pass over all the weights before the jobs."""
    return resident and channel_tiles >= MIN_JOBS_STAGED_PER_JOB


def staged_shape(s: ConvKernelSpec) -> tuple[int, int, int, int]:
    """Shape of the staged weights ``WS``: ``(2, groups * ocp, kh * kw, cg)`` int32."""
    return (2, s.groups * s.ocp, s.kh * s.kw, s.cg)


def _halves(v: Any, lanes: int) -> tuple[Any, Any]:
    """``(w0, w2)`` and ``(w1, w3)`` as sign-extended int16 pairs of ``lanes`` int32 ``v``."""
    words = T.reinterpret(v, dtype=f"int16x{2 * lanes}")
    k8 = T.broadcast(T.int16(8), 2 * lanes)
    even = (words << k8) >> k8
    odd = words >> k8
    i32 = "int32" if lanes == 1 else f"int32x{lanes}"
    return T.reinterpret(even, dtype=i32), T.reinterpret(odd, dtype=i32)


def weight_pairs(w: Any) -> tuple[Any, Any]:
    """The staged pairs of one int32 of weights ``w``, broadcast to 8 lanes, in registers."""
    return _halves(T.broadcast(w, LANES), LANES)


def make_stage(s: ConvKernelSpec, keep: Callable[[Any, Any], Any] | None = None) -> Any:
    """A macro ``stage(W, WS)``: ``WS`` (:func:`staged_shape`) from ``W`` (module
    docstring), in parallel over the output channels; whole vectors of 8 groups, then
    the rest one by one. With ``keep`` (``W`` is :mod:`.int8_ubsw`'s prepared buffer)
    only the rows ``o`` where ``keep(W, o)`` holds (their tile runs ``vpmaddwd``)."""
    ocps, taps, cg = s.groups * s.ocp, s.kh * s.kw, s.cg
    body, rest = cg // LANES, cg % LANES

    @macro
    def stage_row(W: Any, WS: Any, o: Any) -> None:
        for t in range(taps):
            for b in range(body):
                lo, hi = T.meta_var(_halves(W[o, t, T.ramp(b * LANES, 1, LANES)], LANES))
                WS[0, o, t, T.ramp(b * LANES, 1, LANES)] = lo
                WS[1, o, t, T.ramp(b * LANES, 1, LANES)] = hi
            for c in range(rest):
                lo1, hi1 = T.meta_var(_halves(W[o, t, body * LANES + c], 1))
                WS[0, o, t, body * LANES + c] = lo1
                WS[1, o, t, body * LANES + c] = hi1

    filtered = keep is not None

    @macro
    def stage(W: Any, WS: Any) -> None:
        for o in T.parallel(ocps):
            with T.sblock("int8_stage"):
                T.reads(W[0 : W.shape[0], 0:taps, 0:cg])
                T.writes(WS[0:2, o, 0:taps, 0:cg])
                if filtered:
                    if keep(W, o):  # type: ignore[misc]
                        stage_row(W, WS, o)
                else:
                    stage_row(W, WS, o)

    return stage


def make_stage_rows(s: ConvKernelSpec, rows: int) -> Any:
    """A macro ``stage_rows(W, JS, w0)``: rows ``w0 .. w0 + rows`` of ``W`` staged into
    ``JS`` ``(2, rows, kh * kw, cg)`` as :func:`make_stage` does for all of them."""
    taps, cg = s.kh * s.kw, s.cg
    body, rest = cg // LANES, cg % LANES

    @macro
    def stage_rows(W: Any, JS: Any, w0: Any) -> None:
        for r in range(rows):
            for t in range(taps):
                for b in range(body):
                    lo, hi = T.meta_var(_halves(W[w0 + r, t, T.ramp(b * LANES, 1, LANES)], LANES))
                    JS[0, r, t, T.ramp(b * LANES, 1, LANES)] = lo
                    JS[1, r, t, T.ramp(b * LANES, 1, LANES)] = hi
                for c in range(rest):
                    lo1, hi1 = T.meta_var(_halves(W[w0 + r, t, body * LANES + c], 1))
                    JS[0, r, t, body * LANES + c] = lo1
                    JS[1, r, t, body * LANES + c] = hi1

    return stage_rows


def dot(s: ConvKernelSpec, acc: Any, x: Any, w02: Any, w13: Any) -> Any:
    """``acc`` (int32 x 8) plus one step: ``x`` the step's 32 input bytes (uint8 x 32),
    ``w02``/``w13`` one output channel's staged pairs, int32 x 8 (module docstring)."""
    words = T.reinterpret(x, dtype="uint16x16")
    lo = T.bitwise_and(words, T.broadcast(T.uint16(255), 16))
    hi = words >> T.broadcast(T.uint16(8), 16)
    halves = [T.reinterpret(lo, dtype="int16x16"), T.reinterpret(hi, dtype="int16x16")]
    if not uncentred(s):
        halves = [h - T.broadcast(T.int16(s.zp_u), 16) for h in halves]
    pm = T.llvm_lookup_intrinsic_id(_PMADDWD)
    a = T.call_llvm_pure_intrin(
        pm, halves[0], T.reinterpret(w02, dtype="int16x16"), dtype="int32x8"
    )
    b = T.call_llvm_pure_intrin(
        pm, halves[1], T.reinterpret(w13, dtype="int16x16"), dtype="int32x8"
    )
    return acc + (a + b)


def finish(s: ConvKernelSpec, acc: Any, init: Any) -> Any:
    """The exact centred sums of a finished accumulator (adds ``INIT`` when uncentred)."""
    return acc + T.broadcast(init, LANES) if uncentred(s) else acc
