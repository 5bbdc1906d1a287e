"""The input packing of the int8 convolution kernels as one vectorised TIR function.

Requires: a :class:`PackSpec` (the input's shape and storage type, the
layer's padding and strides, and the kernel's phase grid from
:class:`~.int8_kernel.ConvKernelSpec`).

Guarantees: ``pack(x) -> X`` with ``X[n, cg, ph, pos * 4 + g]`` equal to
``u(x[n, k(4 cg + g), hi * sh + a - pt, wi * sw + b - pl])`` for phase
``ph = a * sw + b`` and position ``pos = hi * wq + wi`` when that element
exists, and ``zp_u`` otherwise (spatial padding, channels beyond ``c``,
positions beyond ``hq * wq``); ``u(x) = x + 128`` for int8 storage (an xor of
the sign bit), ``x`` for uint8 (:mod:`npuc.backend.cpu.qlower.int8_conv`
states why); ``k(i) = i``, or ``order[i]`` for an ``ordered`` spec
(``pack(x, order, xor) -> X``: ``order`` int32 ``(c,)`` a permutation, and
each real slot's bytes, its padding included, xor ``xor[i]`` (uint8 ``(c,)``,
0 or 255: ``255 - u`` for a complemented slot,
:mod:`npuc.backend.cpu.qlower.pair_order`)).

How: the rows and columns of a phase that read real input are computed once
per phase (``[hlo, hhi) x [wlo, whi)``), so the copy has no bounds checks and
the padding is filled with ``zp_u`` vectors. Each run of real positions is
built ``BIG`` (then ``CHUNK``) positions at a time from four channel vectors
(contiguous loads; stride 2 or more loads the whole span and keeps every
``sw``-th byte) interleaved into one store, with a scalar loop for the last
few. A stride-1 layer without left/right padding (``wq == w``: every 1x1
stride-1 convolution) copies its whole plane as one run, so small maps (7x7)
still take whole vectors. Parallel over (image, channel group, phase); small
inputs run serially (a thread-pool launch costs more than their copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tvm import tirx
from tvm.script import tirx as T

from npuc.backend.cpu.schedules.int8_kernel import GROUP
from npuc.backend.cpu.schedules.tir_macro import macro

#: Positions per vector chunk of the packing (four 64-byte channel vectors, four stores).
BIG = 64

#: Positions per short chunk (four 16-byte channel vectors, one 64-byte store).
CHUNK = 16

#: Packed bytes below which the packing runs on one thread.
SERIAL_BYTES = 16384


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
    #: Slot ``k`` holds input channel ``order[k]``, xor ``xor[k]`` (the packer's ``order``
    #: and ``xor`` arguments, :mod:`npuc.backend.cpu.qlower.pair_order`), not channel ``k``.
    ordered: bool = False

    @property
    def phases(self) -> int:
        """Phases of the stride grid (``sh * sw``)."""
        return self.sh * self.sw

    @property
    def flat(self) -> bool:
        """Whether every phase row is the input row itself (stride 1, ``wq == w``, no left
        padding): the real positions form one contiguous run per channel."""
        return self.sh == 1 and self.sw == 1 and self.pl == 0 and self.wq == self.w

    @property
    def packed_bytes(self) -> int:
        """Bytes of ``X``."""
        return self.n * self.cg * self.phases * self.q * GROUP


def make_packer(s: PackSpec) -> tirx.PrimFunc:
    """The PrimFunc ``(x, X)`` of the module docstring, marked scheduled (no rule needed)."""
    phases = s.phases
    part = s.c % GROUP  # real channels of the last real group (0: it is full)
    zp = s.zp_u
    plane = s.h * s.w
    row_bytes = s.q * GROUP
    jobs = s.n * s.cg * phases
    signed = s.dtype == "int8"

    def u(v: Any, lanes: int) -> Any:
        """``v`` (``lanes`` of int8 or uint8) as the unsigned offset value (uint8)."""
        if not signed:
            return v
        if lanes == 1:
            return T.reinterpret(v, dtype="uint8") ^ T.uint8(128)
        ty = f"uint8x{lanes}"
        return T.reinterpret(v, dtype=ty) ^ T.broadcast(T.uint8(128), lanes)

    def load(xf: Any, at: Any, lanes: int, real: Any, mask: Any) -> Any:
        """``lanes`` values of ``u(x)`` from flat index ``at`` every ``s.sw``, or ``zp_u``
        where ``real`` (a channel test; True: a static yes) is false; xor ``mask`` (a
        uint8, the slot's complement; None: none)."""
        v = _select(xf, at, lanes, real)
        if mask is None:
            return v
        return v ^ (mask if lanes == 1 else T.broadcast(mask, lanes))

    def _select(xf: Any, at: Any, lanes: int, real: Any) -> Any:
        """:func:`load` before the xor."""
        if lanes == 1:
            v = u(xf[at], 1)
        elif s.sw == 1:
            v = u(xf[T.ramp(at, 1, lanes)], lanes)
        else:
            span = xf[T.ramp(at, 1, lanes * s.sw)]
            v = u(T.Shuffle([span], [j * s.sw for j in range(lanes)]), lanes)
        if real is True:
            return v
        if lanes == 1:
            return T.Select(real, v, T.uint8(zp))
        return T.Select(T.broadcast(real, lanes), v, T.broadcast(T.uint8(zp), lanes))

    def interleave(lanes: int) -> list[int]:
        return [g * lanes + j for j in range(lanes) for g in range(GROUP)]

    def word(xm: Any) -> Any:
        """The four bytes of one padding position of an ``ordered`` spec: ``zp_u`` xor each
        slot's ``xm`` (little endian)."""
        bytes_ = [T.Cast("uint32", xm[g]) << T.uint32(8 * g) for g in range(GROUP)]
        return T.uint32(zp * 0x01010101) ^ (bytes_[0] | bytes_[1] | bytes_[2] | bytes_[3])

    @macro
    def fill(Xf: Any, start: Any, count: Any, xm: Any) -> None:
        """``count`` positions of padding from flat byte ``start`` (a position's first
        byte): ``zp_u``, or :func:`word` when ``xm`` holds the slots' complements."""
        if xm is None:
            for k in range(count * GROUP // 64):
                Xf[T.ramp(start + k * 64, 1, 64)] = T.broadcast(T.uint8(zp), 64)
            for i in range(count * GROUP % 64):
                Xf[start + count * GROUP // 64 * 64 + i] = T.uint8(zp)
        else:
            pad = T.meta_var(word(xm))
            for k in range(count * GROUP // 64):
                Xf[T.ramp(start + k * 64, 1, 64)] = T.reinterpret(
                    T.broadcast(pad, 16), dtype="uint8x64"
                )
            for i in range(count * GROUP % 64):
                Xf[start + count * GROUP // 64 * 64 + i] = T.Cast(
                    "uint8", (pad >> T.Cast("uint32", i % GROUP * 8)) & T.uint32(255)
                )

    def at(xm: Any, g: int) -> Any:
        """Slot ``g``'s complement mask, or None (not ``ordered``)."""
        return None if xm is None else xm[g]

    def ok(cg: Any, g: int) -> Any:
        """Whether channel ``g`` of group ``cg`` exists (True: statically, every group full
        and no groups beyond ``c``, as the grouped kernel may ask for)."""
        return True if part == 0 and s.cg * GROUP <= s.c else cg * GROUP + g < s.c

    def chunks(size: int, count: Any, xo: Any, xo_end: Any) -> Any:
        """Whole ``size``-position chunks of a run whose vector loads stay before ``xo_end``
        (0 for the 64-position chunk of a strided run: its loads would span 128+ bytes).
        Never negative: an empty run may start past ``xo_end`` (a one-column input with
        ``sw >= 3`` and left padding), where the floor division alone gave -1 and the
        next chunk loop then wrote before the run (found by the breaker, 18:40 UTC)."""
        if size == BIG and s.sw > 1:
            return 0
        return T.max(T.min(count // size, (xo_end - xo) // (size * s.sw)), 0)

    @macro
    def run(
        xf: Any, Xf: Any, xc: Any, xm: Any, cg: Any, xo: Any, xo_end: Any, out: Any, count: Any
    ) -> None:  # fmt: skip
        """``count`` positions from input offset ``xo`` (every ``sw``-th element of the
        channel planes at ``xc``) to byte ``out``; a vector chunk reads at most up to
        ``xo_end`` (exclusive, the row's or plane's end)."""
        nbig = T.meta_var(chunks(BIG, count, xo, xo_end))
        for k in range(nbig):
            X_at = T.meta_var(out + k * BIG * GROUP)
            x_at = T.meta_var(xo + k * BIG * s.sw)
            v = T.meta_var(
                T.Shuffle(
                    [load(xf, xc[g] + x_at, BIG, ok(cg, g), at(xm, g)) for g in range(GROUP)],
                    interleave(BIG),
                )
            )
            Xf[T.ramp(X_at, 1, BIG * GROUP)] = v
        done = T.meta_var(nbig * BIG)
        nsmall = T.meta_var(chunks(CHUNK, count - done, xo + done * s.sw, xo_end))
        for k in range(nsmall):
            X_at = T.meta_var(out + (done + k * CHUNK) * GROUP)
            x_at = T.meta_var(xo + (done + k * CHUNK) * s.sw)
            v = T.meta_var(
                T.Shuffle(
                    [load(xf, xc[g] + x_at, CHUNK, ok(cg, g), at(xm, g)) for g in range(GROUP)],
                    interleave(CHUNK),
                )
            )
            Xf[T.ramp(X_at, 1, CHUNK * GROUP)] = v
        done2 = T.meta_var(done + nsmall * CHUNK)
        for j in range(count - done2):
            for g in T.unroll(GROUP):
                Xf[out + (done2 + j) * GROUP + g] = load(
                    xf, xc[g] + xo + (done2 + j) * s.sw, 1, ok(cg, g), at(xm, g)
                )

    @macro
    def phase(xf: Any, Xf: Any, xc: Any, xm: Any, cg: Any, ph: Any, base: Any) -> None:
        """Phase ``ph`` of channel group ``cg`` (output bytes from ``base``)."""
        a = T.meta_var(ph // s.sw)
        b = T.meta_var(ph % s.sw)
        # rows hi with 0 <= hi * sh + a - pt < h, columns wi likewise
        hlo = T.meta_var(T.min(T.max((s.pt - a + s.sh - 1) // s.sh, 0), s.hq))
        hhi = T.meta_var(T.max(T.min((s.h - 1 + s.pt - a) // s.sh + 1, s.hq), hlo))
        wlo = T.meta_var(T.min(T.max((s.pl - b + s.sw - 1) // s.sw, 0), s.wq))
        whi = T.meta_var(T.max(T.min((s.w - 1 + s.pl - b) // s.sw + 1, s.wq), wlo))
        fill(Xf, base, hlo * s.wq, xm)
        fill(Xf, base + hhi * s.wq * GROUP, s.q - hhi * s.wq, xm)
        if s.flat:
            run(xf, Xf, xc, xm, cg, 0, plane, base + hlo * s.wq * GROUP, plane)
        else:
            for hi in range(hlo, hhi):
                hh = T.meta_var(hi * s.sh + a - s.pt)
                row = T.meta_var(base + hi * s.wq * GROUP)
                fill(Xf, row, wlo, xm)
                fill(Xf, row + whi * GROUP, s.wq - whi, xm)
                x0 = T.meta_var(hh * s.w + wlo * s.sw + b - s.pl)
                run(xf, Xf, xc, xm, cg, x0, hh * s.w + s.w, row + wlo * GROUP, whi - wlo)

    def source(order: Any, slot: Any) -> Any:
        """The input channel of packed channel ``slot``."""
        return order[slot] if s.ordered else slot

    @macro
    def body(x: Any, order: Any, xor: Any, X: Any) -> None:
        with T.sblock("root"):
            for job in T.parallel(jobs) if s.packed_bytes >= SERIAL_BYTES else T.serial(jobs):
                with T.sblock("pack"):
                    T.reads(x[0 : s.n, 0 : s.c, 0 : s.h, 0 : s.w])
                    T.writes(X[0 : s.n, 0 : s.cg, 0:phases, 0:row_bytes])
                    xf = T.decl_buffer((s.n * s.c * plane,), s.dtype, data=x.data)
                    Xf = T.decl_buffer((s.n * s.cg * phases * row_bytes,), "uint8", data=X.data)
                    xc = T.decl_buffer((GROUP,), "int32", scope="local")
                    xm = T.decl_buffer((GROUP,), "uint8", scope="local")
                    ph = T.meta_var(job % phases)
                    cg = T.meta_var(job // phases % s.cg)
                    n = T.meta_var(job // (phases * s.cg))
                    # channel checks only when cg * 4 > c (a partial group or extra groups)
                    for g in T.unroll(GROUP):
                        # channels beyond c read (and ignore) the last real one: in bounds
                        slot = T.meta_var(T.min(cg * GROUP + g, s.c - 1))
                        xc[g] = (n * s.c + source(order, slot)) * plane
                        if s.ordered:  # slots beyond c hold zp_u: no complement
                            xm[g] = T.Select(cg * GROUP + g < s.c, xor[slot], T.uint8(0))
                    base = T.meta_var(((n * s.cg + cg) * phases + ph) * row_bytes)
                    phase(xf, Xf, xc, xm if s.ordered else None, cg, ph, base)

    if s.ordered:

        @T.prim_func(private=True, s_tir=True)
        def pack(
            x: T.Buffer((s.n, s.c, s.h, s.w), s.dtype),  # type: ignore[valid-type]
            order: T.Buffer((s.c,), "int32"),  # type: ignore[valid-type]
            xor: T.Buffer((s.c,), "uint8"),  # type: ignore[valid-type]
            X: T.Buffer((s.n, s.cg, phases, row_bytes), "uint8"),  # type: ignore[valid-type]
        ) -> None:
            T.func_attr({"tirx.noalias": True})
            body(x, order, xor, X)

    else:

        @T.prim_func(private=True, s_tir=True)
        def pack(
            x: T.Buffer((s.n, s.c, s.h, s.w), s.dtype),  # type: ignore[valid-type]
            X: T.Buffer((s.n, s.cg, phases, row_bytes), "uint8"),  # type: ignore[valid-type]
        ) -> None:
            T.func_attr({"tirx.noalias": True})
            body(x, None, None, X)

    return (
        pack.with_attr("op_pattern", 8)
        .with_attr("tirx.is_scheduled", True)
        .with_attr("npuc.schedule_rule", "int8_pack")
    )
