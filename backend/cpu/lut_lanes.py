"""Vector table lookups ``TBL[v mod 256]`` on byte lanes, as TIR expressions for x86.

Requires: ``TBL``, a buffer of :data:`TABLE_BYTES` int8 (the 256 entries, indexed by
the byte's unsigned value, then padding); a byte vector ``v`` (int8/uint8, the
lane counts :func:`vector_lanes_ok` accepts for the chosen :data:`LookupIsa`).

Guarantees: :func:`looked_up` is an expression of ``v``'s type whose lane ``i`` is
``TBL[v[i] mod 256]``, built from one of two instruction sequences:

- ``"vbmi"`` (AVX-512 VBMI): the table is four 64-byte vectors; two ``vpermi2b`` pick
  from two of them by the low 7 bits of each index and a blend on the sign bit
  chooses the half. 16 to 64 lanes (a narrower vector is widened to 64).
- ``"avx2"`` (AVX2: Zen 3, Haswell and later): the index bytes widened to 32 bits
  and one ``vpgatherdd`` per 8 (or 4) lanes loads 4 bytes from byte offset
  ``v mod 256``; the low byte is the entry (x86 is little-endian), so the table
  needs 3 bytes of padding after entry 255. 4 lanes or a multiple of 8.

Why the gather reads bytes, not a 1 KiB int32 table: the 256-byte table spans four
cache lines instead of sixteen, and the narrowing to bytes drops the 3 padding
bytes for free.
"""

from __future__ import annotations

from typing import Literal

import tvm
from tvm import ir, tirx

#: Which instruction sequence looks up a vector (``None``: the target has neither).
LookupIsa = Literal["vbmi", "avx2"]
#: Bytes of the table parameter: the 256 entries and padding for a 4-byte gather at entry 255.
TABLE_BYTES = 260
#: Target features each sequence needs.
ISA_FEATURES: dict[str, tuple[str, ...]] = {
    "vbmi": ("avx512bw", "avx512f", "avx512vbmi"),
    "avx2": ("avx2",),
}
#: Lanes of one ``vpermi2b`` (a 512-bit vector of bytes): the widest store looked up.
PERMUTE_LANES = 64
#: Narrowest vector ``vpermi2b`` looks up: with 8 or 4 lanes (depthwise kernels on 14x14
#: and 7x7 planes) the two permutes per store measured slower than the separate lookup.
PERMUTE_MIN_LANES = 16
_PERMUTE = "llvm.x86.avx512.vpermi2var.qi.512"
#: ``vpgatherdd`` by vector width in 32-bit lanes.
_GATHER = {8: "llvm.x86.avx2.gather.d.d.256", 4: "llvm.x86.avx2.gather.d.d"}


def lookup_isa(features: tuple[str, ...]) -> LookupIsa | None:
    """The best lookup sequence for a target with ``features`` (LLVM names), or ``None``."""
    for isa in ("vbmi", "avx2"):
        if all(f in features for f in ISA_FEATURES[isa]):
            return isa
    return None


def vector_lanes_ok(isa: LookupIsa, lanes: int) -> bool:
    """Whether a byte vector of ``lanes`` lanes (> 1) can be looked up with ``isa``."""
    if isa == "vbmi":
        return PERMUTE_MIN_LANES <= lanes <= PERMUTE_LANES
    return lanes == 4 or (lanes % 8 == 0 and lanes <= PERMUTE_LANES)


def _bytes(value: ir.PrimExpr, dtype: str) -> ir.PrimExpr:
    """``value`` (int8/uint8 lanes) reinterpreted as ``dtype`` lanes of the same width."""
    return value if str(value.ty.dtype) == dtype else tirx.reinterpret(dtype, value)


def _lanes(indices: range) -> list[ir.PrimExpr]:
    return [tirx.IntImm("int32", i) for i in indices]


def _permute(table: tirx.Buffer, value: ir.PrimExpr, lanes: int) -> ir.PrimExpr:
    """``vbmi``: two ``vpermi2b`` and a blend on the index's sign bit (int8 lanes)."""
    idx = _bytes(value, f"int8x{lanes}")
    if lanes < PERMUTE_LANES:
        copies = [idx] * -(-PERMUTE_LANES // lanes)
        idx = tirx.Shuffle(copies, _lanes(range(PERMUTE_LANES)))
    wide = f"int8x{PERMUTE_LANES}"
    part = [
        tirx.BufferLoad(
            table, [tirx.Ramp(tirx.IntImm("int32", k * PERMUTE_LANES), 1, PERMUTE_LANES)]
        )
        for k in range(4)
    ]
    low = tirx.call_llvm_pure_intrin(wide, _PERMUTE, part[0], idx, part[1])
    high = tirx.call_llvm_pure_intrin(wide, _PERMUTE, part[2], idx, part[3])
    zero = tirx.Broadcast(tirx.IntImm("int8", 0), PERMUTE_LANES)
    looked = tirx.Select(idx < zero, high, low)
    if lanes < PERMUTE_LANES:
        looked = tirx.Shuffle([looked], _lanes(range(lanes)))
    return looked


def _gather(table: tirx.Buffer, value: ir.PrimExpr, lanes: int) -> ir.PrimExpr:
    """``avx2``: one ``vpgatherdd`` of 4-byte words at byte offsets per 8 (or 4) lanes."""
    width = 4 if lanes == 4 else 8
    index = tirx.Cast(f"int32x{lanes}", _bytes(value, f"uint8x{lanes}"))
    base = tirx.address_of(tirx.BufferLoad(table, [tirx.IntImm("int32", 0)]))
    zeros = tirx.Broadcast(tirx.IntImm("int32", 0), width)
    ones = tirx.Broadcast(tirx.IntImm("int32", -1), width)
    words = []
    for start in range(0, lanes, width):
        part = (
            index if lanes == width else tirx.Shuffle([index], _lanes(range(start, start + width)))
        )
        words.append(
            tirx.call_llvm_pure_intrin(
                f"int32x{width}", _GATHER[width], zeros, base, part, ones, tirx.IntImm("int8", 1)
            )
        )
    whole = words[0] if len(words) == 1 else tirx.Shuffle(words, _lanes(range(lanes)))
    return tirx.Cast(f"uint8x{lanes}", whole)


def looked_up(table: tirx.Buffer, value: ir.PrimExpr, isa: LookupIsa) -> ir.PrimExpr:
    """``TBL[value mod 256]`` in ``value``'s type (int8/uint8, any lanes; vectors as
    :func:`vector_lanes_ok` allows for ``isa``), lane for lane."""
    dtype = str(value.ty.dtype)
    lanes = int(tvm.DataType(dtype).lanes)
    if lanes == 1:
        index = tirx.bitwise_and(tirx.Cast("int32", value), tirx.IntImm("int32", 255))
        return _bytes(tirx.BufferLoad(table, [index]), dtype)
    if not vector_lanes_ok(isa, lanes):
        raise ValueError(f"{lanes} byte lanes cannot be looked up with {isa}")
    looked = _permute(table, value, lanes) if isa == "vbmi" else _gather(table, value, lanes)
    return _bytes(looked, dtype)
