"""Calibration data errors: each names the file (or origin) and the sample index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npuc.core.errors import InvalidInputError
from npuc.core.model_info import TensorInfo
from npuc.midend.quantize.calib_data import load_calibration
from npuc.midend.quantize.images import ImagePreprocess

X = TensorInfo(name="x", shape=(1, 3, 8, 8), dtype="float32")
TWO = (X, TensorInfo(name="ids", shape=(1, 4), dtype="int64"))


def _error(source: Path | str, inputs: tuple[TensorInfo, ...] = (X,), **kw: object) -> str:
    with pytest.raises(InvalidInputError) as info:
        list(load_calibration(str(source), inputs, **kw))  # type: ignore[arg-type]
    return info.value.message + " | hint: " + str(info.value.hint)


def _good(folder: Path, n: int) -> None:
    for i in range(n):
        np.save(folder / f"{i:02d}.npy", np.zeros((1, 3, 8, 8), np.float32))


def test_wrong_shape_names_file_and_sample_index(tmp_path: Path) -> None:
    _good(tmp_path, 3)
    np.save(tmp_path / "03.npy", np.zeros((1, 3, 9, 8), np.float32))
    msg = _error(tmp_path)
    assert "03.npy" in msg and "calibration sample 3" in msg
    assert "has shape 1x3x9x8 but the model expects 1x3x8x8" in msg


def test_wrong_dtype(tmp_path: Path) -> None:
    _good(tmp_path, 1)
    np.save(tmp_path / "01.npy", np.zeros((2, 3, 8, 8), np.float64))
    msg = _error(tmp_path)
    assert "01.npy (calibration sample 1)" in msg
    assert "input 'x' is float64 but the model expects float32" in msg
    assert "astype(numpy.float32)" in msg


def test_wrong_and_missing_names_in_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((1, 3, 8, 8), np.float32), idz=np.zeros((1, 4)))
    msg = _error(tmp_path / "a.npz", TWO)
    assert "a.npz (calibration sample 0)" in msg and "array 'idz' is not an input" in msg
    assert "ids, x" in msg or "x, ids" in msg
    np.savez(tmp_path / "b.npz", x=np.zeros((1, 3, 8, 8), np.float32))
    assert "no array for input 'ids'" in _error(tmp_path / "b.npz", TWO)


def test_npz_inputs_with_different_sample_counts(tmp_path: Path) -> None:
    ids = np.zeros((3, 4), np.int64)
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 3, 8, 8), np.float32), ids=ids)
    assert "different numbers of samples (x: 2, ids: 3)" in _error(tmp_path / "a.npz", TWO)


def test_npy_for_a_model_with_two_inputs(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((1, 3, 8, 8), np.float32))
    msg = _error(tmp_path / "a.npy", TWO)
    assert "a.npy" in msg and "one input" in msg and "x, ids" in msg


def test_unreadable_and_corrupt_files(tmp_path: Path) -> None:
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    assert "bad.npy" in _error(tmp_path / "bad.npy")
    (tmp_path / "bad.npz").write_bytes(b"PK not a zip")
    assert "bad.npz: not a readable .npz archive" in _error(tmp_path / "bad.npz")
    (tmp_path / "zip.npy").write_bytes(b"PK\x03\x04 zip")
    assert "name it .npz" in _error(tmp_path / "zip.npy")
    (tmp_path / "list.txt").write_bytes(b"\xff\xfe\x00binary")
    assert "list.txt: cannot be read as a text file" in _error(tmp_path / "list.txt")


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    assert f"{tmp_path / 'nope'} does not exist" in _error(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "holds no .npy, .npz or image files |" in _error(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.md").write_text("x")
    assert "(1 other files were skipped)" in _error(tmp_path / "other")


def test_list_file_errors_name_the_line(tmp_path: Path) -> None:
    listing = tmp_path / "calib.lst"
    listing.write_text("# header\nmissing.npy\n")
    msg = _error(listing)
    assert "calib.lst, line 2" in msg and "missing.npy does not exist" in msg
    listing.write_text("notes.md\n")
    assert "line 1: 'notes.md' is not an .npy, .npz or image file" in _error(listing)
    listing.write_text("# nothing\n\n")
    assert "names no files" in _error(listing)


def test_images_need_preprocess_and_the_right_size(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "b.png")
    assert "a.png is an image, and images need a [preprocess] section" in _error(tmp_path)
    msg = _error(tmp_path, preprocess=ImagePreprocess(resize=(8, 9)))
    assert "image " in msg and "a.png sample 0" in msg and "1x3x8x9" in msg
    assert "adjust resize and center_crop" in msg
    (tmp_path / "b.png").write_bytes(b"broken")
    msg = _error(tmp_path, preprocess=ImagePreprocess(resize=(8, 8)))
    assert "b.png: cannot be decoded" in msg
    assert "can only feed a model with one input" in _error(
        tmp_path, TWO, preprocess=ImagePreprocess(resize=(8, 8))
    )


def test_bad_limit() -> None:
    assert "limit must be >= 1" in _error("random", limit=0)
