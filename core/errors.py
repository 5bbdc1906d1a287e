"""Errors that npuc reports to users.

Every error a user can cause (bad file, unsupported operator, wrong input
shape, corrupt program, simulator fault) is an :class:`NpucError` subclass.
The CLI prints ``error: <message>`` plus an optional ``hint:`` line and exits
with the class's ``exit_code``; it prints a traceback only with ``--debug``.
Anything else escaping to the CLI is a bug in npuc and exits with 1.

Exit codes (documented in docs/cli.md):

===  =====================================================================
 0   success
 1   internal error (a bug in npuc: please report it)
 2   command-line usage error (argparse)
 3   invalid input: missing, unreadable, corrupt or inconsistent file/value
 4   unsupported model: operators or features npuc cannot compile
 5   simulator fault: the program ran but faulted (address, overflow, deadlock)
===  =====================================================================
"""

from __future__ import annotations

from collections.abc import Sequence


class NpucError(Exception):
    """Base class of user-facing errors.

    Parameters
    ----------
    message
        One sentence naming the file, node or field and what is wrong.
    hint
        Optional: what the user can do about it.
    """

    exit_code: int = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_json(self) -> dict[str, object]:
        """Machine-readable form used by ``--json``."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class InvalidInputError(NpucError):
    """A file or value given by the user is missing, unreadable or malformed."""

    exit_code = 3


class UnsupportedError(NpucError):
    """The model uses operators or features npuc cannot compile.

    ``nodes`` holds one entry per offending node (objects with ``to_json()``,
    or strings) so ``--json`` and callers get the list in structured form;
    the message names them all on one line.
    """

    exit_code = 4

    def __init__(
        self, message: str, *, hint: str | None = None, nodes: Sequence[object] = ()
    ) -> None:
        super().__init__(message, hint=hint)
        self.nodes = tuple(nodes)

    def to_json(self) -> dict[str, object]:
        data = super().to_json()
        if self.nodes:
            data["nodes"] = [n.to_json() if hasattr(n, "to_json") else str(n) for n in self.nodes]
        return data


class SimulatorFault(NpucError):
    """A program faulted in the NPU simulator."""

    exit_code = 5


def describe(value: object, limit: int = 60) -> str:
    """A short ``repr`` of a user-given value for error messages; never fails.

    Integers too long to print (Python refuses over 4,300 digits) are described
    by their bit length; other reprs are cut to ``limit`` characters.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<an integer of {value.bit_length()} bits>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
