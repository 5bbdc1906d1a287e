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


def test_help_lists_usage() -> None:
    proc = _npuc("--help")
    assert proc.returncode == 0
    assert "usage: npuc" in proc.stdout
