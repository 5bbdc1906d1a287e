"""Weight outlier detection: real-looking weights pass, planted outliers are named."""

from __future__ import annotations

import numpy as np

from npuc.midend.quantize.weight_outliers import CHANNEL_RATIO, VALUE_RATIO, find_weight_outliers


def _conv(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 2.0, size=(32, 1, 1, 1))
    return rng.normal(size=(32, 16, 3, 3)) * scales


def test_ordinary_weights_have_no_outliers() -> None:
    for seed in range(3):
        found = find_weight_outliers(_conv(seed), 0, layer="conv1")
        assert not found and found.message() == ""
        assert found.channel_ratio < CHANNEL_RATIO and found.value_ratio < VALUE_RATIO


def test_wide_channels_are_named() -> None:
    w = _conv()
    w[5] *= 30
    w[17] *= 50
    found = find_weight_outliers(w, 0, layer="features.3.conv.0")
    assert found.channels == (5, 17)
    assert found.channel_ratio > 30
    assert "layer features.3.conv.0" in found.message() and "channel(s) 5, 17" in found.message()


def test_isolated_values_are_counted_along_any_axis() -> None:
    w = _conv().transpose(1, 2, 3, 0).copy()  # channels last
    w[0, 0, 0, 3] = 40.0
    w[1, 1, 1, 9] = -45.0
    found = find_weight_outliers(w, 3, layer="fc")
    assert found.values == 2 and found.value_ratio > VALUE_RATIO
    assert "2 value(s)" in found.message() and "mse" in found.message()


def test_zero_and_tiny_tensors() -> None:
    assert not find_weight_outliers(np.zeros((4, 4)), 0, layer="z")
    small = np.ones((2, 3))
    small[0, 0] = 100.0
    found = find_weight_outliers(small, 0, layer="s")
    assert found.values == 0  # too few values for the percentile statistic


def test_per_channel_only_reports_an_extreme_spread() -> None:
    w = _conv()
    w[5] *= 30
    assert not find_weight_outliers(w, 0, layer="dw", per_channel=True)
    w[9] /= 20  # now 600x between channel 5 and channel 9
    found = find_weight_outliers(w, 0, layer="dw", per_channel=True)
    assert found.channels == (5, 9) and found.channel_ratio > 128
