"""Instruction table, encoder and decoder: ranges enforced, exact round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.errors import InvalidInputError
from npuc.isa.checks import check_instruction
from npuc.isa.definition import INSTRUCTION_BITS, INSTRUCTION_BYTES, OPS, OPS_BY_MNEMONIC
from npuc.isa.encoding import decode, decode_all, encode, encode_all
from npuc.isa.instructions import CLASSES, Instruction
from tests.npuc.isa.strategies import (
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
    assert (conv.field("m").lo, conv.field("m").hi) == (0, 32767)
    elt = OPS_BY_MNEMONIC["eltwise"]
    assert elt.field("ma").hi == elt.field("mb").hi == 32767
    assert elt.field("shift").hi == 47
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
        "m_addr": conv.replace(m_addr=64),
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
