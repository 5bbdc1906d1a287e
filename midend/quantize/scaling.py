"""Float scales -> the NPU's integer requantization parameters (docs/npu_spec.md sections 3-4).

This is the one place where a real-valued rescale becomes multipliers and
shifts under the hardware's ranges; every quantized layer calls it.

The convolution datapath (per output channel ``c``)::

    acc48 = sum((x - ifm_zp) * w[c]) + (b16[c] << bias_shift)
    acc32 = sat32(rshift_round(acc48, pre_shift))
    y     = rshift_round(acc32 * M[c], post_shift) + ofm_zp

approximates ``y = acc * s_x * s_w[c] / s_y`` with
``M[c] / 2^(pre_shift + post_shift) ~= s_x * s_w[c] / s_y``, ``M[c]`` in
``[0, 32767]`` and ONE ``post_shift`` per instruction.

Choice (:func:`conv_requant`): the smallest ``pre_shift`` that *proves*
``acc32`` never saturates (bound below), then the largest total shift for
which every channel's ``M[c]`` fits 15 bits; ``post_shift`` is the
difference. A larger total shift is never worse for any channel, so this
minimises the worst relative scale error among all legal choices with one
shared post-shift.

Overflow bound (stated and checked): for channel ``c``,
``|acc48| <= sum|w[c]| * max|x - ifm_zp| + |b16[c]| * 2^bias_shift``. With
int8 weights, int16 activations and ``K`` terms this is below
``K * 127 * 65535 + 32768 * 2^31 < 2^47`` for ``K < 2^23``, so the 48-bit
accumulator cannot overflow for any layer with fewer than 8.4 M terms per
output (checked: :class:`UnsupportedError` otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from npuc.core.errors import UnsupportedError

MULTIPLIER_MAX = 32767
PRE_SHIFT_MAX = 16
POST_SHIFT_MAX = 47
BIAS_SHIFT_MAX = 31
ELTWISE_SHIFT_MAX = 47
INT32_MAX = (1 << 31) - 1
ACC48_LIMIT = 1 << 47


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvRequant:
    """Integer output stage of a conv/FC instruction (names as the ISA spells them).

    ``ofm_multiplier`` is ``(cout,)`` uint16 (<= 32767); ``b16`` ``(cout,)``
    int16; ``scale_error`` the worst relative error of
    ``M / 2^(pre_shift+post_shift)`` against the real scale over channels whose
    real scale is non-zero.
    """

    pre_shift: int
    post_shift: int
    ofm_multiplier: np.ndarray
    b16: np.ndarray
    bias_shift: int
    scale_error: float


def multiplier_for(real: np.ndarray, total_shift: int) -> np.ndarray:
    """``round_half_up(real * 2^total_shift)`` as int64 (real >= 0)."""
    return np.floor(np.asarray(real, np.float64) * math.ldexp(1.0, total_shift) + 0.5).astype(
        np.int64
    )


def max_total_shift(real: np.ndarray, limit: int = MULTIPLIER_MAX) -> int:
    """The largest ``s`` with every ``round(real * 2^s) <= limit`` (may be negative)."""
    peak = float(np.max(real)) if np.size(real) else 0.0
    if peak <= 0.0:
        return 62
    s = math.floor(math.log2(limit / peak))
    while int(multiplier_for(np.asarray([peak]), s + 1)[0]) <= limit:
        s += 1
    while int(multiplier_for(np.asarray([peak]), s)[0]) > limit:
        s -= 1
    return s


def split_bias(bias_acc: np.ndarray) -> tuple[np.ndarray, int]:
    """Bias in accumulator units -> ``(b16 int16, bias_shift)``, rounding half up.

    The smallest ``bias_shift`` whose rounded values fit int16 is chosen (so the
    rounding error, at most ``2^(bias_shift-1)`` accumulator units, is minimal).
    """
    values = np.asarray(bias_acc, np.float64)
    for shift in range(BIAS_SHIFT_MAX + 1):
        b = np.floor(values / math.ldexp(1.0, shift) + 0.5)
        if b.size == 0 or (b.min() >= -32768 and b.max() <= 32767):
            return b.astype(np.int16), shift
    # Beyond int16 << 31 (2^46 accumulator units): saturate; the caller reports it.
    b = np.clip(np.floor(values / math.ldexp(1.0, BIAS_SHIFT_MAX) + 0.5), -32768, 32767)
    return b.astype(np.int16), BIAS_SHIFT_MAX


def conv_requant(
    *,
    real_scale: np.ndarray,
    bias_acc: np.ndarray,
    weight_l1: np.ndarray,
    ifm_max_abs: int,
    layer: str,
) -> ConvRequant:
    """Choose ``(pre_shift, post_shift, M[c], b16[c], bias_shift)`` for a conv/FC layer.

    Parameters
    ----------
    real_scale
        ``(cout,)`` float: ``s_x * s_w[c] / s_y`` (>= 0).
    bias_acc
        ``(cout,)`` float: the bias in accumulator units, ``bias / (s_x * s_w[c])``.
    weight_l1
        ``(cout,)`` int: ``sum |w_int8[c]|`` over the reduction (kh * kw * cin).
    ifm_max_abs
        ``max |x - ifm_zp|`` over the input type's range.
    layer
        Layer name for errors.

    Raises
    ------
    UnsupportedError
        If the accumulator bound reaches 2^47 or a scale needs ``M > 32767``
        even with no shift (a rescale above 32767, e.g. a broken calibration range).
    """
    b16, bias_shift = split_bias(bias_acc)
    bound = weight_l1.astype(np.float64) * ifm_max_abs + np.abs(b16.astype(np.float64)) * (
        1 << bias_shift
    )
    peak = float(bound.max()) if bound.size else 0.0
    if peak >= ACC48_LIMIT:
        raise UnsupportedError(
            f"layer {layer!r}: the accumulator bound {peak:.3g} reaches 2^47",
            hint="split the reduction (fewer input channels per layer) or run it on the CPU",
        )
    pre_shift = 0
    while pre_shift < PRE_SHIFT_MAX and math.ceil(peak / (1 << pre_shift)) > INT32_MAX:
        pre_shift += 1
    total = max_total_shift(real_scale)
    post_shift = min(max(total - pre_shift, 0), POST_SHIFT_MAX)
    total = pre_shift + post_shift
    m = multiplier_for(real_scale, total)
    if m.size and int(m.max()) > MULTIPLIER_MAX:
        raise UnsupportedError(
            f"layer {layer!r}: rescale {float(np.max(real_scale)):.3g} needs a multiplier above "
            f"{MULTIPLIER_MAX} even with post_shift 0",
            hint="check the calibration ranges of this layer's input and output",
        )
    approx = m / math.ldexp(1.0, total)
    live = real_scale > 0
    error = (
        float(np.max(np.abs(approx[live] - real_scale[live]) / real_scale[live]))
        if live.any()
        else 0.0
    )
    return ConvRequant(
        pre_shift=pre_shift,
        post_shift=post_shift,
        ofm_multiplier=m.astype(np.uint16),
        b16=b16,
        bias_shift=bias_shift,
        scale_error=error,
    )


def eltwise_requant(
    ratio_a: float, ratio_b: float, *, da_max: int, db_max: int
) -> tuple[int, int, int]:
    """``(ifm_multiplier, ifm2_multiplier, shift)`` for add/sub/max/min (spec section 4).

    ``ratio_a = s_a / s_y`` and ``ratio_b = s_b / s_y``; the intermediate
    ``|da| * Ma + |db| * Mb`` is kept below 2^47 (``da_max``, ``db_max`` bound
    ``|x - zp|``), which always holds for 16-bit inputs and 15-bit multipliers.
    """
    ratios = np.asarray([ratio_a, ratio_b], np.float64)
    shift = min(max_total_shift(ratios), ELTWISE_SHIFT_MAX)
    if shift < 0:
        raise UnsupportedError(f"element-wise rescale {ratios.max():.3g} exceeds {MULTIPLIER_MAX}")
    ma, mb = (int(v) for v in multiplier_for(ratios, shift))
    assert da_max * ma + db_max * mb < ACC48_LIMIT
    return ma, mb, shift


def single_requant(ratio: float, *, max_operand: int) -> tuple[int, int]:
    """``(multiplier, shift)`` for one-multiplier rescales (mul, pools, requant copy, LUT input).

    ``max_operand`` bounds the integer the multiplier multiplies; the product
    stays below 2^47.
    """
    limit = MULTIPLIER_MAX
    shift = min(max_total_shift(np.asarray([ratio]), limit), ELTWISE_SHIFT_MAX)
    if shift < 0:
        raise UnsupportedError(f"rescale {ratio:.3g} exceeds {MULTIPLIER_MAX}")
    m = int(multiplier_for(np.asarray([ratio]), shift)[0])
    while m * max_operand >= ACC48_LIMIT and shift > 0:
        shift -= 1
        m = int(multiplier_for(np.asarray([ratio]), shift)[0])
    return m, shift
