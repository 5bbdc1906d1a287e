"""Scales and zero points: the grid always holds 0 exactly and covers the range."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.qparams import (
    DEGENERATE_SCALE,
    QParams,
    choose_qparams,
    choose_weight_qparams,
    qrange,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False)
schemes = st.sampled_from(
    [("int8", True), ("int8", False), ("uint8", False), ("int16", True), ("int16", False)]
)


def _check_grid(qp: QParams, lo: float, hi: float, narrow: bool) -> None:
    qmin, qmax = qrange(qp.dtype, narrow_range=narrow)
    assert qmin <= qp.zero_point <= qmax
    assert qp.scale > 0
    assert float(np.float32(qp.scale)) == qp.scale  # float32-exact
    # 0.0 maps to the zero point and back exactly.
    assert qp.quantize(np.array([0.0]))[0] == qp.zero_point
    assert qp.dequantize(np.array([qp.zero_point]))[0] == 0.0
    # The whole widened range is representable without saturation.
    assert (qmin - qp.zero_point) * qp.scale <= min(lo, 0.0)
    assert (qmax - qp.zero_point) * qp.scale >= max(hi, 0.0)


@settings(max_examples=300, deadline=None)
@given(a=finite, b=finite, scheme=schemes, narrow=st.booleans())
def test_grid_holds_zero_and_covers_the_range(
    a: float, b: float, scheme: tuple[str, bool], narrow: bool
) -> None:
    lo, hi = min(a, b), max(a, b)
    dtype, symmetric = scheme
    qp = choose_qparams(lo, hi, dtype=dtype, symmetric=symmetric, narrow_range=narrow)
    _check_grid(qp, lo, hi, narrow)
    if symmetric:
        assert qp.zero_point == 0


@settings(max_examples=200, deadline=None)
@given(a=finite, b=finite, scheme=schemes)
def test_scale_is_tight(a: float, b: float, scheme: tuple[str, bool]) -> None:
    """Covering is not bought with a loose scale: at most one extra step over the span."""
    lo, hi = min(a, b, 0.0), max(a, b, 0.0)
    if hi - lo < 1e-3:
        return
    dtype, symmetric = scheme
    qmin, qmax = qrange(dtype)
    qp = choose_qparams(lo, hi, dtype=dtype, symmetric=symmetric)
    if symmetric:
        assert qp.scale == pytest.approx(max(-lo, hi) / qmax, rel=1e-6)
    else:
        steps = qmax - qmin
        assert qp.scale <= (hi - lo) / steps * (1 + 2 / (steps - 2)) * (1 + 1e-6)


def test_known_values() -> None:
    qp = choose_qparams(0.0, 6.0, dtype="uint8", symmetric=False)
    assert qp.zero_point == 0
    assert qp.scale == pytest.approx(6.0 / 255, rel=1e-6)
    qp = choose_qparams(-1.0, 1.0, dtype="int8", symmetric=True)
    assert qp.zero_point == 0 and qp.scale == pytest.approx(1 / 127, rel=1e-6)
    qp = choose_qparams(-3.0, 1.0, dtype="int8", symmetric=False)
    # Real zero point -128 + 3 / (4 / 255) = 63.25: 63 needs max(3 / 191, 1 / 64),
    # 64 needs max(3 / 192, 1 / 63), which is larger.
    assert qp.zero_point == 63 and qp.scale == pytest.approx(3 / 191, rel=1e-6)


def test_range_is_widened_to_zero() -> None:
    qp = choose_qparams(2.0, 5.0, dtype="uint8", symmetric=False)
    assert qp.zero_point == 0 and qp.dequantize(np.array([255]))[0] >= 5.0


def test_degenerate_range_gets_a_safe_scale() -> None:
    for dtype, symmetric in (("int8", True), ("uint8", False), ("int16", False)):
        qp = choose_qparams(0.0, 0.0, dtype=dtype, symmetric=symmetric)
        assert qp.scale == DEGENERATE_SCALE
        assert qp.dequantize(qp.quantize(np.zeros(3))).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lo": -1.0, "hi": 1.0, "dtype": "uint8", "symmetric": True}, "signed dtype"),
        ({"lo": 0.0, "hi": float("inf"), "dtype": "int8", "symmetric": True}, "not finite"),
        ({"lo": float("nan"), "hi": 1.0, "dtype": "int8", "symmetric": False}, "not finite"),
        ({"lo": 2.0, "hi": 1.0, "dtype": "int8", "symmetric": False}, "minimum above"),
        ({"lo": 0.0, "hi": 1.0, "dtype": "int4", "symmetric": False}, "not supported"),
    ],
)
def test_bad_requests_are_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        choose_qparams(**kwargs, name="conv1")
    if "dtype" not in message:
        assert "conv1" in info.value.message or "int4" in info.value.message


def test_infinite_range_suggests_trim_infinity() -> None:
    with pytest.raises(InvalidInputError) as info:
        choose_qparams(-np.inf, 1.0, dtype="int8", symmetric=True, name="mask")
    assert "mask" in info.value.message and "--trim-infinity" in (info.value.hint or "")


@pytest.mark.parametrize("narrow", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
def test_weights_are_int8_symmetric_per_channel(narrow: bool, per_channel: bool) -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6, 4, 3, 3)) * np.array([1, 10, 0.1, 2, 5, 0.5])[:, None, None, None]
    w[0, 0, 0, 0] = -np.abs(w[0]).max() * 1.01  # a most-negative value in channel 0
    scales, q = choose_weight_qparams(w, 0, per_channel=per_channel, narrow_range=narrow)
    assert q.dtype == np.int8 and q.shape == w.shape
    assert scales.dtype == np.float64 and scales.shape == ((6,) if per_channel else (1,))
    assert q.min() >= (-127 if narrow else -128) and q.max() <= 127
    amax = np.abs(w).reshape(6, -1).max(axis=1) if per_channel else np.abs(w).max().reshape(1)
    np.testing.assert_allclose(scales, amax / 127, rtol=1e-6)
    deq = q * scales.reshape(-1, 1, 1, 1)
    assert np.all(np.abs(deq - w) <= scales.reshape(-1, 1, 1, 1) / 2 * (1 + 1e-6))


def test_weight_axis_other_than_zero() -> None:
    w = np.random.default_rng(2).normal(size=(8, 5)) * np.arange(1, 6)  # (K, N), N = channels
    scales, q = choose_weight_qparams(w, 1, per_channel=True, narrow_range=True)
    assert scales.shape == (5,)
    np.testing.assert_allclose(scales, np.abs(w).max(axis=0) / 127, rtol=1e-6)
    assert np.abs(q * scales - w).max() <= scales.max() / 2 * (1 + 1e-6)


def test_zero_channel_takes_the_largest_scale() -> None:
    w = np.ones((3, 4))
    w[1] = 0.0
    w[2] *= 3.0
    scales, q = choose_weight_qparams(w, 0, per_channel=True, narrow_range=True)
    assert scales[1] == scales[2] and np.all(q[1] == 0)
    scales, q = choose_weight_qparams(np.zeros((2, 2)), 0, per_channel=True, narrow_range=True)
    assert np.all(scales == DEGENERATE_SCALE) and np.all(q == 0)


def test_mse_weights_never_lose_to_extrema_and_win_on_long_tails() -> None:
    rng = np.random.default_rng(3)
    # Channel 0: Laplace with 2**17 values, whose maximum (~12 b) lies beyond the
    # 8-bit optimum clip (~10 b); channel 1: uniform, where clipping never pays.
    w = np.stack([rng.laplace(size=2**17), rng.uniform(-1, 1, size=2**17)])
    err = {}
    for strategy in ("extrema", "mse"):
        scales, q = choose_weight_qparams(
            w, 0, per_channel=True, narrow_range=True, strategy=strategy
        )
        err[strategy] = np.sum((q * scales[:, None] - w) ** 2, axis=1)
    assert err["mse"][0] < 0.97 * err["extrema"][0]
    assert err["mse"][1] <= err["extrema"][1]


def test_weight_errors() -> None:
    with pytest.raises(InvalidInputError, match="'kld'"):
        choose_weight_qparams(np.ones(3), 0, per_channel=False, narrow_range=True, strategy="kld")
    with pytest.raises(InvalidInputError, match="infinities"):
        choose_weight_qparams(np.array([1.0, np.inf]), 0, per_channel=False, narrow_range=True)
    with pytest.raises(InvalidInputError, match="axis 3"):
        choose_weight_qparams(np.ones((2, 2)), 3, per_channel=True, narrow_range=True)
