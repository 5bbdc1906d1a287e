"""Per-tensor calibration statistics and the ranges strategies derive from them.

One :class:`Observer` watches one tensor. The calibration loop calls
:meth:`Observer.update` once per sample with the tensor's float values; the
observer keeps, vectorised in numpy (a handful of passes over the values):

* ``min``/``max`` over all samples, and a running min/max with ``momentum``
  (Zhouyi OPT's ``running_statistic_momentum``) for the ``mean`` strategy;
* count, mean and standard deviation (merged per sample with Chan et al.'s
  parallel formula, so no catastrophic cancellation);
* a :class:`~npuc.midend.quantize.histogram.Histogram` of ``bins`` bins.

Histogram choice (single pass by default): the grid starts on the first
sample's range and grows by integer factors when a later sample widens it;
old counts merge exactly, so no sample is re-read, at up to 3x coarser bins
than the final range would allow. For the finest grid a caller makes two
passes: the first as usual, then :meth:`Observer.start_histogram`, then the
same samples again; in that second pass ``update`` only counts into a fresh
histogram spanning the first pass's ``[min, max]`` (the other statistics are
left as the first pass made them).

With ``trim_infinity``, values that are ``+-inf``, NaN or ``|x| >= 1e30``
(sentinels such as ``-1e38`` masks) are left out of every statistic. Without
it they are an error naming the tensor and sample.
"""

from __future__ import annotations

import math

import numpy as np

from npuc.core.errors import InvalidInputError

from .clipping import aciq_alpha, kld_threshold, mse_range
from .histogram import Histogram
from .qparams import dtype_bits, qrange
from .ranges import RangeStrategy

#: Magnitude from which ``trim_infinity`` treats a value as a sentinel.
SENTINEL_ABS = 1e30


#: Pixels per block of :func:`flat_copy`'s transpose (a block of rows stays in cache).
TRANSPOSE_ROWS = 256


def flat_copy(x: np.ndarray) -> np.ndarray:
    """``x.reshape(-1)``: the values in ``x``'s logical (C) order.

    The executors' NCHW tensors are views of channels-last arrays; numpy's own
    copy of such a view reads with a stride of one pixel and can run several times
    slower than memory allows (cache-set conflicts when a pixel is a multiple of
    1 KiB). There the channels-last rows are transposed :data:`TRANSPOSE_ROWS`
    pixels at a time instead: the same values in the same order.
    """
    if x.ndim != 4 or x.shape[0] != 1 or not x.transpose(0, 2, 3, 1).flags.c_contiguous:
        return x.reshape(-1)
    _, c, h, w = x.shape
    pixels = x.transpose(0, 2, 3, 1).reshape(h * w, c)  # a view: channels-last rows
    out = np.empty((c, h * w), x.dtype)
    for r0 in range(0, h * w, TRANSPOSE_ROWS):
        out[:, r0 : r0 + TRANSPOSE_ROWS] = pixels[r0 : r0 + TRANSPOSE_ROWS].T
    return out.reshape(-1)


