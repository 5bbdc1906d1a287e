"""TVM's thread pool: one per process, configured once, not by each model.

TVM runs parallel kernels on a single process-wide pool. If every loaded
model sized it, an artifact with several CPU parts (or two models in one
process) would keep resizing it under each other. So the pool is sized once:
by :func:`configure_threads` when the application asks (``npuc run
--threads``), or else by the first model loaded, and never again by loading.

Configuring the pool also pins the calling thread to one core (TVM's
affinity mode); :func:`caller_affinity_kept` gives the caller its CPUs back.

TVM caps its pool, when it is created, at ``TVM_NUM_THREADS`` or else at half
the hardware threads on x86 (it assumes hyper-threading): on a 2-CPU machine
the cap was 1, and ``--threads 2`` silently ran one thread (ResNet-50: 178 ms
with 1 or 2 threads; 84 ms with 2 once the cap is lifted). Before the pool is
first configured, :func:`configure_threads` therefore sets ``TVM_NUM_THREADS``
to the CPUs this process may use, unless the environment already sets it; the
pool then holds exactly the requested number of threads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from npuc.core.target import check_num_threads

# TVM's thread-pool affinity mode "big cores" (threading_backend.h: kBig = 1).
_AFFINITY_BIG_CORES = 1


@dataclass(slots=True)
class _PoolState:
    """The size this process gave TVM's pool, or ``None`` before the first configuration."""

    num_threads: int | None = None


# TVM's pool is process-global state; this records what npuc did to it.
_STATE = _PoolState()


def configure_threads(num_threads: int) -> int:
    """Size TVM's thread pool for this process to ``num_threads``; return the size it got.

    Call it once, before running models (``npuc run`` does for ``--threads``).
    Calling it again resizes the pool for every model in the process. TVM
    caps the pool at the CPUs this process may use (or at ``TVM_NUM_THREADS``
    when the environment sets it), so the size returned can be less than
    ``num_threads`` (``--threads 999`` on a 2-CPU machine runs 2 threads).

    Raises
    ------
    InvalidInputError
        ``num_threads < 1``.
    """
    import tvm

    check_num_threads(num_threads)
    if _STATE.num_threads is None:
        _lift_concurrency_cap()
    if _STATE.num_threads != num_threads:
        with caller_affinity_kept():
            tvm.get_global_func("runtime.config_threadpool")(_AFFINITY_BIG_CORES, num_threads)
        _STATE.num_threads = num_threads
    return pool_threads()


def pool_threads() -> int:
    """The number of threads TVM's pool runs parallel kernels on in this process."""
    import tvm

    return int(tvm.get_global_func("runtime.NumThreads")())


def _lift_concurrency_cap() -> None:
    """Let TVM's pool use every CPU of this process (see the module docstring).

    Takes effect only if TVM has not created its pool yet (no parallel kernel
    ran and no pool was configured in this process).
    """
    if "TVM_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ:
        os.environ["TVM_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))


def ensure_threads(default: int) -> int:
    """Configure the pool with ``default`` threads unless it already is; return its size."""
    if _STATE.num_threads is None:
        return configure_threads(default)
    return pool_threads()


def configured_threads() -> int | None:
    """The pool size npuc set in this process, or ``None`` if it has not set one."""
    return _STATE.num_threads


@contextlib.contextmanager
def caller_affinity_kept() -> Iterator[None]:
    """Give the calling thread back the CPUs it had.

    TVM's thread pool pins the thread that configures it or first runs a
    parallel kernel to one core; threads the caller starts later (another
    library's pool, say) would inherit that single core.
    """
    cpus = os.sched_getaffinity(0)
    try:
        yield
    finally:
        if os.sched_getaffinity(0) != cpus:
            os.sched_setaffinity(0, cpus)
