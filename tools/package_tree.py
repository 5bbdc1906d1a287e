"""The installed ``npuc`` package as one folder tree, for tools that walk folders.

The repository keeps its layers as top-level folders (``core/``,
``frontend/``, ...) that install as ``npuc.core``, ``npuc.frontend``, ...
(``[tool.setuptools] package-dir`` in pyproject.toml). Python finds them
through the editable install's import hook, but tools that look for a
package on disk (mypy, grimp/import-linter) see only ``npuc/`` and would
treat every cross-layer import as missing.

:func:`link_tree` builds ``<dest>/npuc/`` out of symbolic links that follow
the same mapping, so those tools check the package exactly as it installs.
Files are never copied: editing a file in the repository is seen at once,
and a new file appears without rebuilding the tree. :func:`repo_path` maps a
path inside the tree back to the repository file for messages.

Usage (what ``make lint`` and ``tests/test_code_quality.py`` run)::

    python tools/package_tree.py mypy     # mypy -p npuc over the whole package
    python tools/package_tree.py imports  # lint-imports (contracts in pyproject.toml)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "npuc"


def package_dirs(repo: Path = REPO) -> dict[str, Path]:
    """The ``package-dir`` mapping from pyproject.toml: dotted name -> repository folder.

    Raises
    ------
    ValueError
        If a mapped name is not ``npuc`` or a direct subpackage of it.
    """
    with open(repo / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    dirs = {name: repo / folder for name, folder in mapping.items()}
    for name in dirs:
        if name != PACKAGE and name.rpartition(".")[0] != PACKAGE:
            raise ValueError(f"package-dir {name!r}: only {PACKAGE} and its children are supported")
    return dirs


def link_tree(dest: Path, repo: Path = REPO) -> Path:
    """Create ``dest/npuc`` as links into ``repo``; return ``dest`` (the search path).

    ``dest/npuc`` is a real folder holding a link per entry of the repository's
    ``npuc/`` folder and one per mapped subpackage (``dest/npuc/core -> repo/core``).
    ``dest`` must be empty or missing.
    """
    dirs = package_dirs(repo)
    root = dest / PACKAGE
    root.mkdir(parents=True)
    for entry in dirs[PACKAGE].iterdir():
        if entry.name != "__pycache__":
            (root / entry.name).symlink_to(entry)
    for name, folder in dirs.items():
        if name != PACKAGE:
            (root / name.rpartition(".")[2]).symlink_to(folder, target_is_directory=True)
    return dest


def repo_path(text: str, dest: Path, repo: Path = REPO) -> str:
    """Rewrite paths inside the tree at ``dest`` in ``text`` to repository-relative paths.

    Both absolute tree paths and paths relative to ``dest`` (as mypy prints
    them) are rewritten: ``npuc/core/errors.py`` -> ``core/errors.py``.
    """
    for name, folder in sorted(package_dirs(repo).items(), key=lambda kv: -len(kv[0])):
        tree_rel = "/".join(name.split("."))
        rel = os.path.relpath(folder, repo)
        text = text.replace(f"{dest}/{tree_rel}/", f"{rel}/")
        text = re.sub(rf"(?<![\w/.]){re.escape(tree_rel)}/", f"{rel}/", text)
    return text


def run_in_tree(command: list[str], repo: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in the link tree's folder, which is also ``PYTHONPATH`` and ``MYPYPATH``.

    The tree's folder is the working directory so that the repository's own
    ``npuc/`` folder (the CLI and driver alone) cannot shadow the full package.
    ``{repo}`` in an argument is replaced by the repository's folder. The
    output's tree paths are rewritten to repository paths.
    """
    with tempfile.TemporaryDirectory(prefix="npuc-tree-") as tmp:
        dest = link_tree(Path(tmp) / "tree", repo)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(dest), env.get("PYTHONPATH", "")) if p)
        env["MYPYPATH"] = str(dest)
        args = [a.replace("{repo}", str(repo)) for a in command]
        proc = subprocess.run(args, cwd=dest, env=env, capture_output=True, text=True, check=False)
        return subprocess.CompletedProcess(
            proc.args, proc.returncode, repo_path(proc.stdout, dest), repo_path(proc.stderr, dest)
        )


COMMANDS = {
    # Whole-package type check; the settings live in pyproject.toml [tool.mypy].
    "mypy": [
        *(sys.executable, "-m", "mypy", "--config-file", "{repo}/pyproject.toml"),
        *("--cache-dir", "{repo}/.mypy_cache", "-p", PACKAGE),
    ],
    # Import contracts in pyproject.toml [tool.importlinter].
    "imports": [
        *(str(Path(sys.executable).parent / "lint-imports"), "--no-cache"),
        "{repo}/pyproject.toml",
    ],
}


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in COMMANDS:
        print(f"usage: package_tree.py {{{','.join(COMMANDS)}}} [extra args]", file=sys.stderr)
        return 2
    proc = run_in_tree(COMMANDS[argv[0]] + argv[1:])
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
