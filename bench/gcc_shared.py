"""Compile one C file of ``bench/`` into a shared library, once per source version.

Used by the CPUID mask (``cpuid_mask.py``) and the parallel-launch trace
(``parallel_trace.py``): both preload or load a small C library built with gcc.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


def build_shared(source: Path, folder: Path, stem: str, libs: Sequence[str] = ()) -> Path:
    """``folder/<stem>-<hash of source>.so`` compiled from ``source`` (``-O2 -shared
    -fPIC``, then ``libs``); reused when it exists, written through a temporary name.

    Raises
    ------
    subprocess.CalledProcessError
        gcc failed.
    """
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    library = folder / f"{stem}-{digest}.so"
    if not library.exists():
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        cmd = ["gcc", "-O2", "-shared", "-fPIC", "-o", str(partial), str(source), *libs]
        subprocess.run(cmd, check=True)
        partial.replace(library)
    return library
