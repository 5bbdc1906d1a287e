"""Exact int8 matrix-vector kernels: a dense layer over one input row, weights streamed once.

The kernel computes, for a ``dense`` layer whose input is a single row (batch-1
fully connected layers), ``Y (1, oc, 1)`` = the NPU output stage of
``sum_k (u[k] - zp_u) * w[k, o]`` for every output ``o``, with the same spec,
operands and output stage as :mod:`.int8_kernel` (whose docstring states the
arithmetic and why it is exact) except:

- ``X``: ``uint8 (1, cg, 1, 4)``: the row, offset to unsigned and padded
  with ``zp_u`` to whole groups of 4 (the convolution packing of a 1x1 map);
- ``W``: ``int32 (ocp / BLOCK, cg, BLOCK)``: per block of :data:`BLOCK`
  outputs and group ``c`` of 4 inputs, the 4 int8 weights of each output
  (input ``4c + g`` in byte ``g``); ``ocp`` is a multiple of :data:`BLOCK`.

The output channels are the vector lanes: each step broadcasts the 4 input
bytes of one group to every lane and multiplies them with the next ``BLOCK *
4`` contiguous weight bytes, so every weight byte is read once per inference.
Parallel over the blocks. Dot products as the convolution kernels (``kind``):
``vpdpbusd`` with the broadcast input as the unsigned operand (VNNI, AVX-VNNI),
``vpmaddwd`` on centred int16 values (AVX2), centred int32 arithmetic (generic).

AVX2: each ``vpmaddwd`` of four outputs' 16 weight bytes gives two pair sums
per output (``x0 w0 + x1 w1``, ``x2 w2 + x3 w3``); ``vphaddd`` of the two
``vpmaddwd`` of eight outputs adds each pair (exact: every partial sum is a
sum of the output's exact products, within the spec's int32 bound) into one
vector of the eight outputs in the order ``0 1 4 5 | 2 3 6 7``, put back in
order once at the end. One accumulator per eight outputs, so a whole block
(64 outputs, 8 vectors) stays in registers and every job reads its block's
weights as one contiguous stream. The previous form kept the pair sums
(two registers per eight outputs) and split each block into two passes of
32 outputs, each reading every other 128 bytes: VGG-19's 25088 -> 4096
layer ran at 6.9 GB/s against the AVX-512 kernel's 21 (one thread,
weights not in cache). The AVX2 job also prefetches the weights
:data:`PREFETCH_GROUPS` groups (2 KB) ahead: its loop spends more
instructions per byte than the VNNI ones, so fewer loads are in flight.
"""

from __future__ import annotations

from typing import Any

from tvm import tirx
from tvm.script import tirx as T

from npuc.backend.cpu.schedules.int8_kernel import (
    GROUP,
    SPEC_ATTR,
    ConvKernelSpec,
    DotKind,
    epilogue,
    vnni_intrinsic,
)
from npuc.backend.cpu.schedules.tir_macro import macro

#: Output channels per weight block (and per parallel job): ``ocp`` is padded to this.
BLOCK = 64

#: Vectors of output channels accumulated per pass over a block, per kind (the
#: accumulators stay in registers: one per vector of outputs).
PASS_VECTORS = {"vnni512": 4, "avxvnni": 8, "avx2": 8, "generic": 4}

#: Input groups ahead of the current one whose weights an AVX2 job prefetches (256 bytes
#: each): VGG-19's 25088 -> 4096 layer, weights not in cache, one thread, 0.81x with 8
#: against none (0.86x with 4, 0.87x with 16); the AVX-512 kernel measured 1.07x with it.
PREFETCH_GROUPS = 8

#: Lane order of an AVX2 accumulator (``vphaddd`` of two ``vpmaddwd``): output ``ORDER[i]``
#: of the eight sits in lane ``i``; :data:`UNORDER` puts them back.
ORDER = (0, 1, 4, 5, 2, 3, 6, 7)
UNORDER = tuple(ORDER.index(i) for i in range(8))


def is_matvec(spec: ConvKernelSpec) -> bool:
    """Whether ``spec`` is a matrix-vector layer (one 1x1 position, :data:`BLOCK` channels)."""
    return bool(spec.matvec)


