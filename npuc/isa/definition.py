"""THE instruction table of the NPU: every instruction, every field, once.

Everything about the ISA is derived from :data:`OPS`: the encoder and decoder
(:mod:`npuc.isa.encoding`), the instruction classes (:mod:`npuc.isa.instructions`),
the assembler and disassembler (:mod:`npuc.isa.asm`), and docs/npu_isa.md
(tools/gen_npu_docs.py). Semantics refer to the spec (/work/shared/npu-spec.md)
and are restated here in the words that go into the docs.

Encoding: every instruction is 64 bytes (INSTRUCTION_BYTES), a little-endian
bit string. Bits 0-7 hold the opcode, 8-11 ``wait``, 12-15 ``signal``, then the
instruction's fields in table order, each ``bits`` wide (two's complement when
signed). Unused high bits must be zero.
"""

from __future__ import annotations

from npuc.isa.types import COMMON_FIELDS, OPCODE_BITS, Field, Group, OpDef, Unit

__all__ = [
    "COMMON_FIELDS",
    "INSTRUCTION_BITS",
    "INSTRUCTION_BYTES",
    "OPCODE_BITS",
    "OPS",
    "OPS_BY_MNEMONIC",
    "OPS_BY_OPCODE",
    "TOKEN_SEMANTICS",
    "OpDef",
]

INSTRUCTION_BYTES = 64
INSTRUCTION_BITS = INSTRUCTION_BYTES * 8

U32_MAX = (1 << 32) - 1
ZP_LO, ZP_HI = -32768, 65535  # covers int8, uint8 and int16 zero points / clamp bounds


# ----------------------------------------------------------------------------- field builders


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

# ----------------------------------------------------------------------------- the table

