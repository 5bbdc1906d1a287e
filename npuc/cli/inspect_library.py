"""``npuc inspect model.so``: what a compiled CPU library takes, gives and was built with.

Reads the library's sidecar (``model.so.json``; :mod:`npuc.core.artifact_format`)
without loading the library: interface, weight precision (``--precision``),
target CPU and threads, versions, and whether the library still matches its
sidecar (SHA-256).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from npuc.cli.common import CommandResult
from npuc.core.artifact_format import read_sidecar, sidecar_path
from npuc.core.errors import InvalidInputError
from npuc.core.fileio import sha256_file

PRECISION_NOTES = {
    "float": "float32 weights and compute",
    "weight-int8": "conv/matmul weights int8 + per-channel scale, float32 at load; float compute",
    "fp16-weights": "conv/matmul weights float16, float32 at load; float compute",
    "int8": "integer model, bit-exact with the integer executor",
}


def inspect_library(path: Path) -> CommandResult:
    """Summarise the library at ``path`` from its sidecar.

    Raises
    ------
    InvalidInputError
        The sidecar is missing or invalid (from :func:`read_sidecar`).
    """
    sidecar = read_sidecar(path)
    precision = str(sidecar.info.extra.get("precision", "float"))
    if precision not in PRECISION_NOTES:
        raise InvalidInputError(
            f"{sidecar_path(path)}: unknown precision {precision!r} in the sidecar "
            f"(npuc writes one of {', '.join(PRECISION_NOTES)})",
            hint="the sidecar was edited or written by another tool: rebuild the library",
        )
    matches = path.is_file() and sha256_file(path) == sidecar.library_sha256
    data: dict[str, Any] = {
        "library": {"path": str(path), "bytes": path.stat().st_size if path.is_file() else None},
        "matches_sidecar": matches,
        "precision": precision,
        "inputs": [t.to_json() for t in sidecar.info.inputs],
        "outputs": [t.to_json() for t in sidecar.info.outputs],
        "target": sidecar.target.to_json(),
        "source": {"path": sidecar.info.source_path, "format": sidecar.info.source_format},
        "build": {"npuc_version": sidecar.npuc_version, "tvm_version": sidecar.tvm_version},
    }
    size = data["library"]["bytes"]
    lines = [
        f"{path}  (npuc CPU library, {size:,} bytes)" if size is not None else f"{path}",
        f"  source:    {sidecar.info.source_path} ({sidecar.info.source_format})",
        f"  precision: {precision} ({PRECISION_NOTES[precision]})",
        f"  target:    {sidecar.target.cpu_name}, {sidecar.target.num_cores} thread(s)",
        "  inputs:    "
        + ", ".join(f"{t.name} {t.shape_str()} {t.dtype}" for t in sidecar.info.inputs),
        "  outputs:   "
        + ", ".join(f"{t.name} {t.shape_str()} {t.dtype}" for t in sidecar.info.outputs),
        f"  built by:  npuc {sidecar.npuc_version}, TVM {sidecar.tvm_version}",
        "  sidecar:   "
        + ("matches the library (SHA-256)" if matches else "does NOT match the library: rebuild"),
    ]
    return CommandResult(data=data, text="\n".join(lines))
