"""The simulator's vectorised datapath is bit-exact to the int64 reference (npuc.core.intref).

Hypothesis draws whole input ranges for every dtype, all shift values, rounding
ties and saturation edges, and random convolution geometry.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npuc.core import intref
from npuc.npu_sim import functional as fn

ACT_DTYPES = ("int8", "uint8", "int16")
OUT_DTYPES = ("int8", "uint8", "int16")


def dtype_bounds(dtype: str) -> tuple[int, int]:
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


@st.composite
def tensors(draw: st.DrawFn, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    lo, hi = dtype_bounds(dtype)
    # Mix uniform values with the range edges so saturation paths are hit.
    elements = st.one_of(
        st.integers(lo, hi), st.sampled_from([lo, lo + 1, 0 if lo < 0 else lo, hi - 1, hi])
    )
    return draw(hnp.arrays(np.dtype(dtype), shape, elements=elements))


@st.composite
def output_stages(draw: st.DrawFn, cout: int) -> tuple[intref.OutputStage, np.ndarray]:
    out_dtype = draw(st.sampled_from(OUT_DTYPES))
    lo, hi = dtype_bounds(out_dtype)
    act_min = draw(st.integers(lo, hi))
    act_max = draw(st.integers(act_min, hi))
    per_channel = draw(st.booleans())
    mults = draw(
        hnp.arrays(np.uint16, (cout if per_channel else 1,), elements=st.integers(0, 32767))
    )
    stage = intref.OutputStage(
        pre_shift=draw(st.integers(0, 16)),
        post_shift=draw(st.integers(0, 47)),
        multipliers=mults,
        ofm_zp=draw(st.integers(lo, hi)),
        act_min=act_min,
        act_max=act_max,
        ofm_dtype=out_dtype,
    )
    return stage, mults


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_conv_random_geometry_bit_exact(data: st.DataObject) -> None:
    depthwise = data.draw(st.booleans(), label="depthwise")
    h, w = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))
    cin = data.draw(st.integers(1, 6))
    cout = cin * data.draw(st.integers(1, 2)) if depthwise else data.draw(st.integers(1, 6))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    stride = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    pads = tuple(data.draw(st.integers(0, 2)) for _ in range(4))
    out_h, out_w = fn.conv_out_hw((h, w), (kh, kw), stride, dilation, pads)
    assume(out_h >= 1 and out_w >= 1)
    in_dtype = data.draw(st.sampled_from(ACT_DTYPES))
    x = data.draw(tensors(in_dtype, (h, w, cin)))
    wt = data.draw(tensors("int8", (cout, kh, kw, 1 if depthwise else cin)))
    bias = data.draw(tensors("int16", (cout,)))
    lo, hi = dtype_bounds(in_dtype)
    ifm_zp = data.draw(st.integers(lo, hi))
    bias_shift = data.draw(st.integers(0, 31))
    stage, mults = data.draw(output_stages(cout))
    geometry = dict(stride=stride, dilation=dilation, pads=pads, depthwise=depthwise)

    expected, expected_overflow = intref.conv2d(
        x, wt, bias, stage, bias_shift=bias_shift, ifm_zp=ifm_zp, **geometry
    )
    acc, overflow = fn.conv_accumulate(
        x, wt, bias, bias_shift=bias_shift, ifm_zp=ifm_zp, **geometry
    )
    y = fn.output_stage(
        acc,
        pre_shift=stage.pre_shift,
        multipliers=mults,
        post_shift=stage.post_shift,
        ofm_zp=stage.ofm_zp,
    )
    got = fn.store_as(y, stage.act_min, stage.act_max, np.dtype(stage.ofm_dtype))
    np.testing.assert_array_equal(got, expected.astype(stage.ofm_dtype), strict=True)
    assert overflow == expected_overflow


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_eltwise_bit_exact(data: st.DataObject) -> None:
    op = data.draw(st.sampled_from(intref.ELTWISE_OPS))
    ifm_dtype, ifm2_dtype = (
        data.draw(st.sampled_from(ACT_DTYPES)),
        data.draw(st.sampled_from(ACT_DTYPES)),
    )
    n = data.draw(st.integers(1, 40))
    a, b = data.draw(tensors(ifm_dtype, (n,))), data.draw(tensors(ifm2_dtype, (n,)))
    out_dtype = data.draw(st.sampled_from(OUT_DTYPES))
    lo, hi = dtype_bounds(out_dtype)
    act_min = data.draw(st.integers(lo, hi))
    act_max = data.draw(st.integers(act_min, hi))
    ops = dict(
        ifm_zp=data.draw(st.integers(*dtype_bounds(ifm_dtype))),
        ifm2_zp=data.draw(st.integers(*dtype_bounds(ifm2_dtype))),
        ofm_zp=data.draw(st.integers(lo, hi)),
        ifm_multiplier=data.draw(st.integers(0, 32767)),
        ifm2_multiplier=data.draw(st.integers(0, 32767)),
        ofm_multiplier=data.draw(st.integers(0, 32767)),
        post_shift=data.draw(st.integers(0, 47)),
    )
    expected, expected_overflow = intref.eltwise(
        op, a, b, act_min=act_min, act_max=act_max, ofm_dtype=out_dtype, **ops
    )
    y, overflow = fn.eltwise(op, a, b, **ops)
    got = fn.store_as(y, act_min, act_max, np.dtype(out_dtype))
    np.testing.assert_array_equal(got, expected.astype(out_dtype), strict=True)
    assert overflow == expected_overflow


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_requant_bit_exact(data: st.DataObject) -> None:
    in_dtype, out_dtype = (
        data.draw(st.sampled_from(ACT_DTYPES)),
        data.draw(st.sampled_from(OUT_DTYPES)),
    )
    x = data.draw(tensors(in_dtype, (data.draw(st.integers(1, 40)),)))
    lo, hi = dtype_bounds(out_dtype)
    act_min = data.draw(st.integers(lo, hi))
    act_max = data.draw(st.integers(act_min, hi))
    ops = dict(
        ifm_zp=data.draw(st.integers(*dtype_bounds(in_dtype))),
        ofm_zp=data.draw(st.integers(lo, hi)),
        ofm_multiplier=data.draw(st.integers(0, 32767)),
        post_shift=data.draw(st.integers(0, 47)),
    )
    expected = intref.requant(x, act_min=act_min, act_max=act_max, ofm_dtype=out_dtype, **ops)
    got = fn.store_as(fn.requant(x, **ops), act_min, act_max, np.dtype(out_dtype))
    np.testing.assert_array_equal(got, expected.astype(out_dtype), strict=True)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_pool_bit_exact(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["max", "avg"]))
    in_dtype = data.draw(st.sampled_from(ACT_DTYPES))
    out_dtype = in_dtype if kind == "max" else data.draw(st.sampled_from(OUT_DTYPES))
    h, w, c = (
        data.draw(st.integers(1, 7)),
        data.draw(st.integers(1, 7)),
        data.draw(st.integers(1, 4)),
    )
    kernel = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    stride = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    pads = tuple(min(data.draw(st.integers(0, 2)), kernel[i % 2] - 1) for i in range(4))
    out_h, out_w = fn.conv_out_hw((h, w), kernel, stride, (1, 1), pads)
    assume(out_h >= 1 and out_w >= 1)
    x = data.draw(tensors(in_dtype, (h, w, c)))
    lo, hi = dtype_bounds(out_dtype)
    act_min = data.draw(st.integers(lo, hi))
    act_max = data.draw(st.integers(act_min, hi))
    ifm_zp = data.draw(st.integers(*dtype_bounds(in_dtype)))
    ofm_zp, m, shift = (
        data.draw(st.integers(lo, hi)),
        data.draw(st.integers(0, 32767)),
        data.draw(st.integers(0, 47)),
    )
    geometry = dict(kernel=kernel, stride=stride, pads=pads)
    if kind == "max":
        expected = intref.max_pool(
            x, act_min=act_min, act_max=act_max, ofm_dtype=out_dtype, **geometry
        )
        expected_overflow = False
    else:
        expected, expected_overflow = intref.avg_pool(
            x,
            ifm_zp=ifm_zp,
            ofm_zp=ofm_zp,
            ofm_multiplier=m,
            post_shift=shift,
            act_min=act_min,
            act_max=act_max,
            ofm_dtype=out_dtype,
            **geometry,
        )
    y, overflow = fn.pool(
        kind, x, ifm_zp=ifm_zp, ofm_zp=ofm_zp, ofm_multiplier=m, post_shift=shift, **geometry
    )
    got = fn.store_as(y, act_min, act_max, np.dtype(out_dtype))
    np.testing.assert_array_equal(got, expected.astype(out_dtype), strict=True)
    assert overflow == expected_overflow


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_lut_bit_exact(data: st.DataObject) -> None:
    """Simulator LUT == integer reference, int16 tables with any x_min and f included."""
    in_dtype = data.draw(st.sampled_from(ACT_DTYPES))
    lut_bits = data.draw(st.integers(1, 10)) if in_dtype == "int16" else 8
    x_min = data.draw(st.integers(-32768, 32767)) if in_dtype == "int16" else -32768
    f = data.draw(st.integers(0, 16)) if in_dtype == "int16" else 8
    entries = intref.lut_entries(in_dtype, lut_bits)
    table_dtype = "int16" if in_dtype == "int16" else data.draw(st.sampled_from(["int8", "uint8"]))
    table = data.draw(tensors(table_dtype, (entries,)))
    x = data.draw(tensors(in_dtype, (data.draw(st.integers(1, 64)),)))
    expected = intref.lut_lookup(x, table, in_dtype=in_dtype, lut_bits=lut_bits, x_min=x_min, f=f)
    got = fn.lut_apply(x, table, in_dtype=np.dtype(in_dtype), lut_bits=lut_bits, x_min=x_min, f=f)
    np.testing.assert_array_equal(got, expected, strict=True)


I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
MULT_MAX = 32767  # uint15


def _round_half_up(numerator: int, shift: int) -> int:
    """``numerator / 2**shift`` rounded to nearest, ties towards +inf (exact Python ints)."""
    q = Fraction(numerator, 1 << shift) + Fraction(1, 2)
    return math.floor(q)


def _tie_cases(shift: int) -> list[tuple[int, int, int]]:
    """``(acc32, M, k)`` with ``acc32 * M == (2k + 1) * 2**(shift - 1)`` exactly: a tie.

    Uses the largest multipliers and accumulators that fit (uint15, int32) so the
    products reach the top of the 47-bit range, for both signs where one exists.
    """
    t = shift - 1  # the product must be an odd multiple of 2**t
    cases = []
    for m in (MULT_MAX, 3 << 13, 1 << min(t, 14)):
        m_twos = (m & -m).bit_length() - 1  # factors of 2 in M
        if m_twos > t:
            continue
        unit = 1 << (t - m_twos)  # acc32 must be an odd multiple of this
        for sign, bound in ((1, I32_MAX), (-1, -I32_MIN)):
            most = bound // unit
            for odd in sorted({1, 3, most if most % 2 else most - 1}):
                if 0 < odd <= most:
                    acc32 = sign * odd * unit
                    k = ((acc32 * m >> t) - 1) // 2  # acc32 * M / 2**t is odd: 2k + 1
                    cases.append((acc32, m, k))
    return cases


def test_every_shift_value_of_output_stage_at_rounding_ties() -> None:
    """Exact ties ``(2k + 1) / 2`` round up to ``k + 1`` for every post_shift (both signs).

    A tie needs ``acc32 * M = (2k+1) * 2**(s-1)`` with ``acc32`` int32 and ``M`` uint15,
    so ``|acc32 * M| <= 2**31 * 32767 < 2**46``: at ``s = 46`` only the negative tie
    ``-2**31 * 2**14 = -2**45`` exists, at ``s = 47`` none does (and ``s = 0`` has no
    fraction). There the extreme products ``±2**31 * 32767`` are checked instead.
    """
    signs_seen: dict[int, set[int]] = {}
    for shift in range(0, 48):
        acc_list: list[int] = []
        mult_list: list[int] = []
        want: list[int] = []
        extremes = [(I32_MAX, MULT_MAX), (I32_MIN, MULT_MAX), (I32_MIN + 1, MULT_MAX)]
        for acc32, m in extremes:
            acc_list.append(acc32)
            mult_list.append(m)
            want.append(_round_half_up(acc32 * m, shift))
        if shift:
            for acc32, m, k in _tie_cases(shift):
                assert acc32 * m == (2 * k + 1) << (shift - 1)
                assert _round_half_up(acc32 * m, shift) == k + 1  # the tie goes up
                signs_seen.setdefault(shift, set()).add(1 if acc32 > 0 else -1)
                # the tie itself and the neighbouring products acc32 * M +- M
                for acc in (acc32, acc32 - 1, acc32 + 1):
                    if I32_MIN <= acc <= I32_MAX:
                        acc_list.append(acc)
                        mult_list.append(m)
                        want.append(_round_half_up(acc * m, shift))
        # One output channel per case: the channel index picks its multiplier.
        acc_array = np.array([acc_list], dtype=np.int64)
        mults = np.array(mult_list, dtype=np.uint16)
        got = fn.output_stage(acc_array, pre_shift=0, multipliers=mults, post_shift=shift, ofm_zp=0)
        stage = intref.OutputStage(
            pre_shift=0,
            post_shift=shift,
            multipliers=mults,
            ofm_zp=0,
            act_min=-(1 << 62),
            act_max=1 << 62,
            ofm_dtype="int64",
        )
        reference = intref.apply_output_stage(acc_array, stage)
        expected = np.array([want], dtype=np.int64)
        np.testing.assert_array_equal(reference, expected, strict=True)
        np.testing.assert_array_equal(got, expected, strict=True)
    both = {-1, 1}
    assert all(signs_seen[s] == both for s in range(1, 46)), signs_seen
    assert signs_seen[46] == {-1} and 47 not in signs_seen


# (acc32, M, post_shift, output) worked out by hand: x.5 -> x + 1, -x.5 -> -x.
HAND_TIES = [
    (1, 1, 1, 1),  # 0.5
    (-1, 1, 1, 0),  # -0.5
    (-3, 1, 1, -1),  # -1.5
    (3, 32767, 1, 49151),  # 98301 / 2 = 49150.5
    (1 << 30, 1 << 14, 45, 1),  # 2^44 / 2^45 = 0.5
    (-(1 << 30), 1 << 14, 45, 0),  # -0.5
    (-(1 << 30), 3 << 13, 45, -1),  # -1.5
    (-(1 << 31), 1 << 14, 46, 0),  # -2^45 / 2^46 = -0.5
    (-(1 << 31), 32767, 47, 0),  # -0.49998..., the largest product (no tie exists)
    ((1 << 31) - 1, 32767, 46, 1),  # 0.99998...
]


def test_output_stage_hand_computed_ties() -> None:
    acc = np.array([[a for a, _, _, _ in HAND_TIES]], dtype=np.int64)
    mults = np.array([m for _, m, _, _ in HAND_TIES], dtype=np.uint16)
    for i, (_, _, shift, want) in enumerate(HAND_TIES):
        got = fn.output_stage(acc, pre_shift=0, multipliers=mults, post_shift=shift, ofm_zp=0)
        stage = intref.OutputStage(
            pre_shift=0,
            post_shift=shift,
            multipliers=mults,
            ofm_zp=0,
            act_min=-(1 << 62),
            act_max=1 << 62,
            ofm_dtype="int64",
        )
        assert int(got[0, i]) == want == _round_half_up(int(acc[0, i]) * int(mults[i]), shift)
        assert int(intref.apply_output_stage(acc, stage)[0, i]) == want
