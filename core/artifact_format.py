"""The artifact format: the JSON sidecar that describes a compiled CPU library.

``model.so`` comes with ``model.so.json``: the model's interface
(:class:`~npuc.core.model_info.ModelInfo`), where it came from (source sha256),
what it was built for (:class:`~npuc.core.target.CpuTarget`) and by which
npuc and TVM versions. It holds no timestamp and no timing, so two builds of
the same model with the same options give byte-identical sidecars (build
times are reported by ``npuc build``, not stored). The sidecar also records
the SHA-256 of the library it belongs to, so a reader can tell a stale or
mismatched pair from a good one. The runtime refuses a library without a
valid sidecar.

The backend writes it (:mod:`npuc.backend.cpu.build`) and the runtime reads
it (:mod:`npuc.runtime.compiled_model`); it sits in the core, below both, so
that neither imports the other. The combined NPU+CPU artifact extends it here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from npuc.core.errors import InvalidInputError
from npuc.core.model_info import ModelInfo
from npuc.core.target import CpuTarget

SIDECAR_FORMAT = "npuc-cpu-library"
SIDECAR_VERSION = 2  # 2: no built_at_utc / compile_time_s (deterministic)

WEIGHT_TRANSFORM_FUNC = "main_transform_params"
"""A library with compact weights (``--precision weight-int8`` / ``fp16-weights``) has
this zero-argument function: it returns ``main``'s float32 weights, which ``main``
takes after its inputs. The runtime calls it once at load."""


def sidecar_path(library_path: str | Path) -> Path:
    """``model.so`` -> ``model.so.json``."""
    library_path = Path(library_path)
    return library_path.with_name(library_path.name + ".json")


@dataclass(frozen=True, slots=True, kw_only=True)
class LibrarySidecar:
    """Contents of ``<library>.json``."""

    info: ModelInfo
    target: CpuTarget
    library_name: str
    library_sha256: str
    npuc_version: str
    tvm_version: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "library": {"name": self.library_name, "sha256": self.library_sha256},
            "model": self.info.to_json(),
            "target": self.target.to_json(),
            "build": {
                "npuc_version": self.npuc_version,
                "tvm_version": self.tvm_version,
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LibrarySidecar:
        if data.get("format") != SIDECAR_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, not {SIDECAR_FORMAT!r}")
        if data.get("format_version") != SIDECAR_VERSION:
            raise ValueError(
                f"format_version {data.get('format_version')!r} is not {SIDECAR_VERSION}"
            )
        build = data["build"]
        return cls(
            info=ModelInfo.from_json(data["model"]),
            target=CpuTarget.from_json(data["target"]),
            library_name=str(data["library"]["name"]),
            library_sha256=str(data["library"]["sha256"]),
            npuc_version=str(build["npuc_version"]),
            tvm_version=str(build["tvm_version"]),
        )


def read_sidecar(library_path: str | Path) -> LibrarySidecar:
    """Read and validate the sidecar of ``library_path``; clear errors if it is bad."""
    path = sidecar_path(library_path)
    hint = f"rebuild the library with `npuc build ... -o {library_path}`"
    if not path.is_file():
        raise InvalidInputError(
            f"{library_path}: its description {path} is missing",
            hint=f"{hint}; keep both files together",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LibrarySidecar.from_json(data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(
            f"{path}: cannot read the library description ({exc})", hint=hint
        ) from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInputError(
            f"{path}: not a valid npuc library description ({exc!r})", hint=hint
        ) from exc
