"""Array kernels shared by the float, fake-quant and integer executors (NCHW).

Every kernel computes in the dtype of its input: float32 for the float
executor; float64 holding integers for the integer executor, where every
product of an int16 (or narrower) activation and an int8 weight, and every sum
of up to 2^37 of them, is exact (|value| < 2^53), so BLAS gives the exact
integer result (checked against int64 in tests/midend/quantize).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from npuc.core.errors import InvalidInputError


def _out_size(size: int, pad: int, k: int, stride: int, dilation: int) -> int:
    return (size + pad - dilation * (k - 1) - 1) // stride + 1


def _padded_nhwc(x: np.ndarray, padding: Sequence[int], pad_value: float) -> np.ndarray:
    """``x (n, c, h, w)`` channels-last, padded with ``pad_value`` (a view when no padding)."""
    n, c, h, w = x.shape
    top, left, bottom, right = padding
    if not any(padding):
        return x.transpose(0, 2, 3, 1)  # a view: no copy
    xh = np.full((n, h + top + bottom, w + left + right, c), pad_value, dtype=x.dtype)
    xh[:, top : top + h, left : left + w, :] = x.transpose(0, 2, 3, 1)
    return xh


def _taps_nhwc(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    pad_value: float,
) -> tuple[list[np.ndarray], int, int]:
    """Kernel taps of ``x (n, c, h, w)`` as ``(n, oh, ow, c)`` views of the padded NHWC input."""
    _, _, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilation
    top, left, bottom, right = padding
    oh = _out_size(h, top + bottom, kh, sh, dh)
    ow = _out_size(w, left + right, kw, sw, dw)
    xh = _padded_nhwc(x, padding, pad_value)
    taps = []
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            taps.append(
                xh[:, y0 : y0 + sh * (oh - 1) + 1 : sh, x0 : x0 + sw * (ow - 1) + 1 : sw, :]
            )
    return taps, oh, ow


def _im2col(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    pad_value: float,
) -> tuple[np.ndarray, int, int]:
    """The taps of :func:`_taps_nhwc` side by side: ``(n * oh * ow, kh * kw * c)``, oh, ow.

    The same matrix as concatenating the taps along the channels. When the padded
    input is channels-last contiguous and ``dilation_w == 1``, the ``kw`` taps of one
    kernel row are ``kw * c`` consecutive elements for every output pixel, so each
    kernel row is copied as one strided view (runs of ``kw * c`` elements, not ``c``).
    """
    n, c, h, w = x.shape
    kh, kw = kernel
    xh = _padded_nhwc(x, padding, pad_value)
    item = xh.itemsize
    if dilation[1] != 1 or xh.strides[3] != item or xh.strides[2] != c * item:
        taps, oh, ow = _taps_nhwc(x, kernel, strides, padding, dilation, pad_value)
        return np.concatenate(taps, axis=-1).reshape(n * oh * ow, kh * kw * c), oh, ow
    sh, sw = strides
    oh = _out_size(h, padding[0] + padding[2], kh, sh, dilation[0])
    ow = _out_size(w, padding[1] + padding[3], kw, sw, 1)
    cols = np.empty((n, oh, ow, kh, kw * c), dtype=x.dtype)
    strides_out = (xh.strides[0], xh.strides[1] * sh, xh.strides[2] * sw, item)
    for ky in range(kh):
        row = xh[:, ky * dilation[0] :]  # output row oy reads input row oy * sh + ky * dh
        cols[:, :, :, ky] = np.lib.stride_tricks.as_strided(
            row, shape=(n, oh, ow, kw * c), strides=strides_out, writeable=False
        )
    return cols.reshape(n * oh * ow, kh * kw * c), oh, ow


def conv2d_nchw(
    x: np.ndarray,
    weight: np.ndarray,
    *,
    strides: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    pad_value: float = 0.0,
) -> np.ndarray:
    """``sum(x * weight)`` of a 2-D convolution, ``x (n, c, h, w)``, ``weight (o, c/g, kh, kw)``.

    Returns ``(n, o, oh, ow)`` in ``x``'s dtype; padded positions hold ``pad_value``.
    The work runs channels-last (one large GEMM per layer); the result is an
    ``(n, o, oh, ow)`` view of a channels-last array, so a following convolution
    reads it without a copy.
    """
    n, c, h, w_in = x.shape
    o, cg, kh, kw = weight.shape
    w = weight.astype(x.dtype, copy=False)
    xh = x.transpose(0, 2, 3, 1)
    if groups == 1 and (kh, kw) == (1, 1) and tuple(strides) == (1, 1) and not any(padding):
        out = xh.reshape(n * h * w_in, c) @ w.reshape(o, c).T
        return out.reshape(n, h, w_in, o).transpose(0, 3, 1, 2)
    if cg == 1 and groups > 1:
        return depthwise_nhwc(xh, w, strides, padding, dilation, pad_value).transpose(0, 3, 1, 2)
    if groups == 1:
        cols, oh, ow = _im2col(x, (kh, kw), strides, padding, dilation, pad_value)
        out = cols @ w.transpose(0, 2, 3, 1).reshape(o, kh * kw * c).T
        return out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
    taps, oh, ow = _taps_nhwc(x, (kh, kw), strides, padding, dilation, pad_value)
    og = o // groups
    parts = []
    for g in range(groups):
        sub = [t[..., g * cg : (g + 1) * cg] for t in taps]
        cols = np.concatenate(sub, axis=-1).reshape(n * oh * ow, kh * kw * cg)
        wmat = w[g * og : (g + 1) * og].transpose(0, 2, 3, 1).reshape(og, kh * kw * cg)
        parts.append((cols @ wmat.T).reshape(n, oh, ow, og))
    return np.concatenate(parts, axis=-1).transpose(0, 3, 1, 2)


def depthwise_nhwc(
    xh: np.ndarray,
    weight: np.ndarray,
    strides: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    pad_value: float,
) -> np.ndarray:
    """Depthwise convolution of channels-last ``xh (n, h, w, c)``, ``weight (o, 1, kh, kw)``.

    Output channel ``j`` reads input channel ``j // (o // c)``. Returns a
    contiguous ``(n, oh, ow, o)`` array in ``xh``'s dtype, the taps summed in
    row-major ``(ky, kx)`` order (the same float result as summing shifted
    slices tap by tap).

    Each stride phase of the padded input (``xp[:, py::sh, px::sw]``) is stored
    once, flat, with its rows at a common width ``wq``; every tap is then one
    contiguous slice of a phase (its rows "wide": ``wq`` columns, of which the
    first ``ow`` are outputs), multiplied by the tap's weights repeated along
    the row, so numpy's inner loops run over whole rows rather than over the
    channels of one pixel.

    An empty batch, channel axis or output plane gives an empty result.

    Raises
    ------
    InvalidInputError
        The (dilated) window is larger than the padded input.
    """
    n, h, w_in, c = xh.shape
    o, _, kh, kw = weight.shape
    if o != c:
        xh = xh[..., np.arange(o) // (o // c)]
    sh, sw = strides
    dh, dw = dilation
    top, left, bottom, right = padding
    hp, wp = h + top + bottom, w_in + left + right
    oh = _out_size(h, top + bottom, kh, sh, dh)
    ow = _out_size(w_in, left + right, kw, sw, dw)
    if oh < 0 or ow < 0:
        raise InvalidInputError(
            f"depthwise convolution: the {kh}x{kw} window (dilation {dh}x{dw}) is larger than "
            f"the padded {hp}x{wp} input",
            hint="check the layer's kernel size, dilation and padding against its input shape",
        )
    if n == 0 or o == 0 or oh == 0 or ow == 0:
        return np.zeros((n, oh, ow, o), dtype=xh.dtype)
    hq, wq = -(-hp // sh) + 1, -(-wp // sw)  # one spare row: the wide rows run past the end
    phases: dict[tuple[int, int], np.ndarray] = {}
    w_taps = weight.reshape(o, kh * kw).T.astype(xh.dtype)
    taps: list[tuple[np.ndarray, int, np.ndarray]] = []  # (phase, start, weights along a row)
    for index in range(kh * kw):
        ky, kx = divmod(index, kw)
        (qy, py), (qx, px) = divmod(ky * dh, sh), divmod(kx * dw, sw)
        phase = phases.get((py, px))
        if phase is None:
            buf = np.full((n, hq, wq, o), pad_value, dtype=xh.dtype)
            ys, xs = _phase_span(py, sh, top, h), _phase_span(px, sw, left, w_in)
            buf[:, ys[0] : ys[1], xs[0] : xs[1]] = xh[:, ys[2] : ys[3] : sh, xs[2] : xs[3] : sw]
            phase = phases[(py, px)] = buf.reshape(n, hq * wq * o)
        taps.append((phase, (qy * wq + qx) * o, np.tile(w_taps[index], wq)))
    row = wq * o
    out = np.empty((n, oh, ow, o), dtype=xh.dtype)
    # Blocks of whole wide rows (several samples when one sample's rows fit) stay in cache
    # through all the taps.
    rows = min(oh, max(1, BLOCK_ELEMENTS // row))
    samples = max(1, BLOCK_ELEMENTS // (rows * row)) if rows == oh else 1
    acc = np.empty((min(samples, n), rows, row), dtype=xh.dtype)
    scratch = np.empty_like(acc)
    for s0 in range(0, n, samples):
        ns = min(samples, n - s0)
        for r0 in range(0, oh, rows):
            nr = min(rows, oh - r0)
            a, t = acc[:ns, :nr], scratch[:ns, :nr]
            for index, (phase, start, weights) in enumerate(taps):
                lo = start + r0 * row
                tap = phase[s0 : s0 + ns, lo : lo + nr * row].reshape(ns, nr, row)
                np.multiply(tap, weights, out=a if index == 0 else t)
                if index:
                    a += t
            out[s0 : s0 + ns, r0 : r0 + nr] = a.reshape(ns, nr, wq, o)[:, :, :ow]
    return out


#: Elements per block of the depthwise kernel's accumulator (kept in cache across taps).
BLOCK_ELEMENTS = 1 << 15


def _phase_span(phase: int, stride: int, before: int, size: int) -> tuple[int, int, int, int]:
    """Where the input lands in one stride phase of its padded copy.

    Padded position ``p = phase + stride * q`` holds input ``p - before`` when
    ``0 <= p - before < size``. Returns ``(q_start, q_stop, i_start, i_stop)``:
    phase rows ``q_start:q_stop`` take input rows ``i_start:i_stop:stride``.
    """
    q_start = max(0, -(-(before - phase) // stride))
    q_stop = max(q_start, -(-(before + size - phase) // stride))
    i_start = phase + stride * q_start - before
    return q_start, q_stop, i_start, i_start + stride * (q_stop - q_start)


def pool_sum_nchw(
    x: np.ndarray,
    *,
    kernel: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    pad_value: float,
    reduce: str,
) -> np.ndarray:
    """Window ``sum`` or ``max`` over ``x (n, c, h, w)``; returns ``(n, c, oh, ow)``."""
    taps, _, _ = _taps_nhwc(x, kernel, strides, padding, dilation, pad_value)
    acc = taps[0].copy()
    for tap in taps[1:]:
        if reduce == "max":
            np.maximum(acc, tap, out=acc)
        else:
            acc += tap
    return acc.transpose(0, 3, 1, 2)


def pool_counts(
    shape: Sequence[int],
    *,
    kernel: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> np.ndarray:
    """Number of in-bounds elements per pooling window, ``(1, 1, oh, ow)`` float64."""
    ones = np.ones((1, 1, *shape[2:]), np.float64)
    return pool_sum_nchw(
        ones,
        kernel=kernel,
        strides=strides,
        padding=padding,
        dilation=dilation,
        pad_value=0.0,
        reduce="sum",
    )


def slice_index(
    shape: Sequence[int],
    axes: Sequence[int],
    begin: Sequence[int],
    end: Sequence[int],
    strides: Sequence[int],
) -> tuple[slice, ...]:
    """The numpy index of a strided slice (ONNX/Relax semantics, clamped like Python's)."""
    index = [slice(None)] * len(shape)
    for axis, b, e, s in zip(axes, begin, end, strides, strict=True):
        ax = axis % len(shape)
        start, stop, step = slice(int(b), int(e), int(s)).indices(shape[ax])
        index[ax] = slice(start, stop if stop >= 0 else None, step)
    return tuple(index)
