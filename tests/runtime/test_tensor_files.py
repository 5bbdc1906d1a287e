"""The --input file conventions and the atomic .npz output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from npuc.core.errors import InvalidInputError
from npuc.core.model_info import ModelInfo, TensorInfo
from npuc.runtime.tensor_files import read_input_files, write_outputs_npz


def _info(*names: str) -> ModelInfo:
    tensors = tuple(TensorInfo(name=n, shape=(2,), dtype="float32") for n in names)
    return ModelInfo(
        source_path="m.onnx", source_format="onnx", source_sha256="", inputs=tensors, outputs=()
    )


X = np.array([1.0, 2.0], dtype=np.float32)
Y = np.array([3.0, 4.0], dtype=np.float32)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    np.savez(tmp_path / "xy.npz", x=X, y=Y)
    np.savez(tmp_path / "one.npz", anything=Y)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    return tmp_path


def _same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], strict=True)


def test_named_npy(files: Path) -> None:
    _same(
        read_input_files([f"x={files}/x.npy", f"y={files}/y.npy"], _info("x", "y")),
        {"x": X, "y": Y},
    )


def test_npz_gives_every_array_by_name(files: Path) -> None:
    _same(read_input_files([f"{files}/xy.npz"], _info("x", "y")), {"x": X, "y": Y})


def test_named_npz_picks_the_array_or_the_only_one(files: Path) -> None:
    _same(read_input_files([f"y={files}/xy.npz"], _info("x", "y")), {"y": Y})
    _same(read_input_files([f"x={files}/one.npz"], _info("x")), {"x": Y})


def test_bare_npy_for_a_single_input_model(files: Path) -> None:
    _same(read_input_files([f"{files}/x.npy"], _info("only")), {"only": X})


@pytest.mark.parametrize(
    ("spec", "names", "message"),
    [
        ("{d}/x.npy", ("x", "y"), r"the model has 2 inputs, so name it \(x, y\)"),
        ("x={d}/missing.npy", ("x",), r"input file .*missing\.npy does not exist"),
        ("x={d}/junk.npy", ("x",), r"junk\.npy: not a readable \.npy array"),
        ("{d}/junk.npz", ("x",), r"junk\.npz: not a readable \.npz archive"),
        ("z={d}/xy.npz", ("z",), r"has no array named 'z' \(it has x, y\)"),
        ("=oops", ("x",), r"is not of the form NAME=FILE or FILE"),
    ],
)
def test_bad_input_specs(files: Path, spec: str, names: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        read_input_files([spec.format(d=files)], _info(*names))


def test_same_input_twice(files: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"input 'x' is given twice"):
        read_input_files([f"{files}/xy.npz", f"x={files}/x.npy"], _info("x", "y"))


def test_write_outputs_npz_round_trip(tmp_path: Path) -> None:
    write_outputs_npz(tmp_path / "out.npz", {"probs": X, "boxes/0": Y})
    with np.load(tmp_path / "out.npz") as archive:
        _same({k: archive[k] for k in archive.files}, {"probs": X, "boxes/0": Y})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_write_outputs_needs_npz_suffix(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"must end in \.npz"):
        write_outputs_npz(tmp_path / "out.bin", {"y": X})
    assert list(tmp_path.iterdir()) == []


def test_outputs_named_like_savez_parameters_are_kept(tmp_path: Path) -> None:
    # np.savez(**outputs) would take these names as its own parameters.
    outputs = {"file": np.arange(3, dtype=np.int8), "allow_pickle": np.ones((2, 2), np.float32)}
    path = tmp_path / "out.npz"
    write_outputs_npz(path, outputs)
    with np.load(path) as archive:
        assert sorted(archive.files) == ["allow_pickle", "file"]
        for name, array in outputs.items():
            np.testing.assert_array_equal(archive[name], array, strict=True)
