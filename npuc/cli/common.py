"""Shared pieces of the subcommands: the result type and argument parsers."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npuc.core.errors import InvalidInputError


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a subcommand produced: ``data`` for ``--json``, ``text`` for people."""

    data: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    exit_code: int = 0


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """Flags every subcommand has; call from each command's ``register``."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks on errors (for bug reports)"
    )


def existing_file(path: str, what: str = "input file") -> Path:
    """Return ``path`` as a Path, or raise a clear error if it is not a readable file."""
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{what} {path} does not exist", hint="check the path")
    if not p.is_file():
        raise InvalidInputError(f"{what} {path} is not a file")
    return p


def parse_shape(text: str, *, flag: str) -> tuple[int, ...]:
    """Parse ``1x3x224x224`` (``x`` or ``,`` separated) into a shape tuple."""
    parts = text.replace(",", "x").split("x") if text else []
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise InvalidInputError(
            f"{flag}: cannot read shape {text!r}",
            hint="write positive dimensions separated by 'x', e.g. 1x3x224x224",
        )
    return dims


def parse_name_value(text: str, *, flag: str) -> tuple[str, str]:
    """Split ``name=value`` given to a repeatable flag such as ``--input``."""
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise InvalidInputError(
            f"{flag} {text!r} is not of the form name=value",
            hint=f"e.g. {flag} input_0=x.npy",
        )
    return name, value


def add_input_shape_flag(parser: argparse.ArgumentParser) -> None:
    """``--input-shape NAME=DIMS`` (repeatable), shared by build and inspect."""
    parser.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=DIMS",
        help="fix a dynamic input shape, e.g. images=1x3x224x224 (repeatable)",
    )


def add_input_value_flag(parser: argparse.ArgumentParser) -> None:
    """``--input-value NAME=VALUE`` (repeatable), shared by build and inspect."""
    parser.add_argument(
        "--input-value",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix an ONNX input to a constant (a number, 1,2,3 or a .npy file), folded "
        "before import so an If on it becomes the branch taken, e.g. sample_rate=16000 "
        "(repeatable)",
    )


def parse_input_values(texts: list[str]) -> dict[str, str]:
    """``["rate=16000", ...]`` -> ``{"rate": "16000"}``; a name given twice is an error."""
    values: dict[str, str] = {}
    for text in texts:
        name, value = parse_name_value(text, flag="--input-value")
        if name in values:
            raise InvalidInputError(f"--input-value gives input {name!r} twice")
        values[name] = value
    return values


def parse_input_shapes(texts: list[str]) -> dict[str, tuple[int, ...]]:
    """``["x=1x3x8x8", ...]`` -> ``{"x": (1, 3, 8, 8)}``; a name given twice is an error."""
    shapes: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, dims = parse_name_value(text, flag="--input-shape")
        if name in shapes:
            raise InvalidInputError(f"--input-shape gives input {name!r} twice")
        shapes[name] = parse_shape(dims, flag=f"--input-shape {name}")
    return shapes


def add_tensor_io_flags(parser: argparse.ArgumentParser) -> None:
    """``--input [NAME=]FILE`` (repeatable) and ``--output OUT.npz``, shared by run and sim."""
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help="input array(s) from a .npy or .npz file (repeatable)",
    )
    parser.add_argument("--output", metavar="OUT.npz", help="save the outputs to an .npz file")
