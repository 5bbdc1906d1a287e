"""The input packing of the int8 convolution kernels as one vectorised TIR function.

Requires: a :class:`PackSpec` (the input's shape and storage type, the
layer's padding and strides, and the kernel's phase grid from
:class:`~.int8_kernel.ConvKernelSpec`).

Guarantees: ``pack(x) -> X`` with ``X[n, cg, ph, pos * 4 + g]`` equal to
``u(x[n, 4 cg + g, hi * sh + a - pt, wi * sw + b - pl])`` for phase
``ph = a * sw + b`` and position ``pos = hi * wq + wi`` when that element
exists, and ``zp_u`` otherwise (spatial padding, channels beyond ``c``,
positions beyond ``hq * wq``); ``u(x) = x + 128`` for int8 storage, ``x`` for
uint8 (:mod:`npuc.backend.cpu.qlower.int8_conv` states why). Each row of
positions is built 16 at a time from four channel vectors interleaved into
64 bytes (one store), with an element-wise path only for partial and border
chunks. Parallel over the channel groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tvm import tirx
from tvm.script import tirx as T

from npuc.backend.cpu.schedules.int8_kernel import GROUP

#: Positions per vector chunk of the packing.
CHUNK = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class PackSpec:
    """Input ``(n, c, h, w)`` of ``dtype`` (int8 or uint8), padding ``pt``/``pl`` at the top
    and left, strides, and the kernel's ``cg`` groups, ``hq x wq`` phase grid and ``q``
    positions per phase."""

    n: int
    c: int
    h: int
    w: int
    dtype: str
    pt: int
    pl: int
    sh: int
    sw: int
    cg: int
    hq: int
    wq: int
    q: int
    zp_u: int


def make_packer(s: PackSpec) -> tirx.PrimFunc:
    """The PrimFunc ``(x, X)`` of the module docstring, marked scheduled (no rule needed)."""
    full = s.wq // CHUNK
    rest = s.wq - full * CHUNK
    phases = s.sh * s.sw
    tail = s.q - s.hq * s.wq
    zp = s.zp_u
    interleave = [g * CHUNK + j for j in range(CHUNK) for g in range(GROUP)]

    def u(v: Any, lanes: int) -> Any:
        """``v`` (int8 or uint8, ``lanes`` wide) as the unsigned offset value."""
        if s.dtype == "uint8":
            return v
        wide = T.Cast(f"int16x{lanes}" if lanes > 1 else "int16", v) + (
            T.broadcast(T.int16(128), lanes) if lanes > 1 else T.int16(128)
        )
        return T.Cast(f"uint8x{lanes}" if lanes > 1 else "uint8", wide)

    def element(x: Any, n: Any, c: Any, hh: Any, ww: Any) -> Any:
        inside = tirx.all(c < s.c, hh >= 0, hh < s.h, ww >= 0, ww < s.w)
        return T.if_then_else(inside, u(x[n, c, hh, ww], 1), T.uint8(zp))

    def interior(c: Any, hh: Any, w0: Any) -> Any:
        """Whether the 16 columns ``w0 + j * sw`` of row ``hh`` all exist."""
        last = w0 + (CHUNK - 1) * s.sw
        return tirx.all(c < s.c, hh >= 0, hh < s.h, w0 >= 0, last < s.w)

    @T.prim_func(private=True, s_tir=True)
    def pack(
        x: T.Buffer((s.n, s.c, s.h, s.w), s.dtype),  # type: ignore[valid-type]
        X: T.Buffer((s.n, s.cg, phases, s.q * GROUP), "uint8"),  # type: ignore[valid-type]
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            for job in T.parallel(s.n * s.cg):
                with T.sblock("pack"):
                    T.reads(x[0 : s.n, 0 : s.c, 0 : s.h, 0 : s.w])
                    T.writes(X[0 : s.n, 0 : s.cg, 0:phases, 0 : s.q * GROUP])
                    buf = T.alloc_buffer((GROUP, CHUNK), "uint8", scope="local")
                    n = job // s.cg
                    cg = job % s.cg
                    for ph, hi in T.grid(phases, s.hq):
                        hh = hi * s.sh + ph // s.sw - s.pt
                        for k in range(full):
                            w0 = k * CHUNK * s.sw + ph % s.sw - s.pl
                            for g in T.unroll(GROUP):
                                if interior(cg * GROUP + g, hh, w0):
                                    buf[g, 0:CHUNK] = u(
                                        x[n, cg * GROUP + g, hh, T.ramp(w0, s.sw, CHUNK)], CHUNK
                                    )
                                else:
                                    for j in range(CHUNK):
                                        buf[g, j] = element(x, n, cg * GROUP + g, hh, w0 + j * s.sw)
                            pos = (hi * s.wq + k * CHUNK) * GROUP
                            X[n, cg, ph, T.ramp(pos, 1, CHUNK * GROUP)] = T.Shuffle(
                                [buf[g, T.ramp(0, 1, CHUNK)] for g in range(GROUP)],
                                interleave,
                            )
                        for j, g in T.grid(rest, GROUP):
                            wi = full * CHUNK + j
                            X[n, cg, ph, (hi * s.wq + wi) * GROUP + g] = element(
                                x, n, cg * GROUP + g, hh, wi * s.sw + ph % s.sw - s.pl
                            )
                    for ph, i in T.grid(phases, tail * GROUP):
                        X[n, cg, ph, s.hq * s.wq * GROUP + i] = T.uint8(zp)

    return (
        pack.with_attr("op_pattern", 8)
        .with_attr("tirx.is_scheduled", True)
        .with_attr("npuc.schedule_rule", "int8_pack")
    )
