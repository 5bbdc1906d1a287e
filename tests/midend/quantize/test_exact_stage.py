"""The float64 output stage equals the int64 reference (core/intref) bit for bit.

Accumulator sums up to the bound the stage accepts, biases up to ``32767 <<
31``, every pre/post shift the stage accepts, multipliers up to ``2**16 - 1``,
values placed on rounding ties of both shifts, and saturation of the 48-bit
accumulator and of the 32-bit stage.
"""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core import intref
from npuc.midend.quantize import exact_stage
from npuc.midend.quantize.exact_stage import (
    clamp_bounds,
    fits_f64,
    output_stage_f64,
)

DTYPES = ("int8", "uint8", "int16")


def _reference(
    acc: np.ndarray, bias: np.ndarray, stage: intref.OutputStage, clamp: bool
) -> tuple[np.ndarray, bool]:
    acc48, overflow = intref.sat48(acc + bias)
    if clamp:
        return intref.apply_output_stage(acc48, stage), overflow
    acc32 = intref.sat32(intref.rshift_round(acc48, stage.pre_shift))
    m = np.asarray(stage.multipliers, np.int64).reshape(-1)
    return intref.rshift_round(acc32 * m, stage.post_shift) + stage.ofm_zp, overflow


@st.composite
def stages(draw: st.DrawFn) -> dict[str, object]:
    cout = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bound = draw(st.sampled_from([0, 1, 1 << 23, (1 << 24) - 1, 1 << 40, (1 << 47) - 1, 1 << 50]))
    pre = draw(st.integers(0, 40))
    post = draw(st.integers(0, 51))
    bias_shift = draw(st.integers(0, 31))
    bias = rng.integers(-32768, 32768, size=cout).astype(np.int64) << bias_shift
    acc = rng.integers(-bound, bound + 1, size=(3, 4, cout), dtype=np.int64)
    # Rounding ties of the pre shift, and the extremes of the bound.
    if pre:
        ties = (acc[0] >> pre << pre) + (1 << (pre - 1)) - bias
        acc[0] = np.clip(ties, -bound, bound)
    acc[1, 0], acc[1, 1] = bound, -bound
    odtype = draw(st.sampled_from(DTYPES))
    lo, hi = intref.dtype_range(odtype)
    act_min = draw(st.integers(lo - 5, hi + 5))
    return {
        "acc": acc, "bias": bias, "bound": bound, "pre": pre, "post": post,
        "m": rng.integers(0, 1 << 16, size=draw(st.sampled_from([1, cout]))),
        "zp": draw(st.integers(lo, hi)), "act": (act_min, draw(st.integers(act_min - 3, hi + 5))),
        "dtype": odtype, "f32": draw(st.booleans()) and bound < (1 << 24),
        "clamp": draw(st.booleans()), "block": draw(st.sampled_from([1, 7, 1 << 15])),
        "as_float": draw(st.booleans()),
    }  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(stages())
def test_float64_stage_matches_int64_reference(case: dict) -> None:  # type: ignore[type-arg]
    acc, bias = case["acc"], case["bias"]
    stage = intref.OutputStage(
        pre_shift=case["pre"], post_shift=case["post"], multipliers=case["m"],
        ofm_zp=case["zp"], act_min=case["act"][0], act_max=case["act"][1],
        ofm_dtype=case["dtype"],
    )  # fmt: skip
    want, want_overflow = _reference(acc, bias, stage, case["clamp"])
    assert fits_f64(case["bound"], bias, case["m"], case["pre"], case["post"])
    with patch.object(exact_stage, "BLOCK_ELEMENTS", case["block"]):  # blocks of 1+ rows
        got, overflow = output_stage_f64(
            acc.astype(np.float32 if case["f32"] else np.float64), bias,
            acc_bound=case["bound"], pre_shift=case["pre"], post_shift=case["post"],
            multipliers=case["m"], ofm_zp=case["zp"],
            clamp=clamp_bounds(*case["act"], case["dtype"]) if case["clamp"] else None,
            dtype=np.float64 if case["as_float"] else np.int64,
        )  # fmt: skip
    if case["as_float"]:  # the same integers, held in float64
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want.astype(np.float64), strict=True)
        got = got.astype(np.int64)
    np.testing.assert_array_equal(got, want, strict=True)
    assert overflow == want_overflow


@settings(max_examples=200, deadline=None)
@given(st.integers(-40000, 40000), st.integers(-40000, 40000), st.sampled_from(DTYPES))
def test_clamp_bounds_compose_the_two_clamps(act_min: int, act_max: int, dtype: str) -> None:
    values = np.arange(-70000, 70000, 37, dtype=np.int64)
    lo, hi = clamp_bounds(act_min, act_max, dtype)
    want = intref.clamp_activation(values, act_min, act_max, dtype)
    np.testing.assert_array_equal(np.clip(values, lo, hi), want, strict=True)


def test_out_of_range_inputs_are_refused() -> None:
    bias = np.zeros(1, np.int64)
    assert not fits_f64(1 << 53, bias, np.ones(1), 0, 0)
    assert not fits_f64(1, bias, np.array([1 << 16]), 0, 0)
    assert not fits_f64(1, bias, np.ones(1), 60, 0)
    assert not fits_f64(1, bias, np.ones(1), 0, 60)
    with pytest.raises(ValueError, match="int64 reference"):
        output_stage_f64(
            np.zeros((1, 1)), bias, acc_bound=1 << 53, pre_shift=0, post_shift=0,
            multipliers=np.ones(1), ofm_zp=0, clamp=None,
        )  # fmt: skip
