"""The code base stays lint-clean and typed: ruff (lint + format) and mypy.

Run in the default tier so CI (`make test`) enforces what `make lint` checks.
mypy checks the installed package as one (``mypy -p npuc`` over the tree of
``tools/package_tree.py``), so every import between layers resolves and is
checked; the test also checks that mypy saw every module of the package.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools.package_tree import COMMANDS, package_dirs, run_in_tree

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def _package_modules() -> list[Path]:
    """Every ``.py`` file that installs as part of ``npuc``."""
    return sorted(
        path
        for folder in package_dirs().values()
        for path in folder.rglob("*.py")
        if "__pycache__" not in path.parts
    )


@pytest.mark.parametrize("command", [("ruff", "check", "."), ("ruff", "format", "--check", ".")])
def test_ruff(command: tuple[str, ...]) -> None:
    proc = _run(*command)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_whole_package() -> None:
    before = len(_package_modules())
    proc = run_in_tree([*COMMANDS["mypy"], "--no-incremental"])
    after = len(_package_modules())  # a file added or removed meanwhile shifts the count
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    # "Success: no issues found in N source files" (or "... (checked N source files)").
    found = re.search(r"(?:no issues found in|checked) (\d+) source files?", report)
    assert found is not None, report
    checked = int(found.group(1))
    print(f"mypy checked {checked} files of the npuc package ({after} on disk)")
    assert min(before, after) <= checked <= max(before, after), (
        f"mypy checked {checked} files but the package has {after}: {report}"
    )
