"""Instruction operands (``name=value``) -> field values, driven by the ISA table.

An operand names either a field of the instruction (``pre_shift=4``) or one of
its groups (``ifm=@x[8x8x16 int8]``, ``k=3x3``, ``pad=1,1,1,1``,
``act=0..127``, ``bias=@b``); see :class:`npuc.core.isa.types.Group`. Every value is
range-checked here against the table, with the operand's line and column.
"""

from __future__ import annotations

import lark

from npuc.core.isa.asm.symbols import Scope
from npuc.core.isa.definition import OpDef
from npuc.core.isa.types import DTYPE_ALIASES, DTYPE_NAMES, UNIT_NAMES, Field, Group


def _items(value: lark.Tree) -> list[lark.Tree | lark.Token]:
    return list(value.children)


def _name_of(item: lark.Tree | lark.Token) -> str | None:
    """The bare name of an item written as a plain NAME, else None."""
    if isinstance(item, lark.Tree) and item.data == "ref":
        return str(item.children[0])
    return None


def dtype_code(scope: Scope, token: lark.Token | lark.Tree, name: str) -> int:
    """Field code of a storage type name (``int8``, ``uint8``, ``int16`` or i8/u8/i16)."""
    canonical = DTYPE_ALIASES.get(name, name)
    if canonical not in DTYPE_NAMES:
        raise scope.error(
            token, f"unknown type {name!r}", hint=f"use one of {', '.join(DTYPE_NAMES)}"
        )
    return DTYPE_NAMES.index(canonical)


