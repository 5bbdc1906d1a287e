"""Exact int8 convolution kernels on Intel AMX tiles (``tdpbsud``), same operands and
results as :mod:`.int8_kernel`.

Requires: a :class:`~.int8_spec.ConvKernelSpec` that :func:`amx_eligible` accepts (one
convolution group, not a matvec, ``cg`` a multiple of :data:`K_GROUPS`, ``ocp`` of
:data:`TILE`), and a target with ``amx-tile`` and ``amx-int8`` (the TVM target must carry
them as ``mattr``: :meth:`npuc.core.target.CpuTarget.to_tvm`). The operands are
:mod:`.int8_kernel`'s (``W`` as ``(ocp, taps, cg)``: a tap's weights of one output channel
are contiguous over the input channels).

Guarantees: the same ``Y`` bit for bit as :func:`~.int8_kernel.make_kernel`. How: an
accumulator tile holds 16 output channels x 16 positions (int32), initialised to each
channel's ``INIT``; each step ``tdpbsud`` adds, for each of them, the 64 products of the
channel's signed weights of one tap and 16 input channel groups (a 16 x 64-byte tile of
``W`` rows) with the unsigned packed inputs of 16 positions (a 16 x 64-byte tile of ``X``
rows: one row per channel group, the positions of a tap contiguous). ``tdpbsud`` adds the
four int32 products of each dword to the accumulator without saturation (Intel SDM,
TDPBSUD), i.e. modulo 2^32 as ``vpdpbusd``: the final value is the exact centred sum (it
fits int32, :mod:`.int8_kernel`). The tiles go to memory and get
:func:`~.int8_epilogue.epilogue`. A job computes 2 x 2 accumulator tiles (32 channels x
32 positions; fewer at the ends); jobs run in parallel, ordered by image, channel block,
position block (a block's weights are reused from L1/L2 over the positions).

The process must be allowed to use AMX state (Linux ``arch_prctl(ARCH_REQ_XCOMP_PERM,
XFEATURE_XTILEDATA)``): each call asks for it (a no-op once granted) before its jobs,
and returns an error (``_REFUSED``, raised in Python by the runtime) when it is refused;
each job loads its tile configuration and releases the tiles at its end.
"""

from __future__ import annotations

from typing import Any

from tvm import tirx
from tvm.script import tirx as T

from npuc.backend.cpu.schedules.int8_epilogue import epilogue, output_store
from npuc.backend.cpu.schedules.int8_spec import (
    GROUP,
    SPEC_ATTR,
    ConvKernelSpec,
    DotKind,
)
from npuc.backend.cpu.schedules.tir_macro import macro
from npuc.core.target import CpuTarget

#: Rows (and int32 columns) of an accumulator tile: output channels x positions.
TILE = 16

#: Input channel groups (of 4) per weight/input tile: 64 bytes per tile row.
K_GROUPS = 16

#: Accumulator tiles per job along each axis (channels, positions).
BLOCKS = 2

#: The AMX kind (for reports): ``lanes`` positions per accumulator row.
AMX = DotKind("amx", TILE, TILE * BLOCKS, BLOCKS)

#: Linux x86-64: ``SYS_arch_prctl``, ``ARCH_REQ_XCOMP_PERM``, ``XFEATURE_XTILEDATA``.
_ARCH_PRCTL, _REQ_XCOMP_PERM, _XTILEDATA = 158, 0x1023, 18
#: The error a call raises when Linux refuses the AMX state to the process.
_REFUSED = (
    "int8 AMX convolution: Linux refused AMX to this process (arch_prctl "
    "ARCH_REQ_XCOMP_PERM); rebuild the library for a target without amx-tile/amx-int8"
)

#: Bytes of an AMX tile configuration (``ldtilecfg``), palette 1.
_CFG_BYTES = 64


def has_amx(target: CpuTarget) -> bool:
    """Whether ``target`` runs AMX int8 tiles (``amx-tile`` and ``amx-int8``)."""
    return "amx-tile" in target.features and "amx-int8" in target.features


def amx_eligible(spec: ConvKernelSpec) -> bool:
    """Whether :func:`make_amx_kernel` takes ``spec`` (module docstring)."""
    s = spec
    return not s.matvec and s.groups == 1 and s.cg % K_GROUPS == 0 and s.ocp % TILE == 0


