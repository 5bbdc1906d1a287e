"""Read inputs from ``.npy``/``.npz`` files and write outputs to ``.npz``.

The ``--input`` convention shared by ``npuc run`` (and usable by any command
that feeds a model): ``NAME=file.npy`` gives one input; ``file.npz`` gives
every array in it under its own name; ``NAME=file.npz`` takes the array
``NAME`` (or the only array) from it; a bare ``file.npy`` is allowed when the
model has exactly one input. Files are read with ``allow_pickle=False``.
Outputs are written through :func:`npuc.core.fileio.atomic_path`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.fileio import atomic_path
from npuc.core.model_info import ModelInfo


def _read_npy(path: Path) -> np.ndarray:
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(
            f"input file {path}: not a readable .npy array ({exc})",
            hint="write it with numpy.save(path, array)",
        ) from exc
    if not isinstance(value, np.ndarray):
        raise InvalidInputError(f"input file {path}: expected one .npy array")
    return value


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidInputError(
            f"input file {path}: not a readable .npz archive ({exc})",
            hint="write it with numpy.savez(path, name=array, ...)",
        ) from exc


def _split_spec(spec: str) -> tuple[str | None, Path]:
    """``NAME=path`` or ``path`` (a path that exists as given wins over a split)."""
    name, sep, rest = spec.partition("=")
    if not sep or Path(spec).is_file():
        return None, Path(spec)
    if not name or not rest:
        raise InvalidInputError(
            f"--input {spec!r} is not of the form NAME=FILE or FILE",
            hint="e.g. --input images=x.npy",
        )
    return name, Path(rest)


def read_input_files(specs: Sequence[str], info: ModelInfo) -> dict[str, np.ndarray]:
    """Turn ``--input`` values into a name -> array map (not yet checked against ``info``)."""
    feeds: dict[str, np.ndarray] = {}

    def put(name: str, value: np.ndarray, path: Path) -> None:
        if name in feeds:
            raise InvalidInputError(f"input {name!r} is given twice (again by {path})")
        feeds[name] = value

    for spec in specs:
        name, path = _split_spec(spec)
        if not path.is_file():
            raise InvalidInputError(f"input file {path} does not exist", hint="check the path")
        arrays = _read_npz(path) if path.suffix == ".npz" else {"": _read_npy(path)}
        if name is None and path.suffix == ".npz":
            for key, value in arrays.items():
                put(key, value, path)
            continue
        if name is None:
            if len(info.inputs) != 1:
                raise InvalidInputError(
                    f"--input {spec}: the model has {len(info.inputs)} inputs, so name it "
                    f"({', '.join(t.name for t in info.inputs)})",
                    hint=f"e.g. --input {info.inputs[0].name}={path}" if info.inputs else None,
                )
            name = info.inputs[0].name
        if "" in arrays:
            put(name, arrays[""], path)
        elif name in arrays:
            put(name, arrays[name], path)
        elif len(arrays) == 1:
            put(name, next(iter(arrays.values())), path)
        else:
            raise InvalidInputError(
                f"input file {path} has no array named {name!r} (it has {', '.join(arrays)})"
            )
    return feeds


def write_outputs_npz(path: str | Path, outputs: Mapping[str, np.ndarray]) -> None:
    """Write ``outputs`` to ``path`` as an ``.npz`` archive, atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InvalidInputError(f"output {path}: must end in .npz", hint="e.g. --output out.npz")
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        # Written member by member rather than with np.savez(**outputs): savez's own
        # parameter names (file, allow_pickle) would capture outputs named so.
        for name, array in outputs.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
