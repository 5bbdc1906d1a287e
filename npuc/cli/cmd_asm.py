"""``npuc asm``: assemble NPU assembly (.s) into a program binary (.npub)."""

from __future__ import annotations

import argparse
from pathlib import Path

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.core.hw.cli_options import add_hw_options, resolve_hw


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "asm",
        help="assemble NPU assembly (.s) into a program (.npub)",
        description="Assemble NPU assembly into a validated program binary (see docs/npu_isa.md).",
    )
    parser.add_argument("source", help="assembly file (.s)")
    parser.add_argument("-o", "--output", help="output program (default: SOURCE with .npub)")
    add_hw_options(parser)
    common.add_common_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> CommandResult:
    from npuc.core.isa.asm import assemble_file

    source = common.existing_file(args.source, "assembly file")
    hw = resolve_hw(args)
    program = assemble_file(source, hw=hw)
    out = Path(args.output) if args.output else source.with_suffix(".npub")
    data = program.to_bytes()
    program.save(out)
    summary = {
        "output": str(out),
        "bytes": len(data),
        "instructions": len(program.instructions),
        "constant_bytes": len(program.constants),
        "inputs": [t.name for t in program.inputs],
        "outputs": [t.name for t in program.outputs],
        "hw": hw.name,
        "config_hash": hw.config_hash,
    }
    text = (
        f"wrote {out}: {len(program.instructions)} instructions, "
        f"{len(program.constants)} constant bytes, {len(data)} bytes total, for {hw.name}"
    )
    return CommandResult(data=summary, text=text)
