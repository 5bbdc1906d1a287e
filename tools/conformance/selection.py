"""Which conformance cases npuc is tested on, and which of them the default tier runs.

Claimed cases: every case of the manifest whose graph (subgraphs included)
uses only operators of npuc's claimed-op registry
(``npuc.frontend.onnx.rules.RULES_BY_OP``, default ONNX domain). A case of a
claimed operator that npuc's legality rules then decline (an attribute, an
element type or an opset npuc does not take) is still a claimed case: it must
be declined cleanly, with :class:`npuc.core.errors.UnsupportedError`.

Default tier (:func:`default_subset`), a deterministic rule: for each tested
operator (``CaseRecord.op``), in the manifest's order (onnx's module and
definition order), the first :data:`PASSING_PER_OP` cases not listed as
expected failures, plus the first :data:`LISTED_PER_OP` listed ones. The slow
tier runs every claimed case.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable

from tools.conformance.catalog import CaseRecord

PASSING_PER_OP = 3
LISTED_PER_OP = 1


def claimed_ops() -> frozenset[str]:
    """Operators npuc claims (its frontend registry)."""
    from npuc.frontend.onnx.rules import RULES_BY_OP

    return frozenset(RULES_BY_OP)


def claimed_cases(records: Iterable[CaseRecord], ops: Collection[str]) -> list[CaseRecord]:
    """The records whose graphs use only operators in ``ops``."""
    return [r for r in records if r.ops and all(op in ops for op in r.ops)]


def default_subset(records: Iterable[CaseRecord], listed: Collection[str]) -> list[CaseRecord]:
    """The default tier's cases among ``records`` (see the module docstring)."""
    passing: Counter[str] = Counter()
    failing: Counter[str] = Counter()
    chosen: list[CaseRecord] = []
    for record in records:
        if record.name in listed:
            if failing[record.op] < LISTED_PER_OP:
                failing[record.op] += 1
                chosen.append(record)
        elif passing[record.op] < PASSING_PER_OP:
            passing[record.op] += 1
            chosen.append(record)
    return chosen
