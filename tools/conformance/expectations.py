"""The expected failures of claimed conformance cases, and how an outcome is judged.

The list lives in ``expected_failures.toml`` beside this file, as groups:

.. code-block:: toml

    [[group]]
    kind = "declined"           # one of KINDS
    error = "UnsupportedError"  # the exception type the case must raise
    reason = "supported for opsets 9..22 only"
    cases = ["test_reshape_negative_dim", ...]

The list may only shrink. :func:`judge` fails a case that passes while listed
(prune it) as well as an unlisted case that fails, and a listed case that
fails differently from what is listed (another exception type, or for
``declined`` a message without the listed reason).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from npuc.core.fileio import write_text_atomic

EXPECTED_FAILURES_PATH = (
    Path(__file__).resolve().parents[2] / "tests" / "conformance" / "expected_failures.toml"
)

KINDS: dict[str, str] = {
    "npuc-bug": "npuc accepts the case and gives a wrong result or an unclear error",
    "tvm-bug": "TVM's importer or lowering fails or computes wrongly",
    "numerical": "a float difference beyond onnx's rtol 1e-3 / atol 1e-7",
    "harness": "the case needs what an ahead-of-time compiler cannot take "
    "(non-tensor or empty inputs, shapes computed from input values)",
    "declined": "npuc's legality rules reject the case with UnsupportedError (by design)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedFailure:
    """Why one claimed case is expected to fail, and how."""

    case: str
    kind: str
    error: str
    reason: str

    def mismatch(self, exc: BaseException) -> str | None:
        """``None`` when ``exc`` is the listed failure, else what differs."""
        if type(exc).__name__ != self.error:
            return f"listed as {self.error}, raised {type(exc).__name__}: {first_line(exc)}"
        if self.kind == "declined" and self.reason not in str(exc):
            return f"declined for another reason than {self.reason!r}: {first_line(exc)}"
        return None


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (or its type)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def load_expected_failures(path: Path = EXPECTED_FAILURES_PATH) -> dict[str, ExpectedFailure]:
    """Read the list; reject unknown kinds, missing fields and duplicate cases."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    listed: dict[str, ExpectedFailure] = {}
    for index, group in enumerate(data.get("group", [])):
        missing = {"kind", "error", "reason", "cases"} - set(group)
        if missing:
            raise ValueError(f"{path}: group {index} lacks {sorted(missing)}")
        if group["kind"] not in KINDS:
            raise ValueError(f"{path}: group {index} has unknown kind {group['kind']!r}")
        for case in group["cases"]:
            if case in listed:
                raise ValueError(f"{path}: case {case} is listed twice")
            listed[case] = ExpectedFailure(
                case=case, kind=group["kind"], error=group["error"], reason=group["reason"]
            )
    return listed


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a case's outcome compares with the list: ``status`` and a message."""

    status: str  # "passed", "xfail" (listed and failed as listed), or "FAILED"
    message: str


def judge(case: str, exc: BaseException | None, listed: ExpectedFailure | None) -> Verdict:
    """Compare one case's outcome (``exc`` is ``None`` when it passed) with the list."""
    if exc is None:
        if listed is None:
            return Verdict("passed", "")
        return Verdict(
            "FAILED",
            f"{case} passes but expected_failures.toml lists it ({listed.kind}: "
            f"{listed.reason}); remove it from the list",
        )
    if listed is None:
        return Verdict("FAILED", f"{type(exc).__name__}: {first_line(exc)}")
    differs = listed.mismatch(exc)
    if differs is not None:
        return Verdict("FAILED", f"{case}: {differs}")
    return Verdict("xfail", f"{listed.kind}: {listed.reason}")


# One entry of npuc's one-line UnsupportedError listing:
# "...: <node> (<Op>, opset <n>): <reason>; <node> (<Op>, opset <n>): <reason>".
_NODE = r"\S+ \((?:[\w.]+), opset \d+\): "
_DECLINED_ENTRY = re.compile(_NODE + r"(?P<reason>.+?)(?=; " + _NODE + r"|$)")

_HEADER = """\
# Claimed onnx node cases that fail today, grouped by why (see tools/conformance/expectations.py).
# This list may only shrink: a listed case that passes fails the tests. `kind` is one of
# expectations.KINDS; `error` is the exception type the case must raise; for kind "declined"
# `reason` is text that npuc's UnsupportedError message must contain.
# `tools/conformance_report.py --update-expected` prunes passing cases and follows npuc's
# changed decline reasons; any other entry is written by hand, with its reason.
"""


def declined_reason(message: str) -> str | None:
    """The first legality reason in an npuc UnsupportedError message, if it lists one."""
    match = _DECLINED_ENTRY.search(message)
    return match.group("reason").strip() if match else None


def write_expected_failures(
    entries: Iterable[ExpectedFailure], path: Path = EXPECTED_FAILURES_PATH
) -> None:
    """Write ``entries`` as groups of (kind, error, reason), kinds in KINDS order."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for e in entries:
        groups.setdefault((e.kind, e.error, e.reason), []).append(e.case)
    order = list(KINDS)
    lines = [_HEADER]
    for kind, error, reason in sorted(groups, key=lambda k: (order.index(k[0]), k[2], k[1])):
        lines += ["[[group]]", f"kind = {json.dumps(kind)}", f"error = {json.dumps(error)}"]
        lines += [f"reason = {json.dumps(reason)}", "cases = ["]
        lines += [f"  {json.dumps(c)}," for c in sorted(groups[(kind, error, reason)])]
        lines += ["]", ""]
    write_text_atomic(path, "\n".join(lines))
