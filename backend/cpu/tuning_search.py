"""The MetaSchedule search of ``npuc tune``: tasks, builder, budget and progress.

Called by :func:`npuc.backend.cpu.tuning.tune_module`. Uses TVM's
evolutionary search with the XGBoost cost model (the ``tune`` extra installs
``xgboost-cpu``), a smaller population than TVM's default (a search round
on 2 cores then takes seconds, not minutes), the builder of
:func:`~npuc.backend.cpu.tuning_measure.build_candidate`, and a measure
callback that advances the progress bar and stops every task once the time
budget is spent.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from npuc.backend.cpu.tuning_db import task_module
from npuc.backend.cpu.tuning_measure import build_candidate
from npuc.backend.cpu.tuning_tasks import TuneOptions, TuningTask
from npuc.core.errors import NpucError, UnsupportedError
from npuc.core.progress import Progress
from npuc.core.target import CpuTarget

#: Evolutionary search population (TVM's default 512 takes minutes per round on 2 cores).
POPULATION = 128
#: Python packages MetaSchedule needs that the TVM wheel does not declare.
NEEDED = ("xgboost", "cloudpickle", "psutil")


def check_dependencies() -> None:
    """Raise :class:`UnsupportedError` with the install command if a tuning package is missing."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise UnsupportedError(
            f"npuc tune needs the Python packages {', '.join(missing)}, which are not installed",
            hint="pip install 'npuc[tune]' (or: pip install xgboost-cpu cloudpickle psutil)",
        )


def _register_cpu_intrinsics_only() -> None:
    """Import only the x86 tensor intrinsics, not all of ``tvm.s_tir.tensor_intrin``.

    ``TuneContext`` imports the whole package, whose CUDA intrinsics take
    ~25 s to parse (minutes on a loaded machine) and are never used for an
    LLVM CPU target. Registering the package without running its
    ``__init__`` and importing its ``x86`` module makes that import a no-op.
    Nothing is done when the package is already imported.
    """
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    sys.modules[name] = importlib.util.module_from_spec(spec)
    importlib.import_module(f"{name}.x86")


