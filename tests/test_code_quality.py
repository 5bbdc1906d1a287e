"""The code base stays lint-clean and typed: ruff (lint + format) and mypy.

Run in the default tier so CI (`make test`) enforces what `make lint` checks.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TYPED_PACKAGES = ("npuc", "midend", "backend", "npu_sim", "runtime")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("command", [("ruff", "check", "."), ("ruff", "format", "--check", ".")])
def test_ruff(command: tuple[str, ...]) -> None:
    proc = _run(*command)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy() -> None:
    proc = _run("mypy", "--no-incremental", *TYPED_PACKAGES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
