"""A streaming histogram whose range grows without re-reading old samples.

Calibration sees one sample at a time and cannot know a tensor's final range
before the last one. :class:`Histogram` keeps ``bins`` counts on a uniform grid
*anchored at 0*: bin ``j`` covers ``[(start + j) * width, (start + j + 1) *
width)``. When a sample falls outside, the width grows by the smallest integer
factor ``k`` that fits everything; since every old edge ``i * width`` is then
inside exactly one new bin ``[m * k * width, (m + 1) * k * width)`` with
``m = floor(i / k)`` (so every old bin lies inside one new bin), old counts
merge into new bins *exactly* (no
interpolation, no re-reading). The result equals histogramming all samples at
once on the final grid; the price is resolution: growth only happens when the
data outgrow ``bins * width``, and ``k`` exceeds the needed factor by less
than 2, so the final width stays below ``3 * span / bins`` (typically about
``2 * span / bins``). Callers that want the finest grid make two
passes (:meth:`npuc.midend.quantize.observers.Observer.start_histogram`).

Inside a bin, mass is taken as uniform (a piecewise-linear CDF); quantiles
and the folded ``|x|`` histogram are exact under that assumption, so they are
within one bin width of the sample values.
"""

from __future__ import annotations

import math

import numpy as np

#: Values per block when counting (:meth:`Histogram._count`).
COUNT_BLOCK = 1 << 16


