"""CPU-region libraries are checked as whole ELF files before dlopen (a truncated one crashed)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pytest

from npuc.core.cpu_region_format import elf_problem, load_library
from npuc.core.errors import InvalidInputError


def _a_shared_library() -> bytes:
    """A real shared library that is always installed: one of numpy's extension modules."""
    folder = Path(os.path.dirname(np.__file__)) / "_core"
    (path,) = glob.glob(str(folder / "_multiarray_umath*.so"))[:1]
    return Path(path).read_bytes()


def test_whole_library_passes_and_truncations_are_named() -> None:
    data = _a_shared_library()
    assert elf_problem(data) is None
    for cut in (0, 10, 63, 1000, len(data) // 2, len(data) * 9 // 10):
        assert elf_problem(data[:cut]) is not None, cut
    assert "no ELF header" in (elf_problem(b"MZ" + data[2:]) or "")


def test_truncated_library_is_refused_before_loading(tmp_path: Path) -> None:
    data = _a_shared_library()
    with pytest.raises(InvalidInputError, match="not a whole shared library") as info:
        load_library(data[: len(data) // 2], "m.npuc", "cpu_0", folder=tmp_path)
    assert "cpu_0" in info.value.message and "m.npuc" in info.value.message
    assert list(tmp_path.iterdir()) == []
