"""Symbol table and expression evaluation of the assembler.

Evaluation is bounded so that no input can make it slow or crash it: integer
literals have at most :data:`MAX_LITERAL_DIGITS` digits, expressions nest at most
:data:`MAX_EXPR_DEPTH` deep, and every integer value (literal, constant or
intermediate result) lies within ``+-VALUE_LIMIT``, far beyond any field,
address or size (all at most 32 bits) yet small enough that arithmetic on it
stays fast. Anything beyond is a located error.

Names come in two kinds: values (``.const``/``.equ`` and labels, read as a bare
``NAME``) and memory symbols (``.sram``, ``.dram``, ``.data``, ``.input``,
``.output``, read as ``@NAME`` for their address and ``sizeof(NAME)`` for their
size in bytes). Each name is defined once. Every error carries the source
line and column of the offending token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lark

from npuc.core.isa.asm.parser import located_error

Number = int | float

VALUE_LIMIT = 1 << 64
"""Largest integer magnitude an expression may reach (fields and addresses are <= 32 bits)."""
MAX_LITERAL_DIGITS = 40
"""Most digits an integer literal may have (2**64 has 20 decimal or 16 hex digits)."""
MAX_EXPR_DEPTH = 200
"""Deepest expression nesting (operators and unary minus) the evaluator accepts."""


@dataclass(frozen=True, slots=True)
class MemSymbol:
    """A named region: ``space`` is ``"sram"`` or ``"dram"``."""

    space: str
    addr: int
    size_bytes: int


def position(node: lark.Tree | lark.Token) -> tuple[int, int]:
    """(line, column) of a tree's first token, or of a token (1-based; (0, 0) if unknown).

    Trees carry no positions (the parser skips them for speed); the first token does.
    """
    while isinstance(node, lark.Tree):  # a loop: trees may be deep
        first = next((c for c in node.children if isinstance(c, lark.Tree | lark.Token)), None)
        if first is None:
            return 0, 0
        node = first
    return node.line or 0, node.column or 0


@dataclass
class Scope:
    """Everything defined so far, plus the source for error messages."""

    source: str
    text: str
    values: dict[str, Number] = field(default_factory=dict)
    symbols: dict[str, MemSymbol] = field(default_factory=dict)
    deferred: set[str] = field(default_factory=set)  # declared, address not placed yet

    def error(
        self, node: lark.Tree | lark.Token, message: str, hint: str | None = None
    ) -> Exception:
        line, col = position(node)
        return located_error(self.source, self.text, line, col, message, hint)

    def define_value(self, token: lark.Token, value: Number) -> None:
        self._check_new(token)
        self.values[str(token)] = value

    def define_symbol(self, token: lark.Token, symbol: MemSymbol | None) -> None:
        """Define a memory symbol; ``None`` declares it with its address still to be placed."""
        self._check_new(token)
        if symbol is None:
            self.deferred.add(str(token))
        else:
            self.symbols[str(token)] = symbol

    def place(self, name: str, symbol: MemSymbol) -> None:
        self.deferred.discard(name)
        self.symbols[name] = symbol

    def _check_new(self, token: lark.Token) -> None:
        name = str(token)
        if name in self.values or name in self.symbols or name in self.deferred:
            raise self.error(token, f"name {name!r} is already defined")

    # ------------------------------------------------------------------ expressions

    def int_literal(self, token: lark.Token, text: str | None = None) -> int:
        """Value of an integer literal (decimal, or hex with ``0x``; ``_`` separates digits).

        ``text`` is the literal when it is part of ``token`` (a dimension of ``8x8x16``).
        """
        text = str(token) if text is None else text
        hexa = text[:2].lower() == "0x"
        digits = text[2:] if hexa else text
        if not digits or digits.startswith("_") or digits.endswith("_") or "__" in digits:
            raise self.error(
                token,
                f"malformed integer literal {_shorten(text)!r}",
                hint="write digits, optionally grouped by single underscores: 0x7f_ff, 1_000",
            )
        digits = digits.replace("_", "")
        if len(digits) > MAX_LITERAL_DIGITS:
            raise self.error(
                token,
                f"integer literal has {len(digits)} digits;"
                f" at most {MAX_LITERAL_DIGITS} are allowed",
                hint="no field, address or size needs more than 32 bits",
            )
        return self._bounded(token, int(digits, 16 if hexa else 10))

    def _bounded(self, node: lark.Tree | lark.Token, value: int) -> int:
        if not -VALUE_LIMIT <= value <= VALUE_LIMIT:
            raise self.error(
                node,
                "value is beyond 2**64 in magnitude; no field, address or size can hold it",
                hint="check the expression and the .const values it uses",
            )
        return value

    def eval(self, node: lark.Tree | lark.Token, depth: int = 0) -> Number:
        """Value of an expression tree (errors if too deep or too large; see module doc)."""
        if isinstance(node, lark.Token):
            raise self.error(node, f"expected an expression, got {_shorten(str(node))!r}")
        if depth > MAX_EXPR_DEPTH:
            raise self.error(
                node,
                f"expression nests deeper than {MAX_EXPR_DEPTH} levels",
                hint="split it into .const steps",
            )
        kind = node.data
        kids = node.children
        if kind == "int_lit":
            return self.int_literal(kids[0])  # type: ignore[arg-type]
        if kind == "float_lit":
            return float(str(kids[0]))
        if kind == "ref":
            return self._ref(kids[0])  # type: ignore[arg-type]
        if kind == "addr_of":
            return self._symbol(kids[0]).addr  # type: ignore[arg-type]
        if kind == "call":
            fn, arg = kids
            if str(fn) != "sizeof":
                raise self.error(
                    fn, f"unknown function {str(fn)!r}", hint="only sizeof(NAME) exists"
                )
            return self._symbol(arg).size_bytes  # type: ignore[arg-type]
        if kind == "neg":
            return -self.eval(kids[0], depth + 1)
        if kind in ("add", "sub", "mul", "div", "mod"):
            a, b = self.eval(kids[0], depth + 1), self.eval(kids[1], depth + 1)
            if kind != "div" and kind != "mod":
                value = a + b if kind == "add" else a - b if kind == "sub" else a * b
            elif b == 0:
                raise self.error(node, "division by zero")
            elif isinstance(a, float) or isinstance(b, float):
                value = a / b if kind == "div" else a % b
            else:
                value = a // b if kind == "div" else a % b
            return self._bounded(node, value) if isinstance(value, int) else value
        raise self.error(node, f"expected an expression, got {kind}")

    def eval_int(self, node: lark.Tree | lark.Token, what: str = "value") -> int:
        value = self.eval(node)
        if not isinstance(value, int):
            raise self.error(node, f"{what} must be an integer, got {value!r}")
        return value

    def _ref(self, token: lark.Token) -> Number:
        name = str(token)
        if name in self.values:
            return self.values[name]
        if name in self.symbols or name in self.deferred:
            raise self.error(
                token,
                f"{name!r} is a memory symbol",
                hint=f"write @{name} for its address or sizeof({name}) for its size",
            )
        raise self.error(token, f"unknown name {name!r}", hint="define it with .const before use")

    def _symbol(self, token: lark.Token) -> MemSymbol:
        name = str(token)
        if name in self.symbols:
            return self.symbols[name]
        if name in self.deferred:
            raise self.error(
                token,
                f"the DRAM address of {name!r} is not placed yet here",
                hint="give it an explicit dram=/at= address, or use it only in instructions",
            )
        raise self.error(
            token, f"unknown memory symbol {name!r}", hint="declare it with .sram/.dram/.data"
        )


def _shorten(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis) for error messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
