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
    proc = run_in_tree([*COMMANDS["mypy"], "--no-incremental"])
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    checked = re.search(r"\(checked (\d+) source files?\)", report)
    assert checked is not None, report
    expected = len(_package_modules())
    print(f"mypy checked {checked.group(1)} files of the npuc package ({expected} on disk)")
    assert int(checked.group(1)) == expected, (
        f"mypy checked {checked.group(1)} files but the package has {expected}: {report}"
    )
