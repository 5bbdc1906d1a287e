"""The reference ITP operators and LUT against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from npuc.core.intref import avg_pool, eltwise, lut_lookup, max_pool, requant


def test_eltwise_add_hand_computed() -> None:
    a = np.array([10, -128], dtype=np.int8)
    b = np.array([3, 127], dtype=np.int8)
    y, overflow = eltwise(
        "add",
        a,
        b,
        ifm_zp=2,
        ifm2_zp=-1,
        ofm_zp=5,
        ifm_multiplier=3,
        ifm2_multiplier=2,
        post_shift=2,
        act_min=-128,
        act_max=127,
        ofm_dtype="int8",
    )
    # (8*3 + 4*2) = 32 -> 8 -> 13 ; (-130*3 + 128*2) = -134 -> rshift_round(-134, 2) = -33 -> -28
    np.testing.assert_array_equal(y, np.array([13, -28], dtype=np.int64), strict=True)
    assert not overflow


@pytest.mark.parametrize(
    ("op", "expected"), [("sub", [6, 3]), ("mul", [11, 11]), ("max", [7, 5]), ("min", [4, 5])]
)
def test_eltwise_other_ops(op: str, expected: list[int]) -> None:
    a = np.array([4, 2], dtype=np.int8)
    b = np.array([2, 4], dtype=np.int8)
    # Hand values: sub (8 - 2) = 6 -> 3 -> +3 = 6 ; (4 - 4) = 0 -> 3. mul 16 -> 8 -> 11 twice.
    y, _ = eltwise(
        op,
        a,
        b,
        ifm_zp=0,
        ifm2_zp=0,
        ofm_zp=3,
        ifm_multiplier=2,
        ifm2_multiplier=1,
        ofm_multiplier=2,
        post_shift=1,
        act_min=-128,
        act_max=127,
        ofm_dtype="int8",
    )
    da, db = a.astype(int), b.astype(int)
    ref = {
        "sub": da * 2 - db * 1,
        "mul": da * db * 2,
        "max": np.maximum(da * 2, db),
        "min": np.minimum(da * 2, db),
    }[op]
    ref = ((ref + 1) >> 1) + 3
    np.testing.assert_array_equal(y, ref.astype(np.int64), strict=True)
    np.testing.assert_array_equal(y, np.array(expected, dtype=np.int64), strict=True)


def test_requant_hand_computed() -> None:
    x = np.array([0, 100, -100], dtype=np.int16)
    y = requant(
        x,
        ifm_zp=-4,
        ofm_zp=1,
        ofm_multiplier=3,
        post_shift=3,
        act_min=-128,
        act_max=127,
        ofm_dtype="int8",
    )
    # (4*3)=12 -> 2 -> 3 ; 104*3=312 -> 39 -> 40 ; -96*3=-288 -> -36 -> -35
    np.testing.assert_array_equal(y, np.array([3, 40, -35], dtype=np.int64), strict=True)


def test_max_pool_skips_padding() -> None:
    x = np.array([[-5, -6], [-7, -8]], dtype=np.int8).reshape(2, 2, 1)
    y = max_pool(
        x,
        kernel=(2, 2),
        stride=(1, 1),
        pads=(1, 1, 0, 0),
        act_min=-128,
        act_max=127,
        ofm_dtype="int8",
    )
    np.testing.assert_array_equal(
        y[..., 0], np.array([[-5, -5], [-5, -5]], dtype=np.int64), strict=True
    )


def test_avg_pool_counts_padding_as_zero_point() -> None:
    x = np.array([[4, 8], [12, 16]], dtype=np.int8).reshape(2, 2, 1)
    # global 2x2 average with M = 1, shift = 2 (1/4): (40 - 4*0) / 4 = 10
    y, overflow = avg_pool(
        x,
        kernel=(2, 2),
        stride=(1, 1),
        pads=(0, 0, 0, 0),
        ifm_zp=0,
        ofm_zp=0,
        ofm_multiplier=1,
        post_shift=2,
        act_min=-128,
        act_max=127,
        ofm_dtype="int8",
    )
    assert int(y[0, 0, 0]) == 10 and not overflow
    # with one padded row on top: windows over [zp, zp, 4, 8] -> 12/4 = 3 (zp = 2 holds 0)
    y, _ = avg_pool(
        x,
        kernel=(2, 2),
        stride=(1, 1),
        pads=(1, 0, 0, 0),
        ifm_zp=2,
        ofm_zp=0,
        ofm_multiplier=1,
        post_shift=2,
        act_min=-128,
        act_max=127,
        ofm_dtype="int8",
    )
    assert int(y[0, 0, 0]) == 2  # ((4-2) + (8-2)) = 8 -> rshift_round(8, 2) = 2


def test_lut_8bit_and_interpolated_16bit() -> None:
    table8 = np.arange(256, dtype=np.int64) - 100
    x8 = np.array([-128, 0, 127], dtype=np.int8)
    np.testing.assert_array_equal(
        lut_lookup(x8, table8, in_dtype="int8"), np.array([-100, 28, 155]), strict=True
    )
    xu = np.array([0, 255], dtype=np.uint8)
    np.testing.assert_array_equal(
        lut_lookup(xu, table8, in_dtype="uint8"), np.array([-100, 155]), strict=True
    )
    # k = 2: 5 entries, f = 14; x = -32768 + 3 * 2^13 gives i = 1, t = 2^13 (half way).
    table16 = np.array([0, 100, 300, 301, -1000], dtype=np.int16)
    x16 = np.array([-32768, -32768 + 3 * 8192, 32767], dtype=np.int16)
    got = lut_lookup(x16, table16, in_dtype="int16", lut_bits=2)
    # x=-32768: i=0,t=0 -> 0 ; i=1, t=8192 -> 100 + rshift_round(200*8192, 14) = 200
    # x=32767: offset 65535, i=3, t=16383 -> 301 + rshift_round(-1301*16383, 14)
    expected_last = 301 + ((-1301 * 16383 + 8192) >> 14)
    np.testing.assert_array_equal(got, np.array([0, 200, expected_last]), strict=True)
    with pytest.raises(ValueError, match="shape"):
        lut_lookup(x16, table16[:4], in_dtype="int16", lut_bits=2)
