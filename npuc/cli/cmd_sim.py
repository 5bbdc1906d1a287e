"""``npuc sim``: run an NPU program (``.npub``) in the cycle-approximate simulator.

Reads the program and ``--input`` files (the ``npuc run`` convention:
``NAME=x.npy``, ``x.npz``, or a bare ``x.npy`` for a single input), simulates,
prints a statistics table (or ``--json``), and optionally writes the outputs
(``--output out.npz``) and a Chrome trace (``--trace trace.json``), both
atomically. Without ``--hw``/``--hw-preset`` the preset whose configuration
hash matches the program is used. Faults exit with code 5.
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.core.errors import InvalidInputError

DESCRIPTION = """\
Simulate an NPU program on inputs from .npy/.npz files and report cycles.
  --input NAME=x.npy   one input (repeatable); x.npz gives every array by name
  --output out.npz     save the outputs
  --trace trace.json   per-instruction trace (open in https://ui.perfetto.dev)
"""


def register(subparsers: Any) -> None:
    from npuc.core.hw.cli_options import add_hw_options

    parser = subparsers.add_parser(
        "sim",
        help="simulate an NPU program (.npub): outputs, cycles, trace",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("program", help="program written by `npuc asm` or `npuc build` (.npub)")
    common.add_tensor_io_flags(parser)
    parser.add_argument("--trace", metavar="TRACE.json", help="write a Chrome trace-event file")
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        metavar="N",
        help="fault after N executed instructions (default 10,000,000)",
    )
    parser.add_argument(
        "--fault-on-overflow",
        action="store_true",
        help="treat saturation (sticky overflow flag) as a fault instead of a warning",
    )
    add_hw_options(parser)
    common.add_common_flags(parser)
    parser.set_defaults(handler=run)


def _pick_hw(args: argparse.Namespace, program_path: str) -> Any:
    from npuc.core.hw.cli_options import resolve_hw
    from npuc.core.hw.config import PRESETS

    if args.hw or args.hw_preset:
        return resolve_hw(args)
    from npuc.core.isa.program import Program

    raw = Program.load(program_path)  # validated without hw: only to read its config hash
    for hw in PRESETS.values():
        if hw.config_hash_bytes == raw.config_hash:
            return hw
    raise InvalidInputError(
        f"{program_path} was built for hardware config {raw.config_hash.hex()}, which is no preset",
        hint="pass the TOML it was built for with --hw",
    )


def format_stats(stats: Any, overflow: tuple[Any, ...], hw: Any) -> list[str]:
    """The human-readable statistics table."""
    lines = [
        f"hardware        {hw.name} ({hw.mac_rows}x{hw.mac_cols} MACs, {hw.clock_hz / 1e9:g} GHz)",
        f"total cycles    {stats.total_cycles:,}  ({stats.seconds * 1e6:.3f} us)",
        f"instructions    {stats.instructions:,}",
        f"MACs            {stats.macs:,}  (utilisation {stats.mac_utilisation:.1%})",
        f"DRAM read       {stats.dram_read_bytes:,} bytes",
        f"DRAM written    {stats.dram_written_bytes:,} bytes",
        f"SRAM peak       {stats.sram_peak_bytes:,} of {hw.sram_bytes:,} bytes",
        "",
        f"{'unit':<8} {'instr':>7} {'busy':>12} {'stall':>12} {'idle':>12} {'busy%':>6}",
    ]
    for u in stats.units:
        share = u.busy_cycles / stats.total_cycles if stats.total_cycles else 0.0
        lines.append(
            f"{u.name:<8} {u.instructions:>7,} {u.busy_cycles:>12,} {u.stall_cycles:>12,} "
            f"{u.idle_cycles:>12,} {share:>6.1%}"
        )
    if overflow:
        where = ", ".join(f"{o.index} ({o.mnemonic})" for o in overflow[:10])
        more = f" and {len(overflow) - 10} more" if len(overflow) > 10 else ""
        lines.append(f"warning: sticky overflow flag set by instruction(s) {where}{more}")
    return lines


def run(args: argparse.Namespace) -> CommandResult:
    from npuc.core.fileio import check_output_path, write_text_atomic
    from npuc.core.isa.program import Program
    from npuc.npu_sim import DEFAULT_MAX_STEPS, simulate
    from npuc.npu_sim.trace import trace_json
    from npuc.runtime.tensor_files import read_input_files, write_outputs_npz

    path = str(common.existing_file(args.program, "program"))
    for flag, value, suffix in (
        ("--output", args.output, ".npz"),
        ("--trace", args.trace, ".json"),
    ):
        if value and not value.endswith(suffix):
            raise InvalidInputError(f"{flag} {value}: must end in {suffix}")
        if value:
            check_output_path(value)
    max_steps = DEFAULT_MAX_STEPS if args.max_steps is None else args.max_steps
    if max_steps < 1:
        raise InvalidInputError(f"--max-steps must be at least 1, got {max_steps}")
    hw = _pick_hw(args, path)
    program = Program.load(path, hw=hw)
    feeds = read_input_files(args.input, SimpleNamespace(inputs=program.inputs))
    result = simulate(
        program,
        feeds,
        hw,
        trace=bool(args.trace),
        max_steps=max_steps,
        fault_on_overflow=args.fault_on_overflow,
    )
    if args.output:
        write_outputs_npz(args.output, result.outputs)
    if args.trace:
        write_text_atomic(args.trace, trace_json(result.trace_events))
    data = {
        "program": path,
        "hw": hw.name,
        "config_hash": hw.config_hash,
        "stats": result.stats.to_json(),
        "overflow": [{"index": o.index, "mnemonic": o.mnemonic} for o in result.overflow],
        "outputs": {
            name: {"shape": list(v.shape), "dtype": str(v.dtype)}
            for name, v in result.outputs.items()
        },
        "output_file": args.output,
        "trace_file": args.trace,
    }
    lines = format_stats(result.stats, result.overflow, hw)
    for name, v in result.outputs.items():
        lines.append(f"output {name}: {'x'.join(map(str, v.shape))} {v.dtype}")
    lines += [f"wrote {p}" for p in (args.output, args.trace) if p]
    return CommandResult(data=data, text="\n".join(lines))
