"""Atomic file output: a reader never sees a half-written file.

Every artifact npuc writes (``.so``, ``.npub``, ``.npz``, reports, traces)
goes through :func:`atomic_path`: the producer writes to a temporary file in
the destination folder, which is renamed over the destination only when the
producer finished without an exception. On error the temporary file is
removed and the destination is left as it was.

A process killed while writing cannot clean up, so every temporary is named
``.<dest name>.npuc-tmp-<pid>-<random>`` (files) or ``...<random>.work``
(:func:`workspace_beside`, folders), beside the destination, never in the
system temp folder. The next write to the same destination removes those
whose process is gone (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from npuc.core.errors import InvalidInputError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` on success.

    ``suffix`` defaults to ``dest``'s own suffix, since some writers (numpy's
    ``savez``, TVM's ``export_library``) choose their format by extension.
    """
    dest = Path(dest)
    folder = check_output_path(dest)
    remove_stale_temporaries(dest)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=_temp_prefix(dest),
            suffix=suffix if suffix is not None else dest.suffix,
            dir=folder,
        )
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write {dest}: {exc.strerror}", hint="check the folder's permissions"
        ) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the result the mode a plain open() would.
        os.chmod(tmp, _default_file_mode())
        try:
            os.replace(tmp, dest)
        except OSError as exc:
            raise InvalidInputError(f"cannot write {dest}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


_TMP_TAG = ".npuc-tmp-"


def _temp_prefix(dest: Path) -> str:
    return f".{dest.name}{_TMP_TAG}{os.getpid()}-"


@contextlib.contextmanager
def workspace_beside(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a new hidden folder beside ``dest`` for intermediate files; removed on exit.

    Used instead of the system temp folder (e.g. TVM's ``export_library``
    workspace) so that a killed build leaves nothing there; what it leaves
    beside ``dest`` is removed by the next write to ``dest``.
    """
    dest = Path(dest)
    folder = check_output_path(dest)
    remove_stale_temporaries(dest)
    work = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest), suffix=".work", dir=folder))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def remove_stale_temporaries(dest: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of ``dest`` left by npuc processes that are gone.

    Returns the removed paths. A temporary whose process still runs (a
    concurrent build) is kept; one whose name does not parse is kept too.
    """
    dest = Path(dest)
    folder = dest.parent if str(dest.parent) else Path(".")
    removed: list[Path] = []
    pattern = str(folder / f".{glob.escape(dest.name)}{_TMP_TAG}*")
    for name in glob.glob(pattern, include_hidden=True):
        path = Path(name)
        pid_text = path.name[len(dest.name) + 1 + len(_TMP_TAG) :].split("-", 1)[0]
        if not pid_text.isdigit() or _process_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # another user's process, or cannot tell: keep its files
    return True


def check_output_path(dest: str | os.PathLike[str]) -> Path:
    """Raise a clear error unless ``dest`` can be an output file; return its folder.

    Commands call this for every output before doing long work, so a bad
    second output path cannot leave the first output written.
    """
    dest = Path(dest)
    folder = dest.parent if str(dest.parent) else Path(".")
    if not folder.is_dir():
        problem = "is a file, not a folder" if folder.exists() else "does not exist"
        raise InvalidInputError(
            f"cannot write {dest}: folder {folder} {problem}",
            hint="create the folder first or choose another output path",
        )
    if dest.is_dir():
        raise InvalidInputError(
            f"cannot write {dest}: it is a folder", hint="give a file name as the output path"
        )
    return folder


def _default_file_mode() -> int:
    """0o666 minus the process umask (which can only be read by setting it)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes_atomic(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``dest`` atomically."""
    write_bytes_atomic(dest, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
