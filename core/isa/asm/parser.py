"""Parsing of assembly text with the lark grammar, and located error reporting.

Guarantee: :func:`parse` returns a lark tree or raises InvalidInputError whose
message reads ``file:line:column: unexpected <token>; expected one of: ...``
and whose hint shows the offending line with a caret under the column.
"""

from __future__ import annotations

import functools
from pathlib import Path

import lark
from lark.lexer import PatternStr

from npuc.core.errors import InvalidInputError

_GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")

# Friendly names of the grammar's named terminals, for "expected ..." lists.
_TERMINAL_NAMES = {
    "NAME": "name",
    "INT": "integer",
    "HEX": "hex integer",
    "FLOAT": "float",
    "DIMS": "dimensions like 8x8x16",
    "STRING": '"string"',
    "_NL": "end of line",
    "$END": "end of file",
}


@functools.cache
def _parser() -> lark.Lark:
    return lark.Lark(
        _GRAMMAR_PATH.read_text(encoding="utf-8"),
        parser="lalr",
        maybe_placeholders=False,
    )


def _terminal_display(name: str) -> str:
    if name in _TERMINAL_NAMES:
        return _TERMINAL_NAMES[name]
    for term in _parser().terminals:
        if term.name == name and isinstance(term.pattern, PatternStr):
            return f"'{term.pattern.value}'"
    return name.lower()


HINT_WIDTH = 100  # longest source excerpt an error shows


def location_hint(text: str, line: int, column: int) -> str:
    """The source line ``line`` with a caret under ``column`` (both 1-based).

    A line longer than ``HINT_WIDTH`` is cut to the part around ``column``.
    """
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    src = lines[line - 1].expandtabs(1)
    caret = max(column, 1) - 1
    if len(src) > HINT_WIDTH:
        start = max(0, min(caret - HINT_WIDTH // 2, len(src) - HINT_WIDTH))
        tail = "..." if start + HINT_WIDTH < len(src) else ""
        src = ("..." if start else "") + src[start : start + HINT_WIDTH] + tail
        caret = caret - start + (3 if start else 0)
    return f"{src}\n{' ' * caret}^"


def located_error(
    source: str, text: str, line: int, column: int, message: str, hint: str | None = None
) -> InvalidInputError:
    """An InvalidInputError reading ``source:line:column: message`` with the line shown."""
    shown = location_hint(text, line, column)
    full_hint = "\n".join(h for h in (shown, hint) if h)
    return InvalidInputError(f"{source}:{line}:{column}: {message}", hint=full_hint or None)


def parse(text: str, *, source: str) -> lark.Tree:
    """Parse assembly ``text`` (from ``source``, used in messages) into a lark tree."""
    if not text.endswith("\n"):
        text += "\n"
    try:
        return _parser().parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        if isinstance(exc, lark.exceptions.UnexpectedCharacters):
            what = repr(exc.char)
            expected = exc.allowed
        elif isinstance(exc, lark.exceptions.UnexpectedToken):
            tok = exc.token
            shown = str(tok) if len(str(tok)) <= 40 else str(tok)[:37] + "..."
            what = "end of line" if tok.type == "_NL" else f"{tok.type.lower()} {shown!r}"
            if tok.type == "$END":
                what = "end of file"
            expected = exc.expected
        else:
            what = "end of file"
            expected = getattr(exc, "expected", set())
        names = sorted({_terminal_display(n) for n in expected})
        line = getattr(exc, "line", 0) or 0
        column = getattr(exc, "column", 0) or 0
        message = f"unexpected {what}; expected one of: {', '.join(names)}"
        raise located_error(source, text, line, column, message) from None
