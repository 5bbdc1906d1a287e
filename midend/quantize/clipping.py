"""Clipping thresholds from histograms: KL divergence, ACIQ and MSE search.

Each function trades clipping error (values beyond the threshold saturate)
against rounding error (a wider range makes every step coarser). They work on
histograms from :mod:`npuc.midend.quantize.histogram`, so their results are
within one bin width of what the raw samples would give.

Sources (methods re-derived here, no code copied):

* KL divergence: Szymon Migacz, "8-bit Inference with TensorRT", GTC 2017
  (TensorRT's entropy calibration).
* ACIQ: Ron Banner, Yury Nahshan, Daniel Soudry, "Post training 4-bit
  quantization of convolutional networks for rapid-deployment", NeurIPS 2019.
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: Count given to an empty quantized bin that the reference distribution needs
#: (KL divergence would be infinite otherwise).
_KL_EPS = 1e-4


def kld_threshold(counts: np.ndarray, width: float, target_bins: int) -> float:
    """TensorRT's entropy calibration: the ``|x|`` threshold with the least KL divergence.

    For every candidate ``i`` in ``target_bins .. len(counts)``, the reference
    ``P`` is the first ``i`` bins with all the mass beyond folded into bin
    ``i - 1`` (what clipping at ``i * width`` does); the candidate ``Q`` merges
    those ``i`` bins into ``target_bins`` groups and spreads each group's mass
    evenly over its non-empty bins (what quantizing with ``target_bins`` levels
    does). The threshold is ``i * width`` for the ``i`` minimising ``KL(P||Q)``.

    Parameters
    ----------
    counts
        float ``(B,)`` histogram of ``|x|`` on ``[0, B * width]``.
    width
        Bin width in the tensor's units.
    target_bins
        Quantization levels on one side of zero: 128 for int8.

    Returns
    -------
    float
        The threshold, in ``(0, B * width]``; ``B * width`` if
        ``target_bins >= B`` (nothing to clip).
    """
    counts = np.asarray(counts, np.float64)
    n_bins = counts.size
    if target_bins >= n_bins or counts.sum() == 0:
        return n_bins * width
    candidates = np.arange(target_bins, n_bins + 1)
    kl = _kl_divergences(counts, candidates, target_bins)
    return int(candidates[int(np.argmin(kl))]) * width


def _kl_divergences(counts: np.ndarray, candidates: np.ndarray, target_bins: int) -> np.ndarray:
    """``KL(P_i || Q_i)`` for every candidate bin count ``i`` (see :func:`kld_threshold`).

    Evaluated per quantized group rather than per bin, with prefix sums:
    ``Q`` is constant (``S_g / K_g``: group mass over its non-empty bins) on the
    non-empty bins of group ``g``, so ``sum_j P_j log Q_j`` is
    ``sum_g S_g log(S_g / K_g)`` plus the outliers folded into the last bin,
    and ``sum_j P_j log P_j`` is a prefix sum of ``c log c``. The cost is
    ``len(candidates) * target_bins`` rather than ``* len(counts)``.
    """
    total = counts.sum()
    cum = np.concatenate(([0.0], np.cumsum(counts)))
    nonzero = np.concatenate(([0], np.cumsum(counts > 0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        clogc = np.where(counts > 0, counts * np.log(counts), 0.0)
    plogp_prefix = np.concatenate(([0.0], np.cumsum(clogc)))
    i = candidates[:, None]
    g = np.arange(target_bins)[None, :]
    start = -((-g * i) // target_bins)
    end = -((-(g + 1) * i) // target_bins)
    s = cum[end] - cum[start]
    k = np.maximum(nonzero[end] - nonzero[start], 1)
    outliers = total - cum[candidates]
    c_last = counts[candidates - 1]
    p_last = c_last + outliers
    q_last = np.where(c_last > 0, s[:, -1] / k[:, -1], _KL_EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogq = np.where(s > 0, s * np.log(s / k), 0.0).sum(axis=1)
        plogq += np.where(outliers > 0, outliers * np.log(q_last), 0.0)
        plogp = plogp_prefix[candidates - 1] + np.where(p_last > 0, p_last * np.log(p_last), 0.0)
    q_sum = cum[candidates] + np.where((c_last == 0) & (outliers > 0), _KL_EPS, 0.0)
    return np.asarray((plogp - plogq) / total + np.log(q_sum / total))


def _aciq_grid() -> np.ndarray:
    return np.linspace(0.01, 60.0, 60000)


@functools.cache
def aciq_alpha(distribution: str, bits: int) -> float:
    """Optimal clip for ``2**bits`` uniform levels, in units of ``b`` or ``sigma``.

    Minimises Banner et al.'s expected squared error, clipping plus rounding
    (``Delta = 2 alpha / 2**bits``, rounding noise ``Delta**2 / 12``):

    * Laplace(0, b): ``2 b**2 exp(-alpha / b) + alpha**2 / (3 * 4**bits)``
    * Normal(0, sigma): ``2 ((sigma**2 + alpha**2) Q(alpha / sigma)
      - alpha sigma phi(alpha / sigma)) + alpha**2 / (3 * 4**bits)``

    with ``Q`` the standard normal tail and ``phi`` its density; computed with
    ``b = sigma = 1`` on a fine grid (step 0.001). ``distribution`` is
    ``"laplace"`` or ``"gauss"``; ``bits`` 1..32.
    """
    if not 1 <= bits <= 32:
        raise ValueError(f"ACIQ needs 1..32 bits, not {bits}")
    a = _aciq_grid()
    rounding = a**2 / (3.0 * 4.0**bits)
    if distribution == "laplace":
        clipping = 2.0 * np.exp(-a)
    elif distribution == "gauss":
        tail = 0.5 * np.array([math.erfc(v / math.sqrt(2.0)) for v in a])
        density = np.exp(-0.5 * a**2) / math.sqrt(2.0 * math.pi)
        clipping = 2.0 * ((1.0 + a**2) * tail - a * density)
    else:
        raise ValueError(f"ACIQ distribution {distribution!r} is not 'laplace' or 'gauss'")
    return float(a[int(np.argmin(clipping + rounding))])


def mse_range(
    centers: np.ndarray,
    counts: np.ndarray,
    lo: float,
    hi: float,
    *,
    levels: int,
    symmetric: bool,
    steps: int = 100,
) -> tuple[float, float]:
    """The range ``alpha * (lo, hi)`` (alpha in 1 .. 0.01) with the least expected MSE.

    The error of a candidate is ``sum(counts * err(centers))`` where ``err``
    is ``Delta**2 / 12`` inside the range (rounding) and the squared distance to
    the range outside (clipping); ``Delta`` is the step of ``levels`` codes over
    the range (``2 * max(-lo, hi) / (levels - 1)`` when ``symmetric``).

    Parameters
    ----------
    centers, counts
        float ``(B,)`` bin centres (tensor units) and counts.
    lo, hi
        The observed extrema, ``lo <= 0 <= hi``.
    levels
        Number of integer codes (256 for 8 bits).
    """
    if symmetric:
        amax = max(-lo, hi)
        lo, hi = -amax, amax
    if hi - lo <= 0:
        return lo, hi
    alphas = np.linspace(1.0, 0.01, steps)[:, None]
    c_lo, c_hi = alphas * lo, alphas * hi
    step = (c_hi - c_lo) / (levels - 1)
    x = centers[None, :]
    clipped = np.clip(x, c_lo, c_hi)
    err = np.where(x == clipped, step**2 / 12.0, (x - clipped) ** 2)
    total = (err * counts[None, :]).sum(axis=1)
    best = float(alphas[int(np.argmin(total)), 0])
    return best * lo, best * hi
