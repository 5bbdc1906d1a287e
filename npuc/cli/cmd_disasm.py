"""``npuc disasm``: print an NPU program (.npub) as assembly that re-assembles identically."""

from __future__ import annotations

import argparse

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.core.hw.cli_options import add_hw_options, resolve_hw


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "disasm",
        help="disassemble an NPU program (.npub) to assembly",
        description="Validate a program binary and print it as assembly (re-assembles to the "
        "same bytes). With --hw/--hw-preset the config hash is checked too.",
    )
    parser.add_argument("program", help="program file (.npub)")
    parser.add_argument("-o", "--output", help="write the assembly here instead of stdout")
    add_hw_options(parser)
    common.add_common_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> CommandResult:
    from npuc.core.fileio import write_text_atomic
    from npuc.core.isa.asm import disassemble
    from npuc.core.isa.program import Program

    path = common.existing_file(args.program, "program file")
    hw = resolve_hw(args) if (args.hw or args.hw_preset) else None
    program = Program.load(path, hw=hw)
    text = disassemble(program)
    data = {
        "program": str(path),
        "config_hash": program.config_hash.hex(),
        "instructions": [
            {"mnemonic": ins.mnemonic, "fields": ins.values()} for ins in program.instructions
        ],
        "constant_bytes": len(program.constants),
        "const_dram_addr": program.const_dram_addr,
        "io": [t.to_json() for t in program.io],
    }
    if args.output:
        write_text_atomic(args.output, text)
        data["output"] = args.output
        return CommandResult(data=data, text=f"wrote {args.output}")
    return CommandResult(data=data, text=text.rstrip("\n"))