OPS: tuple[OpDef, ...] = (
    OpDef(
        "dma_load",
        "DmaLoad",
        0x01,
        Unit.DMA_IN,
        _DMA_FIELDS,
        "Copy a 3-D strided region from DRAM to SRAM.",
        _DMA_SEMANTICS,
        _DMA_TIMING,
        _DMA_GROUPS,
    ),
    OpDef(
        "dma_store",
        "DmaStore",
        0x02,
        Unit.DMA_OUT,
        _DMA_FIELDS,
        "Copy a 3-D strided region from SRAM to DRAM.",
        _DMA_SEMANTICS,
        _DMA_TIMING,
        _DMA_GROUPS,
    ),
    OpDef(
        "conv",
        "Conv",
        0x10,
        Unit.MAC,
        (
            *_tensor("ifm", "input feature map"),
            *_tensor("ofm", "output feature map"),
            _sram("w_addr", "SRAM address of int8 weights OHWI (cout, kh, kw, cin_per_group)"),
            *_KERNEL,
            _f("dilation_h", 4, 1, 15, "vertical dilation", default=1),
            _f("dilation_w", 4, 1, 15, "horizontal dilation", default=1),
            *_PADS,
            _flag(
                "depthwise", "1: depthwise (ofm_c = ifm_c * multiplier, weights (cout, kh, kw, 1))"
            ),
            *_OUTPUT_STAGE,
        ),
        "2-D convolution (regular or depthwise) with the fused output stage.",
        """\
ofm_h = (ifm_h + pad_top + pad_bottom - dilation_h*(kh-1) - 1) // stride_h + 1 (same for w).
Regular: sum over (ky, kx, ci) of (x[oy*stride_h + ky*dilation_h - pad_top, ox*stride_w +
kx*dilation_w - pad_left, ci] - ifm_zp) * w[c, ky, kx, ci]; padded positions hold ifm_zp.
Depthwise: ofm_c is a multiple of ifm_c; output channel c reads input channel
c // (ofm_c // ifm_c) and weights w[c, ky, kx, 0].
"""
        + _MAC_OUTPUT_SEMANTICS,
        """\
folds = ceil(ofm_c / mac_rows) * ceil(ifm_c / mac_cols) * kh * kw (regular) or
ceil(ofm_c / mac_rows) * kh * kw (depthwise, one column per channel group);
cycles = mac_pipeline_fill_cycles + folds * max(stream, mac_rows), stream = ofm_h * ofm_w pixels,
doubled for int16 ifm (half rate; loading a fold's weights takes mac_rows cycles either way).""",
        (
            Group("ifm", "tensor", ("ifm_addr", "ifm_h", "ifm_w", "ifm_c", "ifm_dtype")),
            Group("ofm", "tensor", ("ofm_addr", "ofm_h", "ofm_w", "ofm_c", "ofm_dtype")),
            Group("w", "alias", ("w_addr",)),
            Group("k", "pair", ("kh", "kw")),
            Group("stride", "pair", ("stride_h", "stride_w")),
            Group("dilation", "pair", ("dilation_h", "dilation_w")),
            Group("pad", "quad", ("pad_top", "pad_left", "pad_bottom", "pad_right")),
            *_OUTPUT_GROUPS,
        ),
    ),
    OpDef(
        "fc",
        "Fc",
        0x11,
        Unit.MAC,
        (
            _sram("ifm_addr", "SRAM address of the input rows [n, k]"),
            _dim("ifm_n", "rows (batch)"),
            _dim("ifm_k", "input features"),
            _dtype("ifm_dtype", "input storage type"),
            _sram("ofm_addr", "SRAM address of the output rows [n, ofm_c]"),
            _dim("ofm_c", "output features"),
            _dtype("ofm_dtype", "output storage type"),
            _sram("w_addr", "SRAM address of int8 weights [ofm_c, k]"),
            *_OUTPUT_STAGE,
        ),
        "Fully connected layer: y[n, c] from sum over k of (x[n, k] - ifm_zp) * w[c, k].",
        "y[r, c] = output stage of sum_k (x[r, k] - ifm_zp) * w[c, k].\n" + _MAC_OUTPUT_SEMANTICS,
        """\
Runs as a 1x1 convolution over ifm_n pixels:
folds = ceil(ofm_c / mac_rows) * ceil(ifm_k / mac_cols);
cycles = mac_pipeline_fill_cycles + folds * max(stream, mac_rows), stream = ifm_n rows,
doubled for int16 ifm (weight loading dominates at batch 1).""",
        (
            Group("ifm", "tensor2d", ("ifm_addr", "ifm_n", "ifm_k", "ifm_dtype")),
            Group("ofm", "flat", ("ofm_addr", "ofm_dtype")),
            Group("w", "alias", ("w_addr",)),
            *_OUTPUT_GROUPS,
        ),
    ),
    OpDef(
        "eltwise",
        "Eltwise",
        0x20,
        Unit.ITP,
        (
            _f(
                "op",
                3,
                0,
                4,
                "operation",
                kind="choice",
                choices=("add", "sub", "mul", "max", "min"),
            ),
            _sram("a_addr", "SRAM address of operand a"),
            _dtype("a_dtype", "storage type of a"),
            _sram("b_addr", "SRAM address of operand b"),
            _dtype("b_dtype", "storage type of b"),
            _sram("y_addr", "SRAM address of the result"),
            _dtype("y_dtype", "storage type of the result"),
            _count("count", "elements"),
            _zp("zp_a", "zero point of a"),
            _zp("zp_b", "zero point of b"),
            _zp("zp_y", "zero point of y"),
            _mult("ma", "multiplier of a (the product's multiplier for mul)"),
            _mult("mb", "multiplier of b (ignored by mul)", default=0),
            _shift("shift", "right shift of the 48-bit intermediate"),
            *_act(),
        ),
        "Element-wise add / sub / mul / max / min with requantization.",
        """\
With da = a - zp_a, db = b - zp_b, per element:
  add: t = da*ma + db*mb          sub: t = da*ma - db*mb          mul: t = da*db*ma
  max: t = max(da*ma, db*mb)      min: t = min(da*ma, db*mb)
  t = sat48(t) (sticky overflow flag if clamped)
  y = sat(clamp(rshift_round(t, shift) + zp_y, act_min, act_max), y_dtype)
"""
        + _ITP_FLAT_SEMANTICS_NOTE,
        "cycles = itp_fill_cycles + ceil(count / itp_lanes).",
        (
            Group("a", "flat", ("a_addr", "a_dtype")),
            Group("b", "flat", ("b_addr", "b_dtype")),
            Group("y", "flat", ("y_addr", "y_dtype")),
            Group("act", "range", ("act_min", "act_max")),
        ),
    ),
    OpDef(
        "pool",
        "Pool",
        0x21,
        Unit.ITP,
        (
            _f("op", 1, 0, 1, "pooling kind", kind="choice", choices=("max", "avg")),
            *_tensor("ifm", "input feature map"),
            _sram("ofm_addr", "SRAM address of the output (ofm_h, ofm_w, ifm_c)"),
            _dim("ofm_h", "output height"),
            _dim("ofm_w", "output width"),
            _dtype("ofm_dtype", "output storage type"),
            *_KERNEL,
            *_PADS,
            _zp("ifm_zp", "input zero point (avg: padded positions hold it)"),
            _zp("ofm_zp", "output zero point (avg)"),
            _mult("m", "avg: multiplier with 1/(kh*kw) folded in", default=1),
            _shift("shift", "avg: requant right shift", default=0),
            *_act(),
        ),
        "Max or average pooling over kh x kw windows, per channel, on the ITP.",
        """\
ofm_h = (ifm_h + pad_top + pad_bottom - kh) // stride_h + 1 (same for w).
max: y = sat(clamp(max over the window's real (unpadded) values, act_min, act_max), ofm_dtype);
     stored values, same scale in and out; zero points, m and shift are ignored.
avg: s = sat32(sum over the window of (x - ifm_zp)), padded positions contribute 0 (hold ifm_zp);
     y = sat(clamp(rshift_round(s * m, shift) + ofm_zp, act_min, act_max), ofm_dtype)
     (count_include_pad: m folds in 1 / (kh * kw); sticky overflow flag if s was clamped).""",
        "cycles = itp_fill_cycles + ceil(ofm_h * ofm_w * ifm_c * kh * kw / itp_lanes).",
        (
            Group("ifm", "tensor", ("ifm_addr", "ifm_h", "ifm_w", "ifm_c", "ifm_dtype")),
            Group("k", "pair", ("kh", "kw")),
            Group("stride", "pair", ("stride_h", "stride_w")),
            Group("pad", "quad", ("pad_top", "pad_left", "pad_bottom", "pad_right")),
            Group("act", "range", ("act_min", "act_max")),
        ),
    ),
    OpDef(
        "requant",
        "Requant",
        0x22,
        Unit.ITP,
        (
            _sram("in_addr", "SRAM address of the input"),
            _dtype("in_dtype", "input storage type"),
            _sram("out_addr", "SRAM address of the output"),
            _dtype("out_dtype", "output storage type"),
            _count("count", "elements"),
            _zp("zp_in", "input zero point"),
            _zp("zp_out", "output zero point"),
            _mult("m", "multiplier"),
            _shift("shift", "right shift"),
            *_act(),
        ),
        "Requantizing copy (changes scale, zero point and/or type).",
        "y = sat(clamp(rshift_round((x - zp_in) * m, shift) + zp_out, act_min, act_max),"
        " out_dtype)\n" + _ITP_FLAT_SEMANTICS_NOTE,
        "cycles = itp_fill_cycles + ceil(count / itp_lanes).",
        (
            Group("x", "flat", ("in_addr", "in_dtype")),
            Group("y", "flat", ("out_addr", "out_dtype")),
            Group("act", "range", ("act_min", "act_max")),
        ),
    ),
    OpDef(
        "lut",
        "Lut",
        0x23,
        Unit.ITP,
        (
            _sram("in_addr", "SRAM address of the input"),
            _dtype("in_dtype", "input storage type (selects the table format)"),
            _sram("out_addr", "SRAM address of the output"),
            _dtype("out_dtype", "output storage type = table entry type"),
            _count("count", "elements"),
            _sram("lut_addr", "SRAM address of the table"),
            _f(
                "lut_bits",
                4,
                1,
                10,
                "k: int16 tables have 2^k+1 entries (8 for 8-bit input)",
                default=8,
            ),
        ),
        "Table lookup for a unary non-linear function (sigmoid, tanh, ...).",
        """\
Table T has entries of out_dtype.
int8 input: 256 entries, y = T[x + 128];  uint8 input: 256 entries, y = T[x] (lut_bits must be 8).
int16 input: 2^k + 1 entries (k = lut_bits in [1, 10]), x_min = -32768, f = 16 - k,
  i = (x - x_min) >> f,  t = (x - x_min) & (2^f - 1),
  y = sat(T[i] + rshift_round((T[i+1] - T[i]) * t, f), out_dtype).
"""
        + _ITP_FLAT_SEMANTICS_NOTE,
        "cycles = itp_fill_cycles + ceil(count / itp_lanes), doubled for int16 input"
        " (interpolation).",
        (
            Group("x", "flat", ("in_addr", "in_dtype")),
            Group("y", "flat", ("out_addr", "out_dtype")),
            Group("table", "alias", ("lut_addr",)),
        ),
    ),
    OpDef(
        "sync",
        "Sync",
        0x30,
        None,
        (_f("unit", 2, 0, 3, "unit whose queue runs this no-op", kind="unit"),),
        "No-op on one unit's queue that only waits for and signals tokens.",
        "Consumes the wait tokens, then pushes the signal tokens; touches no memory.",
        "1 cycle on its unit.",
    ),
    OpDef(
        "end",
        "End",
        0x3F,
        None,
        (),
        "End of program: must be the last instruction, exactly once; wait = signal = 0.",
        "The program finishes when every unit has drained its queue.",
        "0 cycles.",
    ),
)

OPS_BY_MNEMONIC: dict[str, OpDef] = {op.mnemonic: op for op in OPS}
OPS_BY_OPCODE: dict[int, OpDef] = {op.opcode: op for op in OPS}

TOKEN_SEMANTICS = """\
Tokens are counters, one per ordered pair (producer unit, consumer unit). The dispatcher sends
every instruction, in program order, to its unit's in-order queue. An instruction starts when
its unit is free and, for every bit u of `wait`, the counter (u -> this unit) is positive; it
then decrements those counters. When it finishes it increments (this unit -> u) for every bit u
of `signal`. A unit may not wait for or signal itself. If some unit has work left but no unit
can start, the program deadlocks; the simulator reports the blocked instructions and the tokens
they wait for."""

for _op in OPS:
    assert _op.used_bits <= INSTRUCTION_BITS, (_op.mnemonic, _op.used_bits)
    assert len({f.name for f in _op.all_fields}) == len(_op.all_fields), _op.mnemonic
