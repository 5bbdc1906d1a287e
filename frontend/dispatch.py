"""Format dispatch: one ``load`` for every model format npuc reads.

Guarantees: a path is classified by content first (TFLite's ``TFL3`` magic,
a zip archive for ``.pt2``) and extension second; an ``onnx.ModelProto`` is
ONNX. Each importer is imported only when its format is seen, so reading an
ONNX model never imports torch or tflite. A file of no known format raises
:class:`~npuc.core.errors.InvalidInputError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from npuc.core.errors import InvalidInputError
from npuc.frontend.imported import ImportedModel, InputShapes

if TYPE_CHECKING:
    import onnx

_TFLITE_MAGIC = b"TFL3"
_ZIP_MAGIC = b"PK\x03\x04"


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return ``"onnx"``, ``"tflite"`` or ``"torch"`` for the model file at ``path``.

    Raises
    ------
    InvalidInputError
        If the path is missing, is a folder, or holds no format npuc reads.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"model file {p} does not exist", hint="check the path")
    if p.is_dir():
        raise InvalidInputError(
            f"model path {p} is a folder, not a model file",
            hint="pass the .onnx, .tflite or .pt2 file itself",
        )
    with open(p, "rb") as f:
        head = f.read(8)
    suffix = p.suffix.lower()
    if head[4:8] == _TFLITE_MAGIC or suffix == ".tflite":
        return "tflite"
    if _is_export_archive(p, head):
        return "torch"
    if _is_torch_save(p, head):
        raise _state_dict_error(p)
    if suffix == ".pt2" or suffix in _TORCH_SAVE_SUFFIXES:
        return "torch"  # torch.export.load says what is wrong with it
    if suffix == ".onnx":
        return "onnx"
    raise InvalidInputError(
        f"cannot tell the format of {p}: not .onnx, .tflite (TFL3 magic) or .pt2",
        hint="rename the file with its format's extension (.onnx, .tflite, .pt2)",
    )


_TORCH_SAVE_SUFFIXES = frozenset({".pt", ".pth", ".ckpt"})
_PICKLE_PROTOCOL_BYTE = 0x80


def _zip_names(path: Path) -> list[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def _is_export_archive(path: Path, head: bytes) -> bool:
    """A ``torch.export.save`` archive: a zip holding ``archive_format``."""
    return head[:4] == _ZIP_MAGIC and any(
        n.endswith("/archive_format") or n == "archive_format" for n in _zip_names(path)
    )


def _is_torch_save(path: Path, head: bytes) -> bool:
    """A ``torch.save`` file: a pickle, or a zip holding ``data.pkl``."""
    if head[:1] == bytes([_PICKLE_PROTOCOL_BYTE]):
        return True
    return head[:4] == _ZIP_MAGIC and any(n.endswith("/data.pkl") for n in _zip_names(path))


def _state_dict_error(path: Path) -> InvalidInputError:
    return InvalidInputError(
        f"{path} is a PyTorch checkpoint saved with torch.save (a state dict or a pickled "
        "module): it holds weights but no graph of the computation, so npuc cannot compile it",
        hint="load the weights into the model class in Python, then export a graph: "
        "torch.export.save(torch.export.export(model.eval(), (example_input,)), 'model.pt2') "
        "or torch.onnx.export(model.eval(), (example_input,), 'model.onnx'); "
        "npuc builds the .pt2 or .onnx file",
    )


def load(
    source: str | os.PathLike[str] | onnx.ModelProto,
    input_shapes: InputShapes | None = None,
    input_values: Mapping[str, Any] | None = None,
) -> ImportedModel:
    """Import a model into a Relax IRModule with static input shapes.

    Parameters
    ----------
    source
        Path of an ONNX (``.onnx``), TFLite (``.tflite``) or PyTorch exported
        program (``.pt2``) file, or an in-memory ``onnx.ModelProto``.
    input_shapes
        Shapes for inputs with symbolic dimensions, by input name
        (``{"images": (1, 3, 640, 640)}``). Required for every input whose
        shape the model leaves open.
    input_values
        ONNX only: inputs fixed to constant values, by name (a number, a
        comma-separated list, a ``.npy`` path or an array); they are folded
        before import (an ``If`` on them becomes the branch taken) and are
        no longer inputs of the module.

    Returns
    -------
    ImportedModel
        ``(mod, info)``: the Relax module (``main`` takes the inputs in
        ``info.inputs`` order) and the model's :class:`ModelInfo`.

    Raises
    ------
    InvalidInputError
        Missing/corrupt file, unknown format, missing or inconsistent shapes.
    UnsupportedError
        The model uses operators npuc does not support (all are listed).
    """
    if not isinstance(source, (str, os.PathLike)):
        import onnx

        if not isinstance(source, onnx.ModelProto):
            raise InvalidInputError(
                f"cannot import a {type(source).__name__}: pass a model path or an onnx.ModelProto"
            )
        from npuc.frontend.onnx import load_onnx

        return load_onnx(source, input_shapes, input_values)
    fmt = detect_format(source)
    if input_values and fmt != "onnx":
        raise InvalidInputError(
            f"{source}: --input-value is supported for ONNX models only (this is {fmt})",
            hint="fix the value in the model before exporting it",
        )
    if fmt == "tflite":
        from npuc.frontend.tflite import load_tflite

        return load_tflite(Path(source), input_shapes)
    if fmt == "torch":
        from npuc.frontend.torch_export import load_torch

        mod, info = load_torch(Path(source), input_shapes)
        return ImportedModel(mod, info)
    from npuc.frontend.onnx import load_onnx

    return load_onnx(source, input_shapes, input_values)
