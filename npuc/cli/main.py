"""Entry point of the ``npuc`` command.

Each subcommand lives in its own module under ``npuc.cli`` and exposes
``register(subparsers)``; its parser sets ``handler`` to a function taking the
parsed arguments and returning a :class:`CommandResult`. Command modules
import heavy packages (TVM, onnx) inside their handlers so that ``--help`` and
``--version`` stay fast.

Output contract: the human text goes to standard output; with ``--json`` a
single JSON object goes there instead. Errors print one ``error:`` line (and a
``hint:`` line) on standard error, or a JSON object with ``--json``, and exit
with the code of the error class (see ``npuc.core.errors``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from collections.abc import Sequence

from npuc import __version__
from npuc.cli.common import CommandResult
from npuc.core.errors import EXIT_INTERNAL, EXIT_OK, NpucError

# Subcommand modules, in the order `npuc --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "npuc.cli.cmd_inspect",
    "npuc.cli.cmd_quantize",
    "npuc.cli.cmd_eval",
    "npuc.cli.cmd_build",
    "npuc.cli.cmd_tune",
    "npuc.cli.cmd_run",
    "npuc.cli.cmd_asm",
    "npuc.cli.cmd_disasm",
    "npuc.cli.cmd_sim",
    "npuc.cli.cmd_verify",
    "npuc.cli.cmd_report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npuc",
        description="Compile neural networks for the npuc NPU or the host CPU, and run them.",
    )
    parser.add_argument("--version", action="version", version=f"npuc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _print_error(payload: dict[str, object], as_json: bool) -> None:
    """Print an error (JSON on stdout or text on stderr); a reader that closed the stream
    early drops it silently, and the command still exits with the error's code."""
    try:
        if as_json:
            print(json.dumps(payload, indent=2))
            sys.stdout.flush()
            return
        print(f"error: {payload['message']}", file=sys.stderr)
        if payload.get("hint"):
            print(f"hint: {payload['hint']}", file=sys.stderr)
        sys.stderr.flush()
    except BrokenPipeError:
        _silence_stdout()
        _silence(sys.stderr)


def _silence_stdout() -> None:
    """Point standard output at /dev/null so that exiting flushes nothing into a closed pipe."""
    _silence(sys.stdout)


def _silence(stream: object) -> None:
    """Point ``stream``'s file descriptor at /dev/null (no-op for a stream without one)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # not a real file (tests capture it)
        pass
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code.

    A reader that closes standard output early (``npuc disasm p.npub | head``)
    is not an error: the rest of the output is dropped and the exit code is 0.
    """
    try:
        code = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    as_json = bool(getattr(args, "json", False))
    try:
        result: CommandResult = args.handler(args)
    except NpucError as exc:
        if args.debug:
            traceback.print_exc()
        _print_error(exc.to_json(), as_json)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise  # standard output was closed by its reader: handled in main()
    except Exception as exc:  # a bug in npuc: say so, with a way to learn more
        if args.debug:
            traceback.print_exc()
        payload: dict[str, object] = {
            "error": "InternalError",
            "message": f"internal error in npuc {args.command}: {type(exc).__name__}: {exc}",
            "hint": "this is a bug in npuc; rerun with --debug and report the traceback",
            "exit_code": EXIT_INTERNAL,
        }
        _print_error(payload, as_json)
        return EXIT_INTERNAL
    if as_json:
        print(json.dumps(result.data, indent=2, default=str))
    elif result.text:
        print(result.text)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