def _log_to_files_only() -> None:
    """Drop MetaSchedule's console handler: its log lines would mix with npuc's output
    (``--json`` prints one JSON object on standard output). The log files in
    ``search/logs/`` keep everything."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:
            logger.removeHandler(handler)


@derived_object
class _ProgressCallback(ms.measure_callback.PyMeasureCallback):
    """Counts measured candidates and advances the progress bar."""

    def __init__(self, progress: Progress, name: str) -> None:
        self.progress = progress
        self.name = name
        self.measured = 0

    def apply(
        self,
        task_scheduler: ms.task_scheduler.TaskScheduler,
        task_id: int,
        measure_candidates: list[ms.MeasureCandidate],
        builder_results: list[ms.builder.BuilderResult],
        runner_results: list[ms.runner.RunnerResult],
    ) -> None:
        self.measured += len(runner_results)
        self.progress.step(f"searching {self.name}", n=len(runner_results))


class TuningInterrupted(NpucError):
    """``npuc tune`` stopped by Ctrl-C (SIGINT) between two search batches; exit code 130."""

    exit_code = 130


@contextlib.contextmanager
def _stop_on_interrupt() -> Iterator[threading.Event]:
    """Turn the first SIGINT into a stop request (an event checked between batches).

    MetaSchedule's builder and runner catch ``KeyboardInterrupt`` raised in
    their Python callbacks and count it as a failed candidate, so a plain
    Ctrl-C never stopped the search. A second SIGINT raises
    ``KeyboardInterrupt`` at once. Only the main thread can own signals:
    elsewhere the event is never set.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request_stop(_signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def search(
    tasks: list[TuningTask],
    target: CpuTarget,
    work_dir: Path,
    options: TuneOptions,
    progress: Progress,
    *,
    deadline_s: float,
) -> tuple[ms.database.Database, int]:
    """Run MetaSchedule on ``tasks``; return the search database and candidates measured.

    The tasks are searched in rounds, one batch per task per round, most
    expensive task first: MetaSchedule's own task schedulers dispatch a first
    batch of every task before measuring any (minutes for a large model),
    so a time budget could not stop them in between. Each batch continues
    from the task's best candidates in the database; the cost model is shared.
    A batch is sized to fit the time left, from the previous batch's time per
    candidate; no batch starts with less than half the previous batch's time
    left before the deadline.

    Parameters
    ----------
    tasks
        Kernels to tune (non-empty), most expensive first.
    work_dir
        MetaSchedule's folder: its JSON database (every measured candidate,
        kept across runs) and ``logs/``.
    options
        ``trials`` bounds the candidates measured in total.
    deadline_s
        Start of tuning (``time.monotonic()``); the search ends by
        ``deadline_s + options.time_budget_s``, give or take one batch.

    Raises
    ------
    TuningInterrupted
        Ctrl-C: the search stopped after the batch under way; the candidates
        measured so far stay in ``work_dir`` (a new run continues from them).
    """
    check_dependencies()
    _register_cpu_intrinsics_only()
    end_s = deadline_s + options.time_budget_s
    builder = ms.builder.LocalBuilder(f_build=build_candidate, max_workers=target.num_cores)
    runner = ms.runner.LocalRunner()
    database = ms.database.JSONDatabase(work_dir=str(work_dir))
    cost_model = ms.cost_model.XGBModel(num_tuning_cores=target.num_cores, tree_method="auto")
    with contextlib.redirect_stdout(sys.stderr):  # its first line, before the handler goes
        loggers = ms.logging.get_loggers_from_work_dir(str(work_dir), [t.name for t in tasks])
    _log_to_files_only()
    logger_of = {t.name: logger for t, logger in zip(tasks, loggers, strict=True)}
    with _stop_on_interrupt() as stop:
        return _search_rounds(tasks, target, work_dir, options, progress, stop, end_s=end_s,
                              builder=builder, runner=runner, database=database,
                              cost_model=cost_model, logger_of=logger_of)  # fmt: skip


def _search_rounds(
    tasks: list[TuningTask],
    target: CpuTarget,
    work_dir: Path,
    options: TuneOptions,
    progress: Progress,
    stop: threading.Event,
    *,
    end_s: float,
    builder: ms.builder.Builder,
    runner: ms.runner.Runner,
    database: ms.database.Database,
    cost_model: ms.cost_model.CostModel,
    logger_of: dict[str, logging.Logger],
) -> tuple[ms.database.Database, int]:
    """The batches of :func:`search` (same contract), stopping early when ``stop`` is set."""
    batch = default_trials_per_iter(options.trials, len(tasks))
    seeds = ms.utils.fork_seed(options.seed, n=options.trials * len(tasks))
    measured = 0
    per_candidate_s: float | None = None
    last_batch_s = 0.0
    while measured < options.trials:
        for task in tasks:
            if stop.is_set():
                raise TuningInterrupted(
                    f"npuc tune interrupted after {measured} measured candidates",
                    hint=f"they are kept in {work_dir}: run the same npuc tune command "
                    "again to continue (no database for npuc build was written)",
                )
            left_s = end_s - time.monotonic()
            # Each batch also has a fixed cost (the evolutionary search): no batch
            # starts with less than half the last batch's time left.
            if measured >= options.trials or left_s <= 0.5 * last_batch_s:
                return database, measured
            size = min(batch, options.trials - measured)
            if per_candidate_s is not None:
                size = max(1, min(size, int(left_s / per_candidate_s)))
            start_s = time.monotonic()
            done = _one_batch(task, target, work_dir, size, seeds[measured], progress, builder,
                              runner, database, cost_model, logger_of[task.name])  # fmt: skip
            if done == 0:
                return database, measured  # the search space is exhausted
            measured += done
            last_batch_s = time.monotonic() - start_s
            per_candidate_s = last_batch_s / done
    return database, measured


def _one_batch(
    task: TuningTask,
    target: CpuTarget,
    work_dir: Path,
    size: int,
    seed: int,
    progress: Progress,
    builder: ms.builder.Builder,
    runner: ms.runner.Runner,
    database: ms.database.Database,
    cost_model: ms.cost_model.CostModel,
    logger: logging.Logger,
) -> int:
    """Search and measure one batch of ``size`` candidates for ``task``; return how many ran."""
    counter = _ProgressCallback(progress, task.name)
    context = ms.TuneContext(
        mod=task_module(task.func),
        target=target.to_tvm(),
        space_generator="post-order-apply",
        search_strategy=ms.search_strategy.EvolutionarySearch(
            population_size=POPULATION, init_min_unmeasured=POPULATION // 4
        ),
        task_name=task.name,
        logger=logger,
        rand_state=seed,
        num_threads=target.num_cores,
    ).clone()
    ms.tune_tasks(
        tasks=[context],
        task_weights=[float(task.calls)],
        work_dir=str(work_dir),
        max_trials_global=size,
        num_trials_per_iter=size,
        builder=builder,
        runner=runner,
        database=database,
        cost_model=cost_model,
        measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), counter],
        task_scheduler="round-robin",
    )
    return counter.measured


def default_trials_per_iter(trials: int, num_tasks: int) -> int:
    """Candidates measured per search round of one task: 4..32, about ``trials / num_tasks``."""
    return max(4, min(32, math.ceil(trials / max(num_tasks, 1))))
