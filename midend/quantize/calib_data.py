"""Calibration data from what the user passes to ``--calib``.

:func:`load_calibration` accepts, checked in this order:

* ``random``, ``random:normal``, ``random:uniform``: noise of each input's
  shape (:mod:`.calib_plugins`); warns, and the set is marked ``is_random``;
* an ``.npy`` file: samples of the model's single input, either exactly the
  input's shape (one sample) or ``N`` samples along the batch axis (when the
  model's batch is 1 or symbolic) or on an extra leading axis;
* an ``.npz`` file: one array per input name, each cut the same way, all
  holding the same ``N``;
* a folder: every ``.npy``/``.npz``/image file in it and its subfolders,
  sorted by relative path (other files are skipped), each one sample or a
  batch;
* an image file (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``): decoded and
  prepared by an :class:`~.images.ImagePreprocess` (required for images);
* any other file: a list of such files, one per line, relative to the list's
  folder (blank lines and ``#`` comments skipped);
* ``module:function`` or the name of an ``npuc.datasets`` entry point: a
  Python dataset plugin (:mod:`.calib_plugins`).

Array headers are checked (names, shapes, dtypes) before any data is read;
data is read when the set is iterated, one file at a time, and at most
``limit`` samples are listed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.model_info import TensorInfo
from npuc.core.npyfile import NpyHeader, read_npy, read_npz

from .calib_plugins import is_plugin_name, plugin_refs, random_refs
from .calib_set import CalibrationSet, SampleRef, check_dtype, check_names, plan_array
from .images import IMAGE_SUFFIXES, ImagePreprocess

__all__ = [
    "ARRAY_SUFFIXES",
    "CalibrationSet",
    "ImagePreprocess",
    "SampleRef",
    "load_calibration",
    "load_preprocess",
]

ARRAY_SUFFIXES = frozenset({".npy", ".npz"})
_WHAT = "calibration file"


class _HeaderSeen(Exception):
    """Stops a read after the header (carried out in ``header``)."""

    def __init__(self, header: NpyHeader) -> None:
        super().__init__()
        self.header = header


def _only(name: str) -> Callable[[list[str]], list[str]]:
    """A ``pick`` for :func:`read_npz` that reads the array ``name`` alone."""
    return lambda _names: [name]


def _stop(header: NpyHeader) -> None:
    raise _HeaderSeen(header)


def _npy_header(path: Path) -> NpyHeader:
    try:
        read_npy(path, check=_stop, what=_WHAT)
    except _HeaderSeen as seen:
        return seen.header
    raise InvalidInputError(f"{_WHAT} {path}: no array header was found")  # pragma: no cover


def _npz_headers(path: Path) -> dict[str, NpyHeader]:
    names: list[str] = []

    def record(found: list[str]) -> list[str]:
        names.extend(found)
        return []

    read_npz(path, pick=record)
    headers: dict[str, NpyHeader] = {}
    for name in names:
        try:
            read_npz(path, pick=_only(name), check=lambda _, h: _stop(h))
        except _HeaderSeen as seen:
            headers[name] = seen.header
    return headers


def _load_npy(path: Path, name: str) -> dict[str, np.ndarray]:
    return {name: read_npy(path, what=_WHAT)}


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    return read_npz(path)


def _load_image(path: Path, name: str, preprocess: ImagePreprocess) -> dict[str, np.ndarray]:
    return {name: preprocess.load(path)}


def _single_input(inputs: Sequence[TensorInfo], path: Path, what: str) -> TensorInfo:
    if len(inputs) != 1:
        raise InvalidInputError(
            f"{_WHAT} {path}: {what} can only feed a model with one input, and this one has "
            f"{len(inputs)} ({', '.join(t.name for t in inputs)})",
            hint="give an .npz per sample with one array per input name",
        )
    return inputs[0]


def _array_refs(path: Path, inputs: Sequence[TensorInfo], first: int) -> list[SampleRef]:
    """References to every sample of one ``.npy``/``.npz`` file (headers checked)."""
    where = f"{_WHAT} {path} (calibration sample {first})"
    if path.suffix.lower() == ".npy":
        info = _single_input(inputs, path, "an .npy file")
        headers = {info.name: _npy_header(path)}
        load = functools.partial(_load_npy, path, info.name)
    else:
        headers = _npz_headers(path)
        load = functools.partial(_load_npz, path)
    check_names(list(headers), inputs, where)
    plans = {}
    for info in inputs:
        check_dtype(headers[info.name].dtype, info, where)
        plans[info.name] = plan_array(headers[info.name].shape, info, where)
    counts = {name: n for name, (_, n) in plans.items()}
    if len(set(counts.values())) > 1:
        raise InvalidInputError(
            f"{where}: the arrays hold different numbers of samples "
            f"({', '.join(f'{k}: {v}' for k, v in counts.items())})",
            hint="every input needs the same number of samples",
        )
    modes = {mode for mode, _ in plans.values()}
    mode = modes.pop() if len(modes) == 1 else "mixed"
    if mode == "mixed":
        raise InvalidInputError(f"{where}: inputs mix single samples and batches")
    n = next(iter(counts.values()))
    return [SampleRef(f"{_WHAT} {path}", i, str(path), load, mode) for i in range(n)]


def _image_refs(
    path: Path, inputs: Sequence[TensorInfo], preprocess: ImagePreprocess | None
) -> list[SampleRef]:
    info = _single_input(inputs, path, "an image")
    if preprocess is None:
        raise InvalidInputError(
            f"{_WHAT} {path} is an image, and images need a [preprocess] section "
            "(resize, center_crop, mean, std, layout, channel_order, scale, dtype)",
            hint='e.g. [preprocess] preset = "imagenet" in the --config file',
        )
    load = functools.partial(_load_image, path, info.name, preprocess)
    hint = (
        f"the [preprocess] settings make {preprocess.layout} images of another size than the "
        f"input {info.shape_str()}: adjust resize and center_crop"
    )
    return [SampleRef(f"image {path}", 0, str(path), load, hint=hint)]


def _file_refs(
    path: Path,
    inputs: Sequence[TensorInfo],
    preprocess: ImagePreprocess | None,
    first: int,
) -> list[SampleRef]:
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return _array_refs(path, inputs, first)
    return _image_refs(path, inputs, preprocess)


def _collect(
    files: Sequence[Path],
    inputs: Sequence[TensorInfo],
    preprocess: ImagePreprocess | None,
    limit: int | None,
) -> list[SampleRef]:
    refs: list[SampleRef] = []
    for path in files:
        if limit is not None and len(refs) >= limit:
            break
        refs.extend(_file_refs(path, inputs, preprocess, len(refs)))
    return refs[:limit] if limit is not None else refs


def _folder_files(folder: Path) -> list[Path]:
    usable = ARRAY_SUFFIXES | IMAGE_SUFFIXES
    try:
        found = sorted(
            (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")),
            key=lambda p: p.relative_to(folder).as_posix(),
        )
    except OSError as exc:
        raise InvalidInputError(f"calibration folder {folder}: cannot be read ({exc})") from None
    files = [p for p in found if p.suffix.lower() in usable]
    if not files:
        skipped = f" ({len(found)} other files were skipped)" if found else ""
        raise InvalidInputError(
            f"calibration folder {folder} holds no .npy, .npz or image files{skipped}",
            hint="put one sample per file there (.npy/.npz, or .jpg/.jpeg/.png/.bmp images)",
        )
    return files


def _list_files(list_file: Path) -> list[Path]:
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"calibration list {list_file}: cannot be read as a text file ({exc})",
            hint="a list holds one .npy/.npz/image path per line",
        ) from None
    files: list[Path] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = (list_file.parent / entry).resolve()
        if path.suffix.lower() not in ARRAY_SUFFIXES | IMAGE_SUFFIXES:
            raise InvalidInputError(
                f"calibration list {list_file}, line {number}: {entry!r} is not an "
                ".npy, .npz or image file",
                hint="a list holds one .npy/.npz/image path per line",
            )
        if not path.is_file():
            raise InvalidInputError(
                f"calibration list {list_file}, line {number}: {path} does not exist",
                hint="paths in a list are relative to the list's folder",
            )
        files.append(path)
    if not files:
        raise InvalidInputError(f"calibration list {list_file} names no files")
    return files


def load_calibration(
    source: str | os.PathLike[str] | None,
    inputs: Sequence[TensorInfo],
    *,
    preprocess: ImagePreprocess | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> CalibrationSet:
    """Open the calibration data ``source`` for a model with ``inputs`` (module docstring).

    Parameters
    ----------
    source
        What ``--calib`` gave; ``None`` or empty is refused with an explanation.
    inputs
        The model's inputs (name, shape, dtype); every sample must match them.
    preprocess
        How images become inputs; required when the source holds images.
    limit
        At most this many samples (the first ones in order); for ``random``
        the number of samples (16 when None).
    seed
        Seed of ``random`` noise.

    Raises
    ------
    InvalidInputError
        No source, a missing path, an empty folder or list, an unreadable
        file, or a header that does not fit the model (name, shape or dtype;
        the message names the file and the sample index). Samples whose
        shape is only known after loading (images, plugins) are checked while
        iterating, with the same messages.
    """
    if not source:
        raise InvalidInputError(
            "calibration data is needed to choose the activation ranges",
            hint="pass --calib PATH (an .npy/.npz file, a folder of arrays or images, a "
            "list of files, or module:function); --calib random runs on noise to try "
            "the flow, with meaningless accuracy",
        )
    source = str(source)  # a Path is fine too
    if limit is not None and limit < 1:
        raise InvalidInputError(f"the calibration sample limit must be >= 1, not {limit}")
    inputs = tuple(inputs)
    if source in ("random", "random:normal", "random:uniform"):
        refs = random_refs(source, inputs, count=limit or 16, seed=seed)
        return CalibrationSet(source, inputs, tuple(refs), is_random=True)
    path = Path(source)
    if not path.exists() and is_plugin_name(source):
        return CalibrationSet(source, inputs, tuple(plugin_refs(source, inputs, limit)))
    if not path.exists():
        raise InvalidInputError(
            f"calibration data {source} does not exist",
            hint="pass an existing file or folder, module:function, or random",
        )
    if path.is_dir():
        files = _folder_files(path)
    elif path.suffix.lower() in ARRAY_SUFFIXES | IMAGE_SUFFIXES:
        files = [path]
    else:
        files = _list_files(path)
    refs = _collect(files, inputs, preprocess, limit)
    if not refs:
        raise InvalidInputError(f"calibration data {source} holds no samples")
    return CalibrationSet(source, inputs, tuple(refs))


def load_preprocess(data: Mapping[str, object] | None) -> ImagePreprocess | None:
    """The ``[preprocess]`` table of a config as an :class:`ImagePreprocess` (None if absent)."""
    return None if data is None else ImagePreprocess.from_mapping(data)
