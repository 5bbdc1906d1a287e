"""Observers: each range strategy on distributions whose right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.clipping import aciq_alpha
from npuc.midend.quantize.observers import Observer, flat_copy
from npuc.midend.quantize.qparams import choose_qparams
from npuc.midend.quantize.ranges import parse_strategy


def _observe(samples: list[np.ndarray], **kwargs: object) -> Observer:
    obs = Observer("t", **kwargs)  # type: ignore[arg-type]
    for x in samples:
        obs.update(x)
    return obs


def _samples(draw: object, n: int = 16, size: tuple[int, ...] = (1, 8, 32, 32)) -> list:
    rng = np.random.default_rng(0)
    return [draw(rng, size).astype(np.float32) for _ in range(n)]  # type: ignore[operator]


def _quant_mse(x: np.ndarray, lo: float, hi: float, dtype: str, symmetric: bool) -> float:
    qp = choose_qparams(lo, hi, dtype=dtype, symmetric=symmetric)
    return float(np.mean((qp.dequantize(qp.quantize(x)) - x) ** 2))


def _bisect(f: object, lo: float, hi: float) -> float:
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if (f(mid) > 0) == (f(lo) > 0):  # type: ignore[operator]
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def test_extrema_mean_std_and_moments() -> None:
    samples = _samples(lambda r, s: r.normal(1.0, 2.0, s) * r.uniform(0.5, 2.0))
    obs = _observe(samples, momentum=0.8)
    flat = np.concatenate([x.ravel() for x in samples]).astype(np.float64)
    assert obs.range(parse_strategy("extrema"), dtype="int8", symmetric=False) == (
        flat.min(),
        flat.max(),
    )
    run_lo, run_hi = float(samples[0].min()), float(samples[0].max())
    for x in samples[1:]:
        run_lo = 0.8 * run_lo + 0.2 * float(x.min())
        run_hi = 0.8 * run_hi + 0.2 * float(x.max())
    lo, hi = obs.range(parse_strategy("mean"), dtype="int8", symmetric=False)
    assert lo == pytest.approx(run_lo, rel=1e-12) and hi == pytest.approx(run_hi, rel=1e-12)
    assert obs.mean == pytest.approx(flat.mean(), rel=1e-9)
    assert obs.std == pytest.approx(flat.std(), rel=1e-6)  # float32 squares
    lo, hi = obs.range(parse_strategy("2std"), dtype="int8", symmetric=False)
    assert lo == pytest.approx(flat.mean() - 2 * flat.std(), rel=1e-6)
    assert hi == pytest.approx(flat.mean() + 2 * flat.std(), rel=1e-6)


def _near_percentile(value: float, data: np.ndarray, r: float, width: float) -> bool:
    """Within a bin width of numpy's percentile, or of the order statistics around it.

    In a sparse tail the histogram interpolates between samples differently from
    numpy, so the gap between the neighbouring order statistics is allowed too.
    """
    ranked = np.sort(data)
    k = int(r / 100 * (ranked.size - 1))
    gap = ranked[min(k + 2, ranked.size - 1)] - ranked[max(k - 1, 0)]
    return bool(abs(value - np.percentile(data, r)) <= width + gap)


@pytest.mark.parametrize("r", [99.0, 99.9, 99.99])
def test_percentile_matches_numpy_within_a_bin(r: float) -> None:
    samples = _samples(lambda g, s: g.laplace(0.3, 1.0, s) * (1 + g.uniform()))
    flat = np.concatenate([x.ravel() for x in samples]).astype(np.float64)
    obs = _observe(samples)
    width = obs.histogram.width
    strategy = parse_strategy(f"{r}percentile")
    lo, hi = obs.range(strategy, dtype="int8", symmetric=False)
    assert _near_percentile(lo, flat, 100 - r, width)
    assert _near_percentile(hi, flat, r, width)
    if r == 99.0:  # dense there: within one bin, as the histogram promises
        assert abs(hi - np.percentile(flat, r)) <= width
    lo, hi = obs.range(strategy, dtype="int8", symmetric=True)
    assert lo == -hi and _near_percentile(hi, np.abs(flat), r, width)


def test_kld_clips_outliers_and_keeps_a_dense_range() -> None:
    def with_outliers(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        x = rng.normal(0.0, 1.0, size)
        x.flat[rng.integers(0, x.size, 3)] = rng.choice([-60.0, 60.0], 3)
        return x

    obs = _observe(_samples(with_outliers))
    lo, hi = obs.range(parse_strategy("kld"), dtype="int8", symmetric=True)
    assert obs.max >= 59 and hi < 15 and lo == -hi
    assert hi > 3  # still keeps the bulk of a unit normal
    dense = _observe(_samples(lambda r, s: r.uniform(-1.0, 1.0, s)))
    lo, hi = dense.range(parse_strategy("kld"), dtype="int8", symmetric=True)
    assert hi >= 0.95 * dense.max  # nothing to gain by clipping a uniform distribution


def test_kld_target_bins_default_per_bits() -> None:
    obs = _observe(_samples(lambda r, s: r.laplace(0.0, 1.0, s)))
    k8 = obs.range(parse_strategy("kld"), dtype="int8", symmetric=True)
    k128 = obs.range(parse_strategy("128kld"), dtype="int8", symmetric=True)
    assert k8 == k128
    wide = obs.range(parse_strategy("kld"), dtype="int16", symmetric=True)
    assert wide == (obs.min, obs.max)  # 2**15 target bins > 2048 histogram bins: no clip


def test_aciq_laplace_matches_the_analytical_optimum() -> None:
    """Banner et al.: d/da [2 b^2 exp(-a/b) + a^2 / (3 4^M)] = 0 <=> a = 3 4^M b exp(-a/b)."""
    b = 1.5
    samples = _samples(lambda r, s: r.laplace(0.0, b, s), n=32)
    obs = _observe(samples)
    for bits in (4, 8):
        optimum = _bisect(lambda a, m=bits: a - 3 * 4.0**m * b * math.exp(-a / b), 0.1, 40 * b)
        assert aciq_alpha("laplace", bits) * b == pytest.approx(optimum, abs=0.002 * b)
        _, hi = obs.range(parse_strategy(f"{bits}aciq_laplace"), dtype="int8", symmetric=True)
        expected = min(optimum, obs.max)
        assert hi == pytest.approx(expected + obs.mean, rel=0.03)  # b is estimated from data


def test_aciq_gauss_matches_the_analytical_optimum() -> None:
    """d/da of the Gaussian clipping error is 4 (a Q(a) - phi(a)) (sigma = 1)."""

    def slope(a: float, bits: int) -> float:
        tail = 0.5 * math.erfc(a / math.sqrt(2))
        phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
        return 4 * (a * tail - phi) + 2 * a / (3 * 4.0**bits)

    sigma = 0.7
    obs = _observe(_samples(lambda r, s: r.normal(0.2, sigma, s), n=32))
    for bits in (3, 8):
        optimum = _bisect(lambda a, m=bits: slope(a, m), 0.1, 20.0)
        assert aciq_alpha("gauss", bits) == pytest.approx(optimum, abs=0.002)
        lo, hi = obs.range(parse_strategy(f"{bits}aciq_gauss"), dtype="int8", symmetric=False)
        assert hi == pytest.approx(min(0.2 + optimum * sigma, obs.max), rel=0.01)
        assert lo == pytest.approx(max(0.2 - optimum * sigma, obs.min), rel=0.05)


def test_aciq_quantization_error_beats_extrema_at_4_bits() -> None:
    samples = _samples(lambda r, s: r.laplace(0.0, 1.0, s))
    flat = np.concatenate([x.ravel() for x in samples])
    obs = _observe(samples)
    a = obs.range(parse_strategy("4aciq_laplace"), dtype="int8", symmetric=True)[1]
    # Quantize to 4 bits (15 levels) by hand with both clips.
    errs = []
    for clip in (a, float(np.abs(flat).max())):
        step = 2 * clip / 15
        q = np.clip(np.round(flat / step), -7, 7) * step
        errs.append(float(np.mean((q - flat) ** 2)))
    assert errs[0] < 0.5 * errs[1]


@pytest.mark.parametrize(("dtype", "symmetric"), [("int8", True), ("uint8", False)])
def test_mse_beats_extrema_on_heavy_tails(dtype: str, symmetric: bool) -> None:
    def heavy(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        x = rng.standard_t(3.0, size)
        return x if symmetric else np.abs(x)

    samples = _samples(heavy, n=32)
    flat = np.concatenate([x.ravel() for x in samples]).astype(np.float64)
    obs = _observe(samples)
    mse_range = obs.range(parse_strategy("mse"), dtype=dtype, symmetric=symmetric)
    ext_range = obs.range(parse_strategy("extrema"), dtype=dtype, symmetric=symmetric)
    mse_err = _quant_mse(flat, *mse_range, dtype, symmetric)
    ext_err = _quant_mse(flat, *ext_range, dtype, symmetric)
    assert mse_err < 0.8 * ext_err
    # And it is the best clip of the family alpha * extrema, measured on the raw values.
    best = min(
        _quant_mse(flat, a * ext_range[0], a * ext_range[1], dtype, symmetric)
        for a in np.linspace(0.02, 1.0, 99)
    )
    assert mse_err <= 1.02 * best


def test_two_pass_histogram_spans_the_final_range() -> None:
    samples = _samples(lambda r, s: r.normal(0.0, 1.0, s) * r.uniform(0.2, 3.0))
    obs = _observe(samples, bins=512)
    single_width = obs.histogram.width
    mean, std = obs.mean, obs.std
    obs.start_histogram()
    for x in samples:
        obs.update(x)
    assert obs.histogram.width == pytest.approx((obs.max - obs.min) / 511)
    assert obs.histogram.width <= single_width
    assert obs.histogram.total == sum(x.size for x in samples)
    assert (obs.mean, obs.std) == (mean, std)  # the second pass only counts


def test_trim_infinity_ignores_sentinels() -> None:
    x = np.array([[-1e38, -2.0, 0.5, np.inf, 3.0, -np.inf, np.nan]], np.float32)
    obs = _observe([x, np.array([1.0, 2.0], np.float32)], trim_infinity=True)
    assert (obs.min, obs.max, obs.count, obs.trimmed) == (-2.0, 3.0, 5, 4)
    with pytest.raises(InvalidInputError, match=r"tensor t: calibration sample 1 has infinite"):
        _observe([np.ones(3), x[:, 1:5]])
    with pytest.raises(InvalidInputError, match="NaN") as info:
        _observe([np.array([np.nan, 1.0])])
    assert "--trim-infinity" in (info.value.hint or "")


def test_constant_tensor_and_no_data() -> None:
    obs = _observe([np.zeros((2, 3)), np.zeros((2, 3))])
    for text in ("extrema", "mean", "percentile", "std", "kld", "aciq_laplace", "mse"):
        assert obs.range(parse_strategy(text), dtype="int8", symmetric=True) == (0.0, 0.0)
    obs = _observe([np.full((4, 4), -3.0)])
    for text in ("extrema", "percentile", "kld", "aciq_gauss", "mse"):
        assert obs.range(parse_strategy(text), dtype="int8", symmetric=True) == (-3.0, -3.0)
    empty = Observer("conv7/out", trim_infinity=True)
    empty.update(np.array([np.inf]))
    with pytest.raises(
        InvalidInputError, match=r"conv7/out: no calibration values.*1 were trimmed"
    ):
        empty.range(parse_strategy("extrema"), dtype="int8", symmetric=True)


def test_bad_observer_options() -> None:
    with pytest.raises(InvalidInputError, match="bins"):
        Observer("x", bins=4)
    with pytest.raises(InvalidInputError, match="momentum"):
        Observer("x", momentum=1.0)


@pytest.mark.parametrize(
    "shape", [(1, 3, 5, 7), (1, 64, 20, 20), (1, 1, 1, 1), (2, 4, 3, 3), (6, 5)]
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_flat_copy_is_reshape(shape: tuple[int, ...], channels_last: bool) -> None:
    """The blocked transpose gives the values in the same order as ``reshape(-1)``
    (what the statistics are summed in), for NCHW views of channels-last arrays and
    plain arrays alike."""
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    if channels_last and x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(flat_copy(x), x.reshape(-1), strict=True)