class Observer:
    """Statistics of one tensor over the calibration samples.

    Parameters
    ----------
    name
        The tensor or layer name, used in error messages.
    bins
        Histogram bins (Zhouyi OPT's ``histc_bins``), >= 8.
    momentum
        Weight of the past in the running min/max, in ``[0, 1)``.
    trim_infinity
        Leave infinities, NaN and ``|x| >= 1e30`` out of the statistics.
    """

    def __init__(
        self,
        name: str = "tensor",
        *,
        bins: int = 2048,
        momentum: float = 0.9,
        trim_infinity: bool = False,
    ) -> None:
        if bins < 8:
            raise InvalidInputError(f"{name}: histogram bins must be >= 8, not {bins}")
        if not 0.0 <= momentum < 1.0:
            raise InvalidInputError(f"{name}: momentum must be in [0, 1), not {momentum}")
        self.name = name
        self.bins = bins
        self.momentum = momentum
        self.trim_infinity = trim_infinity
        self.samples = 0
        self.count = 0
        self.trimmed = 0
        self.min = math.inf
        self.max = -math.inf
        self.running_min = 0.0
        self.running_max = 0.0
        self.mean = 0.0
        self._m2 = 0.0
        self.histogram = Histogram(bins)
        self._second_pass = False

    @property
    def std(self) -> float:
        """Population standard deviation of all values seen."""
        return math.sqrt(self._m2 / self.count) if self.count else 0.0

    def _values(self, x: np.ndarray) -> np.ndarray:
        flat = flat_copy(np.asarray(x))
        if flat.dtype not in (np.float32, np.float64):
            flat = flat.astype(np.float64)
        if self.trim_infinity:
            keep = np.abs(flat) < SENTINEL_ABS
            if not keep.all():
                self.trimmed += int(flat.size - np.count_nonzero(keep))
                flat = flat[keep]
        return flat

    def update(self, x: np.ndarray) -> None:
        """Add one calibration sample's values (any shape, any real dtype).

        Raises
        ------
        InvalidInputError
            NaN or infinite values without ``trim_infinity``.
        """
        self.samples += 1
        flat = self._values(x)
        if flat.size == 0:
            return
        lo, hi = float(flat.min()), float(flat.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InvalidInputError(
                f"tensor {self.name}: calibration sample {self.samples - 1} has "
                f"{'NaN' if math.isnan(lo) or math.isnan(hi) else 'infinite'} values",
                hint="pass --trim-infinity to leave them out of the statistics, "
                "or check the calibration data",
            )
        self.histogram.add(flat, lo, hi)
        if self._second_pass:
            return
        if self.count == 0:
            self.running_min, self.running_max = lo, hi
        else:
            m = self.momentum
            self.running_min = m * self.running_min + (1 - m) * lo
            self.running_max = m * self.running_max + (1 - m) * hi
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        n_b = flat.size
        mean_b = float(np.sum(flat, dtype=np.float64)) / n_b
        # Squares in the values' dtype (float32: relative error ~1e-7), summed
        # pairwise in float64, about the mean rounded to that dtype, corrected to
        # the exact mean.
        shift = flat.dtype.type(mean_b)
        centered = np.subtract(flat, shift)
        np.square(centered, out=centered)
        m2_b = float(np.sum(centered, dtype=np.float64)) - n_b * (mean_b - float(shift)) ** 2
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self._m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n

    def start_histogram(self) -> None:
        """Start the second pass: a fresh histogram spanning ``[min, max]`` so far.

        After this, :meth:`update` only counts into the histogram; feed the
        same samples again.
        """
        self._require_data()
        self.histogram = Histogram(self.bins)
        if self.max > self.min:
            self.histogram.set_grid(self.min, self.max)
        self._second_pass = True

    def _require_data(self) -> None:
        if self.count == 0:
            raise InvalidInputError(
                f"tensor {self.name}: no calibration values were observed"
                + (
                    f" ({self.trimmed} were trimmed as infinities/sentinels)"
                    if self.trimmed
                    else ""
                ),
                hint="check that the calibration data reaches this tensor",
            )

    def abs_quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` of ``|x|`` lies (histogram resolution)."""
        self._require_data()
        hist = self.histogram
        amax = max(-self.min, self.max)
        if hist.is_point or amax == 0:
            return amax
        edges, cum = hist.edges, hist.cumulative()
        target = q * cum[-1]
        lo_t, hi_t = 0.0, amax
        for _ in range(60):
            mid = 0.5 * (lo_t + hi_t)
            inside = np.interp(mid, edges, cum) - np.interp(-mid, edges, cum)
            lo_t, hi_t = (mid, hi_t) if inside < target else (lo_t, mid)
        return hi_t

    def mean_abs_deviation(self) -> float:
        """``mean |x - mean|`` from the histogram (Laplace ``b`` estimate)."""
        self._require_data()
        hist = self.histogram
        if hist.is_point:
            return 0.0
        return float(np.dot(hist.counts, np.abs(hist.centers - self.mean)) / hist.total)

    def range(self, strategy: RangeStrategy, *, dtype: str, symmetric: bool) -> tuple[float, float]:
        """The clipping range ``(lo, hi)`` of ``strategy`` (see :mod:`.ranges`).

        The result lies within ``[min, max]``; it need not contain 0 (the
        quantization parameters widen it, :func:`~.qparams.choose_qparams`).

        Raises
        ------
        InvalidInputError
            No values were observed.
        """
        self._require_data()
        lo, hi = self.min, self.max
        kind, param = strategy.kind, strategy.value()
        bits = dtype_bits(dtype)
        if kind == "extrema" or lo == hi:  # a constant tensor: its value is the range
            return lo, hi
        if kind == "mean":
            return self.running_min, self.running_max
        if kind == "percentile":
            r = float(param if param is not None else 100.0) / 100.0
            if symmetric:
                a = self.abs_quantile(r)
                return self._within(-a, a)
            return self.histogram.quantile(1.0 - r), self.histogram.quantile(r)
        if kind == "std":
            n = float(param if param is not None else 3.0)
            return self._within(self.mean - n * self.std, self.mean + n * self.std)
        if kind in ("aciq_laplace", "aciq_gauss"):
            r_bits = int(param) if param is not None else bits
            spread = self.mean_abs_deviation() if kind == "aciq_laplace" else self.std
            alpha = aciq_alpha(kind.removeprefix("aciq_"), r_bits) * spread
            return self._within(self.mean - alpha, self.mean + alpha)
        if kind == "kld":
            one_sided = lo >= 0 or hi <= 0
            default = 2**bits if one_sided and not symmetric else 2 ** (bits - 1)
            target = int(param) if param is not None else default
            amax = max(-lo, hi)
            counts, width = self.histogram.folded(amax, self.bins)
            t = min(kld_threshold(counts, width, target), amax)
            return self._within(-t, t)
        qmin, qmax = qrange(dtype)
        if self.histogram.is_point:
            return lo, hi
        out = mse_range(
            self.histogram.centers,
            self.histogram.counts,
            min(lo, 0.0),
            max(hi, 0.0),
            levels=qmax - qmin + 1,
            symmetric=symmetric,
        )
        return self._within(*out)

    def _within(self, lo: float, hi: float) -> tuple[float, float]:
        lo, hi = max(lo, self.min), min(hi, self.max)
        return min(lo, hi), max(lo, hi)
