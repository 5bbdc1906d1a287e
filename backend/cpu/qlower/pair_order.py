"""The packed input-channel order of an int8 convolution: pairs that ``vpmaddubsw`` cannot saturate.

Requires: a layer's int8 OIHW weights (values in [-128, 127]).

Guarantees: :func:`pair_order` returns None (keep the model's order) or a
permutation ``order`` of ``range(C)``. :mod:`.int8_conv` then packs input
channel ``order[k]`` into slot ``k`` of the kernel's input
(:class:`~npuc.backend.cpu.schedules.int8_pack.PackSpec` ``ordered``) and
uses ``weights[:, order]``: the same products summed in another order, exact
in integers, so every kernel (VNNI, AMX, AVX2) gives the same integers as
without it.

Why: the AVX2 kernels (:mod:`~npuc.backend.cpu.schedules.int8_ubsw`) multiply
the weight pairs of slots ``(4g, 4g + 1)`` and ``(4g + 2, 4g + 3)`` with
``vpmaddubsw``; a pair ``(a, b)`` of one output channel and tap is *unsafe*
(may saturate) when ``a * b > 0`` and ``|a| + |b| > 128``, which for int8
weights is exactly ``|a + b| > 128``. Every weight group with an unsafe pair
costs a remainder-list entry, about twice a safe group's work. Which channels
share a pair is free to choose: the cost of pairing channels ``i`` and ``j``
is the number of (output channel, tap) where ``|w_i + w_j| > 128``, and a good
order is a cheap perfect matching of the channels. It is built greedily
(cheapest pairs first), and consecutive chosen pairs share a group. On real
weights this takes the unsafe groups of MobileNetV2 from 6.0% to 3.3%, YOLOv8n
1.7% to 0.5%, the orientation classifier 2.9% to 1.0% (0.6, 0.4 and 0.4 s of
compile time).

The cost is computed exactly when ``C * C * (O * taps)`` is at most
:data:`BUDGET` pair-columns, else on evenly spaced (output, tap) columns (the
order is a heuristic: any permutation is exact). An order is kept only when
it removes at least :data:`MIN_GAIN` of the unsafe groups; layers with no
unsafe groups, or whose weights are mostly large of one sign (:data:`LARGE_SHARE`;
onnx's light graphs, every weight 127: no pairing helps), keep the model's order.
"""

from __future__ import annotations

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

#: Above this share of weights ``> 64`` (or of weights ``< -64``) no order is tried: two such
#: weights are always unsafe together, so pairing cannot help much (onnx's light graphs:
#: every weight 127).
LARGE_SHARE = 0.5


def unsafe_groups(weights: np.ndarray, order: np.ndarray | None = None) -> int:
    """Weight groups (output channel, tap, group of four slots) with an unsafe pair when
    input channel ``order[k]`` (default ``k``) is in slot ``k``; channels padded with zeros
    to a multiple of four (a zero pair is safe)."""
    w = np.asarray(weights, np.int16)
    o, c = w.shape[:2]
    cols = w.reshape(o, c, -1)
    if order is not None:
        cols = cols[:, order]
    slots = np.zeros((o, -(-c // GROUP) * GROUP, cols.shape[2]), np.int16)
    slots[:, :c] = cols
    g = slots.reshape(o, -1, GROUP, cols.shape[2])
    bad = (np.abs(g[:, :, 0] + g[:, :, 1]) > 128) | (np.abs(g[:, :, 2] + g[:, :, 3]) > 128)
    return int(bad.sum())


def _pair_costs(columns: np.ndarray) -> np.ndarray:
    """``(C, C)`` int64: for channels ``i, j`` the columns where ``|w_i + w_j| > 128``
    (``w_i + 128 + w_j`` outside ``[0, 256]``: one add, one unsigned compare)."""
    c = columns.shape[0]
    shifted = columns + np.int16(128)
    cost = np.empty((c, c), np.int64)
    for i0 in range(0, c, BLOCK_ROWS):
        block = shifted[i0 : i0 + BLOCK_ROWS, None, :] + columns[None, :, :]
        cost[i0 : i0 + BLOCK_ROWS] = np.count_nonzero(block.view(np.uint16) > 256, axis=2)
    return cost


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


def pair_order(weights: np.ndarray) -> np.ndarray | None:
    """The input-channel order (int64 ``(C,)``, a permutation) for int8 OIHW ``weights``, or
    None to keep the model's order (module docstring)."""
    w = np.asarray(weights)
    if w.ndim != 4 or w.shape[1] < 3:
        return None
    before = unsafe_groups(w)
    if before == 0 or max(float((w > 64).mean()), float((w < -64).mean())) > LARGE_SHARE:
        return None
    c = w.shape[1]
    columns = np.ascontiguousarray(w.astype(np.int16).transpose(1, 0, 2, 3).reshape(c, -1))
    keep = max(1, BUDGET // (c * c))
    if columns.shape[1] > keep:
        columns = columns[:, np.linspace(0, columns.shape[1] - 1, keep).astype(np.int64)]
    order = np.asarray(_greedy_matching(_pair_costs(columns)), np.int64)
    after = unsafe_groups(w, order)
    return order if after <= before * (1 - MIN_GAIN) else None
