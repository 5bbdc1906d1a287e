"""NCHW (graph) <-> NHWC (NPU storage) layout of tensors, shared by compiler and runtime.

A rank-4 tensor ``(1, C, H, W)`` is stored as ``(1, H, W, C)``; lower ranks keep
their row-major bytes: ``(1, A, B)`` as ``(1, 1, A, B)``, ``(1, K)`` and ``(K,)``
as ``(1, 1, 1, K)``. Only batch 1 is stored (``None`` otherwise).
"""

from __future__ import annotations

import numpy as np


def storage_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """The NHWC storage shape of a graph tensor, or ``None`` when the NPU cannot hold it."""
    shape = tuple(int(d) for d in shape)
    if not shape or len(shape) > 4 or min(shape) < 1:
        return None
    if len(shape) == 4:
        n, c, h, w = shape
        return (1, h, w, c) if n == 1 else None
    if len(shape) == 1:
        return (1, 1, 1, shape[0])
    if shape[0] != 1:
        return None
    return (1, 1, 1, shape[1]) if len(shape) == 2 else (1, 1, shape[1], shape[2])


def to_storage(values: np.ndarray) -> np.ndarray:
    """Graph-layout values -> NHWC storage (a view or copy; shape from :func:`storage_shape`)."""
    target = storage_shape(values.shape)
    if target is None:
        raise ValueError(f"shape {values.shape} has no NPU storage layout")
    if values.ndim == 4:
        return values.transpose(0, 2, 3, 1)
    return values.reshape(target)


def from_storage(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """NHWC storage -> the graph's layout of ``shape``."""
    if len(shape) == 4:
        return values.reshape(storage_shape(shape)).transpose(0, 3, 1, 2)
    return values.reshape(shape)
