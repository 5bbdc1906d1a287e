"""Reading ``.npy`` files and ``.npz`` archives that users hand to npuc, safely.

``numpy.load`` trusts a file's header: a 200-byte ``.npy`` claiming 2**40
elements makes it allocate terabytes before noticing the data is missing,
and a ``.npy`` that is really a zip is opened as an archive. Here every array
is read in three steps, so no input can exhaust memory or end in anything but
:class:`~npuc.core.errors.InvalidInputError` naming the file:

1. the header is parsed (format 1.0, 2.0 or 3.0; at most
   ``MAX_HEADER_BYTES``) into an :class:`NpyHeader`;
2. the caller's ``check`` sees the header (shape, dtype) and may refuse it,
   e.g. because the model expects another shape: nothing has been allocated yet;
3. the header's byte count is compared with the bytes the file (or the
   archive member) really holds, and only then is the data read, into one
   buffer of exactly that size.

Object arrays (pickles) are refused; files are never unpickled.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.lib.format as npformat

from npuc.core.errors import InvalidInputError, describe

MAX_HEADER_BYTES = 10_000  # numpy's own default limit
# Errors a broken zip archive or .npy header can raise from the standard library or numpy.
_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    SyntaxError,  # numpy parses the header dictionary with ast.literal_eval
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    NotImplementedError,  # zip compression method numpy/zipfile do not know
    RuntimeError,  # encrypted zip member
    OverflowError,
    MemoryError,  # a header dictionary too complex for literal_eval
    RecursionError,
    IndexError,  # zipfile on malformed extra fields
    KeyError,
    struct.error,
)


@dataclass(frozen=True, slots=True)
class NpyHeader:
    """What a ``.npy`` header declares: ``shape``, element ``dtype``, storage order."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        """Bytes of data the header promises (exact Python int; may be astronomically large)."""
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        """``1x3x8x8 float32`` (``scalar float32`` for 0-d)."""
        dims = "x".join(describe(d) for d in self.shape) if self.shape else "scalar"
        return f"{dims} {self.dtype}"


HeaderCheck = Callable[[NpyHeader], None]


def _read_header(f: BinaryIO, where: str) -> NpyHeader:
    magic = f.read(6)
    if magic != npformat.MAGIC_PREFIX:
        zip_hint = " (it is a zip archive: name it .npz)" if magic.startswith(b"PK\x03\x04") else ""
        raise InvalidInputError(
            f"{where}: not a readable .npy array: no .npy magic at its start{zip_hint}",
            hint="write it with numpy.save(path, array)",
        )
    version = f.read(2)
    if len(version) != 2 or (version[0], version[1]) not in ((1, 0), (2, 0), (3, 0)):
        raise InvalidInputError(
            f"{where}: not a readable .npy array: unknown format version {describe(version)}"
        )
    reader = npformat.read_array_header_1_0 if version[0] == 1 else npformat.read_array_header_2_0
    try:
        shape, fortran_order, dtype = reader(f, max_header_size=MAX_HEADER_BYTES)
    except Exception as exc:  # numpy's header parser raises many kinds (TokenError, IndexError ...)
        raise InvalidInputError(
            f"{where}: not a readable .npy array: bad header ({_short(exc)})",
            hint="write it with numpy.save(path, array)",
        ) from None
    if dtype.hasobject:
        raise InvalidInputError(
            f"{where}: the array holds Python objects ({dtype}), which npuc never unpickles",
            hint="save a numeric array",
        )
    if dtype.itemsize == 0:
        raise InvalidInputError(f"{where}: the array's element type {dtype} has no size")
    if any(d < 0 for d in shape):
        raise InvalidInputError(
            f"{where}: not a readable .npy array: its header's shape"
            f" {describe(tuple(shape))} has a negative dimension"
        )
    return NpyHeader(tuple(shape), dtype, bool(fortran_order))


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 120 else text[:117] + "..."


def _read_data(f: BinaryIO, header: NpyHeader, available: int, where: str) -> np.ndarray:
    """Read the data the header declares, after checking that ``available`` bytes hold it."""
    if header.nbytes > available:
        raise InvalidInputError(
            f"{where}: truncated: its header declares {header.describe()} "
            f"({describe(header.nbytes)} bytes) but only {available} bytes of data follow",
            hint="the file is cut short or its header is wrong; write it again with numpy.save",
        )
    flat = np.empty(math.prod(header.shape), dtype=header.dtype)
    view = memoryview(flat).cast("B")  # type: ignore[arg-type]
    done = 0
    while done < header.nbytes:
        got = f.readinto(view[done:])  # type: ignore[attr-defined]
        if not got:
            raise InvalidInputError(
                f"{where}: truncated: {header.nbytes - done} bytes of data are missing"
            )
        done += got
    return flat.reshape(header.shape, order="F" if header.fortran_order else "C")


def read_npy(
    path: str | os.PathLike[str], *, check: HeaderCheck | None = None, what: str = "input file"
) -> np.ndarray:
    """Read one array from a ``.npy`` file; ``check(header)`` may refuse it before any data.

    Raises
    ------
    InvalidInputError
        The file is missing or unreadable, not a ``.npy`` (e.g. a zip), has a bad
        header, holds objects, is truncated, or ``check`` refused it. The message
        names the file (``what`` says what it is for).
    """
    where = f"{what} {path}"
    try:
        with open(path, "rb") as f:
            header = _read_header(f, where)
            if check is not None:
                check(header)
            available = os.fstat(f.fileno()).st_size - f.tell()
            return _read_data(f, header, available, where)
    except OSError as exc:
        raise InvalidInputError(f"{where}: {exc.strerror or exc}") from None


def read_npz(
    path: str | os.PathLike[str],
    *,
    pick: Callable[[list[str]], list[str]] | None = None,
    check: Callable[[str, NpyHeader], None] | None = None,
) -> dict[str, np.ndarray]:
    """Read the arrays of an ``.npz`` archive by name (member ``x.npy`` -> ``x``).

    ``pick(names)`` chooses which of the archive's array names to read (all by
    default); ``check(name, header)`` sees each one's header before its data is
    read. Raises InvalidInputError naming the file (and array) for anything
    malformed.
    """
    where = f"input file {path}"
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(Path(path)) as archive:
            members = {
                (i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i
                for i in archive.infolist()
                if not i.is_dir()
            }
            for name in pick(list(members)) if pick is not None else list(members):
                info = members[name]
                member = f"{where}, array {describe(name)}"
                with archive.open(info) as f:
                    header = _read_header(f, member)  # type: ignore[arg-type]
                    if check is not None:
                        check(name, header)
                    available = info.file_size - f.tell()
                    arrays[name] = _read_data(f, header, available, member)  # type: ignore[arg-type]
    except InvalidInputError:
        raise
    except _READ_ERRORS as exc:
        raise InvalidInputError(
            f"{where}: not a readable .npz archive ({_short(exc)})",
            hint="write it with numpy.savez(path, name=array, ...)",
        ) from None
    return arrays
