"""Instruction table, encoder and decoder: ranges enforced, exact round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core.errors import InvalidInputError
from npuc.core.isa.checks import check_instruction
from npuc.core.isa.definition import INSTRUCTION_BITS, INSTRUCTION_BYTES, OPS, OPS_BY_MNEMONIC
from npuc.core.isa.encoding import decode, decode_all, encode, encode_all
from npuc.core.isa.instructions import CLASSES, Instruction
from tests.core.isa.strategies import (
    field_values,
    in_range_instruction,
    make_well_formed,
    well_formed_instruction,
)

ALL_FIELDS = [(op.mnemonic, f.name) for op in OPS for f in op.all_fields]


def _minimal(mnemonic: str) -> Instruction:
    """A valid instruction with every required field at its lowest value."""
    op = OPS_BY_MNEMONIC[mnemonic]
    return CLASSES[mnemonic](**{f.name: f.lo for f in op.all_fields if f.default is None})


def test_spec_ranges_in_table() -> None:
    conv = OPS_BY_MNEMONIC["conv"]
    assert (conv.field("pre_shift").lo, conv.field("pre_shift").hi) == (0, 16)
    assert (conv.field("post_shift").lo, conv.field("post_shift").hi) == (0, 47)
    assert (conv.field("bias_shift").lo, conv.field("bias_shift").hi) == (0, 31)
    assert (conv.field("ofm_multiplier").lo, conv.field("ofm_multiplier").hi) == (0, 32767)
    elt = OPS_BY_MNEMONIC["eltwise"]
    assert elt.field("ifm_multiplier").hi == elt.field("ifm2_multiplier").hi == 32767
    assert elt.field("post_shift").hi == 47
    assert elt.field("ofm_multiplier").hi == 32767
    assert OPS_BY_MNEMONIC["lut"].field("lut_bits").hi == 10
    assert all(op.used_bits <= INSTRUCTION_BITS for op in OPS)
    assert len({op.opcode for op in OPS}) == len(OPS)


@pytest.mark.parametrize(("mnemonic", "field"), ALL_FIELDS)
def test_every_field_bound_enforced(mnemonic: str, field: str) -> None:
    f = OPS_BY_MNEMONIC[mnemonic].field(field)
    base = _minimal(mnemonic)
    for ok in (f.lo, f.hi):
        assert decode(encode(base.replace(**{field: ok}))).values()[field] == ok
    for bad in (f.lo - 1, f.hi + 1):
        with pytest.raises(InvalidInputError) as info:
            encode(base.replace(**{field: bad}))
        assert mnemonic in info.value.message and field in info.value.message


@pytest.mark.parametrize(("mnemonic", "field"), ALL_FIELDS)
def test_decode_rejects_out_of_range_bit_patterns(mnemonic: str, field: str) -> None:
    op = OPS_BY_MNEMONIC[mnemonic]
    f = op.field(field)
    offset = dict((g.name, o) for g, o in op.bit_offsets())[field]
    raw_max = (1 << f.bits) - 1
    word = int.from_bytes(encode(_minimal(mnemonic)), "little") & ~(raw_max << offset)
    bad_raw = [r for r in (0, raw_max, f.hi + 1) if r <= raw_max]
    for raw in bad_raw:
        value = raw - (1 << f.bits) if f.signed and raw >> (f.bits - 1) else raw
        data = (word | raw << offset).to_bytes(INSTRUCTION_BYTES, "little")
        if f.lo <= value <= f.hi:
            assert decode(data).values()[field] == value
        else:
            with pytest.raises(InvalidInputError, match=field):
                decode(data)


def test_decode_rejects_unknown_opcode_reserved_bits_and_size() -> None:
    with pytest.raises(InvalidInputError, match="unknown opcode"):
        decode(bytes(INSTRUCTION_BYTES))
    data = bytearray(encode(CLASSES["end"]()))
    data[-1] = 0x80
    with pytest.raises(InvalidInputError, match="reserved"):
        decode(bytes(data))
    with pytest.raises(InvalidInputError, match="bytes"):
        decode(bytes(data[:-1]))
    with pytest.raises(InvalidInputError, match="multiple"):
        decode_all(bytes(INSTRUCTION_BYTES + 1))


def test_encode_rejects_non_integers() -> None:
    with pytest.raises(InvalidInputError, match="pre_shift"):
        encode(_minimal("conv").replace(pre_shift=1.5))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(in_range_instruction())
def test_round_trip_any_in_range_instruction(ins: Instruction) -> None:
    data = encode(ins)
    assert len(data) == INSTRUCTION_BYTES
    assert decode(data) == ins


@settings(max_examples=100, deadline=None)
@given(st.lists(well_formed_instruction(), max_size=8))
def test_round_trip_sequences(seq: list[Instruction]) -> None:
    for ins in seq:
        check_instruction(ins)
    assert decode_all(encode_all(seq)) == tuple(seq)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(OPS).flatmap(lambda op: field_values(op).map(lambda v: (op, v))))
def test_repaired_instructions_are_well_formed(pair: tuple) -> None:
    op, values = pair
    check_instruction(make_well_formed(op, values))


def test_cross_field_checks() -> None:
    conv = CLASSES["conv"](
        ifm_addr=0, ifm_h=8, ifm_w=8, ifm_c=16, ifm_dtype=0, ofm_addr=4096, ofm_h=8, ofm_w=8,
        ofm_c=32, ofm_dtype=0, w_addr=8192, post_shift=10, kh=3, kw=3, pad_top=1, pad_left=1,
        pad_bottom=1, pad_right=1,
    )  # fmt: skip
    check_instruction(conv)
    bad = {
        "ofm_h": conv.replace(ofm_h=7),
        "itself": conv.replace(wait=2),
        "bias_addr": conv.replace(bias_addr=64),
        "ofm_multiplier_addr": conv.replace(ofm_multiplier_addr=64),
        "act_min": conv.replace(act_min=10, act_max=5),
        "ifm_zp": conv.replace(ifm_zp=200),
        "multiple": conv.replace(depthwise=1, ifm_c=3),
        "lut_bits": conv.replace(lut_en=1, lut_bits=6),
    }
    for needle, ins in bad.items():
        with pytest.raises(InvalidInputError, match=needle):
            check_instruction(ins)
    with pytest.raises(InvalidInputError, match="END"):
        check_instruction(CLASSES["end"](wait=1))


# Golden encodings: one instruction per opcode with arbitrary fixed in-range field values
# (negative zero points included). Hex is bytes 0.. in file order; the remaining bytes of the
# 64 are zero. Checked by hand for dma_load: byte 0 = opcode 0x01, byte 1 = 0xa5 (wait 5 in
# bits 8-11, signal 0xa in bits 12-15), bytes 2-5 = dram_addr 0xdaa68c02 = 3668347906 and
# bytes 6-9 = sram_addr 0x78de05b3 = 2027816371, little-endian.
# fmt: off
GOLDEN: dict[str, tuple[dict[str, int], str]] = {
    "dma_load": (
        dict(
            wait=5, signal=10, dram_addr=3668347906, sram_addr=2027816371, row_bytes=387284840,
            row_count=44646, plane_count=50767, dram_row_stride_bytes=4055624823,
            dram_plane_stride_bytes=2415093288, sram_row_stride_bytes=774561753,
            sram_plane_stride_bytes=3428997514
        ),
        (
            "01a5028ca6dab305de78687f151766ae4fc677ecbbf12866f38fd9df2a2e8a59"
            "62cc"
        ),
    ),
    "dma_store": (
        dict(
            wait=5, signal=10, dram_addr=3668355825, sram_addr=2027824290, row_bytes=387292759,
            row_count=52565, plane_count=58686, dram_row_stride_bytes=4055632742,
            dram_plane_stride_bytes=2415101207, sram_row_stride_bytes=774569672,
            sram_plane_stride_bytes=3429005433
        ),
        (
            "02a5f1aaa6daa224de78579e151755cd3ee5660bbcf11785f38fc8fe2a2e7978"
            "62cc"
        ),
    ),
    "conv": (
        dict(
            wait=5, signal=10, ifm_addr=3668466691, ifm_h=20119, ifm_w=26240, ifm_c=32361,
            ifm_dtype=0, ofm_addr=4055743608, ofm_h=50724, ofm_w=56845, ofm_c=62966,
            ofm_dtype=2, w_addr=148053229, kh=239, kw=240, stride_h=1, stride_w=2, dilation_h=3,
            dilation_w=4, pad_top=196, pad_left=117, pad_bottom=38, pad_right=215, depthwise=0,
            has_bias=1, bias_addr=295979754, bias_shift=27, ifm_zp=-16820, ofm_zp=14333,
            pre_shift=16, ofm_multiplier_per_channel=1, ofm_multiplier_addr=3337692432,
            ofm_multiplier=7873, post_shift=18, act_min=4643, act_max=35796, lut_en=1,
            lut_addr=2084437814, lut_in_dtype=2, lut_bits=5, lut_x_min=-12345, lut_f=11
        ),
        (
            "10a5035ca8da974e8066697ee0f1f6c693183778dbd7dbce318df00e1f32445c"
            "6772adba1269c466f2dd7f03862889370ef6482312a817b5f9efe1b38e9f17"
        ),
    ),
    "fc": (
        dict(
            wait=5, signal=10, ifm_addr=3668474610, ifm_n=28038, ifm_k=34159, ifm_dtype=1,
            ofm_addr=1401315766, ofm_c=52522, ofm_dtype=1, w_addr=774688457, has_bias=0,
            bias_addr=1788592683, bias_shift=28, ifm_zp=46477, ofm_zp=-20674, pre_shift=16,
            ofm_multiplier_per_channel=0, ofm_multiplier_addr=535338065, ofm_multiplier=5634,
            post_shift=3, act_min=-30364, act_max=789, lut_en=0, lut_addr=3577050743,
            lut_in_dtype=2, lut_bits=10, lut_x_min=-7, lut_f=3
        ),
        (
            "11a5f27aa8da866d6f85d986194ea93497eccce2624578538d37d6f2790d4571"
            "a27f085806b2c41503dcd9d554abf9ff03"
        ),
    ),
    "eltwise": (
        dict(
            wait=5, signal=10, op=1, ifm_addr=2028061860, ifm_dtype=0, ifm2_addr=3041966086,
            ifm2_dtype=2, ofm_addr=4055870312, ofm_dtype=1, count=774807249, ifm_zp=-26501,
            ifm2_zp=4652, ofm_zp=35805, ifm_multiplier=1422, ifm2_multiplier=32575,
            ofm_multiplier=12345, post_shift=32, act_min=62113, act_max=-5038
        ),
        (
            "20a521250ec7c30017aa56b4d5dff8a23d5d5cf630b348e85ee458f8f9e7c0c0"
            "507952ec01"
        ),
    ),
    "pool": (
        dict(
            wait=5, signal=10, op=0, ifm_addr=2028069779, ifm_h=29793, ifm_w=35914, ifm_c=42035,
            ifm_dtype=2, ofm_addr=2415346696, ofm_h=60398, ofm_w=984, ofm_dtype=0, kh=221,
            kw=222, stride_h=13, stride_w=14, pad_top=144, pad_left=65, pad_bottom=242,
            pad_right=163, ifm_zp=-1964, ofm_zp=29189, ofm_multiplier=27574, post_shift=39,
            act_min=24344, act_max=55497
        ),
        (
            "21a526c7c3f1c2e8941867484520ba7f745fc71ea0dbbb1d32487e940a7f811c"
            "dbf589f125191b"
        ),
    ),
    "requant": (
        dict(
            wait=5, signal=10, ifm_addr=3668609233, ifm_dtype=0, ofm_addr=387546163,
            ofm_dtype=2, count=1401450394, ifm_zp=-5818, ofm_zp=25335, ofm_multiplier=23720,
            post_shift=25, act_min=20490, act_max=51643
        ),
        "22a5d188aadaccf0655ca8f986386594fe5e0c2a375380b29b0c",
    ),
    "lut": (
        dict(
            wait=5, signal=10, ifm_addr=3668617152, ifm_dtype=2, ofm_addr=387554082,
            ofm_dtype=1, count=1401458313, lut_addr=4055894069, lut_bits=5, lut_x_min=-20000,
            lut_f=6
        ),
        "23a5c0a7aada8a6c665c94e888385583001c5fe0b106",
    ),
    "sync": (
        dict(
            wait=5, signal=10, unit=3
        ),
        "30a503",
    ),
    "end": (
        dict(
            wait=5, signal=10
        ),
        "3fa5",
    ),
}
# fmt: on


def test_golden_encoding_covers_every_opcode() -> None:
    assert sorted(GOLDEN) == sorted(op.mnemonic for op in OPS)


@pytest.mark.parametrize("mnemonic", sorted(GOLDEN))
def test_golden_encoding(mnemonic: str) -> None:
    fields, prefix_hex = GOLDEN[mnemonic]
    expected = bytes.fromhex(prefix_hex).ljust(INSTRUCTION_BYTES, b"\x00")
    ins = CLASSES[mnemonic](**fields)
    # every golden instruction has wait 5 and signal 0xa: byte 1 is 0xa5 after the opcode
    assert (expected[0], expected[1]) == (OPS_BY_MNEMONIC[mnemonic].opcode, 0xA5)
    assert encode(ins).hex() == expected.hex()
    assert decode(expected) == ins


def test_golden_dma_load_layout_by_hand() -> None:
    fields, prefix_hex = GOLDEN["dma_load"]
    data = bytes.fromhex(prefix_hex)
    assert data[0] == OPS_BY_MNEMONIC["dma_load"].opcode == 0x01
    assert (data[1] & 0x0F, data[1] >> 4) == (fields["wait"], fields["signal"]) == (5, 10)
    assert int.from_bytes(data[2:6], "little") == fields["dram_addr"] == 0xDAA68C02
    assert int.from_bytes(data[6:10], "little") == fields["sram_addr"] == 0x78DE05B3
    assert int.from_bytes(data[10:14], "little") == fields["row_bytes"]
