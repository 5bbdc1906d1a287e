"""The output stage and stores of the int8 convolution kernels (npu-spec section 3).

:mod:`.int8_kernel`, :mod:`.int8_amx` and :mod:`.int8_matvec` finish every
output with :func:`epilogue` (the NPU's requantization of an exact int32 sum)
and write it with :func:`output_store`. Requires a
:class:`~.int8_spec.ConvKernelSpec` whose bounds the caller validated
(``narrow``, ``need_sat32``, ``fits32`` as the planner proved them).
Guarantees: the stored values equal the integer executor's for every sum the
spec allows. Split from :mod:`.int8_kernel` (its size); re-exported there.
"""

from __future__ import annotations

from typing import Any

from tvm import tirx
from tvm.script import tirx as T

from npuc.backend.cpu.schedules.int8_spec import ConvKernelSpec, clamp_bounds
from npuc.backend.cpu.schedules.tir_macro import macro


def _b64(value: int, lanes: int) -> Any:
    return T.broadcast(T.int64(value), lanes)


def epilogue(s: ConvKernelSpec, lanes: int, total: Any, bias: Any, mul: Any) -> Any:
    """Output stage of ``lanes`` int32 sums ``total``: ``bias`` (int64 x lanes) already holds
    the ahead shift's rounding, ``mul`` (int32 x lanes) is ``M``; returns the stored values."""
    acc_t, w64 = f"int32x{lanes}", f"int64x{lanes}"
    i64 = [T.int64(v) for v in clamp_bounds(s)]
    if s.narrow:  # the whole ahead-shift stage fits int32 (no saturation possible)
        v32 = (total + T.Cast(acc_t, bias)) >> T.broadcast(T.int32(s.pre_shift), lanes)
    else:
        v = (T.Cast(w64, total) + bias) >> _b64(s.pre_shift, lanes)
        if s.need_sat32:
            v = T.max(T.min(v, _b64(2**31 - 1, lanes)), _b64(-(2**31), lanes))
        v32 = T.Cast(acc_t, v)
    rounding = (1 << (s.post_shift - 1) if s.post_shift else 0) + (s.ofm_zp << s.post_shift)
    if s.fits32 and lanes % 2 == 0:
        return _stage_in_halves(s, lanes, v32, mul, rounding)
    # sext(i32) * sext(i32): one vpmuldq per 8 lanes; exact (|acc32 * M| < 2^62).
    prod = T.Cast(w64, v32) * T.Cast(w64, mul)
    v = (prod + _b64(rounding, lanes)) >> _b64(s.post_shift, lanes)
    for k in range(0, len(i64), 2):
        v = T.min(T.max(v, T.broadcast(i64[k], lanes)), T.broadcast(i64[k + 1], lanes))
    return T.Cast(f"{s.out_dtype}x{lanes}", v)


def _stage_in_halves(s: ConvKernelSpec, lanes: int, v32: Any, mul: Any, rounding: int) -> Any:
    """``rshift_round(v32 * M, post) + ofm_zp`` clamped, when it fits int32 (``s.fits32``):
    the int32 lanes seen as ``lanes / 2`` int64 lanes, the even ones sign-extended in place
    and the odd ones shifted down, each half one ``vpmuldq`` (exact: |v32 * M| < 2^62),
    shifted, and the two int32 results merged back into one vector (no widening
    shuffles; one saturating narrow)."""
    half, i32v = f"int64x{lanes // 2}", f"int32x{lanes}"
    x, m = T.reinterpret(half, v32), T.reinterpret(half, mul)
    k32, r = _b64(32, lanes // 2), _b64(rounding, lanes // 2)
    if isinstance(mul, tirx.Broadcast):
        # One M for all lanes: its int64 broadcast is visibly a sign-extended int32, so
        # LLVM multiplies both halves with one vpmuldq each (as an int64 view of an int32
        # vector, the odd half's M is not, and x86 without AVX-512 gets 3 vpmuludq).
        m_even = m_odd = T.broadcast(T.Cast("int64", mul.value), lanes // 2)
    else:
        m_even, m_odd = (m << k32) >> k32, m >> k32
    even = (((x << k32) >> k32) * m_even + r) >> _b64(s.post_shift, lanes // 2)
    odd = ((x >> k32) * m_odd + r) >> _b64(s.post_shift, lanes // 2)
    merged = T.bitwise_or(T.bitwise_and(even, _b64(0xFFFFFFFF, lanes // 2)), odd << k32)
    y = T.reinterpret(i32v, merged)
    # y is exact in int32: bounds beyond int32 clamp it as their int32 limit does.
    bounds = [min(max(b, -(2**31)), 2**31 - 1) for b in clamp_bounds(s)]
    for k in range(0, len(bounds), 2):
        lo, hi = (T.broadcast(T.int32(b), lanes) for b in bounds[k : k + 2])
        y = T.min(T.max(y, lo), hi)
    return T.Cast(f"{s.out_dtype}x{lanes}", y)


def output_store(s: ConvKernelSpec, lanes: int) -> Any:
    """A macro ``store(Y, out, n, o, pv, value)``: the ``lanes`` results ``value`` of
    channel ``o`` from grid position ``pv`` into ``Y[n, o, :]``; one vector store when
    they are consecutive real outputs, else through ``out`` one by one, skipping the
    grid's padding columns and rows."""

    def contiguous(pv: Any, row: Any, col: Any) -> Any:
        if s.wq == s.ow:  # the grid has no padding columns
            return pv + lanes <= s.oh * s.ow
        return tirx.all(col + lanes <= s.ow, row < s.oh)

    @macro
    def store(Y: Any, out: Any, n: Any, o: Any, pv: Any, value: Any) -> None:
        row = T.meta_var(pv // s.wq)
        col = T.meta_var(pv % s.wq)
        if contiguous(pv, row, col):
            Y[n, o, T.ramp(row * s.ow + col, 1, lanes)] = value
        else:
            out[T.ramp(0, 1, lanes)] = value
            for j in range(lanes):
                if (pv + j) % s.wq < s.ow and (pv + j) // s.wq < s.oh:
                    Y[n, o, (pv + j) // s.wq * s.ow + (pv + j) % s.wq] = out[j]

    return store
