"""Scales and zero points from ranges: activations per tensor, weights per channel.

Affine quantization maps a real value ``x`` to ``q = clamp(round(x / scale) +
zero_point, qmin, qmax)`` and back with ``x' = (q - zero_point) * scale``.
Every function here guarantees that

* ``0.0`` is exactly representable (``zero_point`` is an integer in
  ``[qmin, qmax]``), so zero padding and ReLU's zero stay exact;
* the requested range ``[lo, hi]`` (widened to contain 0) is covered:
  ``(qmin - zero_point) * scale <= lo`` and ``(qmax - zero_point) * scale >= hi``;
* ``scale`` is a positive float exactly representable in float32, so the same
  number can be written into a QDQ ONNX or TFLite file unchanged.

Integer ranges (``qmin``, ``qmax``) per dtype, full and narrow (the narrow
range drops the most negative code so that a symmetric range is exactly
symmetric, as TFLite's and the MAC array's restricted weights are):

========  ================  ==================
dtype     full              narrow_range=True
========  ================  ==================
int8      [-128, 127]       [-127, 127]
uint8     [0, 255]          [1, 255]
int16     [-32768, 32767]   [-32767, 32767]
========  ================  ==================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from npuc.core.errors import InvalidInputError

QDtype = Literal["int8", "uint8", "int16"]
QDTYPES: tuple[str, ...] = ("int8", "uint8", "int16")
_FULL_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
_BITS = {"int8": 8, "uint8": 8, "int16": 16}
_NUMPY_DTYPE: dict[str, type[np.integer]] = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16}
#: Scale used when a range is exactly zero (a tensor that is 0 everywhere).
DEGENERATE_SCALE = 1.0


def _check_dtype(dtype: str) -> None:
    if dtype not in _FULL_RANGE:
        raise InvalidInputError(
            f"quantized dtype {dtype!r} is not supported",
            hint=f"use one of {', '.join(QDTYPES)}",
        )


def qrange(dtype: str, *, narrow_range: bool = False) -> tuple[int, int]:
    """``(qmin, qmax)`` of ``dtype`` (see the module table).

    Raises
    ------
    InvalidInputError
        ``dtype`` is not int8, uint8 or int16.
    """
    _check_dtype(dtype)
    lo, hi = _FULL_RANGE[dtype]
    return (lo + 1, hi) if narrow_range else (lo, hi)


def dtype_bits(dtype: str) -> int:
    """Bit width of a quantized dtype: 8 or 16."""
    _check_dtype(dtype)
    return _BITS[dtype]


@dataclass(frozen=True, slots=True)
class QParams:
    """Per-tensor affine quantization parameters.

    ``scale`` is real units per integer step (float32-exact, > 0);
    ``zero_point`` is the integer that represents 0.0, within ``dtype``'s range.
    """

    scale: float
    zero_point: int
    dtype: str

    @property
    def qmin(self) -> int:
        return qrange(self.dtype)[0]

    @property
    def qmax(self) -> int:
        return qrange(self.dtype)[1]

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Round half to even and saturate: any float array -> same shape in ``dtype``."""
        q = np.rint(np.asarray(x, np.float64) / self.scale) + self.zero_point
        return np.clip(q, self.qmin, self.qmax).astype(_NUMPY_DTYPE[self.dtype])

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Integers of any shape -> float64 real values."""
        return (np.asarray(q, np.float64) - self.zero_point) * self.scale


def _f32_up(value: float) -> float:
    """The smallest float32 >= ``value``."""
    f = np.float32(value)
    if float(f) < value:
        f = np.nextafter(f, np.float32(np.inf))
    return float(f)


def _next_f32(value: float) -> float:
    """The float32 after ``value`` (a float32), guarding the coverage against rounding."""
    return float(np.nextafter(np.float32(value), np.float32(np.inf)))


def _check_range(lo: float, hi: float, name: str) -> tuple[float, float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InvalidInputError(
            f"{name}: range [{lo}, {hi}] is not finite",
            hint="pass --trim-infinity to keep infinities and sentinel values out of the "
            "statistics, or keep the layer float",
        )
    if lo > hi:
        raise InvalidInputError(f"{name}: range [{lo}, {hi}] has its minimum above its maximum")
    return min(lo, 0.0), max(hi, 0.0)


def choose_qparams(
    lo: float,
    hi: float,
    *,
    dtype: str,
    symmetric: bool,
    narrow_range: bool = False,
    name: str = "tensor",
) -> QParams:
    """Scale and zero point whose grid covers ``[lo, hi]`` (widened to contain 0).

    Symmetric: ``zero_point = 0`` and ``scale = max(-lo, hi) / qmax`` (so
    ``qmin`` is only reached below ``-max(-lo, hi)`` with the full range).
    Asymmetric: the real zero point for ``scale = (hi - lo) / (qmax - qmin)``
    is rounded down or up, whichever needs the smaller widening of ``scale``
    to keep both ends covered (at most a factor ``1 + 2 / (qmax - qmin - 2)``).
    A zero range (``lo == hi == 0``) gets :data:`DEGENERATE_SCALE`.

    Parameters
    ----------
    lo, hi
        Real range in the tensor's units, ``lo <= hi``, both finite.
    dtype
        ``"int8"``, ``"uint8"`` or ``"int16"``.
    symmetric
        Zero point 0; not possible for ``uint8``.
    narrow_range
        Use the narrow integer range (module table).
    name
        Tensor or layer name used in error messages.

    Raises
    ------
    InvalidInputError
        Non-finite or inverted range, unknown dtype, or symmetric ``uint8``.
    """
    qmin, qmax = qrange(dtype, narrow_range=narrow_range)
    lo, hi = _check_range(float(lo), float(hi), name)
    if symmetric:
        if qmin >= 0:
            raise InvalidInputError(
                f"{name}: symmetric quantization needs a signed dtype, not {dtype}",
                hint="use int8 for symmetric ranges, or an asymmetric scheme for uint8",
            )
        amax = max(-lo, hi)
        if amax == 0.0:
            return QParams(DEGENERATE_SCALE, 0, dtype)
        scale = _f32_up(amax / qmax)
        while qmax * scale < amax or -qmax * scale > lo:
            scale = _next_f32(scale)
        return QParams(scale, 0, dtype)
    if hi - lo == 0.0:
        return QParams(DEGENERATE_SCALE, min(max(0, qmin), qmax), dtype)
    ideal = qmin - lo / ((hi - lo) / (qmax - qmin))  # the real-valued zero point
    # Of the two integers around it, the one needing the smaller scale to cover both ends.
    zp, need = min(
        (
            (z, _covering_scale(lo, hi, z, qmin, qmax))
            for z in _zero_points(ideal, lo, hi, qmin, qmax)
        ),
        key=lambda pair: pair[1],
    )
    scale = _f32_up(need)
    while (qmin - zp) * scale > lo or (qmax - zp) * scale < hi:
        scale = _next_f32(scale)
    return QParams(scale, zp, dtype)


def _zero_points(ideal: float, lo: float, hi: float, qmin: int, qmax: int) -> list[int]:
    """Integer zero points around ``ideal`` that keep a code on each needed side of 0."""
    low = qmin + 1 if lo < 0 else qmin
    high = qmax - 1 if hi > 0 else qmax
    return sorted({min(max(z, low), high) for z in (math.floor(ideal), math.ceil(ideal))})


def _covering_scale(lo: float, hi: float, zp: int, qmin: int, qmax: int) -> float:
    """The least scale for which zero point ``zp`` covers ``[lo, hi]``."""
    return max(-lo / (zp - qmin) if lo < 0 else 0.0, hi / (qmax - zp) if hi > 0 else 0.0)


def _quantize_sym(w: np.ndarray, scales: np.ndarray, qmin: int, qmax: int) -> np.ndarray:
    return np.clip(np.rint(w / scales), qmin, qmax)


def _mse_clip(wc: np.ndarray, amax: np.ndarray, qmin: int, qmax: int, steps: int) -> np.ndarray:
    """Per row of ``wc`` (C, K): the clip ``alpha * amax`` minimising the squared error."""
    best_err = np.full(amax.shape, np.inf)
    best = amax.copy()
    half = steps // 2
    alphas = np.concatenate((np.linspace(1.0, 0.2, half), np.geomspace(0.2, 0.01, steps - half)))
    for alpha in alphas:
        clip = amax * alpha
        scales = np.where(clip > 0, clip / qmax, 1.0)[:, None]
        err = np.sum((_quantize_sym(wc, scales, qmin, qmax) * scales - wc) ** 2, axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best = np.where(better, clip, best)
    return best


def choose_weight_qparams(
    w: np.ndarray,
    axis: int,
    *,
    per_channel: bool,
    narrow_range: bool,
    strategy: str = "extrema",
    mse_steps: int = 81,
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weights (the MAC array's only weight type) and their scales.

    Parameters
    ----------
    w
        Float weights of any shape, e.g. ``(O, I, kH, kW)`` for a convolution.
    axis
        The output-channel axis of ``w`` (0 for ONNX Conv, 1 for a ``(K, N)``
        MatMul weight); used only when ``per_channel``.
    per_channel
        One scale per index of ``axis`` instead of one for the whole tensor.
    narrow_range
        Codes in ``[-127, 127]`` instead of ``[-128, 127]``.
    strategy
        ``"extrema"``: clip at ``max |w|``; ``"mse"``: the clip among
        ``mse_steps`` fractions of ``max |w|`` (evenly 1.0 .. 0.2, then
        geometrically down to 0.01) with the least squared rounding+clipping
        error, chosen per channel.

    Returns
    -------
    scales
        float64 (float32-exact) of shape ``(w.shape[axis],)`` when
        ``per_channel``, else ``(1,)``; ``w ~= q * scale`` along ``axis``.
        A channel that is zero everywhere takes the largest scale of the
        tensor (so it does not widen the spread of per-channel multipliers
        that share one post-shift); an all-zero tensor takes 1.0.
    q
        int8 array of ``w``'s shape.

    Raises
    ------
    InvalidInputError
        Non-finite weights, an axis out of range or an unknown strategy.
    """
    w = np.asarray(w, np.float64)
    strategy = str(strategy)
    if strategy not in ("extrema", "mse"):
        raise InvalidInputError(
            f"weight range strategy {strategy!r} is not supported",
            hint="weights use 'extrema' or 'mse'",
        )
    if not np.all(np.isfinite(w)):
        raise InvalidInputError("weights hold infinities or NaN and cannot be quantized")
    qmin, qmax = qrange("int8", narrow_range=narrow_range)
    if per_channel:
        if not -w.ndim <= axis < w.ndim:
            raise InvalidInputError(f"channel axis {axis} is out of range for weights {w.shape}")
        wc = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    else:
        wc = w.reshape(1, -1)
    amax = np.max(np.abs(wc), axis=1) if wc.size else np.zeros(wc.shape[0])
    clip = _mse_clip(wc, amax, qmin, qmax, mse_steps) if strategy == "mse" else amax
    scales = np.array([_f32_up(c / qmax) for c in clip], np.float64)
    fallback = float(scales.max()) if scales.size and scales.max() > 0 else DEGENERATE_SCALE
    scales[scales == 0] = fallback
    q = _quantize_sym(wc, scales[:, None], qmin, qmax).astype(np.int8)
    if per_channel:
        moved = np.moveaxis(w, axis, 0).shape
        q = np.moveaxis(q.reshape(moved), 0, axis)
    else:
        q = q.reshape(w.shape)
    return scales, np.ascontiguousarray(q)
