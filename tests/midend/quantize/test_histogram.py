"""Counting in blocks gives the same histogram as counting in one pass.

The growing histogram (:mod:`npuc.midend.quantize.histogram`) counts each
sample in blocks of ``COUNT_BLOCK`` values; the counts, the grid and its
growth must not depend on the block size, for float32 and float64 samples,
constant samples, and values on the top edge.
"""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.midend.quantize import histogram
from npuc.midend.quantize.histogram import Histogram


def _fill(samples: list[np.ndarray], bins: int, block: int) -> Histogram:
    hist = Histogram(bins)
    with patch.object(histogram, "COUNT_BLOCK", block):
        for x in samples:
            hist.add(x, float(x.min()), float(x.max()))
    return hist


@settings(max_examples=120, deadline=None)
@given(
    st.integers(8, 300), st.sampled_from([1, 7, 1000]), st.integers(1, 5),
    st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_block_size_does_not_change_the_counts(
    bins: int, block: int, count: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        dtype = np.float32 if rng.random() < 0.7 else np.float64
        x = rng.standard_normal(int(rng.integers(1, 3000))) * rng.uniform(0.01, 100.0)
        x = (x + rng.uniform(-5.0, 5.0)).astype(dtype)
        if rng.random() < 0.15:
            x[:] = x[0]  # a constant sample
        samples.append(x)
    one = _fill(samples, bins, 1 << 30)
    blocked = _fill(samples, bins, block)
    np.testing.assert_array_equal(blocked.counts, one.counts, strict=True)
    assert (blocked.width, blocked.start, blocked.total) == (one.width, one.start, one.total)
