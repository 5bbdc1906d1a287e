"""The layering in docs/architecture.md holds: import contracts checked by import-linter.

The contracts live in pyproject.toml ``[tool.importlinter]``: stages depend
one way (cli/driver > runtime > npu_sim > backend > midend > frontend > core),
the simulator imports only the core, the runtime reads artifacts through the
core (never the backend), the package never imports tests/,
tools/, bench/ or examples/, and sibling modules form no import cycles.
Imports inside functions and under ``TYPE_CHECKING`` count.
"""

from __future__ import annotations

from pathlib import Path

from tools.package_tree import COMMANDS, link_tree, package_dirs, run_in_tree


def test_import_contracts_kept() -> None:
    proc = run_in_tree(COMMANDS["imports"])
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "0 broken" in report, report


def test_link_tree_holds_every_installed_subpackage(tmp_path: Path) -> None:
    root = link_tree(tmp_path / "tree") / "npuc"
    for name, folder in package_dirs().items():
        if name == "npuc":
            continue
        linked = root / name.rpartition(".")[2]
        assert linked.resolve() == folder.resolve()
        assert (linked / "__init__.py").is_file()
    assert (root / "driver.py").resolve() == (package_dirs()["npuc"] / "driver.py").resolve()
