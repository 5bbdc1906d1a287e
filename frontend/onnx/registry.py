"""The registry of ONNX operators npuc claims: the one place that says so.

Each :class:`OpRule` names an operator, the opset range npuc accepts it in,
and an optional legality check. A check takes a :class:`NodeView` and
returns ``(ok, reason)``; its docstring is the user-facing rule and is what
``tools/gen_supported_ops.py`` renders into ``docs/supported_ops.md``.
The rules themselves live in :mod:`npuc.frontend.onnx.rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

CheckResult = tuple[bool, str]
Check = Callable[["NodeView"], CheckResult]
OK: CheckResult = (True, "")

# Element types npuc imports: float32 compute, integer index/shape tensors.
SUPPORTED_DTYPES = frozenset({"float32", "int64", "int32", "bool"})


@dataclass(frozen=True, slots=True)
class NodeView:
    """What a legality check may look at: one node and what is known about its inputs.

    ``consts`` holds every tensor whose value is known before run time
    (initializers and ``Constant`` outputs after constant folding);
    ``shapes`` the static shapes shape inference found; ``dtypes`` the
    numpy-style element type names (``"float32"``) of the typed tensors.
    """

    node: onnx.NodeProto
    opset: int
    consts: Mapping[str, np.ndarray]
    shapes: Mapping[str, tuple[int, ...]]
    dtypes: Mapping[str, str] = field(default_factory=dict)

    def attr(self, name: str, default: Any = None) -> Any:
        """Attribute value (bytes decoded to str), or ``default`` when absent."""
        for a in self.node.attribute:
            if a.name == name:
                value = onnx.helper.get_attribute_value(a)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def input_name(self, index: int) -> str | None:
        """Name of input ``index``, or ``None`` when it is absent or empty."""
        if index < len(self.node.input) and self.node.input[index]:
            return self.node.input[index]
        return None

    def has_input(self, index: int) -> bool:
        return self.input_name(index) is not None

    def is_const(self, index: int) -> bool:
        name = self.input_name(index)
        return name is not None and name in self.consts

    def rank(self, index: int = 0) -> int | None:
        name = self.input_name(index)
        shape = self.shapes.get(name) if name is not None else None
        return None if shape is None else len(shape)

    def dtype(self, index: int) -> str | None:
        """Element type name of input ``index``, or ``None`` when absent or untyped."""
        name = self.input_name(index)
        if name is None:
            return None
        if name in self.consts:
            return self.consts[name].dtype.name
        return self.dtypes.get(name)

    def shape(self, index: int) -> tuple[int, ...] | None:
        """Static shape of input ``index``, or ``None`` when absent or unknown."""
        name = self.input_name(index)
        return None if name is None else self.shapes.get(name)

    def output_used(self, index: int) -> bool:
        return index < len(self.node.output) and bool(self.node.output[index])


@dataclass(frozen=True, slots=True)
class OpRule:
    """One supported ONNX operator (default domain) and its legality check."""

    op_type: str
    since_opset: int
    until_opset: int
    check: Check | None = None
    summary: str = ""

    def rule_text(self) -> str:
        """The user-facing rule: the check's docstring, first paragraph."""
        if self.check is None or not self.check.__doc__:
            return "No extra conditions."
        return " ".join(self.check.__doc__.strip().split("\n\n")[0].split())


def require_rank(view: NodeView, index: int, ranks: tuple[int, ...], what: str) -> CheckResult:
    """``(ok, reason)`` for 'input ``index`` has one of ``ranks``'; unknown rank fails."""
    rank = view.rank(index)
    if rank is None:
        return False, f"{what} has no static shape after shape inference"
    if rank not in ranks:
        wanted = " or ".join(f"{r}-D" for r in ranks)
        return False, f"{what} is {rank}-D; only {wanted} is supported"
    return OK


def require_const(view: NodeView, index: int, what: str) -> CheckResult:
    """``(ok, reason)`` for 'input ``index``, when present, is known at compile time'."""
    if view.has_input(index) and not view.is_const(index):
        return (
            False,
            f"{what} ({view.input_name(index)!r}) must be a constant, but is computed at run time",
        )
    return OK


def require_attr_in(
    view: NodeView, name: str, default: Any, allowed: tuple[Any, ...]
) -> CheckResult:
    """``(ok, reason)`` for 'attribute ``name`` is one of ``allowed``'."""
    value = view.attr(name, default)
    if value not in allowed:
        return (
            False,
            f"{name}={value!r} is not supported (supported: {', '.join(map(repr, allowed))})",
        )
    return OK


def first_failure(*results: CheckResult) -> CheckResult:
    """The first failed result, or OK."""
    return next((r for r in results if not r[0]), OK)
