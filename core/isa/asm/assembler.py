"""Assembler: NPU assembly text -> validated :class:`npuc.core.isa.program.Program`.

Two passes over the parsed lines. Pass 1 runs the directives in order
(constants, allocations, data, I/O) and numbers the labels; then I/O and
scratch DRAM regions without an address are placed after the constant block.
Pass 2 turns each instruction into field values (npuc.core.isa.asm.operands),
checks ranges and cross-field rules (npuc.core.isa.checks) and builds the program,
which is validated as a whole for the hardware config. Every error names the
file, line and column.
"""

from __future__ import annotations

from pathlib import Path

import lark

from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import HwConfig
from npuc.core.isa.asm.directives import Allocator
from npuc.core.isa.asm.operands import OperandReader
from npuc.core.isa.asm.parser import parse
from npuc.core.isa.asm.symbols import Scope
from npuc.core.isa.checks import check_instruction
from npuc.core.isa.definition import OPS_BY_MNEMONIC
from npuc.core.isa.instructions import CLASSES, Instruction
from npuc.core.isa.program import Program


def _statements(tree: lark.Tree) -> list[tuple[lark.Token | None, lark.Tree | None]]:
    out = []
    for stmt in tree.children:
        label = None
        body = None
        for child in stmt.children:
            if isinstance(child, lark.Tree) and child.data == "label":
                label = child.children[0]
            else:
                body = child
        out.append((label, body))
    return out  # type: ignore[return-value]


def _directive(alloc: Allocator, scope: Scope, hw: HwConfig, node: lark.Tree) -> None:
    kind = node.data
    if kind == "const_dir":
        name, expr = node.children
        scope.define_value(name, scope.eval(expr))  # type: ignore[arg-type]
    elif kind == "sram_dir":
        alloc.sram(node)
    elif kind == "dram_dir":
        alloc.dram(node)
    elif kind == "data_dir":
        alloc.data(node)
    elif kind == "data_base_dir":
        alloc.data_base_dir(node)
    elif kind in ("input_dir", "output_dir"):
        alloc.io_tensor(node, "input" if kind == "input_dir" else "output")
    elif kind == "config_hash_dir":
        written = str(node.children[0])[1:-1].lower()
        if written != hw.config_hash:
            raise scope.error(
                node,
                f"program was written for config hash {written}, not {hw.name} ({hw.config_hash})",
                hint="pass the --hw/--hw-preset it was written for, or delete .config_hash",
            )


def _instruction(scope: Scope, node: lark.Tree) -> Instruction:
    mnemonic_tok, *operands = node.children
    mnemonic = str(mnemonic_tok)
    op = OPS_BY_MNEMONIC.get(mnemonic)
    if op is None:
        raise scope.error(
            mnemonic_tok,
            f"unknown instruction {mnemonic!r}",
            hint=f"instructions: {', '.join(OPS_BY_MNEMONIC)}",
        )
    reader = OperandReader(op, scope)
    for operand in operands:
        reader.read(operand)
    ins = CLASSES[mnemonic](**reader.finish(node))
    try:
        check_instruction(ins)
    except InvalidInputError as exc:
        raise scope.error(node, exc.message, exc.hint) from None
    return ins


def assemble(
    text: str, *, hw: HwConfig, source: str = "<asm>", base_dir: Path | None = None
) -> Program:
    """Assemble ``text`` for ``hw``; ``.npy`` paths are relative to ``base_dir``."""
    tree = parse(text, source=source)
    scope = Scope(source=source, text=text)
    alloc = Allocator(scope, hw, base_dir or Path("."))
    statements = _statements(tree)
    index = 0
    for label, body in statements:
        if label is not None:
            scope.define_value(label, index)
        if body is None:
            continue
        if body.data == "instruction":
            index += 1
        else:
            _directive(alloc, scope, hw, body)
    alloc.place_pending()
    instructions = [
        _instruction(scope, body)
        for _, body in statements
        if body is not None and body.data == "instruction"
    ]
    program = Program(
        config_hash=hw.config_hash_bytes,
        instructions=tuple(instructions),
        constants=bytes(alloc.constants),
        const_dram_addr=alloc.data_base or 0,
        io=tuple(alloc.io),
    )
    try:
        program.validate(hw)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {exc.message}", hint=exc.hint) from None
    return program


def assemble_file(path: str | Path, *, hw: HwConfig) -> Program:
    """Assemble the file at ``path`` (UTF-8)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read assembly file {p}: {exc}") from None
    return assemble(text, hw=hw, source=str(p), base_dir=p.parent)
