"""``npuc tune``: MetaSchedule on the hottest kernels, kept only where it beats the hand rules.

Steps of :func:`tune_module`:

1. Legalize and fuse the module exactly as the build does
   (:func:`~npuc.backend.cpu.lowering.fusion_passes`), so that the tuned
   PrimFuncs are the build's PrimFuncs and records match by structural hash
   (:func:`~npuc.backend.cpu.tuning_db.task_module`).
2. :func:`extract_tasks`: one task per distinct kernel, ranked by estimated
   cost (floating-point operations per call times calls per inference);
   the top ``max_tasks`` are tuned.
3. MetaSchedule (evolutionary search, XGBoost cost model) measures up to
   ``trials`` candidates over those tasks in rounds of one batch per task;
   no batch starts after ``time_budget_s`` (:mod:`.tuning_search`).
   All candidates are kept in ``DIR/search/`` (a later run continues from them).
4. Selection: the best records of each task and the hand-scheduled kernel
   (:class:`~npuc.backend.cpu.schedule_pass.ScheduleCpu`) are timed the same
   way (:func:`~.tuning_measure.kernel_seconds`); a tuned schedule is kept only
   when it is at least :data:`MIN_GAIN` faster. The kept records are the
   database the build reads (``DIR/database_*.json``), so ``--tuning-db``
   never makes a kernel slower than the hand rule measured here.
   ``DIR/tuning.json`` lists every task with both times.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tvm
import tvm_ffi
from tvm import tirx
from tvm.s_tir import meta_schedule as ms

from npuc.backend.cpu.lowering import fusion_passes
from npuc.backend.cpu.schedule_pass import RULE_ATTR, ScheduleCpu
from npuc.backend.cpu.tuning_db import DB_FILES, task_module, tuned_function
from npuc.backend.cpu.tuning_measure import kernel_seconds
from npuc.backend.cpu.tuning_search import search
from npuc.backend.cpu.tuning_tasks import TuneOptions, TuningTask, extract_tasks
from npuc.core.errors import InvalidInputError
from npuc.core.fileio import write_text_atomic
from npuc.core.progress import Progress, null_progress
from npuc.core.target import CpuTarget

__all__ = [
    "TaskOutcome",
    "TuneOptions",
    "TuneResult",
    "TuningTask",
    "extract_tasks",
    "hand_scheduled",
    "tune_module",
]

#: A tuned kernel must be this much faster than the hand rule's to be kept (0.03 = 3 %).
MIN_GAIN = 0.03
#: Best records per task re-timed against the hand kernel.
TOP_RECORDS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOutcome:
    """What tuning did for one task; times in microseconds per call (``None``: not measured)."""

    name: str
    calls: int
    flops: float
    hand_rule: str
    hand_us: float | None
    tuned_us: float | None
    used: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "calls": self.calls,
            "flops": self.flops,
            "hand_rule": self.hand_rule,
            "hand_us": self.hand_us,
            "tuned_us": self.tuned_us,
            "used": self.used,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TuneResult:
    """The outcome of :func:`tune_module`: the database folder and one entry per tuned task."""

    db_path: Path
    kernels: int
    trials: int
    search_s: float
    total_s: float
    outcomes: tuple[TaskOutcome, ...] = field(default_factory=tuple)

    @property
    def used(self) -> int:
        """Tasks whose tuned schedule the build will use."""
        return sum(o.used for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        return {
            "db": str(self.db_path),
            "kernels": self.kernels,
            "tuned_tasks": len(self.outcomes),
            "used": self.used,
            "trials": self.trials,
            "seconds": {"search": self.search_s, "total": self.total_s},
            "tasks": [o.to_json() for o in self.outcomes],
        }


def hand_scheduled(task: TuningTask, target: CpuTarget) -> tuple[str, tirx.PrimFunc]:
    """The hand rule's name and kernel for ``task`` (what the build uses without a database)."""
    scheduled = tvm.transform.Sequential([ScheduleCpu(target)])(
        tvm.IRModule({task.name: task.func})
    )
    func = scheduled[task.name]
    rule = str(func.attrs[RULE_ATTR]) if func.attrs and RULE_ATTR in func.attrs else "none"
    return rule, func


