"""Symbol table and expression evaluation of the assembler.

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
    if isinstance(node, lark.Token):
        return node.line or 0, node.column or 0
    for child in node.children:
        if isinstance(child, lark.Tree | lark.Token):
            return position(child)
    return 0, 0


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

    def eval(self, node: lark.Tree | lark.Token) -> Number:
        """Value of an expression tree."""
        if isinstance(node, lark.Token):
            raise self.error(node, f"expected an expression, got {str(node)!r}")
        kind = node.data
        kids = node.children
        if kind == "int_lit":
            text = str(kids[0]).replace("_", "")
            return int(text, 16) if text[:2].lower() == "0x" else int(text, 10)
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
            return -self.eval(kids[0])
        if kind in ("add", "sub", "mul", "div", "mod"):
            a, b = self.eval(kids[0]), self.eval(kids[1])
            if kind == "add":
                return a + b
            if kind == "sub":
                return a - b
            if kind == "mul":
                return a * b
            if b == 0:
                raise self.error(node, "division by zero")
            if isinstance(a, float) or isinstance(b, float):
                return a / b if kind == "div" else a % b
            return a // b if kind == "div" else a % b
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
