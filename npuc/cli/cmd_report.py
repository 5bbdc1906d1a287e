"""``npuc report model.npuc [-o DIR] [--json]``: the NPU performance report of a built artifact.

Recompiles the artifact's stored quantized model (checking that the programs
equal the stored ones), simulates one sample with a trace and writes
report.json, report.html, trace.json and report.txt into DIR (default
``<model>_report``); prints the top layers by cycles. Fields:
docs/npu_compiler.md, section "Performance report".
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.core.errors import InvalidInputError

DESCRIPTION = """\
Write the performance report of a built NPU model (.npuc): per layer its MACs,
simulated cycles, the compiler's estimate and its error, MAC utilisation, DRAM
traffic, SRAM peak, tiling, where it runs and why, quantization similarity and
the waste (idle MAC rows/columns, padding, DMA bursts) with the shape change
that would remove it. Files: report.json, report.html (open in a browser),
trace.json (chrome://tracing or ui.perfetto.dev), report.txt.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="performance report of a built NPU model (.npuc)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("artifact", help="a .npuc file from `npuc build --target npu`")
    parser.add_argument(
        "-o", "--output", metavar="DIR", help="folder to write (default: <model>_report)"
    )
    parser.add_argument(
        "--top", type=int, default=10, metavar="N", help="layers in the printed table (default 10)"
    )
    common.add_common_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> CommandResult:
    from npuc.backend.npu.report import report_table
    from npuc.cli.npu_report import (
        build_from_artifact,
        check_report_dir,
        make_report,
        write_report_files,
    )

    if args.top < 0:
        raise InvalidInputError(
            f"--top {args.top}: must be 0 or more", hint="the number of layers the table prints"
        )
    path = common.existing_file(args.artifact, "compiled model")
    out_dir = Path(args.output) if args.output else path.with_name(path.stem + "_report")
    check_report_dir(out_dir)
    build, hw = build_from_artifact(path)
    made = make_report(build, hw, [feeds for feeds, _ in build.golden])
    files = write_report_files(out_dir, made, hw)
    lines = [f"report of {path} ({hw.name}): " + ", ".join(str(f) for f in files)]
    lines += report_table(made.report, top=args.top)
    data = {"files": [str(f) for f in files], "report": made.report}
    return CommandResult(data=data, text="\n".join(lines))
