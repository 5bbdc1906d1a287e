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


def _lut_domain() -> tuple[Field, ...]:
    """``lut_bits``, ``lut_x_min`` and ``lut_f``: the int16 table's size and input domain."""
    return (
        _f(
            "lut_bits",
            4,
            1,
            10,
            "k: int16 tables have 2^k+1 entries (8 for 8-bit input)",
            default=8,
        ),
        _f(
            "lut_x_min",
            16,
            -32768,
            32767,
            "int16 input: input value of entry 0 (-32768 for 8-bit input)",
            signed=True,
            default=-32768,
        ),
        _f(
            "lut_f",
            5,
            0,
            16,
            "int16 input: entries are 2^f input steps apart (8 for 8-bit input)",
            default=8,
        ),
    )


_LUT_FUSED = (
    _flag("lut_en", "1: replace the clamp by a table lookup (LUT semantics)"),
    _sram("lut_addr", "SRAM address of the table (entries of ofm_dtype)", default=0),
    _dtype("lut_in_dtype", "type the requantized value is saturated to before lookup", default=0),
    *_lut_domain(),
)
# Output stage of CONV and FC (spec section 3, steps 1-4 after the MAC sum).
_OUTPUT_STAGE = (
    _flag("has_bias", "1: add b16[c] << bias_shift from bias_addr"),
    _sram("bias_addr", "SRAM address of int16 bias per output channel", default=0),
    _f("bias_shift", 5, 0, 31, "left shift of the int16 bias into the accumulator", default=0),
    _zp("ifm_zp", "input zero point, in the range of ifm_dtype (padded positions hold it)"),
    _zp("ofm_zp", "output zero point"),
    _f("pre_shift", 5, 0, 16, "ahead shift 48 -> 32 bits", default=0),
    _flag(
        "ofm_multiplier_per_channel",
        "1: per-channel uint16 multipliers at ofm_multiplier_addr; 0: immediate ofm_multiplier",
    ),
    _sram(
        "ofm_multiplier_addr",
        "SRAM address of per-channel multipliers (uint16, <= 32767)",
        default=0,
    ),
    _mult(
        "ofm_multiplier", "per-tensor multiplier (when ofm_multiplier_per_channel = 0)", default=0
    ),
    _shift("post_shift", "requantization right shift"),
    *_act(),
    *_LUT_FUSED,
)
_OUTPUT_GROUPS = (
    Group("bias", "opt_addr", ("has_bias", "bias_addr")),
    Group("multipliers", "opt_addr", ("ofm_multiplier_per_channel", "ofm_multiplier_addr")),
    Group("act", "range", ("act_min", "act_max")),
    Group("lut", "opt_addr", ("lut_en", "lut_addr")),
)

_MAC_OUTPUT_SEMANTICS = """\
Output stage per output element (y, x, c):
  acc48 = sat48(sum((x - ifm_zp) * w) + (b16[c] << bias_shift))   (sticky overflow flag if clamped)
  acc32 = sat32(rshift_round(acc48, pre_shift))
  M     = M_table[c] if ofm_multiplier_per_channel else ofm_multiplier
  v     = rshift_round(acc32 * M, post_shift) + ofm_zp             (product exact in 48 bits)
  y     = sat(clamp(v, act_min, act_max), ofm_dtype)               (lut_en = 0)
  y     = sat(LUT(sat(v, lut_in_dtype)), ofm_dtype)                (lut_en = 1; see LUT)
rshift_round(v, s) = v if s == 0 else (v + (1 << (s - 1))) >> s (arithmetic, round half up);
sat48 clamps to [-2^47, 2^47 - 1], sat32 to [-2^31, 2^31 - 1], sat(., t) to the range of t."""

_DMA_FIELDS = (
    _dram("dram_addr", "DRAM byte address of the first row"),
    _sram("sram_addr", "SRAM byte address of the first row"),
    _count("row_bytes", "bytes in one row (copied contiguously on both sides)"),
    _f("row_count", 16, 1, 65535, "rows per plane (inner repeat)", default=1),
    _f("plane_count", 16, 1, 65535, "planes (outer repeat)", default=1),
    _f("dram_row_stride_bytes", 32, 0, U32_MAX, "DRAM bytes from row to row", default=0),
    _f("dram_plane_stride_bytes", 32, 0, U32_MAX, "DRAM bytes from plane to plane", default=0),
    _f("sram_row_stride_bytes", 32, 0, U32_MAX, "SRAM bytes from row to row", default=0),
    _f("sram_plane_stride_bytes", 32, 0, U32_MAX, "SRAM bytes from plane to plane", default=0),
)
_DMA_SEMANTICS = """\
for p in [0, plane_count), r in [0, row_count):
  copy row_bytes bytes between
  DRAM[dram_addr + p*dram_plane_stride_bytes + r*dram_row_stride_bytes] and
  SRAM[sram_addr + p*sram_plane_stride_bytes + r*sram_row_stride_bytes] (direction by opcode).
Bytes move unchanged (no type conversion); regions must lie inside DRAM/SRAM."""
_DMA_TIMING = """\
The DRAM side is billed by maximal contiguous runs: rows taken in copy order (plane by plane,
row by row) whose DRAM bytes follow each other without a gap merge into one run, within a plane
and across a plane boundary. Every run shorter than a burst costs a full burst:
cycles = dma_latency_cycles
         + ceil(sum over runs of max(run_bytes, dma_burst_bytes) / dram_bytes_per_cycle).
E.g. 4 rows of 16 bytes at dram_row_stride_bytes = 16 are one 64-byte run."""

_DMA_GROUPS = (
    Group("dram", "alias", ("dram_addr",)),
    Group("sram", "alias", ("sram_addr",)),
    Group("row", "alias", ("row_bytes",)),
)

_ITP_FLAT_SEMANTICS_NOTE = (
    "Operands are flat arrays of count elements; output may equal an input exactly (in place)."
)

_LUT_SEMANTICS = """\
Table T has entries of ofm_dtype.
int8 input: 256 entries, y = T[x + 128];  uint8 input: 256 entries, y = T[x]
  (lut_bits, lut_x_min and lut_f must keep their defaults 8, -32768, 8).
int16 input: 2^k + 1 entries (k = lut_bits in [1, 10]); entry j holds the function at input
  lut_x_min + j * 2^f (f = lut_f in [0, 16]). Inputs outside [lut_x_min, lut_x_min + 2^(k+f)]
  are clamped to it, then
  d = clamp(x - lut_x_min, 0, 2^(k+f)),  i = d >> f,  t = d & (2^f - 1),
  y = sat(T[i] + rshift_round((T[i+1] - T[i]) * t, f), ofm_dtype)   (t = 0 when i = 2^k).
  The whole int16 range at full table size: lut_x_min = -32768, lut_f = 16 - lut_bits.
"""
# Worded once: the LUT row of docs/npu_isa.md (generated) and docs/npu_sim.md quote it verbatim.
LUT_TIMING = (
    "cycles = itp_fill_cycles + ceil(count / itp_lanes) for 8-bit input;"
    " itp_fill_cycles + ceil(2 * count / itp_lanes) for int16 input (interpolation at half rate)."
)
