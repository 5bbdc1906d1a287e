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
the channels; it is built greedily (cheapest pairs first), and consecutive
chosen pairs share a group. Unsafe groups, model order -> this order (and
the time it takes per model): MobileNetV2 6.0% -> 3.1% (1.3 s), YOLOv8n 1.7%
-> 0.3% (0.7 s), the orientation classifier 2.9% -> 0.4% (0.7 s); onnx's light
graphs (every weight 127) 100% -> 0 (VGG-19 2.7 s).

The cost is computed exactly when ``C * C * (O * taps)`` is at most
:data:`BUDGET` pair-columns, else on evenly spaced (output, tap) columns (the
order is a heuristic: any order and signs are exact). An order is kept only
when it removes at least :data:`MIN_GAIN` of the unsafe groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Pair-columns (``C * C * columns``) the exact cost may take; beyond, columns are sampled.
BUDGET = 150_000_000

#: Rows of the cost matrix computed at once (bounds the int16 temporary to 16 x C x columns).
BLOCK_ROWS = 16

#: Pairs ranked per channel left in one round of the greedy matching.
RANKED_PER_CHANNEL = 4

#: The fraction of the model order's unsafe groups an order must remove to be used.
MIN_GAIN = 0.1

#: Weights per input group of the kernels (four channels, two pairs).
GROUP = 4


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
    """``(C, C)`` int64 twice: for channels ``i, j`` the columns where ``|w_i + w_j| > 128``
    (``w_i + 128 + w_j`` outside ``[0, 256]``: one add, one unsigned compare), and where
    ``|w_i - w_j| > 128``."""
    c = columns.shape[0]
    shifted = columns + np.int16(128)
    same, opposite = np.empty((c, c), np.int64), np.empty((c, c), np.int64)
    for i0 in range(0, c, BLOCK_ROWS):
        rows = shifted[i0 : i0 + BLOCK_ROWS, None, :]
        same[i0 : i0 + BLOCK_ROWS] = np.count_nonzero(
            (rows + columns[None]).view(np.uint16) > 256, axis=2
        )
        opposite[i0 : i0 + BLOCK_ROWS] = np.count_nonzero(
            (rows - columns[None]).view(np.uint16) > 256, axis=2
        )
    return same, opposite


def _greedy_matching(cost: np.ndarray) -> list[int]:
    """Channels in pairs, cheapest pairs first (ties: lower indices); an odd one last.

    Each round walks the :data:`RANKED_PER_CHANNEL` ``x`` (channels left) cheapest pairs of
    the channels left, so the Python loop stays short; the next round ranks what is left."""
    left = np.arange(cost.shape[0])
    order: list[int] = []
    while len(left) > 1:
        rows, cols = np.triu_indices(len(left), 1)
        sub = cost[left[rows], left[cols]]
        keep = min(RANKED_PER_CHANNEL * len(left), len(sub))
        ranked = np.argpartition(sub, keep - 1)[:keep]
        ranked = ranked[np.lexsort((ranked, sub[ranked]))]
        free = np.ones(len(left), bool)
        for k in ranked:
            i, j = int(rows[k]), int(cols[k])
            if free[i] and free[j]:
                free[i] = free[j] = False
                order += [int(left[i]), int(left[j])]
        left = left[free]
    return order + [int(i) for i in left]


def pair_order(weights: np.ndarray) -> PairOrder | None:
    """The slots' channels and signs for int8 OIHW ``weights``, or None to keep the model's
    channels (module docstring)."""
    w = np.asarray(weights)
    if w.ndim != 4 or w.shape[1] < 2:
        return None
    before = unsafe_groups(w)
    if before == 0:
        return None
    c = w.shape[1]
    columns = np.ascontiguousarray(w.astype(np.int16).transpose(1, 0, 2, 3).reshape(c, -1))
    flippable = (columns != -128).all(axis=1)
    keep = max(1, BUDGET // (c * c))
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
