"""Read inputs from ``.npy``/``.npz`` files and write outputs to ``.npz``.

The ``--input`` convention shared by ``npuc run`` (and usable by any command
that feeds a model): ``NAME=file.npy`` gives one input; ``file.npz`` gives
every array in it under its own name; ``NAME=file.npz`` takes the array
``NAME`` (or the only array) from it; a bare ``file.npy`` is allowed when the
model has exactly one input. Files are read by :mod:`npuc.core.npyfile`:
never unpickled, and each header is checked against the input it feeds
before any data is read.
Outputs are written through :func:`npuc.core.fileio.atomic_path`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.fileio import atomic_path
from npuc.core.npyfile import NpyHeader, read_npy, read_npz
from npuc.runtime.inputs import check_declared


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


class _Inputs(Protocol):
    """What the readers need of a model: its inputs (``ModelInfo`` or an NPU program)."""

    @property
    def inputs(self) -> Sequence[Any]: ...


def _expected(info: _Inputs, name: str, path: Path) -> Any:
    """The model's input ``name`` (an object with name, shape, dtype), or a clear error."""
    tensor = next((t for t in info.inputs if t.name == name), None)
    if tensor is None:
        listed = ", ".join(f"{t.name} ({_dims(t.shape)} {t.dtype})" for t in info.inputs)
        raise InvalidInputError(
            f"unknown input {name!r}; the model's inputs are {listed or 'none'} (in {path})",
            hint="name each input as the model does",
        )
    return tensor


def _dims(shape: Sequence[object]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _checker(info: _Inputs, name: str, path: Path) -> Callable[[NpyHeader], None]:
    """Refuse a file whose header does not declare input ``name``'s shape and dtype."""
    tensor = _expected(info, name, path)
    return lambda header: check_declared(tensor, header.shape, header.dtype, source=f" (in {path})")


def read_input_files(specs: Sequence[str], info: _Inputs) -> dict[str, np.ndarray]:
    """Turn ``--input`` values into a name -> array map, checked against ``info.inputs``.

    Each file's header is checked against the input it feeds (name, shape,
    dtype) before any data is read, so a wrong or corrupt file costs no
    memory and fails with InvalidInputError naming the file and the input.
    """
    feeds: dict[str, np.ndarray] = {}

    def put(name: str, value: np.ndarray, path: Path) -> None:
        if name in feeds:
            raise InvalidInputError(f"input {name!r} is given twice (again by {path})")
        feeds[name] = value

    for spec in specs:
        name, path = _split_spec(spec)
        if not path.is_file():
            raise InvalidInputError(f"input file {path} does not exist", hint="check the path")
        if name is None and path.suffix != ".npz":
            if len(info.inputs) != 1:
                names = ", ".join(t.name for t in info.inputs)
                raise InvalidInputError(
                    f"--input {spec}: the model has {len(info.inputs)} inputs, so name it "
                    f"({names})",
                    hint=f"e.g. --input {info.inputs[0].name}={path}" if info.inputs else None,
                )
            name = info.inputs[0].name
        for key, value in _read_file(name, path, info).items():
            put(key, value, path)
    return feeds


def _read_file(name: str | None, path: Path, info: _Inputs) -> dict[str, np.ndarray]:
    """The input arrays one ``--input`` file gives: ``name`` (None: every array of an .npz)."""
    if path.suffix != ".npz":
        assert name is not None
        return {name: read_npy(path, check=_checker(info, name, path))}
    if name is None:
        return read_npz(path, check=lambda key, header: _checker(info, key, path)(header))
    arrays = read_npz(
        path,
        pick=lambda keys: _pick_member(keys, name, path),
        check=lambda _key, header: _checker(info, name, path)(header),
    )
    return {name: next(iter(arrays.values()))}


def _pick_member(keys: list[str], name: str, path: Path) -> list[str]:
    """The archive member giving input ``name``: the one so named, or the only one."""
    if name in keys:
        return [name]
    if len(keys) == 1:
        return keys
    raise InvalidInputError(
        f"input file {path} has no array named {name!r} "
        f"(it has {', '.join(keys) if keys else 'none'})"
    )


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
