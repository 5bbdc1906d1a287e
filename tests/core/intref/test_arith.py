"""The integer reference's primitives against hand-computed values and Python ints."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core.intref import (
    ACC48_MAX,
    ACC48_MIN,
    clamp_activation,
    rshift_round,
    sat32,
    sat48,
    saturate,
)


@pytest.mark.parametrize(
    ("value", "shift", "expected"),
    [
        (5, 0, 5),
        (5, 1, 3),  # 2.5 -> 3 (half up)
        (-5, 1, -2),  # -2.5 -> -2 (half up, not away from zero)
        (-6, 1, -3),
        (7, 2, 2),  # 1.75 -> 2
        (-7, 2, -2),  # -1.75 -> -2
        (6, 2, 2),  # 1.5 -> 2
        (-6, 2, -1),  # -1.5 -> -1
        (ACC48_MAX, 47, 1),
        (ACC48_MIN, 47, -1),
    ],
)
def test_rshift_round_hand_values(value: int, shift: int, expected: int) -> None:
    assert int(rshift_round(value, shift)) == expected


@settings(max_examples=500, deadline=None)
@given(st.integers(-(1 << 47), (1 << 47) - 1), st.integers(1, 47))
def test_rshift_round_is_floor_of_value_plus_half(value: int, shift: int) -> None:
    # Exact rational arithmetic with Python ints: floor(v / 2^s + 1/2).
    expected = (2 * value + (1 << shift)) // (1 << (shift + 1))
    assert int(rshift_round(np.array([value]), shift)[0]) == expected


def test_rshift_round_rejects_bad_shift() -> None:
    with pytest.raises(ValueError, match="shift"):
        rshift_round(1, 63)


@pytest.mark.parametrize(
    ("dtype", "lo", "hi"), [("int8", -128, 127), ("uint8", 0, 255), ("int16", -32768, 32767)]
)
def test_saturate_bounds(dtype: str, lo: int, hi: int) -> None:
    values = np.array([lo - 1, lo, 0, hi, hi + 1, -(1 << 40), 1 << 40])
    result = saturate(values, dtype)
    np.testing.assert_array_equal(
        result, np.array([lo, lo, max(lo, 0), hi, hi, lo, hi], dtype=np.int64), strict=True
    )


def test_sat32_and_acc48() -> None:
    np.testing.assert_array_equal(
        sat32(np.array([1 << 40, -(1 << 40), 7])),
        np.array([(1 << 31) - 1, -(1 << 31), 7], dtype=np.int64),
        strict=True,
    )
    clamped, overflow = sat48(np.array([ACC48_MAX, ACC48_MIN]))
    assert not overflow
    clamped, overflow = sat48(np.array([ACC48_MAX + 1, 0]))
    assert overflow
    assert int(clamped[0]) == ACC48_MAX


def test_clamp_activation_relu6_style() -> None:
    values = np.array([-300, -5, 0, 50, 120, 300])
    np.testing.assert_array_equal(
        clamp_activation(values, 0, 100, "int8"),
        np.array([0, 0, 0, 50, 100, 100], dtype=np.int64),
        strict=True,
    )
    # act range wider than the type: the type wins.
    np.testing.assert_array_equal(
        clamp_activation(values, -1000, 1000, "int8"),
        np.array([-128, -5, 0, 50, 120, 127], dtype=np.int64),
        strict=True,
    )
