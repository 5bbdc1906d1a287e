"""Packed input-channel order and signs of an int8 convolution: pairs vpmaddubsw cannot saturate.

Requires: a layer's int8 OIHW weights (values in [-128, 127]).

Guarantees: :func:`pair_order` returns None (keep the model's channels) or a
:class:`PairOrder`: ``order`` a permutation of ``range(C)`` and ``flip`` a
bool per slot, never set for a channel holding a weight of -128.
:mod:`.int8_conv` then packs input channel ``order[k]`` into slot ``k`` of
the kernel's input, complemented (``255 - u``, an xor with 255) where
``flip[k]`` (:class:`~npuc.backend.cpu.schedules.int8_pack.PackSpec`
``ordered``), and uses weights ``w[:, order[k]]``, negated where ``flip[k]``,
with ``INIT`` corrected by ``255 * sum`` of the flipped slots' weights:
``(255 - u) * (-w) = u w - 255 w``, so every kernel that sums ``u * w``
uncentred and adds ``INIT`` (VNNI, AMX, AVX2, generic) stores the same
integers as without it. The caller flips only for specs whose uncentred sums
fit int32 (``int8_avx2.uncentred``).

Why: the AVX2 kernels (:mod:`~npuc.backend.cpu.schedules.int8_ubsw`) multiply
the weight pairs of slots ``(4g, 4g + 1)`` and ``(4g + 2, 4g + 3)`` with
``vpmaddubsw``; a pair ``(a, b)`` of one output channel and tap is *unsafe*
(may saturate) when ``a * b > 0`` and ``|a| + |b| > 128``, which for int8
weights is exactly ``|a + b| > 128``. Every weight group with an unsafe pair
costs a remainder-list entry, about twice a safe group's work, and a tile of
four output channels with more than its pool keeps the slower ``vpmaddwd``
form. Which channels share a pair is free to choose, and so is the sign of a
slot: pairing channels ``i`` and ``j`` costs the (output channel, tap)
columns where ``|w_i + w_j| > 128``, or where ``|w_i - w_j| > 128`` with one of
them flipped, whichever is fewer. A good order is a cheap perfect matching of
the channels; it is built greedily (each channel, cheapest best pair first,
takes its cheapest free partner), and consecutive pairs share a group.
Unsafe groups, model order -> this order (and the time it takes per model,
with a bit-exactness run on the other core): MobileNetV2 6.0% -> 3.0%
(0.5 s), YOLOv8n 1.7% -> 0.4% (0.2 s), the orientation classifier 2.9% ->
0.4% (0.3 s); onnx's light graphs (every weight 127) 100% -> 0 (VGG-19 0.9 s,
ResNet-50's shapes 3.2 s).

The cost is computed exactly when ``C`` times the layer's large weights
(``|w| > 64``) is at most :data:`BUDGET` comparisons, else on evenly spaced
(output, tap) columns (the order is a heuristic: any order and signs are
exact). It is tried only on layers with at least :data:`MIN_UNSAFE_SHARE` of
unsafe groups, and kept only when it removes at least :data:`MIN_GAIN` of
them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npuc.backend.cpu.schedules.int8_spec import GROUP

#: Comparisons (``C`` x the large weights, :func:`_pair_costs`) the exact cost may take;
#: beyond, columns are sampled.
BUDGET = 20_000_000

#: Below this share of unsafe groups a layer keeps the model's order: its lists are short
#: (each unsafe group costs about two safe ones), not worth the matching's compile time.
MIN_UNSAFE_SHARE = 0.01

#: The fraction of the model order's unsafe groups an order must remove to be used.
MIN_GAIN = 0.1


@dataclass(frozen=True, slots=True)
class PairOrder:
    """Slot ``k`` of the packed input holds input channel ``order[k]`` (int64 ``(C,)``, a
    permutation), complemented with negated weights where ``flip[k]`` (bool ``(C,)``)."""

    order: np.ndarray
    flip: np.ndarray


def unsafe_groups(weights: np.ndarray, order: PairOrder | None = None) -> int:
    """Weight groups (output channel, tap, group of four slots) with an unsafe pair when
    the slots are in ``order`` (default: the model's channels); channels padded with
    zeros to a multiple of four (a zero pair is safe)."""
    w = np.asarray(weights, np.int16)
    o, c = w.shape[:2]
    cols = w.reshape(o, c, -1)
    if order is not None:
        cols = cols[:, order.order] * np.where(order.flip, -1, 1).astype(np.int16)[:, None]
    slots = np.zeros((o, -(-c // GROUP) * GROUP, cols.shape[2]), np.int16)
    slots[:, :c] = cols
    g = slots.reshape(o, -1, GROUP, cols.shape[2])
    bad = (np.abs(g[:, :, 0] + g[:, :, 1]) > 128) | (np.abs(g[:, :, 2] + g[:, :, 3]) > 128)
    return int(bad.sum())


def _pair_costs(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(C, C)`` int64 twice: for channels ``i, j`` the columns where ``|w_i + w_j| > 128``,
    and where ``|w_i - w_j| > 128``.

    Either needs ``|w_i| > 64`` or ``|w_j| > 64`` (the *large* weights, a few percent of
    trained ones), so row ``i`` looks only at the columns where ``w_i`` is large; a column
    where both are large is seen from both rows and counts half from each (twice the
    count is summed, in integers)."""
    c = columns.shape[0]
    large = np.abs(columns) > 64
    shifted = columns + np.int16(128)  # |v| > 128 <=> v + 128 outside [0, 256]
    same, opposite = np.zeros((c, c), np.int64), np.zeros((c, c), np.int64)
    for i in range(c):
        at = np.flatnonzero(large[i])
        if at.size == 0:
            continue
        sub, seen = columns[:, at], 2 - large[:, at].astype(np.int64)  # (C, k)
        row = shifted[i, at][None, :]
        same[i] = (((row + sub).view(np.uint16) > 256) * seen).sum(axis=1)
        opposite[i] = (((row - sub).view(np.uint16) > 256) * seen).sum(axis=1)
    return (same + same.T) // 2, (opposite + opposite.T) // 2


def _greedy_matching(cost: np.ndarray) -> list[int]:
    """Channels in pairs, each channel in turn (cheapest best pair first) with its cheapest
    free partner (ties: the lowest index); an odd one last. ``O(C^2)``."""
    c = cost.shape[0]
    free = np.ones(c, bool)
    masked = cost.astype(np.float64)
    np.fill_diagonal(masked, np.inf)
    order: list[int] = []
    for i in np.argsort(masked.min(axis=1), kind="stable"):
        if not free[i]:
            continue
        free[i] = False
        if not free.any():
            order.append(int(i))
            break
        j = int(np.argmin(np.where(free, masked[i], np.inf)))
        free[j] = False
        order += [int(i), j]
    return order


def pair_order(weights: np.ndarray) -> PairOrder | None:
    """The slots' channels and signs for int8 OIHW ``weights``, or None to keep the model's
    channels (module docstring)."""
    w = np.asarray(weights)
    if w.ndim != 4 or w.shape[1] < 2:
        return None
    before = unsafe_groups(w)
    groups = w.shape[0] * -(-w.shape[1] // GROUP) * w.shape[2] * w.shape[3]
    if before <= MIN_UNSAFE_SHARE * groups:
        return None
    c = w.shape[1]
    columns = np.ascontiguousarray(w.astype(np.int16).transpose(1, 0, 2, 3).reshape(c, -1))
    flippable = (columns != -128).all(axis=1)
    large_per_column = max(1, int((np.abs(columns) > 64).sum()) // columns.shape[1])
    keep = max(1, BUDGET // (c * large_per_column))
    if columns.shape[1] > keep:
        columns = columns[:, np.linspace(0, columns.shape[1] - 1, keep).astype(np.int64)]
    same, opposite = _pair_costs(columns)
    either = flippable[:, None] | flippable[None, :]
    use_flip = either & (opposite < same)
    order = np.asarray(_greedy_matching(np.where(use_flip, opposite, same)), np.int64)
    flip = np.zeros(c, bool)
    for k in range(0, c - 1, 2):
        i, j = order[k], order[k + 1]
        if use_flip[i, j]:
            flip[k + 1 if flippable[j] else k] = True
    chosen = PairOrder(order=order, flip=flip)
    return chosen if unsafe_groups(w, chosen) <= before * (1 - MIN_GAIN) else None
