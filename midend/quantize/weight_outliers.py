"""Finding weight tensors whose outliers will cost accuracy once quantized.

Two patterns are common in trained networks (and the usual cause of a layer
that quantizes badly):

* a few output channels whose range is far wider than the others' (after
  batch-norm folding, depthwise convolutions often have them): with one scale
  per tensor the other channels keep only a few int8 codes; per channel, the
  multipliers spread and share one post-shift less well;
* a few values far beyond the bulk of the tensor: the ``extrema`` range
  spends the int8 codes on them.

:func:`find_weight_outliers` measures both and returns a
:class:`WeightOutliers` whose :meth:`~WeightOutliers.message` names the layer,
for the quantizer to warn with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: With one weight scale per tensor, a channel is an outlier when its max |w|
#: exceeds this many times the median channel's. (MobileNetV2's folded depthwise
#: convolutions reach 5.3x .. 7.6x; its other layers stay below 4x.)
CHANNEL_RATIO = 5.0
#: With per-channel scales sharing one post-shift, channels matter when the
#: widest is this many times the narrowest (non-zero) one: the narrowest
#: channel's 15-bit multiplier then keeps fewer than 8 significant bits.
PER_CHANNEL_RATIO = 128.0
#: A tensor has outlier values when max |w| exceeds this many times its 99th percentile |w|.
VALUE_RATIO = 6.0
#: Tensors smaller than this are too small for the value statistic.
MIN_VALUES = 1024


@dataclass(frozen=True, slots=True)
class WeightOutliers:
    """What :func:`find_weight_outliers` found in one layer's weights.

    ``channels``: indices along the channel axis whose max ``|w|`` is more than
    :data:`CHANNEL_RATIO` times the median channel's (per-tensor scales), or,
    with per-channel scales, the widest and narrowest channels when their
    ratio exceeds :data:`PER_CHANNEL_RATIO`; ``channel_ratio``: that ratio.
    ``value_ratio``: ``max |w|`` over the 99th percentile of ``|w|``;
    ``values``: how many values lie beyond :data:`VALUE_RATIO` times that
    percentile (0 for small tensors).
    """

    layer: str
    channels: tuple[int, ...]
    channel_ratio: float
    values: int
    value_ratio: float

    def __bool__(self) -> bool:
        return bool(self.channels) or self.values > 0

    def message(self) -> str:
        """One sentence naming the layer and what to try ("" when nothing was found)."""
        parts = []
        if self.channels:
            shown = ", ".join(map(str, self.channels[:8])) + (
                ", ..." if len(self.channels) > 8 else ""
            )
            parts.append(
                f"output channel(s) {shown} stand out: {self.channel_ratio:.1f}x the "
                "median channel's range with one scale per tensor (use per-channel weights), "
                "or the widest over the narrowest channel with per-channel scales"
            )
        if self.values:
            parts.append(
                f"{self.values} value(s) lie beyond {VALUE_RATIO:g}x the 99th percentile "
                f'(max {self.value_ratio:.1f}x; try q_strategy_weight = "mse")'
            )
        return f"layer {self.layer}: weights have outliers: " + "; ".join(parts) if parts else ""


def find_weight_outliers(
    w: np.ndarray, axis: int, *, layer: str, per_channel: bool = False
) -> WeightOutliers:
    """Measure channel-range and value outliers of float weights ``w``.

    Parameters
    ----------
    w
        Float weights of any shape, e.g. ``(O, I, kH, kW)``.
    axis
        The output-channel axis.
    layer
        The layer's name, for the message.
    per_channel
        Whether the weights get one scale per channel (then only a spread
        beyond :data:`PER_CHANNEL_RATIO` counts).
    """
    w = np.abs(np.asarray(w, np.float64))
    per_ch = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).max(axis=1)
    channels: tuple[int, ...] = ()
    channel_ratio = 1.0
    nonzero = per_ch[per_ch > 0]
    if per_channel and nonzero.size:
        channel_ratio = float(nonzero.max() / nonzero.min())
        if channel_ratio > PER_CHANNEL_RATIO:
            low = int(np.flatnonzero(per_ch == nonzero.min())[0])
            channels = tuple(sorted({int(np.argmax(per_ch)), low}))
    elif not per_channel and np.median(per_ch) > 0:
        ratios = per_ch / float(np.median(per_ch))
        channels = tuple(int(c) for c in np.flatnonzero(ratios > CHANNEL_RATIO))
        channel_ratio = float(ratios.max())
    values, value_ratio = 0, 1.0
    if w.size >= MIN_VALUES:
        p99 = float(np.percentile(w, 99.0))
        if p99 > 0:
            value_ratio = float(w.max()) / p99
            values = int(np.count_nonzero(w > VALUE_RATIO * p99))
    return WeightOutliers(layer, channels, channel_ratio, values, value_ratio)
