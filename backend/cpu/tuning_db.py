"""The tuning database a build reads: open it, and find a PrimFunc's tuned schedule.

``npuc tune`` (:mod:`.tuning`) writes, in its ``--db`` folder, a MetaSchedule
JSON database (``database_workload.json`` + ``database_tuning_record.json``)
that holds at most one record per kernel: the best tuned schedule, and only
when it measured faster than the hand rule's kernel. ``npuc build
--tuning-db DIR`` opens it with :func:`open_tuning_db`; the schedule pass
(:class:`~npuc.backend.cpu.schedule_pass.ScheduleCpu`) asks
:func:`tuned_function` for every PrimFunc before trying the hand rules.

A kernel is identified by the structural hash of :func:`task_module` of its
PrimFunc as :class:`~npuc.backend.cpu.fuse_ops.FuseOps` leaves it, so tuning
and building must run the same legalization and fusion (they do: both call
:func:`npuc.backend.cpu.lowering.fusion_passes`).
"""

from __future__ import annotations

from pathlib import Path

import tvm
from tvm import s_tir, tirx
from tvm.s_tir import meta_schedule as ms

from npuc.core.errors import InvalidInputError
from npuc.core.target import CpuTarget

#: Files of a MetaSchedule JSON database, in the order MetaSchedule reads them.
DB_FILES = ("database_workload.json", "database_tuning_record.json")
_GLOBAL_SYMBOL = "global_symbol"


def task_module(func: tirx.PrimFunc) -> tvm.IRModule:
    """The one-function module MetaSchedule tunes and the database is keyed by.

    ``func`` becomes ``main`` (with ``global_symbol = "main"``); its other
    attributes are kept, so two kernels share a record exactly when they are
    structurally equal.
    """
    return tvm.IRModule({"main": func.with_attr(_GLOBAL_SYMBOL, "main")})


def check_tuning_db_path(path: Path) -> None:
    """Raise :class:`InvalidInputError` unless ``path`` is a folder holding both database files."""
    if not path.is_dir():
        raise InvalidInputError(
            f"tuning database {path}: no such folder",
            hint="pass the folder that `npuc tune model.onnx --db DIR` wrote",
        )
    missing = [name for name in DB_FILES if not (path / name).is_file()]
    if missing:
        if (path / "search").is_dir():
            raise InvalidInputError(
                f"tuning database {path}: {', '.join(missing)} missing; the tuning run in "
                "this folder did not finish (interrupted or killed)",
                hint="run the same `npuc tune ... --db DIR` again: it continues from the "
                "candidates in DIR/search and writes the database; or drop --tuning-db",
            )
        raise InvalidInputError(
            f"tuning database {path}: {', '.join(missing)} missing; this folder is not a "
            "tuning database",
            hint="run `npuc tune model.onnx --db DIR` first, or drop --tuning-db",
        )


def open_tuning_db(path: str | Path) -> ms.database.JSONDatabase:
    """Open the database ``npuc tune`` wrote in the folder ``path``.

    Raises
    ------
    InvalidInputError
        The folder or one of its files (:data:`DB_FILES`) is missing, or a
        file does not parse as a MetaSchedule database (the message names it).
    """
    path = Path(path)
    check_tuning_db_path(path)
    try:
        return ms.database.JSONDatabase(work_dir=str(path), allow_missing=False)
    except Exception as exc:  # TVM raises RuntimeError/ValueError/TVMError on bad JSON
        text = str(exc).strip().splitlines()
        raise InvalidInputError(
            f"tuning database {path} is corrupt: {text[-1] if text else type(exc).__name__}",
            hint="delete the folder and tune again (`npuc tune model.onnx --db DIR`)",
        ) from exc


def tuned_function(
    db: ms.database.Database, func: tirx.PrimFunc, target: CpuTarget
) -> tirx.PrimFunc | None:
    """``func`` scheduled by its database record, or ``None`` when it has none.

    A record tuned for another CPU (its target's ``mcpu`` differs from
    ``target.cpu_name``) is not used: its vector widths and tiles were chosen
    and measured for that CPU. The result keeps ``func``'s attributes (no
    ``global_symbol`` is added).
    """
    key = task_module(func)
    if not db.has_workload(key):
        return None
    record = db.query_tuning_record(key, target.to_tvm(), "main")
    if record is None or record_cpu(record) not in ("", target.cpu_name):
        return None
    sch = s_tir.Schedule(key)
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    tuned = sch.mod["main"]
    original = func.attrs[_GLOBAL_SYMBOL] if func.attrs and _GLOBAL_SYMBOL in func.attrs else None
    return (
        tuned.without_attr(_GLOBAL_SYMBOL)
        if original is None
        else tuned.with_attr(_GLOBAL_SYMBOL, original)
    )


def record_cpu(record: ms.database.TuningRecord) -> str:
    """The ``mcpu`` of the target a record was measured on (``""`` when unknown)."""
    target = record.target
    if target is None:
        return ""
    mcpu = target.attrs.get("mcpu") if hasattr(target, "attrs") else None
    return str(mcpu) if mcpu is not None else ""
