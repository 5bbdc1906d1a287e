"""Field kinds and shared field groups from which the instruction table is built.

Only :mod:`npuc.core.isa.definition` uses these: they keep the table itself short
(a DMA descriptor, a tensor's geometry, the CONV/FC output stage are written
once here and reused by every instruction that has them). The table in
definition.py stays the single place that says which instruction has which
fields.
"""

from __future__ import annotations

from npuc.core.isa.types import Field, Group

U32_MAX = (1 << 32) - 1
ZP_LO, ZP_HI = -32768, 65535  # covers int8, uint8 and int16 zero points / clamp bounds


def _f(name: str, bits: int, lo: int, hi: int, doc: str, **kw: object) -> Field:
    return Field(name, bits, lo, hi, doc, **kw)  # type: ignore[arg-type]


def _sram(name: str, doc: str, default: int | None = None) -> Field:
    return _f(name, 32, 0, U32_MAX, doc, kind="sram_addr", default=default)


def _dram(name: str, doc: str) -> Field:
    return _f(name, 32, 0, U32_MAX, doc, kind="dram_addr")


def _dim(name: str, doc: str) -> Field:
    return _f(name, 16, 1, 65535, doc)


def _dtype(name: str, doc: str, default: int | None = None) -> Field:
    return _f(name, 2, 0, 2, doc, kind="dtype", default=default)


def _zp(name: str, doc: str) -> Field:
    return _f(name, 17, ZP_LO, ZP_HI, doc, signed=True, default=0)


def _mult(name: str, doc: str, default: int | None = None) -> Field:
    return _f(name, 15, 0, 32767, doc, default=default)


def _shift(name: str, doc: str, default: int | None = None) -> Field:
    return _f(name, 6, 0, 47, doc, default=default)


def _flag(name: str, doc: str) -> Field:
    return _f(name, 1, 0, 1, doc, kind="flag", default=0)


def _count(name: str, doc: str) -> Field:
    return _f(name, 32, 1, U32_MAX, doc)


def _act() -> tuple[Field, ...]:
    return (
        _f(
            "act_min",
            17,
            ZP_LO,
            ZP_HI,
            "lower clamp bound (ReLU: ofm_zp)",
            signed=True,
            default=ZP_LO,
        ),
        _f("act_max", 17, ZP_LO, ZP_HI, "upper clamp bound", signed=True, default=ZP_HI),
    )


def _tensor(prefix: str, what: str) -> tuple[Field, ...]:
    return (
        _sram(f"{prefix}_addr", f"SRAM address of the {what} (dense HWC)"),
        _dim(f"{prefix}_h", f"{what} height"),
        _dim(f"{prefix}_w", f"{what} width"),
        _dim(f"{prefix}_c", f"{what} channels"),
        _dtype(f"{prefix}_dtype", f"{what} storage type"),
    )


