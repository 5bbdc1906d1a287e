"""Clipping algorithms against direct, per-bin restatements of their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.midend.quantize.clipping import aciq_alpha, kld_threshold, mse_range


def _kl_direct(counts: np.ndarray, i: int, target: int) -> float:
    """KL(P || Q) for candidate ``i``, bin by bin, as TensorRT's method describes it."""
    p = counts[:i].astype(np.float64).copy()
    p[i - 1] += counts[i:].sum()
    q = np.zeros(i)
    for g in range(target):
        members = [j for j in range(i) if j * target // i == g]
        filled = [j for j in members if counts[j] > 0]
        for j in filled:
            q[j] = counts[members].sum() / len(filled)
    q[(p > 0) & (q == 0)] = 1e-4
    p, q = p / p.sum(), q / q.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_bins=st.integers(20, 80),
    target=st.integers(2, 16),
    sparsity=st.floats(0.0, 0.7),
)
def test_kld_equals_the_per_bin_definition(
    seed: int, n_bins: int, target: int, sparsity: float
) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, n_bins).astype(np.float64)
    counts[rng.random(n_bins) < sparsity] = 0.0  # empty bins, also in the tail
    counts[0] += 1.0
    width = 0.25
    got = kld_threshold(counts, width, target)
    kls = {i: _kl_direct(counts, i, target) for i in range(target, n_bins + 1)}
    best = min(kls.values())
    # The chosen threshold's divergence is the minimum (ties may pick either).
    assert kls[round(got / width)] == pytest.approx(best, rel=1e-9, abs=1e-12)


def test_kld_without_room_to_clip() -> None:
    counts = np.ones(64)
    assert kld_threshold(counts, 0.5, 64) == 32.0
    assert kld_threshold(np.zeros(64), 0.5, 8) == 32.0


def test_aciq_alpha_grows_with_bits_and_rejects_bad_input() -> None:
    laplace = [aciq_alpha("laplace", b) for b in (2, 3, 4, 8)]
    gauss = [aciq_alpha("gauss", b) for b in (2, 3, 4, 8)]
    assert laplace == sorted(laplace) and gauss == sorted(gauss)
    assert all(g < lap for g, lap in zip(gauss, laplace, strict=True))  # lighter tails
    with pytest.raises(ValueError, match="bits"):
        aciq_alpha("laplace", 0)
    with pytest.raises(ValueError, match="cauchy"):
        aciq_alpha("cauchy", 8)


def test_mse_range_direct_search() -> None:
    """The chosen alpha minimises the stated expected error over the same candidates."""
    rng = np.random.default_rng(4)
    centers = np.linspace(-10, 10, 401)
    counts = np.round(1000 * np.exp(-np.abs(centers)) + rng.integers(0, 2, centers.size))
    lo, hi = mse_range(centers, counts, -10.0, 10.0, levels=16, symmetric=True, steps=100)

    def expected_error(a: float) -> float:
        step = 2 * a / 15
        err = np.where(np.abs(centers) <= a, step**2 / 12, (np.abs(centers) - a) ** 2)
        return float(np.sum(err * counts))

    candidates = [10 * a for a in np.linspace(1.0, 0.01, 100)]
    best = min(candidates, key=expected_error)
    assert (lo, hi) == pytest.approx((-best, best))
    assert mse_range(centers, counts, 0.0, 0.0, levels=256, symmetric=False) == (0.0, 0.0)
    assert math.isclose(hi, -lo)