class OperandReader:
    """Collects the field values of one instruction from its operand nodes."""

    def __init__(self, op: OpDef, scope: Scope) -> None:
        self.op = op
        self.scope = scope
        self.values: dict[str, int] = {}
        self._fields = {f.name: f for f in op.all_fields}
        self._groups = {g.name: g for g in op.groups}

    def read(self, operand: lark.Tree) -> None:
        name_tok, value = operand.children
        name = str(name_tok)
        if name in self._groups:
            self._group(self._groups[name], name_tok, value)  # type: ignore[arg-type]
        elif name in self._fields:
            f = self._fields[name]
            self._set(f, self._field_value(f, value), value)
        else:
            accepted = [g.name for g in self.op.groups] + [f.name for f in self.op.all_fields]
            raise self.scope.error(
                name_tok,
                f"{self.op.mnemonic} has no operand {name!r}",
                hint=f"operands: {', '.join(accepted)}",
            )

    def finish(self, node: lark.Tree) -> dict[str, int]:
        """All field values (defaults filled in); error if a required one is missing."""
        missing = [
            f.name for f in self.op.all_fields if f.name not in self.values and f.default is None
        ]
        if missing:
            raise self.scope.error(
                node, f"{self.op.mnemonic}: missing operand(s) {', '.join(missing)}"
            )
        return {
            f.name: self.values.get(f.name, f.default)  # type: ignore[misc]
            for f in self.op.all_fields
        }

    # ------------------------------------------------------------------ internals

    def _set(self, f: Field, v: int, where: lark.Tree | lark.Token) -> None:
        if f.name in self.values:
            raise self.scope.error(where, f"{self.op.mnemonic}: field {f.name} is given twice")
        if not f.lo <= v <= f.hi:
            raise self.scope.error(
                where,
                f"{self.op.mnemonic}: field {f.name} = {v} is outside [{f.lo}, {f.hi}]",
                hint=f"{f.name}: {f.doc}",
            )
        self.values[f.name] = v

    def _one(self, value: lark.Tree, what: str) -> lark.Tree | lark.Token:
        items = _items(value)
        if len(items) != 1:
            raise self.scope.error(value, f"{what} takes one value, got {len(items)}")
        return items[0]

    def _field_value(self, f: Field, value: lark.Tree) -> int:
        if f.kind == "mask":
            mask = 0
            for item in _items(value):
                name = _name_of(item)
                if name in UNIT_NAMES:
                    mask |= 1 << UNIT_NAMES.index(name)
                elif name == "none":
                    continue
                elif name is not None and name not in self.scope.values:
                    raise self.scope.error(
                        item,
                        f"{f.name}: unknown unit {name!r}",
                        hint=f"units: {', '.join(UNIT_NAMES)}",
                    )
                else:
                    mask |= self.scope.eval_int(item, f.name)
            return mask
        item = self._one(value, f.name)
        names = f.value_names()
        if names:
            name = _name_of(item)
            if f.kind == "dtype" and name is not None:
                return dtype_code(self.scope, item, name)
            if name is not None and name in names:
                return names.index(name)
            if name is not None and name not in self.scope.values:
                raise self.scope.error(
                    item, f"{f.name}: unknown value {name!r}", hint=f"use one of {', '.join(names)}"
                )
        return self.scope.eval_int(item, f.name)

    def _group(self, g: Group, name_tok: lark.Token, value: lark.Tree) -> None:
        fields = [self._fields[n] for n in g.fields]
        items = _items(value)
        if g.kind in ("tensor", "tensor2d", "flat"):
            self._tensor(g, fields, self._one(value, g.name))
        elif g.kind == "pair":
            item = self._one(value, g.name)
            if isinstance(item, lark.Tree) and item.data == "dims_item":
                nums = self._dims(item.children[0])  # type: ignore[arg-type]
                if len(nums) != 2:
                    raise self.scope.error(item, f"{g.name} takes AxB, got {len(nums)} numbers")
            else:
                nums = [self.scope.eval_int(item, g.name)] * 2
            for f, v in zip(fields, nums, strict=True):
                self._set(f, v, item)
        elif g.kind == "quad":
            if len(items) == 1:
                items = items * 4
            if len(items) != 4:
                raise self.scope.error(value, f"{g.name} takes 1 or 4 comma-separated values")
            for f, item in zip(fields, items, strict=True):
                self._set(f, self.scope.eval_int(item, g.name), item)
        elif g.kind == "range":
            item = self._one(value, g.name)
            if not (isinstance(item, lark.Tree) and item.data == "range"):
                raise self.scope.error(item, f"{g.name} takes a range lo..hi")
            for f, bound in zip(fields, item.children, strict=True):
                self._set(f, self.scope.eval_int(bound, g.name), bound)
        elif g.kind == "alias":
            self._set(fields[0], self._field_value(fields[0], value), value)
        elif g.kind == "opt_addr":
            item = self._one(value, g.name)
            self._set(fields[0], 1, item)
            self._set(fields[1], self.scope.eval_int(item, g.name), item)

    def _dims(self, token: lark.Token) -> list[int]:
        """The numbers of a ``8x8x16`` dimensions token (each a bounded literal)."""
        return [self.scope.int_literal(token, part) for part in str(token).split("x")]

    def _tensor(self, g: Group, fields: list[Field], item: lark.Tree | lark.Token) -> None:
        shapes = {"tensor": "addr[HxWxC type]", "tensor2d": "addr[NxK type]", "flat": "addr[type]"}
        if not (isinstance(item, lark.Tree) and item.data == "tensor"):
            raise self.scope.error(item, f"{g.name} takes {shapes[g.kind]}")
        addr_node, *rest = item.children
        dims_node = rest[0] if len(rest) == 2 else None
        dtype_tok = rest[-1]
        dims: list[int] = []
        if dims_node is not None:
            if not (
                isinstance(dims_node, lark.Tree) and isinstance(dims_node.children[0], lark.Token)
            ):
                raise self.scope.error(item, f"{g.name} takes {shapes[g.kind]}")
            dims = self._dims(dims_node.children[0])
        want = {"tensor": 3, "tensor2d": 2, "flat": 0}[g.kind]
        if len(dims) != want:
            raise self.scope.error(item, f"{g.name} takes {shapes[g.kind]}")
        addr = self.scope.eval_int(addr_node, g.name)
        code = dtype_code(self.scope, dtype_tok, str(dtype_tok))
        for f, v in zip(fields, [addr, *dims, code], strict=True):
            self._set(f, v, item)