def tune_module(
    mod: tvm.IRModule,
    target: CpuTarget,
    db_dir: str | Path,
    options: TuneOptions | None = None,
    *,
    progress: Progress | None = None,
) -> TuneResult:
    """Tune the hottest kernels of ``mod`` for ``target`` into the folder ``db_dir``.

    Parameters
    ----------
    mod
        A float Relax module as ``npuc.midend.pipeline.optimize`` returns it.
    target
        The CPU to tune for (records of another CPU are not used by a build).
    db_dir
        Created if missing; holds the build's database, ``search/`` and
        ``tuning.json`` (see the module docstring).
    options
        Trials, time budget, number of tasks; default :class:`TuneOptions`.
    progress
        Advanced once per measured candidate and once per selected task;
        its total should be ``options.trials + options.max_tasks``.

    Raises
    ------
    InvalidInputError
        ``db_dir`` exists and is not a folder, or holds a corrupt database.
    """
    start_s = time.monotonic()
    options = options if options is not None else TuneOptions()
    progress = progress if progress is not None else null_progress()
    db_dir = Path(db_dir)
    if db_dir.exists() and not db_dir.is_dir():
        raise InvalidInputError(
            f"--db {db_dir}: exists and is not a folder", hint="choose a new folder name"
        )
    (db_dir / "search").mkdir(parents=True, exist_ok=True)
    fused = tvm.transform.Sequential(fusion_passes(target))(mod)
    all_tasks = extract_tasks(fused)
    tasks = [t for t in all_tasks if t.flops > 0][: options.max_tasks]
    search_start_s = time.monotonic()
    search_db, trials = (
        search(tasks, target, db_dir / "search", options, progress, deadline_s=start_s)
        if tasks
        else (None, 0)
    )
    search_s = time.monotonic() - search_start_s
    outcomes = []
    winners: dict[str, ms.database.TuningRecord] = {}
    for task in tasks:
        progress.step(f"timing {task.name}")
        outcome, record = _select(task, target, search_db)
        outcomes.append(outcome)
        if record is not None:
            winners[task.name] = record
    _write_selected(db_dir, [t for t in tasks if t.name in winners], winners)
    result = TuneResult(
        db_path=db_dir,
        kernels=len(all_tasks),
        trials=trials,
        search_s=search_s,
        total_s=time.monotonic() - start_s,
        outcomes=tuple(outcomes),
    )
    write_text_atomic(db_dir / "tuning.json", json.dumps(result.to_json(), indent=2) + "\n")
    return result


def _select(
    task: TuningTask, target: CpuTarget, search_db: ms.database.Database | None
) -> tuple[TaskOutcome, ms.database.TuningRecord | None]:
    """Time the hand kernel and the best records; the winning record if it beats the hand kernel."""
    rule, hand = hand_scheduled(task, target)
    hand_s = kernel_seconds(hand, target)
    best: tuple[float, ms.database.TuningRecord] | None = None
    key = task_module(task.func)
    if search_db is not None and search_db.has_workload(key):
        for record in search_db.get_top_k(search_db.commit_workload(key), TOP_RECORDS):
            seconds = _record_seconds(task, record, target)
            if seconds is not None and (best is None or seconds < best[0]):
                best = (seconds, record)
    hand_s = min(hand_s, kernel_seconds(hand, target))  # timed again, after the candidates
    used = best is not None and best[0] < hand_s * (1.0 - MIN_GAIN)
    outcome = TaskOutcome(
        name=task.name,
        calls=task.calls,
        flops=task.flops,
        hand_rule=rule,
        hand_us=hand_s * 1e6,
        tuned_us=best[0] * 1e6 if best is not None else None,
        used=used,
    )
    return outcome, (best[1] if used and best is not None else None)


def _record_seconds(
    task: TuningTask, record: ms.database.TuningRecord, target: CpuTarget
) -> float | None:
    single = _SingleRecord(record)
    try:
        func = tuned_function(single, task.func, target)
        return kernel_seconds(func, target) if func is not None else None
    except Exception:  # a record that fails to apply or compile is simply not a candidate
        return None


class _SingleRecord:
    """The part of the Database interface :func:`tuned_function` uses, for one record."""

    def __init__(self, record: ms.database.TuningRecord) -> None:
        self.record = record

    def has_workload(self, _mod: tvm.IRModule) -> bool:
        return True

    def query_tuning_record(
        self, _mod: tvm.IRModule, _target: tvm.target.Target, _name: str
    ) -> ms.database.TuningRecord:
        return self.record


def _write_selected(
    db_dir: Path, tasks: list[TuningTask], winners: dict[str, ms.database.TuningRecord]
) -> None:
    """Write the build's database: earlier kept records of other kernels plus this run's winners.

    Records of this run's tasks that lost are dropped. Written in a temporary
    folder and moved into place, so a reader never sees half a database.
    """
    keep: list[ms.database.TuningRecord] = []
    tuned_now = {tvm_ffi.structural_hash(task_module(t.func)) for t in tasks}
    if all((db_dir / name).is_file() for name in DB_FILES):
        from npuc.backend.cpu.tuning_db import open_tuning_db

        for record in open_tuning_db(db_dir).get_all_tuning_records():
            if tvm_ffi.structural_hash(record.workload.mod) not in tuned_now:
                keep.append(record)
    with tempfile.TemporaryDirectory(dir=db_dir, prefix=".db-") as tmp:
        out = ms.database.JSONDatabase(work_dir=tmp)
        for record in [*keep, *(winners[t.name] for t in tasks)]:
            workload = out.commit_workload(record.workload.mod)
            out.commit_tuning_record(
                ms.database.TuningRecord(
                    record.trace, workload, record.run_secs, record.target, record.args_info
                )
            )
        del out
        for name in DB_FILES:
            shutil.move(str(Path(tmp) / name), str(db_dir / name))
