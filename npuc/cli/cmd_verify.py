"""``npuc verify model.npuc``: replay the artifact's golden samples on the simulator.

Prints "bit-exact", or exits non-zero naming the first tensor (NPU partition
output or model output) that differs from the integer executor, with values.
"""

from __future__ import annotations

import argparse
from typing import Any

from npuc.cli import common


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="replay an NPU artifact's golden samples on the simulator (bit-exact check)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("artifact", help="artifact written by `npuc build --target npu` (.npuc)")
    common.add_common_flags(parser)
    from npuc.cli.npu_commands import verify

    parser.set_defaults(handler=verify)
