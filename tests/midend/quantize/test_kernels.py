"""The depthwise kernel (stride phases, wide rows, cache blocks) equals summing shifted taps.

The reference multiplies each ``(ky, kx)`` tap of the padded input by its
weights and adds them in the same order, so float32 results must be equal
bit for bit, for every block size (one row, a few rows, several samples).
"""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize import kernels


def _reference(
    x: np.ndarray, w: np.ndarray, strides: tuple[int, int], padding: tuple[int, ...],
    dilation: tuple[int, int], pad_value: float,
) -> np.ndarray:  # fmt: skip
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    top, left, bottom, right = padding
    xp = np.full((n, c, h + top + bottom, wd + left + right), pad_value, x.dtype)
    xp[:, :, top : top + h, left : left + wd] = x
    oh = (h + top + bottom - dilation[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + left + right - dilation[1] * (kw - 1) - 1) // strides[1] + 1
    src = xp[:, np.arange(o) // (o // c)]
    acc = np.zeros((n, o, oh, ow), x.dtype)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dilation[0], kx * dilation[1]
            tap = src[
                :, :, y0 : y0 + strides[0] * (oh - 1) + 1 : strides[0],
                x0 : x0 + strides[1] * (ow - 1) + 1 : strides[1],
            ]  # fmt: skip
            acc += tap * w[:, 0, ky, kx][None, :, None, None]
    return acc


def _pair(hi: int) -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.integers(1, hi), st.integers(1, hi))


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2, 5), st.integers(1, 2), _pair(4), _pair(3), _pair(2),
    st.tuples(*[st.integers(0, 2)] * 4), st.integers(1, 3), st.sampled_from([1, 5, 37, 1 << 15]),
    st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_depthwise_equals_tap_sum(
    c: int, mult: int, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int],
    pads: tuple[int, int, int, int], n: int, block: int, seed: int,
) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    h = int(rng.integers(max(1, d[0] * (k[0] - 1) + 1 - pads[0] - pads[2]), 10))
    wd = int(rng.integers(max(1, d[1] * (k[1] - 1) + 1 - pads[1] - pads[3]), 10))
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((c * mult, 1, *k)).astype(np.float32)
    with patch.object(kernels, "BLOCK_ELEMENTS", block):
        got = kernels.conv2d_nchw(
            x, w, strides=s, padding=pads, dilation=d, groups=c, pad_value=0.25
        )
    want = _reference(x, w, s, pads, d, 0.25)
    np.testing.assert_array_equal(got, want, strict=False)
    assert got.shape == want.shape


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 6), _pair(4), _pair(3), _pair(2), st.tuples(*[st.integers(0, 2)] * 4),
    st.integers(1, 3), st.booleans(), st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_im2col_equals_concatenated_taps(
    c: int, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int],
    pads: tuple[int, int, int, int], n: int, channels_last: bool, seed: int,
) -> None:  # fmt: skip
    """The GEMM's input matrix is the taps side by side, element for element, for NCHW
    inputs and for NCHW views of channels-last arrays (what a previous conv returns)."""
    rng = np.random.default_rng(seed)
    h = int(rng.integers(max(1, d[0] * (k[0] - 1) + 1 - pads[0] - pads[2]), 10))
    wd = int(rng.integers(max(1, d[1] * (k[1] - 1) + 1 - pads[1] - pads[3]), 10))
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    taps, oh, ow = kernels._taps_nhwc(x, k, s, pads, d, 0.5)
    want = np.concatenate(taps, axis=-1).reshape(n * oh * ow, k[0] * k[1] * c)
    got, got_oh, got_ow = kernels._im2col(x, k, s, pads, d, 0.5)
    assert (got_oh, got_ow) == (oh, ow)
    np.testing.assert_array_equal(got, want, strict=True)


def test_depthwise_with_an_empty_output_plane_is_empty() -> None:
    """A 3x3 window over an unpadded 2x2 input has no output positions (was ZeroDivisionError)."""
    x = np.ones((1, 2, 2, 4), np.float32)
    w = np.ones((4, 1, 3, 3), np.float32)
    out = kernels.depthwise_nhwc(x, w, (1, 1), (0, 0, 0, 0), (1, 1), 0.0)
    assert out.shape == (1, 0, 0, 4)
    assert out.dtype == np.float32


def test_depthwise_with_an_empty_batch_is_empty() -> None:
    x = np.ones((0, 5, 5, 4), np.float32)
    w = np.ones((4, 1, 3, 3), np.float32)
    out = kernels.depthwise_nhwc(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 0.0)
    assert out.shape == (0, 5, 5, 4)


def test_depthwise_window_larger_than_the_padded_input_is_a_clear_error() -> None:
    x = np.ones((1, 2, 2, 4), np.float32)
    w = np.ones((4, 1, 5, 5), np.float32)
    with pytest.raises(InvalidInputError, match=r"5x5 window .* larger than the padded 2x2 input"):
        kernels.depthwise_nhwc(x, w, (1, 1), (0, 0, 0, 0), (1, 1), 0.0)
