"""Atomic output: complete file or nothing, with ordinary permissions."""

import os
import stat
from pathlib import Path

import pytest

from npuc.core.errors import InvalidInputError
from npuc.core.fileio import atomic_path, write_text_atomic


def test_written_file_has_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.md", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == 0o644


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        write_text_atomic(tmp_path / "nope" / "a.md", "x")


def test_folder_as_destination_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "out.npz").mkdir()
    with pytest.raises(InvalidInputError, match="is a folder"):
        write_text_atomic(tmp_path / "out.npz", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from npuc.core.fileio import remove_stale_temporaries, write_text_atomic

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    alive_pid = os.getppid()  # the process that started this test still runs
    stale_file = tmp_path / f".r.txt.npuc-tmp-{dead_pid}-abc.txt"
    stale_dir = tmp_path / f".r.txt.npuc-tmp-{dead_pid}-def.work"
    live_file = tmp_path / f".r.txt.npuc-tmp-{alive_pid}-ghi.txt"
    other = tmp_path / f".other.txt.npuc-tmp-{dead_pid}-abc.txt"
    stale_file.write_bytes(b"")
    stale_dir.mkdir()
    (stale_dir / "lib0.o").write_bytes(b"\0")
    live_file.write_bytes(b"")
    other.write_bytes(b"")
    assert sorted(remove_stale_temporaries(tmp_path / "r.txt")) == sorted([stale_file, stale_dir])
    write_text_atomic(tmp_path / "r.txt", "ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["r.txt", live_file.name, other.name]
    )
