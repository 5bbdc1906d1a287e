"""A small progress bar on standard error for long work.

Shown only when standard error is a terminal and the caller did not ask for
machine-readable output; otherwise every call is a no-op, so library code can
report progress unconditionally.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


class Progress:
    """Report ``done/total`` steps of one task, with the current step's name."""

    def __init__(
        self, total: int, desc: str, *, enabled: bool | None = None, stream: TextIO | None = None
    ) -> None:
        self.total = max(total, 1)
        self.desc = desc
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._start_s = time.monotonic()

    def step(self, note: str = "", n: int = 1) -> None:
        """Mark ``n`` more steps done; ``note`` names what runs next."""
        self.done = min(self.done + n, self.total)
        self._draw(note)

    def _draw(self, note: str) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * self.done / self.total)
        elapsed_s = time.monotonic() - self._start_s
        bar = "#" * filled + "-" * (width - filled)
        line = f"\r{self.desc} [{bar}] {self.done}/{self.total} {elapsed_s:5.1f}s {note}"
        self.stream.write(line[:120].ljust(120))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        self._draw("")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def null_progress() -> Progress:
    """A disabled progress bar for callers that did not pass one."""
    return Progress(1, "", enabled=False)
