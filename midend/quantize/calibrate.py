"""Observe: run the float layer graph over calibration samples and collect statistics.

Requires: a :class:`~.graph.Graph` and samples as dicts of input arrays.
Guarantees: one :class:`~.observers.Observer` per float tensor the quantizer
may quantize (graph inputs and float node outputs), updated once per sample;
the float executor is the one the accuracy report compares against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from npuc.core.progress import Progress

from .config import QuantConfig
from .float_exec import FloatExecutor
from .graph import Graph
from .observers import Observer
from .threads import blas_one_thread


def float_tensors(graph: Graph) -> list[str]:
    """Names of the float tensors of ``graph`` (inputs first, then node outputs in order)."""
    names = [name for name, ty in graph.inputs if ty.is_float]
    names += [node.name for node in graph.nodes if node.out.is_float]
    return names


@blas_one_thread
def calibrate(
    graph: Graph,
    samples: Iterable[Mapping[str, np.ndarray]],
    config: QuantConfig,
    *,
    executor: FloatExecutor | None = None,
    total: int = 1,
    show_progress: bool = False,
) -> tuple[dict[str, Observer], int]:
    """Observers for every float tensor, and the number of samples seen.

    Raises
    ------
    InvalidInputError
        If a sample lacks an input or has the wrong shape (from the executor).
    """
    executor = executor or FloatExecutor(graph)
    kinds = {node.name: node.op for node in graph.nodes}
    observers: dict[str, Observer] = {}
    for name in float_tensors(graph):
        cfg = config.for_layer(name, kinds.get(name, "input"))
        observers[name] = Observer(
            name,
            bins=cfg.histc_bins,
            momentum=cfg.running_statistic_momentum,
            trim_infinity=config.trim_infinity,
        )
    seen = 0
    # The observers of batch k update in a worker thread while the executor runs batch
    # k + 1 (numpy releases the GIL in both); one batch at a time in the worker, in order,
    # so every observer sees its samples in the same order as a plain loop.
    with (
        Progress(total, "calibrating", enabled=None if show_progress else False) as bar,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="observe") as worker,
    ):
        pending: Future[None] | None = None
        for sample in samples:
            try:
                env = executor.run(sample)
            except Exception:
                if pending is not None:
                    pending.result()  # an earlier batch's error comes first
                raise
            batch = next(iter(sample.values())).shape[0] if executor.batchable else 1
            if pending is not None:
                pending.result()
            pending = worker.submit(_observe, observers, env, batch)
            seen += batch
            bar.step(f"sample {seen}", n=batch)
        if pending is not None:
            pending.result()
    return observers, seen


def _observe(observers: Mapping[str, Observer], env: Mapping[str, Any], batch: int) -> None:
    """Update every observer with each of the ``batch`` samples in ``env``, in order."""
    for name, observer in observers.items():
        value = np.asarray(env[name])
        for i in range(batch):
            observer.update(value[i : i + 1] if batch > 1 else value)
