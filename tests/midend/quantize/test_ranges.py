"""Range strategy names (Zhouyi OPT's) and the streaming histogram behind them."""

from __future__ import annotations

import numpy as np
import pytest

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.histogram import Histogram
from npuc.midend.quantize.ranges import STRATEGY_NAMES, RangeStrategy, parse_strategy


@pytest.mark.parametrize(
    ("text", "kind", "param"),
    [
        ("extrema", "extrema", None),
        ("mean", "mean", None),
        ("99.99percentile", "percentile", 99.99),
        ("percentile", "percentile", None),
        ("3std", "std", 3.0),
        ("2.5std", "std", 2.5),
        ("128kld", "kld", 128.0),
        ("kld", "kld", None),
        ("8aciq_laplace", "aciq_laplace", 8.0),
        ("aciq_gauss", "aciq_gauss", None),
        ("mse", "mse", None),
        ("  MSE ", "mse", None),
    ],
)
def test_parse_every_name(text: str, kind: str, param: float | None) -> None:
    strategy = parse_strategy(text)
    assert strategy == RangeStrategy(kind=kind, param=param)
    assert parse_strategy(str(strategy)) == strategy


def test_defaults() -> None:
    assert parse_strategy("percentile").value() == 99.99
    assert parse_strategy("std").value() == 3.0
    assert parse_strategy("kld").value() is None  # depends on the dtype's bits


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("minmax", "not known"),
        ("99percentil", "not known"),
        ("", "not known"),
        ("3extrema", "takes no number"),
        ("101percentile", "at most 100"),
        ("0std", "positive"),
        ("1.5kld", "integer"),
        ("1kld", "integer"),
        ("7.5aciq_gauss", "integer"),
    ],
)
def test_bad_names_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        parse_strategy(text)
    if message == "not known":
        assert all(name in (info.value.hint or "") for name in STRATEGY_NAMES)


def test_histogram_growth_merges_counts_exactly() -> None:
    """Growing by integer factors equals histogramming everything on the final grid."""
    rng = np.random.default_rng(0)
    hist = Histogram(256)
    seen = []
    for i in range(30):
        x = rng.normal(0.3 * i, 1 + i, size=1000)  # ranges widen, shift both ways
        if i % 7 == 3:
            x = -np.abs(x) * 5
        hist.add(x, float(x.min()), float(x.max()))
        seen.append(x)
    everything = np.concatenate(seen)
    direct = np.bincount(
        np.floor(everything / hist.width).astype(np.int64) - hist.start, minlength=hist.bins
    )
    np.testing.assert_array_equal(hist.counts, direct)
    assert hist.edges[0] <= everything.min() and everything.max() <= hist.edges[-1]
    ideal = (everything.max() - everything.min()) / hist.bins
    assert hist.width <= 3 * ideal
    reference, _ = np.histogram(everything, bins=hist.edges)
    assert np.abs(reference - hist.counts).sum() <= 2  # only float ties at edges may differ


def test_histogram_of_constant_values_then_spread() -> None:
    hist = Histogram(16)
    hist.add(np.zeros(10), 0.0, 0.0)
    assert hist.is_point and hist.point == 0.0 and hist.total == 10
    assert hist.quantile(0.5) == 0.0
    hist.add(np.array([1.0, 2.0]), 1.0, 2.0)
    assert not hist.is_point and hist.total == 12
    zero_bin = int(np.floor(0.0 / hist.width)) - hist.start
    assert hist.counts[zero_bin] >= 10


def test_quantile_and_fold_are_within_a_bin() -> None:
    rng = np.random.default_rng(1)
    x = rng.laplace(0.5, 2.0, size=200_000)
    hist = Histogram(2048)
    hist.add(x, float(x.min()), float(x.max()))
    for q in (0.001, 0.1, 0.5, 0.9, 0.9999):
        assert abs(hist.quantile(q) - np.quantile(x, q)) <= hist.width
    amax = float(np.abs(x).max())
    counts, width = hist.folded(amax, 512)
    assert width == pytest.approx(amax / 512)
    reference, _ = np.histogram(np.abs(x), bins=512, range=(0, amax))
    assert counts.sum() == pytest.approx(x.size)
    # A folded bin differs by at most the partial source bins at its two ends, on
    # each side of zero.
    assert np.abs(counts - reference).max() <= 4 * hist.counts.max()
    assert np.abs(counts - reference).sum() <= 0.01 * x.size