def make_matvec(spec: ConvKernelSpec, kind: DotKind) -> tirx.PrimFunc:
    """The PrimFunc ``(X, W, INIT, BIAS, MUL, Y)`` of a matvec ``spec`` with ``kind``'s dot
    products. Raises ValueError when ``spec`` is not a matvec spec (module docstring)."""
    s = spec
    if not s.matvec or s.n != 1 or s.q != 1 or s.ocp % BLOCK or s.kh * s.kw != 1:
        raise ValueError(f"int8 matvec kernel: not a one-row dense spec: {s}")
    lanes = kind.lanes
    per_pass = min(PASS_VECTORS[kind.name], BLOCK // lanes)
    passes = BLOCK // lanes // per_pass
    width = lanes
    acc_t = f"int32x{lanes}"
    i8v = f"int8x{lanes * GROUP}"
    vnni = vnni_intrinsic(kind)
    zp_u = s.zp_u

    def dot(acc: Any, xg: Any, wv: Any) -> Any:
        """``acc`` (``width`` lanes) += the 4 input bytes ``xg`` (uint8x4) times ``wv``
        (int32 x lanes: 4 weights of each output channel)."""
        if vnni is not None:
            xb = T.reinterpret(T.broadcast(T.reinterpret(xg, dtype="int32"), lanes), dtype=i8v)
            return T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(vnni), acc, xb, T.reinterpret(wv, dtype=i8v), dtype=acc_t
            )
        centred = T.Cast("int16x4", xg) - T.broadcast(T.int16(zp_u), 4)
        if kind.name == "avx2":
            # the 4 centred inputs repeated 4 times (a Shuffle indexes only its inputs' lanes)
            x16 = T.Shuffle([centred] * 4, list(range(4 * GROUP)))
            wb = T.reinterpret(wv, dtype=f"int8x{lanes * GROUP}")
            out = [
                T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                    x16,
                    T.Cast("int16x16", T.Shuffle([wb], list(range(16 * h, 16 * h + 16)))),
                    dtype="int32x8",
                )
                for h in range(2)
            ]
            return acc + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.phadd.d"), out[0], out[1], dtype=acc_t
            )
        total = acc
        for g in range(GROUP):
            wg = (wv << T.broadcast(T.int32(24 - 8 * g), lanes)) >> T.broadcast(T.int32(24), lanes)
            x32 = T.Cast("int32", T.Shuffle([centred], [g]))
            total = total + wg * T.broadcast(x32, lanes)
        return total

    def init(value: Any) -> Any:
        return value if vnni is not None else T.broadcast(T.int32(0), width)

    @macro
    def prefetch(W: Any, b: Any, c: Any, j0: Any) -> None:
        """The weights of group ``c + PREFETCH_GROUPS`` (the last group's near the end), one
        ``prefetcht0`` per 64-byte line; nothing for other kinds."""
        if kind.name == "avx2":
            for line in T.unroll(per_pass * lanes // 16):
                T.evaluate(
                    T.call_llvm_intrin(
                        "void",
                        "llvm.prefetch.p0",
                        T.address_of(W[b, T.min(c + PREFETCH_GROUPS, s.cg - 1), j0 + line * 16]),
                        T.int32(0),  # read
                        T.int32(3),  # keep in every cache level
                        T.int32(1),  # data
                    )
                )

    def finish(acc: Any) -> Any:
        if kind.name != "avx2":
            return acc
        return T.Shuffle([acc], list(UNORDER))

    @T.prim_func(private=True, s_tir=True)
    def matvec(
        X: T.Buffer((1, s.cg, 1, GROUP), "uint8"),  # type: ignore[valid-type]
        W: T.Buffer((s.ocp // BLOCK, s.cg, BLOCK), "int32"),  # type: ignore[valid-type]
        INIT: T.Buffer((s.ocp,), "int32"),  # type: ignore[valid-type]
        BIAS: T.Buffer((s.ocp,), "int64"),  # type: ignore[valid-type]
        MUL: T.Buffer((s.ocp,), "int64"),  # type: ignore[valid-type]
        Y: T.Buffer((1, s.oc, 1), s.out_dtype),  # type: ignore[valid-type]
    ) -> None:
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            for job in T.parallel(s.ocp // BLOCK * passes):
                acc = T.decl_buffer((per_pass * width,), "int32")
                flat = T.decl_buffer((s.oc,), s.out_dtype, data=Y.data)  # Y as one row
                out = T.decl_buffer((lanes,), s.out_dtype)
                with T.sblock("int8_matvec"):
                    T.reads(
                        X[0, 0 : s.cg, 0, 0:GROUP],
                        W[0 : s.ocp // BLOCK, 0 : s.cg, 0:BLOCK],
                        INIT[0 : s.ocp],
                        BIAS[0 : s.ocp],
                        MUL[0 : s.ocp],
                    )
                    T.writes(Y[0, 0 : s.oc, 0])
                    b = T.meta_var(job // passes)
                    j0 = T.meta_var(job % passes * (per_pass * lanes))
                    for v in T.unroll(per_pass):
                        acc[T.ramp(v * width, 1, width)] = init(
                            INIT[T.ramp(b * BLOCK + j0 + v * lanes, 1, lanes)]
                        )
                    for c in range(s.cg):
                        prefetch(W, b, c, j0)
                        for v in T.unroll(per_pass):
                            acc[T.ramp(v * width, 1, width)] = dot(
                                acc[T.ramp(v * width, 1, width)],
                                X[0, c, 0, T.ramp(0, 1, GROUP)],
                                W[b, c, T.ramp(j0 + v * lanes, 1, lanes)],
                            )
                    for v in T.unroll(per_pass):
                        o0 = T.meta_var(b * BLOCK + j0 + v * lanes)
                        value = T.meta_var(
                            epilogue(
                                s,
                                lanes,
                                finish(acc[T.ramp(v * width, 1, width)]),
                                BIAS[T.ramp(o0, 1, lanes)],
                                T.Cast(acc_t, MUL[T.ramp(o0, 1, lanes)]),
                            )
                        )
                        if o0 + lanes <= s.oc:
                            flat[T.ramp(o0, 1, lanes)] = value
                        elif o0 < s.oc:
                            out[T.ramp(0, 1, lanes)] = value
                            for j in range(lanes):
                                if o0 + j < s.oc:
                                    flat[o0 + j] = out[j]

    return matvec.with_attr(SPEC_ATTR, s.to_attr()).with_attr("op_pattern", 8)