_KERNEL = (
    _f("kh", 8, 1, 255, "kernel height", default=1),
    _f("kw", 8, 1, 255, "kernel width", default=1),
    _f("stride_h", 4, 1, 15, "vertical stride", default=1),
    _f("stride_w", 4, 1, 15, "horizontal stride", default=1),
)
_PADS = tuple(
    _f(f"pad_{side}", 8, 0, 255, f"{side} padding (pixels)", default=0)
    for side in ("top", "left", "bottom", "right")
)
_LUT_FUSED = (
    _flag("lut_en", "1: replace the clamp by a table lookup (LUT semantics)"),
    _sram("lut_addr", "SRAM address of the table (entries of ofm_dtype)", default=0),
    _dtype("lut_in_dtype", "type the requantized value is saturated to before lookup", default=0),
    _f("lut_bits", 4, 1, 10, "k: int16 tables have 2^k+1 entries (8 for 8-bit input)", default=8),
)
# Output stage of CONV and FC (spec section 3, steps 1-4 after the MAC sum).
_OUTPUT_STAGE = (
    _flag("has_bias", "1: add b16[c] << bias_shift from bias_addr"),
    _sram("bias_addr", "SRAM address of int16 bias per output channel", default=0),
    _f("bias_shift", 5, 0, 31, "left shift of the int16 bias into the accumulator", default=0),
    _zp("ifm_zp", "input zero point (padded positions hold it)"),
    _zp("ofm_zp", "output zero point"),
    _f("pre_shift", 5, 0, 16, "ahead shift 48 -> 32 bits", default=0),
    _flag("m_per_channel", "1: per-channel uint16 multipliers at m_addr; 0: immediate m"),
    _sram("m_addr", "SRAM address of per-channel multipliers (uint16, <= 32767)", default=0),
    _mult("m", "per-tensor multiplier (when m_per_channel = 0)", default=0),
    _shift("post_shift", "requant right shift"),
    *_act(),
    *_LUT_FUSED,
)
_OUTPUT_GROUPS = (
    Group("bias", "opt_addr", ("has_bias", "bias_addr")),
    Group("mult", "opt_addr", ("m_per_channel", "m_addr")),
    Group("act", "range", ("act_min", "act_max")),
    Group("lut", "opt_addr", ("lut_en", "lut_addr")),
)

_MAC_OUTPUT_SEMANTICS = """\
Output stage per output element (y, x, c):
  acc48 = sat48(sum((x - ifm_zp) * w) + (b16[c] << bias_shift))   (sticky overflow flag if clamped)
  acc32 = sat32(rshift_round(acc48, pre_shift))
  M     = M_table[c] if m_per_channel else m
  v     = rshift_round(acc32 * M, post_shift) + ofm_zp             (product exact in 48 bits)
  y     = sat(clamp(v, act_min, act_max), ofm_dtype)               (lut_en = 0)
  y     = sat(LUT(sat(v, lut_in_dtype)), ofm_dtype)                (lut_en = 1; see LUT)
rshift_round(v, s) = v if s == 0 else (v + (1 << (s - 1))) >> s (arithmetic, round half up);
sat48 clamps to [-2^47, 2^47 - 1], sat32 to [-2^31, 2^31 - 1], sat(., t) to the range of t."""

_DMA_FIELDS = (
    _dram("dram_addr", "DRAM byte address of the first run"),
    _sram("sram_addr", "SRAM byte address of the first run"),
    _count("run_bytes", "bytes in one contiguous run"),
    _f("n1", 16, 1, 65535, "runs per row (inner repeat)", default=1),
    _f("n2", 16, 1, 65535, "rows (outer repeat)", default=1),
    _f("dram_stride1", 32, 0, U32_MAX, "DRAM bytes between runs", default=0),
    _f("dram_stride2", 32, 0, U32_MAX, "DRAM bytes between rows", default=0),
    _f("sram_stride1", 32, 0, U32_MAX, "SRAM bytes between runs", default=0),
    _f("sram_stride2", 32, 0, U32_MAX, "SRAM bytes between rows", default=0),
)
_DMA_SEMANTICS = """\
for i2 in [0, n2), i1 in [0, n1):
  copy run_bytes bytes between DRAM[dram_addr + i2*dram_stride2 + i1*dram_stride1]
  and SRAM[sram_addr + i2*sram_stride2 + i1*sram_stride1] (direction by opcode).
Bytes move unchanged (no type conversion); regions must lie inside DRAM/SRAM."""
_DMA_TIMING = """\
cycles = dma_latency_cycles
         + ceil(n1 * n2 * max(run_bytes, dma_burst_bytes) / dram_bytes_per_cycle):
every contiguous run shorter than a burst costs a full burst."""

_DMA_GROUPS = (
    Group("dram", "alias", ("dram_addr",)),
    Group("sram", "alias", ("sram_addr",)),
    Group("run", "alias", ("run_bytes",)),
)

_ITP_FLAT_SEMANTICS_NOTE = (
    "Operands are flat arrays of count elements; output may equal an input exactly (in place)."
)
