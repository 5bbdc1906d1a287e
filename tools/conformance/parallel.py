"""Run many conformance cases in worker processes, surviving crashes and hangs.

Each worker is a fresh ``spawn`` process that receives one case name at a
time over a pipe and answers with a :class:`CaseOutcome`. A worker that dies
(a segfault in TVM) or runs past the time limit is ended and replaced; its
case is recorded as ``crash`` or ``timeout``. Every case given gets exactly
one outcome.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseOutcome:
    """What running one case gave. ``error_type`` is empty when it passed."""

    name: str
    error_type: str = ""
    message: str = ""
    seconds: float = 0.0
    stages_s: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.error_type


class _CaseError(Exception):
    """Stands for an exception raised in a worker, by type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name


def as_exception(outcome: CaseOutcome) -> BaseException | None:
    """An exception whose type name and message are the outcome's (``None`` if passed)."""
    if outcome.passed:
        return None
    cls = type(outcome.error_type, (_CaseError,), {})
    return cls(outcome.error_type, outcome.message)


def run_one(name: str) -> CaseOutcome:
    """Run case ``name`` through npuc in this process."""
    from tools.conformance.backend import NpucCpuBackend
    from tools.conformance.catalog import load_manifest
    from tools.conformance.runner import run_case

    record = next(r for r in load_manifest() if r.name == name)
    start_s = time.monotonic()
    try:
        timing = run_case(record, NpucCpuBackend)
    except Exception as exc:
        return CaseOutcome(
            name=name,
            error_type=type(exc).__name__,
            message=str(exc)[:4000],
            seconds=time.monotonic() - start_s,
        )
    return CaseOutcome(name=name, seconds=timing.total_s, stages_s=timing.stages_s)


def _worker(conn: Connection) -> None:
    while True:
        name = conn.recv()
        if name is None:
            return
        conn.send(run_one(name))


@dataclass
class _Slot:
    process: Any
    conn: Connection
    case: str | None = None
    start_s: float = 0.0


def run_cases(
    names: Sequence[str],
    *,
    jobs: int,
    timeout_s: float,
    on_outcome: Callable[[CaseOutcome], None] | None = None,
) -> list[CaseOutcome]:
    """Run ``names`` on ``jobs`` workers; outcomes in the order of ``names``."""
    context = multiprocessing.get_context("spawn")
    pending = list(reversed(names))
    outcomes: dict[str, CaseOutcome] = {}

    def start() -> _Slot:
        parent, child = context.Pipe()
        process = context.Process(target=_worker, args=(child,), daemon=True)
        process.start()
        child.close()
        return _Slot(process, parent)

    def give(slot: _Slot) -> None:
        if pending:
            slot.case, slot.start_s = pending.pop(), time.monotonic()
            slot.conn.send(slot.case)
        else:
            slot.case = None

    def record(outcome: CaseOutcome) -> None:
        outcomes[outcome.name] = outcome
        if on_outcome is not None:
            on_outcome(outcome)

    slots = [start() for _ in range(max(1, min(jobs, len(names))))]
    for slot in slots:
        give(slot)
    while any(s.case is not None for s in slots):
        busy = [s for s in slots if s.case is not None]
        ready = wait([s.conn for s in busy] + [s.process.sentinel for s in busy], timeout=1.0)
        for index, slot in enumerate(slots):
            if slot.case is None:
                continue
            if slot.conn in ready and slot.conn.poll():
                try:
                    record(slot.conn.recv())
                    give(slot)
                    continue
                except EOFError:
                    pass
            died = not slot.process.is_alive()
            late = time.monotonic() - slot.start_s > timeout_s
            if died or late:
                slot.process.kill()
                slot.process.join()
                kind = "WorkerCrash" if died else "Timeout"
                what = f"exit code {slot.process.exitcode}" if died else f"over {timeout_s:.0f} s"
                record(CaseOutcome(name=slot.case, error_type=kind, message=what))
                slots[index] = start()
                give(slots[index])
    for slot in slots:
        slot.conn.send(None)
        slot.process.join(timeout=10)
    return [outcomes[n] for n in names]
