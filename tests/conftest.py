"""Session-wide hooks: the fuzz suites' case and outcome counts at the end of the run."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.tooling.fuzz import TALLIES

    if TALLIES:
        terminalreporter.section("fuzz suites (cases and outcomes)")
        for tally in TALLIES:
            terminalreporter.write_line(tally.summary())