def _amx(name: str, *args: Any) -> Any:
    return T.call_llvm_intrin("void", f"llvm.x86.{name}", *args)


def make_amx_kernel(spec: ConvKernelSpec) -> tirx.PrimFunc:
    """The PrimFunc ``(X, W, INIT, BIAS, MUL, Y)`` of ``spec`` on AMX tiles. Raises
    ValueError when :func:`amx_eligible` refuses ``spec``."""
    s = spec
    if not amx_eligible(s):
        raise ValueError(f"int8 AMX kernel: spec not eligible: {s}")
    taps = s.kh * s.kw
    lanes = TILE
    ob16, pb16 = s.ocp // TILE, s.ppad // TILE
    ob, pb = -(-ob16 // BLOCKS), -(-pb16 // BLOCKS)
    row_tail, vec_tail = ob16 % BLOCKS, pb16 % BLOCKS
    jobs = s.n * ob * pb
    w_stride = taps * s.cg * GROUP  # bytes between the W rows of consecutive channels
    x_stride = s.phases * s.q * GROUP  # bytes between the X rows of consecutive groups
    c_stride = BLOCKS * TILE * 4  # bytes between rows of the stored accumulators

    def phase(t: Any) -> Any:
        return (t // s.kw * s.dil_h % s.stride_h) * s.stride_w + (t % s.kw * s.dil_w % s.stride_w)

    def offset(t: Any) -> Any:
        return (t // s.kw * s.dil_h // s.stride_h) * s.wq + (t % s.kw * s.dil_w // s.stride_w)

    store = output_store(s, lanes)

    @macro
    def configure(cfg: Any) -> None:
        for i in range(_CFG_BYTES):
            cfg[i] = T.uint8(0)
        cfg[0] = T.uint8(1)  # palette 1
        for t in range(8):  # every tile: 16 rows of 64 bytes
            cfg[16 + 2 * t] = T.uint8(64)
            cfg[48 + t] = T.uint8(16)
        T.evaluate(_amx("ldtilecfg", T.address_of(cfg[0])))

    @macro
    def block(
        X: Any, W: Any, INIT: Any, BIAS: Any, MUL: Any, Y: Any, cfg: Any, ibuf: Any,
        cbuf: Any, out: Any, n: Any, o0: Any, p0: Any, nr: int, nv: int,
    ) -> None:  # fmt: skip
        """``nr`` x ``nv`` accumulator tiles from channel ``o0`` and position ``p0``."""
        configure(cfg)
        for i in T.unroll(nr):
            for r in T.unroll(TILE):
                ibuf[i, r, T.ramp(0, 1, TILE)] = T.broadcast(INIT[o0 + i * TILE + r], TILE)
        for i in T.unroll(nr):
            for j in T.unroll(nv):
                T.evaluate(
                    _amx("tileloadd64", T.uint8(i * BLOCKS + j), T.address_of(ibuf[i, 0, 0]),
                         T.int64(TILE * 4))
                )  # fmt: skip
        for c in range(s.cg // K_GROUPS):
            for t in range(taps):
                for i in T.unroll(nr):
                    T.evaluate(
                        _amx("tileloadd64", T.uint8(4 + i),
                             T.address_of(W[o0 + i * TILE, t, c * K_GROUPS]),
                             T.int64(w_stride))
                    )  # fmt: skip
                for j in T.unroll(nv):
                    pos = T.meta_var((p0 + j * TILE + offset(t)) * GROUP)
                    T.evaluate(
                        _amx("tileloadd64", T.uint8(6 + j),
                             T.address_of(X[n, c * K_GROUPS, phase(t), pos]),
                             T.int64(x_stride))
                    )  # fmt: skip
                for i in T.unroll(nr):
                    for j in T.unroll(nv):
                        T.evaluate(
                            _amx("tdpbsud", T.uint8(i * BLOCKS + j), T.uint8(4 + i),
                                 T.uint8(6 + j))
                        )  # fmt: skip
        for i in T.unroll(nr):
            for j in T.unroll(nv):
                T.evaluate(
                    _amx("tilestored64", T.uint8(i * BLOCKS + j),
                         T.address_of(cbuf[i, 0, j * TILE]), T.int64(c_stride))
                )  # fmt: skip
        T.evaluate(_amx("tilerelease"))
        for i in T.unroll(nr):
            for r in range(TILE):
                o = T.meta_var(o0 + i * TILE + r)
                if o < s.oc:
                    for j in T.unroll(nv):
                        value = T.meta_var(
                            epilogue(
                                s,
                                lanes,
                                cbuf[i, r, T.ramp(j * TILE, 1, TILE)],
                                T.broadcast(BIAS[o], lanes),
                                T.broadcast(T.Cast("int32", MUL[o]), lanes),
                            )
                        )
                        store(Y, out, n, o, p0 + j * TILE, value)

    @macro
    def positions(
        X: Any, W: Any, INIT: Any, BIAS: Any, MUL: Any, Y: Any, cfg: Any, ibuf: Any,
        cbuf: Any, out: Any, n: Any, o0: Any, pblk: Any, nr: int,
    ) -> None:  # fmt: skip
        """The position block ``pblk`` (the last may hold one tile)."""
        p0 = T.meta_var(pblk * (BLOCKS * TILE))
        if vec_tail == 0:  # noqa: SIM114 (decided while parsing)
            block(X, W, INIT, BIAS, MUL, Y, cfg, ibuf, cbuf, out, n, o0, p0, nr, BLOCKS)
        elif pblk < pb - 1:
            block(X, W, INIT, BIAS, MUL, Y, cfg, ibuf, cbuf, out, n, o0, p0, nr, BLOCKS)
        else:
            block(X, W, INIT, BIAS, MUL, Y, cfg, ibuf, cbuf, out, n, o0, p0, nr, vec_tail)

    @T.prim_func(private=True, s_tir=True)
    def kernel(
        X: T.Buffer((s.n, s.cg, s.phases, s.q * GROUP), "uint8"),  # type: ignore[valid-type]
        W: T.Buffer((s.ocp, taps, s.cg), "int32"),  # type: ignore[valid-type]
        INIT: T.Buffer((s.ocp,), "int32"),  # type: ignore[valid-type]
        BIAS: T.Buffer((s.ocp,), "int64"),  # type: ignore[valid-type]
        MUL: T.Buffer((s.ocp,), "int64"),  # type: ignore[valid-type]
        Y: T.Buffer((s.n, s.oc, s.oh * s.ow), s.out_dtype),  # type: ignore[valid-type]
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            with T.sblock("amx_permission"):
                # Refused (a seccomp filter, a kernel before 5.16): an error, not a SIGILL.
                assert T.call_extern(
                    "int64", "syscall", T.int64(_ARCH_PRCTL), T.int64(_REQ_XCOMP_PERM),
                    T.int64(_XTILEDATA),
                ) == T.int64(0), _REFUSED  # fmt: skip
            for job in T.parallel(jobs):
                cfg = T.decl_buffer((_CFG_BYTES,), "uint8")
                ibuf = T.decl_buffer((BLOCKS, TILE, TILE), "int32")
                cbuf = T.decl_buffer((BLOCKS, TILE, BLOCKS * TILE), "int32")
                out = T.decl_buffer((lanes,), s.out_dtype)
                with T.sblock("int8_amx_conv"):
                    T.reads(
                        X[0 : s.n, 0 : s.cg, 0 : s.phases, 0 : s.q * GROUP],
                        W[0 : s.ocp, 0:taps, 0 : s.cg],
                        INIT[0 : s.ocp],
                        BIAS[0 : s.ocp],
                        MUL[0 : s.ocp],
                    )
                    T.writes(Y[0 : s.n, 0 : s.oc, 0 : s.oh * s.ow])
                    n = T.meta_var(job // (ob * pb))
                    oblk = T.meta_var(job // pb % ob)
                    pblk = T.meta_var(job % pb)
                    o0 = T.meta_var(oblk * (BLOCKS * TILE))
                    args = T.meta_var((X, W, INIT, BIAS, MUL, Y, cfg, ibuf, cbuf, out, n, o0, pblk))
                    if row_tail == 0:  # noqa: SIM114 (decided while parsing)
                        positions(*args, BLOCKS)
                    elif oblk < ob - 1:
                        positions(*args, BLOCKS)
                    else:
                        positions(*args, row_tail)

    return kernel.with_attr(SPEC_ATTR, s.to_attr()).with_attr("op_pattern", 8)
