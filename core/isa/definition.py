"""THE instruction table of the NPU: every instruction, every field, once.

Everything about the ISA is derived from :data:`OPS`: the encoder and decoder
(:mod:`npuc.core.isa.encoding`), the instruction classes (:mod:`npuc.core.isa.instructions`),
the assembler and disassembler (:mod:`npuc.core.isa.asm`), and docs/npu_isa.md
(tools/gen_npu_docs.py). Semantics refer to the spec (docs/npu_spec.md)
and are restated here in the words that go into the docs.

Encoding: every instruction is 64 bytes (INSTRUCTION_BYTES), a little-endian
bit string. Bits 0-7 hold the opcode, 8-11 ``wait``, 12-15 ``signal``, then the
instruction's fields in table order, each ``bits`` wide (two's complement when
signed). Unused high bits must be zero.
"""

from __future__ import annotations

from npuc.core.isa.fields import (  # noqa: F401  (builders used by the table below)
    _DMA_FIELDS,
    _DMA_GROUPS,
    _DMA_SEMANTICS,
    _DMA_TIMING,
    _ITP_FLAT_SEMANTICS_NOTE,
    _KERNEL,
    _LUT_FUSED,
    _LUT_SEMANTICS,
    _MAC_OUTPUT_SEMANTICS,
    _OUTPUT_GROUPS,
    _OUTPUT_STAGE,
    _PADS,
    LUT_TIMING,
    _act,
    _count,
    _dim,
    _dram,
    _dtype,
    _f,
    _flag,
    _lut_domain,
    _mult,
    _shift,
    _sram,
    _tensor,
    _zp,
)
from npuc.core.isa.types import COMMON_FIELDS, OPCODE_BITS, Group, OpDef, Unit

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
            _sram("ifm_addr", "SRAM address of the first input"),
            _dtype("ifm_dtype", "storage type of the first input"),
            _sram("ifm2_addr", "SRAM address of the second input"),
            _dtype("ifm2_dtype", "storage type of the second input"),
            _sram("ofm_addr", "SRAM address of the output"),
            _dtype("ofm_dtype", "storage type of the output"),
            _count("count", "elements"),
            _zp("ifm_zp", "zero point of the first input (in the range of ifm_dtype)"),
            _zp("ifm2_zp", "zero point of the second input (in the range of ifm2_dtype)"),
            _zp("ofm_zp", "zero point of the output"),
            _mult("ifm_multiplier", "add/sub/max/min: multiplier of the first input", default=0),
            _mult("ifm2_multiplier", "add/sub/max/min: multiplier of the second input", default=0),
            _mult("ofm_multiplier", "mul: multiplier of the product", default=0),
            _shift("post_shift", "requantization right shift of the 48-bit intermediate"),
            *_act(),
        ),
        "Element-wise add / sub / mul / max / min with requantization.",
        """\
With d1 = ifm - ifm_zp, d2 = ifm2 - ifm2_zp, M1 = ifm_multiplier, M2 = ifm2_multiplier, per element:
  add: t = d1*M1 + d2*M2      sub: t = d1*M1 - d2*M2      mul: t = d1*d2*ofm_multiplier
  max: t = max(d1*M1, d2*M2)  min: t = min(d1*M1, d2*M2)
  t = sat48(t) (sticky overflow flag if clamped)
  ofm = sat(clamp(rshift_round(t, post_shift) + ofm_zp, act_min, act_max), ofm_dtype)
mul ignores ifm_multiplier and ifm2_multiplier; the others ignore ofm_multiplier.
"""
        + _ITP_FLAT_SEMANTICS_NOTE,
        "cycles = itp_fill_cycles + ceil(count / itp_lanes).",
        (
            Group("ifm", "flat", ("ifm_addr", "ifm_dtype")),
            Group("ifm2", "flat", ("ifm2_addr", "ifm2_dtype")),
            Group("ofm", "flat", ("ofm_addr", "ofm_dtype")),
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
            _zp(
                "ifm_zp",
                "input zero point, in the range of ifm_dtype (avg: padded positions hold it)",
            ),
            _zp("ofm_zp", "output zero point (avg)"),
            _mult("ofm_multiplier", "avg: multiplier with 1/(kh*kw) folded in", default=1),
            _shift("post_shift", "avg: requantization right shift", default=0),
            *_act(),
        ),
        "Max or average pooling over kh x kw windows, per channel, on the ITP.",
        """\
ofm_h = (ifm_h + pad_top + pad_bottom - kh) // stride_h + 1 (same for w).
max: y = sat(clamp(max over the window's real (unpadded) values, act_min, act_max), ofm_dtype);
     stored values, same scale in and out; zero points, ofm_multiplier and post_shift are
     ignored. A window that lies entirely in the padding has no real value and gives the
     lowest result, sat(act_min, ofm_dtype) (padding never wins a max).
avg: s = sat32(sum over the window of (x - ifm_zp)), padded positions contribute 0 (hold ifm_zp);
     y = sat(clamp(rshift_round(s * ofm_multiplier, post_shift) + ofm_zp, act_min, act_max),
     ofm_dtype) (count_include_pad: ofm_multiplier folds in 1 / (kh * kw); sticky overflow
     flag if s was clamped).""",
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
            _sram("ifm_addr", "SRAM address of the input"),
            _dtype("ifm_dtype", "input storage type"),
            _sram("ofm_addr", "SRAM address of the output"),
            _dtype("ofm_dtype", "output storage type"),
            _count("count", "elements"),
            _zp("ifm_zp", "input zero point (in the range of ifm_dtype)"),
            _zp("ofm_zp", "output zero point"),
            _mult("ofm_multiplier", "multiplier"),
            _shift("post_shift", "requantization right shift"),
            *_act(),
        ),
        "Requantizing copy (changes scale, zero point and/or type).",
        "ofm = sat(clamp(rshift_round((ifm - ifm_zp) * ofm_multiplier, post_shift) + ofm_zp,"
        " act_min, act_max), ofm_dtype)\n" + _ITP_FLAT_SEMANTICS_NOTE,
        "cycles = itp_fill_cycles + ceil(count / itp_lanes).",
        (
            Group("ifm", "flat", ("ifm_addr", "ifm_dtype")),
            Group("ofm", "flat", ("ofm_addr", "ofm_dtype")),
            Group("act", "range", ("act_min", "act_max")),
        ),
    ),
    OpDef(
        "lut",
        "Lut",
        0x23,
        Unit.ITP,
        (
            _sram("ifm_addr", "SRAM address of the input"),
            _dtype("ifm_dtype", "input storage type (selects the table format)"),
            _sram("ofm_addr", "SRAM address of the output"),
            _dtype("ofm_dtype", "output storage type = table entry type"),
            _count("count", "elements"),
            _sram("lut_addr", "SRAM address of the table"),
            *_lut_domain(),
        ),
        "Table lookup for a unary non-linear function (sigmoid, tanh, ...).",
        _LUT_SEMANTICS + _ITP_FLAT_SEMANTICS_NOTE,
        LUT_TIMING,
        (
            Group("ifm", "flat", ("ifm_addr", "ifm_dtype")),
            Group("ofm", "flat", ("ofm_addr", "ofm_dtype")),
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
