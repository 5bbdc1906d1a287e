"""BLAS threading for the quantizer's numpy executors.

The executors run many small and medium GEMMs (a batch of 1-8 images per
layer). OpenBLAS's worker threads wait for each other by spinning, so on a
shared machine with more runnable jobs than cores a 2-thread GEMM loses its
time slice and runs many times slower than on one thread (measured on the
2-core build machine at load 14: a MobileNetV2 layer set took 40 ms on one
thread, 530 ms on two; bench/results/quantize_speed.md). The executors
therefore run their BLAS on one thread; the quantizer gets its parallelism
from overlapping work in threads that block rather than spin
(:mod:`.calibrate`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, TypeVar

from threadpoolctl import ThreadpoolController

P = ParamSpec("P")
R = TypeVar("R")
_controller: ThreadpoolController | None = None


def one_blas_thread() -> AbstractContextManager[Any]:
    """A context in which numpy's BLAS uses one thread (restored on exit)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def blas_one_thread(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator: ``func`` runs inside :func:`one_blas_thread`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with one_blas_thread():
            return func(*args, **kwargs)

    return wrapper