class Histogram:
    """Counts of float values on a growing uniform grid (see the module docstring).

    Parameters
    ----------
    bins
        Number of bins, >= 8.
    """

    def __init__(self, bins: int) -> None:
        if bins < 8:
            raise ValueError(f"a histogram needs at least 8 bins, not {bins}")
        self.bins = bins
        self.width = 0.0
        self.start = 0
        self.counts = np.zeros(bins, np.float64)
        # Before the first non-constant sample: all values seen so far are equal.
        self._point: float | None = None
        self._point_count = 0.0

    @property
    def total(self) -> float:
        """Number of values counted."""
        return float(self.counts.sum()) + self._point_count

    @property
    def is_point(self) -> bool:
        """True while every value counted is the same number (no grid yet)."""
        return self.width == 0.0

    @property
    def point(self) -> float | None:
        """The single value seen, while :attr:`is_point`."""
        return self._point

    @property
    def edges(self) -> np.ndarray:
        """float64 ``(bins + 1,)`` bin edges in the tensor's units."""
        return (self.start + np.arange(self.bins + 1, dtype=np.float64)) * self.width

    @property
    def centers(self) -> np.ndarray:
        """float64 ``(bins,)`` bin centres."""
        return (self.start + 0.5 + np.arange(self.bins, dtype=np.float64)) * self.width

    def set_grid(self, lo: float, hi: float) -> None:
        """Empty the histogram and lay its grid over ``[lo, hi]`` (``lo < hi``)."""
        if not lo < hi:
            raise ValueError(f"a histogram grid needs lo < hi, not [{lo}, {hi}]")
        self.counts[:] = 0.0
        self._point, self._point_count = None, 0.0
        self._make_grid(lo, hi)

    def _make_grid(self, lo: float, hi: float) -> None:
        self.width = (hi - lo) / (self.bins - 1)
        self.start = math.floor(lo / self.width)

    def _fits(self, lo: float, hi: float) -> bool:
        top = (self.start + self.bins) * self.width
        return self.start * self.width <= lo and hi <= top

    def _grow(self, lo: float, hi: float) -> None:
        """Widen bins by the smallest integer factor that covers ``[lo, hi]`` and old bins."""
        lo_u = min(lo / self.width, float(self.start))
        hi_u = max(hi / self.width, float(self.start + self.bins - 1))
        k = max(2, math.ceil((hi_u - lo_u) / self.bins))
        while True:
            new_start = math.floor(lo_u / k)
            slack = self.bins - 1 - (math.floor(hi_u / k) - new_start)
            if slack >= 0:
                break
            k += 1
        if lo_u < self.start:  # growing downwards: leave room on that side for the next samples
            new_start -= slack if hi_u <= self.start + self.bins - 1 else slack // 2
        old = self.start + np.arange(self.bins, dtype=np.int64)
        merged = np.bincount(
            np.floor_divide(old, k) - new_start, weights=self.counts, minlength=self.bins
        )
        self.counts = merged[: self.bins].astype(np.float64)
        self.start = new_start
        self.width = self.width * k

    def _count(self, x: np.ndarray) -> np.ndarray:
        """int64 ``(bins,)`` counts of the values ``x`` (1-D, on the grid).

        The bin of a value is ``(x - start * width) * (1 / width)`` computed in
        ``x``'s float dtype (float32 stays float32 for speed; a value within ~1e-4
        of a bin width of an edge may land in the neighbouring bin) and truncated:
        values on the grid give ``0 .. bins`` (``bins`` only for the top edge
        itself, or by rounding; it is folded into the last bin). Counted
        :data:`COUNT_BLOCK` values at a time, so the index arrays stay in cache
        (the counts are the same integers as in one pass).
        """
        total = np.zeros(self.bins, np.int64)
        offset = x.dtype.type(self.start * self.width)
        inverse = x.dtype.type(1.0 / self.width)
        size = min(COUNT_BLOCK, x.size)
        buf, index = np.empty(size, x.dtype), np.empty(size, np.intp)
        for start in range(0, x.size, COUNT_BLOCK):
            part = x[start : start + COUNT_BLOCK]
            b, i = buf[: part.size], index[: part.size]
            np.subtract(part, offset, out=b)
            np.multiply(b, inverse, out=b)
            np.copyto(i, b, casting="unsafe")  # truncation, as astype(intp)
            counts = np.bincount(i, minlength=self.bins)
            if counts.size > self.bins:
                counts[self.bins - 1] += counts[self.bins :].sum()
            total += counts[: self.bins]
        return total

    def add(self, x: np.ndarray, lo: float, hi: float) -> None:
        """Count finite values ``x`` (float32 or float64, any shape) with min/max ``lo``/``hi``."""
        if x.size == 0:
            return
        if self.is_point:
            values = [lo, hi] + ([self._point] if self._point is not None else [])
            vmin, vmax = min(values), max(values)
            if vmin == vmax:
                self._point = lo
                self._point_count += x.size
                return
            self._make_grid(vmin, vmax)
            if self._point is not None:
                self.counts += self._count(np.array([self._point], np.float64)) * self._point_count
            self._point, self._point_count = None, 0.0
        if not self._fits(lo, hi):
            self._grow(lo, hi)
        self.counts += self._count(x.ravel())

    def cumulative(self) -> np.ndarray:
        """float64 ``(bins + 1,)``: counts of values below each edge."""
        return np.concatenate(([0.0], np.cumsum(self.counts)))

    def quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` (0..1) of the counts lies."""
        if self.is_point:
            return float(self._point if self._point is not None else 0.0)
        cum = self.cumulative()
        target = q * cum[-1]
        i = int(np.clip(np.searchsorted(cum, target, side="left") - 1, 0, self.bins - 1))
        inside = self.counts[i]
        frac = (target - cum[i]) / inside if inside > 0 else 0.0
        return float(self.edges[i] + frac * self.width)

    def folded(self, amax: float, bins: int) -> tuple[np.ndarray, float]:
        """Histogram of ``|x|`` on ``bins`` uniform bins over ``[0, amax]``.

        Returns ``(counts float64 (bins,), bin_width)``. Mass the grid places
        beyond ``amax`` (within its last partial bin) is added to the last bin.
        """
        if amax <= 0 or self.is_point:
            counts = np.zeros(bins)
            point = abs(self._point or 0.0)
            at = min(bins - 1, int(point / amax * bins)) if amax > 0 else 0
            counts[at] = self.total
            return counts, (amax / bins if amax > 0 else 1.0)
        new_edges = np.linspace(0.0, amax, bins + 1)
        edges, cum = self.edges, self.cumulative()
        below = np.interp(new_edges, edges, cum) - np.interp(-new_edges, edges, cum)
        counts = np.diff(below)
        counts[-1] += self.total - below[-1]
        return np.maximum(counts, 0.0), amax / bins
