"""The reference conv/FC datapath against a scalar Python-int evaluation of the spec."""

from __future__ import annotations

import numpy as np
import pytest

from npuc.core.intref import OutputStage, conv2d, conv2d_acc48, fully_connected


def scalar_conv_acc(x, w, bias, bias_shift, zp, stride, dilation, pads, depthwise):  # type: ignore[no-untyped-def]
    """Spec section 3 step 1, one output at a time with Python ints (no numpy arithmetic)."""
    h, wd, cin = x.shape
    cout, kh, kw, _ = w.shape
    top, left, bottom, right = pads
    oh = (h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = [[[0] * cout for _ in range(ow)] for _ in range(oh)]
    for oy in range(oh):
        for ox in range(ow):
            for o in range(cout):
                total = int(bias[o]) << bias_shift
                channels = [o // (cout // cin)] if depthwise else range(cin)
                for ky in range(kh):
                    for kx in range(kw):
                        iy = oy * stride[0] + ky * dilation[0] - top
                        ix = ox * stride[1] + kx * dilation[1] - left
                        for i, c in enumerate(channels):
                            inside = 0 <= iy < h and 0 <= ix < wd
                            value = int(x[iy, ix, c]) if inside else zp
                            total += (value - zp) * int(w[o, ky, kx, i])
                out[oy][ox][o] = max(-(1 << 47), min((1 << 47) - 1, total))
    return np.array(out, dtype=np.int64).reshape(oh, ow, cout)


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize(
    ("stride", "dilation", "pads"),
    [
        ((1, 1), (1, 1), (0, 0, 0, 0)),
        ((2, 1), (1, 2), (1, 0, 2, 1)),
        ((2, 2), (2, 2), (2, 2, 2, 2)),
    ],
)
def test_conv_acc_matches_scalar(depthwise: bool, stride, dilation, pads) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    cin = 3
    cout = 6 if depthwise else 4
    x = rng.integers(-128, 128, size=(7, 6, cin)).astype(np.int8)
    w = rng.integers(-128, 128, size=(cout, 3, 2, 1 if depthwise else cin)).astype(np.int8)
    bias = rng.integers(-32768, 32768, size=cout).astype(np.int16)
    acc, overflow = conv2d_acc48(
        x,
        w,
        bias,
        bias_shift=5,
        ifm_zp=-3,
        stride=stride,
        dilation=dilation,
        pads=pads,
        depthwise=depthwise,
    )
    expected = scalar_conv_acc(x, w, bias, 5, -3, stride, dilation, pads, depthwise)
    np.testing.assert_array_equal(acc, expected, strict=True)
    assert not overflow


def test_output_stage_hand_computed() -> None:
    # 1x1 conv, one input channel: acc = (x - zp) * w + (b << bs).
    x = np.array([[[10]]], dtype=np.int8)
    w = np.array([[[[3]]], [[[-3]]]], dtype=np.int8)
    bias = np.array([1, 1], dtype=np.int16)
    stage = OutputStage(
        pre_shift=1,
        post_shift=2,
        multipliers=np.array([5, 5], dtype=np.uint16),
        ofm_zp=4,
        act_min=-128,
        act_max=127,
        ofm_dtype="int8",
    )
    y, overflow = conv2d(x, w, bias, stage, bias_shift=2, ifm_zp=2)
    # acc48 = 8*3 + 4 = 28 -> acc32 = 14 -> 14*5 = 70 -> rshift_round(70, 2) = 18 -> +4 = 22
    # acc48 = -24 + 4 = -20 -> -10 -> -50 -> rshift_round(-50, 2) = -12 -> -8
    np.testing.assert_array_equal(y, np.array([[[22, -8]]], dtype=np.int64), strict=True)
    assert not overflow


def test_accumulator_saturates_with_sticky_flag() -> None:
    # Each term is (-32768 - 32767) * -128 = 8388480 ~ 2^23; with the bias at 32767 << 31 ~ 2^46
    # the sum passes 2^47 once k > 2^46 / 8388480 ~ 8388736 terms.
    k = 8_389_000
    x = np.full((1, 1, k), -32768, dtype=np.int16)
    w = np.full((1, 1, 1, k), -128, dtype=np.int8)
    bias = np.array([32767], dtype=np.int16)
    assert 8388480 * k + (32767 << 31) > (1 << 47) - 1
    acc, overflow = conv2d_acc48(x, w, bias, bias_shift=31, ifm_zp=32767)
    assert overflow
    assert int(acc[0, 0, 0]) == (1 << 47) - 1


def test_fully_connected_is_1x1_conv() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(3, 40)).astype(np.uint8)
    w = rng.integers(-128, 128, size=(5, 40)).astype(np.int8)
    bias = rng.integers(-100, 100, size=5).astype(np.int16)
    stage = OutputStage(
        pre_shift=3,
        post_shift=14,
        multipliers=rng.integers(0, 32768, size=5).astype(np.uint16),
        ofm_zp=-7,
        act_min=-128,
        act_max=127,
        ofm_dtype="int8",
    )
    y, _ = fully_connected(x, w, bias, stage, bias_shift=0, ifm_zp=128)
    acc = (x.astype(np.int64) - 128) @ w.astype(np.int64).T + bias
    acc32 = (acc + 4) >> 3
    expected = ((acc32 * stage.multipliers.astype(np.int64) + (1 << 13)) >> 14) - 7
    np.testing.assert_array_equal(y, np.clip(expected, -128, 127), strict=True)
