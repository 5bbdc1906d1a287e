"""Format dispatch: content and extension pick the importer; unknown formats are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx import helper

from npuc.core.errors import InvalidInputError
from npuc.frontend import detect_format, load
from tests.frontend.onnx_graphs import GraphSpec, make_model


def _relu_model_bytes() -> bytes:
    return make_model(
        GraphSpec([helper.make_node("Relu", ["x"], ["y"])], {"x": (2, 3)})
    ).SerializeToString()


def test_onnx_by_extension(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(_relu_model_bytes())
    assert detect_format(path) == "onnx"
    _mod, info = load(path)
    assert info.source_format == "onnx" and info.source_path == str(path)
    assert info.layout == "unknown"  # no 4-D image input
    assert len(info.source_sha256) == 64


def test_tflite_by_magic_whatever_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 32)
    assert detect_format(path) == "tflite"


def test_tflite_and_torch_by_extension(tmp_path: Path) -> None:
    (tmp_path / "a.tflite").write_bytes(b"\x00" * 16)
    (tmp_path / "b.pt2").write_bytes(b"PK\x03\x04" + b"\x00" * 16)
    assert detect_format(tmp_path / "a.tflite") == "tflite"
    assert detect_format(tmp_path / "b.pt2") == "torch"


@pytest.mark.parametrize("name", ["weights.bin", "model", "model.txt"])
def test_unknown_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x08\x01\x12\x00 some bytes")
    with pytest.raises(InvalidInputError, match=f"cannot tell the format of .*{name}"):
        load(path)


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        detect_format(tmp_path / "none.tflite")
    with pytest.raises(InvalidInputError, match="is a folder"):
        detect_format(tmp_path)


def test_wrong_source_type() -> None:
    with pytest.raises(InvalidInputError, match="cannot import a dict"):
        load({"not": "a model"})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["weights.pth", "weights.pt", "weights.ckpt", "weights.bin"])
@pytest.mark.parametrize("zip_format", [True, False])
def test_state_dict_says_there_is_no_graph(tmp_path: Path, name: str, zip_format: bool) -> None:
    """A torch.save checkpoint (zip or legacy pickle) is weights only: say how to export a graph."""
    torch = pytest.importorskip("torch")
    path = tmp_path / name
    torch.save(torch.nn.Linear(3, 2).state_dict(), path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(InvalidInputError, match="holds weights but no graph") as err:
        detect_format(path)
    assert "torch.export.export" in (err.value.hint or "")
    assert "torch.onnx.export" in (err.value.hint or "")
    assert "rename" not in (err.value.hint or "")


def test_export_archive_under_any_torch_suffix(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    program = torch.export.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),))
    for name in ("m.pt2", "m.pt", "m.pth"):
        torch.export.save(program, tmp_path / name)
        assert detect_format(tmp_path / name) == "torch"
