"""The console script exists, answers --version and --help without a traceback."""

import subprocess
import sys

import npuc


def _npuc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "npuc.cli.main", *args], capture_output=True, text=True, check=False
    )


def test_version() -> None:
    proc = _npuc("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"npuc {npuc.__version__}"


def test_help_lists_every_command() -> None:
    from npuc.cli.main import COMMAND_MODULES

    proc = _npuc("--help")
    assert proc.returncode == 0
    assert "usage: npuc" in proc.stdout
    for module in COMMAND_MODULES:
        command = module.rsplit(".", 1)[1].removeprefix("cmd_")
        assert command in proc.stdout, command
        sub = _npuc(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "--json" in sub.stdout and "--debug" in sub.stdout
