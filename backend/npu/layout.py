"""How the quantized graph's tensors (NCHW, Relax semantics) are stored on the NPU (NHWC).

A rank-4 tensor ``(1, C, H, W)`` is stored as ``(1, H, W, C)``; lower ranks keep
their row-major bytes: ``(1, A, B)`` as ``(1, 1, A, B)``, ``(1, K)`` and ``(K,)``
as ``(1, 1, 1, K)``. Only batch 1 is stored (``None`` otherwise). The
conversions themselves live in :mod:`npuc.core.storage_layout` (the runtime
needs them too); this module adds what the compiler needs on top.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from npuc.core.storage_layout import from_storage, storage_shape, to_storage
from npuc.midend.quantize.graph import Node

__all__ = ["concat_axis", "from_storage", "move_chain", "storage_shape", "to_storage"]

_PERMS = [(0, *p) for p in itertools.permutations((1, 2, 3))]


def concat_axis(rank: int, axis: int) -> int | None:
    """The storage axis of graph axis ``axis`` (not batch), ``None`` if there is none."""
    if rank == 4:
        return {1: 3, 2: 1, 3: 2}.get(axis)
    if rank == 3:
        return {1: 2, 2: 3}.get(axis)
    if rank == 2:
        return 3 if axis == 1 else None
    return None


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def move_chain(node: Node, in_shape: tuple[int, ...]) -> list[tuple[str, Any]] | None:
    """Storage-space steps (``("transpose", perm)``, ``("reshape", shape)``) equal to ``node``.

    ``node`` is a reshape or transpose in graph semantics. The chain is checked
    on an index array, so it is exact by construction; ``None`` when no chain of
    at most transpose-reshape-transpose reproduces it.
    """
    if storage_shape(in_shape) is None or storage_shape(node.out.shape) is None:
        return None
    idx = np.arange(int(np.prod(in_shape)), dtype=np.int64).reshape(in_shape)
    if node.op == "reshape":
        out = idx.reshape(node.out.shape)
    elif node.op == "transpose":
        out = idx.transpose(node.attr("axes"))
    else:
        return None
    if tuple(out.shape) != tuple(node.out.shape):
        return None
    s_in, s_out = to_storage(idx), to_storage(out)
    flat_out = s_out.reshape(-1)
    if np.array_equal(s_in.reshape(-1), flat_out):
        return [("reshape", s_out.shape)]
    for p in _PERMS[1:]:
        t = s_in.transpose(p)
        if np.array_equal(t.reshape(-1), flat_out):
            return [("transpose", p)] + (
                [("reshape", s_out.shape)] if t.shape != s_out.shape else []
            )
    for p1 in _PERMS:
        t = s_in.transpose(p1).reshape(-1)
        for p2 in _PERMS[1:]:
            r = s_out.transpose(_inverse(p2))
            if np.array_equal(t, r.reshape(-1)):
                steps: list[tuple[str, Any]] = []
                if p1 != _PERMS[0]:
                    steps.append(("transpose", p1))
                steps += [("reshape", r.shape), ("transpose", p2)]
                return steps
    return None
