"""Proof that the float64 GEMM inside the simulator's conv is exact.

Argument (npu_sim/functional.py): every product and every partial sum in any
summation order is an integer of magnitude <= K * max|a| * max|b|; float64
represents all integers up to 2**53 exactly, so when that bound is <= 2**53
no rounding can occur. These tests check (1) the worst-case magnitudes of the
datapath (int16 data with the zero point at the opposite end, weights -128,
all products of one sign so partial sums grow monotonically) at real layer
sizes, (2) the bound at its exact edge with synthetic large integers, and
(3) that beyond the bound float64 really is inexact and the guard falls back
to int64 -- so the guard is necessary, not decorative.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuc.npu_sim import functional as fn


def int64_conv_acc(x: np.ndarray, w: np.ndarray, zp: int) -> np.ndarray:
    """1x1-output reference: exact int64 dot products over the whole window."""
    cols = x.astype(np.int64).reshape(1, -1) - zp
    return cols @ w.astype(np.int64).reshape(w.shape[0], -1).T


@pytest.mark.parametrize(
    ("kh", "kw", "cin"), [(3, 3, 512), (7, 7, 512), (1, 1, 4096), (3, 3, 2048)]
)
def test_worst_case_magnitudes_at_layer_sizes(kh: int, kw: int, cin: int) -> None:
    rng = np.random.default_rng(kh * 1000 + cin)
    x = np.full((kh, kw, cin), -32768, dtype=np.int16)  # x - zp = -65535 everywhere
    w = np.stack(
        [
            np.full((kh, kw, cin), -128, dtype=np.int8),  # all products +8388480
            np.full((kh, kw, cin), 127, dtype=np.int8),  # all products -8322945
            rng.choice(np.array([-128, 127], dtype=np.int8), size=(kh, kw, cin)),  # mixed signs
        ]
    )
    bias = np.zeros(3, dtype=np.int16)
    acc, overflow = fn.conv_accumulate(
        x,
        w,
        bias,
        bias_shift=0,
        ifm_zp=32767,
        stride=(1, 1),
        dilation=(1, 1),
        pads=(0, 0, 0, 0),
        depthwise=False,
    )
    expected = int64_conv_acc(x, w, 32767)
    np.testing.assert_array_equal(acc.reshape(1, 3), expected, strict=True)
    assert int(expected[0, 0]) == 65535 * 128 * kh * kw * cin  # really at the worst case
    assert not overflow


def test_bound_edge_is_exact() -> None:
    # K * max|a| * max|b| == 2**53 exactly: partial sums reach 2**53 - 2**43 and stay exact.
    k, max_a, max_b = 1 << 10, 1 << 36, 1 << 7
    a = np.full((1, k), float(max_a))
    a[0, 1::2] = max_a - 1  # odd entries make every partial sum a non-power-of-two integer
    b = np.full((k, 1), float(max_b))
    got = fn.gemm_exact(a, b, max_abs_a=max_a, max_abs_b=max_b)
    exact = sum(int(v) * max_b for v in a[0])
    assert int(got[0, 0]) == exact


def test_beyond_bound_float64_is_inexact_and_guard_falls_back() -> None:
    a = np.array([[float(1 << 53), 1.0]])
    b = np.array([[1.0], [1.0]])
    assert int((a @ b)[0, 0]) != (1 << 53) + 1  # plain float64 loses the +1
    got = fn.gemm_exact(a, b, max_abs_a=1 << 53, max_abs_b=1)
    assert int(got[0, 0]) == (1 << 53) + 1


def test_depthwise_worst_case_is_exact() -> None:
    x = np.full((9, 9, 64), -32768, dtype=np.int16)
    w = np.full((64, 9, 9, 1), -128, dtype=np.int8)
    acc, _ = fn.conv_accumulate(
        x,
        w,
        np.zeros(64, dtype=np.int16),
        bias_shift=0,
        ifm_zp=32767,
        stride=(1, 1),
        dilation=(1, 1),
        pads=(0, 0, 0, 0),
        depthwise=True,
    )
    np.testing.assert_array_equal(
        acc.reshape(-1), np.full(64, 65535 * 128 * 81, dtype=np.int64), strict=True
    )
