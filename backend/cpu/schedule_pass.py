"""Schedule every PrimFunc of a fused module with the first rule that applies.

Requires: :class:`~npuc.backend.cpu.fuse_ops.FuseOps` done (one PrimFunc per
fused group, loop nests as LegalizeOps wrote them).

Guarantees: every PrimFunc a rule accepted is replaced by its scheduled
version and tagged ``tirx.is_scheduled`` plus ``npuc.schedule_rule`` (the
rule's name). The rules of :data:`npuc.backend.cpu.schedules.RULES` are tried
in order, then :class:`~npuc.backend.cpu.schedules.fallback.FallbackRule`. With
a tuning database (``npuc build --tuning-db DIR``), a function that has a
record there gets the record's schedule instead, rule name :data:`TUNED_RULE`
(``npuc tune`` keeps a record only when it measured faster than the hand
rule, :mod:`npuc.backend.cpu.tuning`). A
rule that raises does not break the build: the next rule is tried and the
failure is recorded in the :class:`ScheduleReport` (and logged at WARNING on
the ``npuc.backend.cpu.schedule`` logger). Semantics unchanged. Idempotent:
scheduled functions are skipped.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import tvm
from tvm import tirx
from tvm.s_tir import meta_schedule as ms

from npuc.backend.cpu.schedules import RULES, ScheduleRule
from npuc.backend.cpu.schedules.fallback import FallbackRule
from npuc.backend.cpu.tuning_db import tuned_function
from npuc.core.target import CpuTarget

LOG = logging.getLogger("npuc.backend.cpu.schedule")

#: Function attribute naming the rule that scheduled a PrimFunc.
RULE_ATTR = "npuc.schedule_rule"
#: Rule name of a function scheduled from the tuning database.
TUNED_RULE = "tuned"
_SCHEDULED_ATTR = "tirx.is_scheduled"


@dataclass(frozen=True, slots=True)
class RuleFailure:
    """A rule raised on a function; the next rule was tried instead."""

    function: str
    rule: str
    error: str


@dataclass(slots=True)
class ScheduleReport:
    """What the schedule pass did, filled in as it runs (one per build).

    ``rule_of`` maps each PrimFunc name to the rule that scheduled it, or to
    ``"none"`` when no rule applied (the function stays a serial loop nest).
    """

    rule_of: dict[str, str] = field(default_factory=dict)
    failures: list[RuleFailure] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Number of functions per rule name, ``"none"`` included."""
        return dict(Counter(self.rule_of.values()))

    def notes(self) -> list[str]:
        """One line per rule failure and per unscheduled function, for build reports."""
        lines = [
            f"schedule rule {f.rule!r} failed on {f.function}: {f.error}" for f in self.failures
        ]
        lines += [
            f"{name}: no schedule rule applied; it runs as a serial loop nest"
            for name, rule in self.rule_of.items()
            if rule == "none"
        ]
        return lines


@tvm.transform.module_pass(opt_level=0, name="npuc.ScheduleCpu")
class ScheduleCpu:
    """Apply the CPU schedule rules to every unscheduled PrimFunc.

    Parameters
    ----------
    target
        The CPU the rules choose vector widths and kernels for.
    rules
        Rules tried in order before the fallback; default
        :data:`npuc.backend.cpu.schedules.RULES`.
    report
        Filled with the rule chosen per function and any failures; a fresh
        one when ``None`` (see :attr:`report`).
    tuning_db
        A MetaSchedule database (:func:`~npuc.backend.cpu.tuning_db.open_tuning_db`)
        whose records are applied before the rules; ``None``: hand rules only.
    """

    def __init__(
        self,
        target: CpuTarget,
        rules: Sequence[ScheduleRule] | None = None,
        report: ScheduleReport | None = None,
        tuning_db: ms.database.Database | None = None,
    ) -> None:
        self.target = target
        self.tuning_db = tuning_db
        self.rules: tuple[ScheduleRule, ...] = (
            *(RULES if rules is None else rules),
            FallbackRule(),
        )
        self.report = report if report is not None else ScheduleReport()

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        start_s = time.monotonic()
        updates: dict[tvm.ir.GlobalVar, tirx.PrimFunc] = {}
        for gvar, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc) or _is_scheduled(func):
                continue
            scheduled = self._schedule(gvar.name_hint, func)
            if scheduled is not None:
                updates[gvar] = scheduled
        if updates:
            mod = mod.clone()  # never mutate the caller's module
            for gvar, func in updates.items():
                mod.update_func(gvar, func)
        self.report.seconds += time.monotonic() - start_s
        LOG.debug("schedule rules: %s in %.2f s", self.report.counts(), self.report.seconds)
        return mod

    def _schedule(self, name: str, func: tirx.PrimFunc) -> tirx.PrimFunc | None:
        tuned = self._tuned(name, func)
        if tuned is not None:
            return tuned
        for rule in self.rules:
            try:
                result = rule.apply(func, self.target)
            except Exception as exc:
                failure = RuleFailure(name, rule.name, f"{type(exc).__name__}: {_first_line(exc)}")
                self.report.failures.append(failure)
                LOG.warning("schedule rule %r failed on %s: %s", rule.name, name, failure.error)
                continue
            if result is not None:
                self.report.rule_of[name] = rule.name
                LOG.debug("%s: scheduled by %s", name, rule.name)
                return result.with_attr(_SCHEDULED_ATTR, True).with_attr(RULE_ATTR, rule.name)
        self.report.rule_of[name] = "none"
        LOG.debug("%s: no rule applied", name)
        return None

    def _tuned(self, name: str, func: tirx.PrimFunc) -> tirx.PrimFunc | None:
        if self.tuning_db is None:
            return None
        try:
            tuned = tuned_function(self.tuning_db, func, self.target)
        except Exception as exc:  # a record that no longer applies: the hand rules take over
            failure = RuleFailure(name, TUNED_RULE, f"{type(exc).__name__}: {_first_line(exc)}")
            self.report.failures.append(failure)
            LOG.warning("tuned record failed on %s: %s", name, failure.error)
            return None
        if tuned is None:
            return None
        self.report.rule_of[name] = TUNED_RULE
        LOG.debug("%s: scheduled from the tuning database", name)
        return tuned.with_attr(_SCHEDULED_ATTR, True).with_attr(RULE_ATTR, TUNED_RULE)


def _is_scheduled(func: tirx.PrimFunc) -> bool:
    attrs = func.attrs
    return attrs is not None and _SCHEDULED_ATTR in attrs and bool(attrs[_SCHEDULED_ATTR])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else "(no message)"
