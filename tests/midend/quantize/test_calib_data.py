"""Calibration data: every source kind, the exact sample checks and every error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npuc.core.errors import InvalidInputError
from npuc.core.model_info import TensorInfo
from npuc.midend.quantize import calib_plugins as plugins
from npuc.midend.quantize.calib_data import load_calibration
from npuc.midend.quantize.calib_plugins import RandomCalibrationWarning
from npuc.midend.quantize.images import ImagePreprocess

X = TensorInfo(name="x", shape=(1, 3, 8, 8), dtype="float32")
TWO = (X, TensorInfo(name="ids", shape=(1, 4), dtype="int64"))


def _batch(n: int, seed: int = 0, shape: tuple[int, ...] = (3, 8, 8)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def _samples(source: Path | str, inputs: tuple[TensorInfo, ...] = (X,), **kw: object) -> list:
    return list(load_calibration(str(source), inputs, **kw))  # type: ignore[arg-type]


def test_npy_batch_single_and_stacked(tmp_path: Path) -> None:
    data = _batch(5)
    np.save(tmp_path / "batch.npy", data)
    samples = _samples(tmp_path / "batch.npy")
    assert len(samples) == 5
    for i, s in enumerate(samples):
        assert list(s) == ["x"] and s["x"].shape == (1, 3, 8, 8) and s["x"].dtype == np.float32
        np.testing.assert_array_equal(s["x"][0], data[i])
    assert repr(load_calibration(tmp_path / "batch.npy", (X,))) == (
        f"CalibrationSet('{tmp_path / 'batch.npy'}', 5 samples)"
    )
    np.save(tmp_path / "one.npy", data[:1])
    assert len(_samples(tmp_path / "one.npy")) == 1
    # A model without a batch axis: samples stacked on an extra leading axis.
    chw = TensorInfo(name="x", shape=(3, 8, 8), dtype="float32")
    samples = _samples(tmp_path / "batch.npy", (chw,))
    assert len(samples) == 5 and samples[2]["x"].shape == (3, 8, 8)
    np.testing.assert_array_equal(samples[2]["x"], data[2])
    # A symbolic batch takes samples of batch 1 along it.
    sym = TensorInfo(name="x", shape=("N", 3, 8, 8), dtype="float32")
    assert [s["x"].shape for s in _samples(tmp_path / "batch.npy", (sym,))] == [(1, 3, 8, 8)] * 5


def test_npz_one_array_per_input(tmp_path: Path) -> None:
    ids = np.arange(12, dtype=np.int64).reshape(3, 4)
    np.savez(tmp_path / "both.npz", x=_batch(3), ids=ids)
    samples = _samples(tmp_path / "both.npz", TWO)
    assert len(samples) == 3
    assert sorted(samples[1]) == ["ids", "x"]
    np.testing.assert_array_equal(samples[1]["ids"], ids[1:2])


def test_folder_sorted_recursive_mixed_files(tmp_path: Path) -> None:
    data = _batch(6)
    np.save(tmp_path / "b.npy", data[2:5])  # a batch of 3
    np.save(tmp_path / "a.npy", data[0:2])
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "c.npz", x=data[5:6])
    (tmp_path / "README.txt").write_text("not data")
    (tmp_path / ".hidden.npy").write_bytes(b"junk")
    samples = _samples(tmp_path)
    assert len(samples) == 6
    np.testing.assert_array_equal(np.concatenate([s["x"] for s in samples]), data)
    assert len(_samples(tmp_path, limit=4)) == 4


def test_list_file_relative_with_comments(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    data = _batch(3)
    for i in range(3):
        np.save(tmp_path / "data" / f"{i}.npy", data[i : i + 1])
    listing = tmp_path / "calib.txt"
    listing.write_text("# three samples\ndata/2.npy\n\n  data/0.npy  \n")
    samples = _samples(listing)
    np.testing.assert_array_equal(samples[0]["x"], data[2:3])
    np.testing.assert_array_equal(samples[1]["x"], data[0:1])


def _images(folder: Path, n: int, size: tuple[int, int] = (60, 80)) -> None:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.{('png', 'jpg', 'bmp')[i % 3]}")


def test_image_folder_with_preprocess(tmp_path: Path) -> None:
    _images(tmp_path / "imgs", 4)
    pre = ImagePreprocess(resize=(8, 8))
    samples = _samples(tmp_path / "imgs", preprocess=pre)
    assert len(samples) == 4 and all(s["x"].shape == (1, 3, 8, 8) for s in samples)
    expected = pre.load(tmp_path / "imgs" / "img1.jpg")
    np.testing.assert_array_equal(samples[1]["x"], expected)


def test_plugin_module_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "toy_data.py").write_text(
        "import numpy as np\n"
        "def arrays():\n"
        "    for i in range(3):\n"
        "        yield np.full((2, 3, 8, 8), i, np.float32)  # batches of 2\n"
        "def dicts(inputs):\n"
        "    shape = inputs[0].shape\n"
        "    return [{'x': np.zeros(shape, np.float32)} for _ in range(4)]\n"
        "def bad_shape():\n"
        "    return [np.zeros((1, 3, 8, 8), np.float32), np.zeros((1, 3, 9, 8), np.float32)]\n"
        "def broken():\n"
        "    raise RuntimeError('no data server')\n"
        "def nothing():\n"
        "    return []\n"
        "def endless():\n"
        "    while True:\n"
        "        yield np.zeros((1, 3, 8, 8), np.float32)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    samples = _samples("toy_data:arrays")
    assert [float(s["x"].flat[0]) for s in samples] == [0, 0, 1, 1, 2, 2]
    assert len(_samples("toy_data:arrays", limit=3)) == 3
    assert len(_samples("toy_data:dicts")) == 4
    with pytest.raises(InvalidInputError, match=r"toy_data:bad_shape item 1: input 'x' has shape"):
        _samples("toy_data:bad_shape")
    with pytest.raises(InvalidInputError, match="toy_data:broken failed: RuntimeError: no data"):
        _samples("toy_data:broken")
    with pytest.raises(InvalidInputError, match="toy_data:nothing yielded no samples"):
        _samples("toy_data:nothing")
    assert len(_samples("toy_data:endless", limit=5)) == 5
    monkeypatch.setattr(plugins, "MAX_PLUGIN_SAMPLES", 50)
    with pytest.raises(InvalidInputError, match="toy_data:endless yielded more than 50"):
        _samples("toy_data:endless")
    with pytest.raises(InvalidInputError, match="toy_data:missing: cannot be loaded"):
        _samples("toy_data:missing")
    with pytest.raises(InvalidInputError, match="no_such_module:fn: cannot be loaded"):
        _samples("no_such_module:fn")


def test_plugin_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    (tmp_path / "toy_ep.py").write_text(
        "import numpy as np\ndef data():\n    return [np.ones((1, 3, 8, 8), np.float32)]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = [EntryPoint(name="toy", value="toy_ep:data", group=plugins.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(plugins, "entry_points", lambda group: found if group else [])
    (sample,) = _samples("toy")
    np.testing.assert_array_equal(sample["x"], np.ones((1, 3, 8, 8), np.float32))


def test_random_warns_and_is_marked() -> None:
    with pytest.warns(RandomCalibrationWarning, match="random noise"):
        data = load_calibration("random", TWO, limit=3, seed=5)
    assert data.is_random and len(data) == 3
    first = list(data)
    assert first[0]["x"].shape == (1, 3, 8, 8) and first[0]["ids"].dtype == np.int64
    np.testing.assert_array_equal(first[2]["x"], list(data)[2]["x"])  # reproducible
    assert not np.array_equal(first[0]["x"], first[1]["x"])
    with pytest.warns(RandomCalibrationWarning):
        uniform = list(load_calibration("random:uniform", (X,), limit=2))
    assert uniform[0]["x"].min() >= 0.0 and uniform[0]["x"].max() < 1.0
    with pytest.warns(RandomCalibrationWarning):
        assert len(load_calibration("random", (X,))) == 16


def test_random_needs_static_shapes() -> None:
    sym = TensorInfo(name="x", shape=("N", 3), dtype="float32")
    with pytest.raises(InvalidInputError, match="'x' has symbolic dimensions") as info:
        load_calibration("random", (sym,))
    assert "--input-shape" in (info.value.hint or "")


def test_no_data_explains_the_choices() -> None:
    for source in (None, ""):
        with pytest.raises(InvalidInputError, match="calibration data is needed") as info:
            load_calibration(source, (X,))
        assert "--calib random" in (info.value.hint or "")


def test_take_and_split_are_disjoint(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", _batch(10))
    data = load_calibration(str(tmp_path / "d.npy"), (X,))
    calib, evaluate = data.split(4, 6)
    a = np.concatenate([s["x"] for s in calib])
    b = np.concatenate([s["x"] for s in evaluate])
    np.testing.assert_array_equal(np.concatenate([a, b]), _batch(10))
    parts = data.split(3, 3, 3, seed=1)
    refs = [r.index for p in parts for r in p.refs]
    assert len(set(refs)) == 9 and refs != sorted(refs)
    assert [r.index for r in data.take([7, 1]).refs] == [7, 1]
    with pytest.raises(InvalidInputError, match="11 samples asked for"):
        data.split(5, 6)
    with pytest.raises(InvalidInputError, match="sample 10 is out of range"):
        data.take([10])


def test_data_is_read_lazily_up_to_the_limit(tmp_path: Path) -> None:
    for i in range(4):
        np.save(tmp_path / f"{i}.npy", _batch(1, seed=i))
    (tmp_path / "4.npy").write_bytes(b"corrupt")  # beyond the limit: never opened
    data = load_calibration(str(tmp_path), (X,), limit=3)
    assert len(data) == 3
    (tmp_path / "2.npy").unlink()  # headers were checked, data not read yet
    loaded = iter(data)
    next(loaded), next(loaded)
    with pytest.raises(InvalidInputError, match=r"2\.npy"):
        next(loaded)


def test_real_photos_through_the_imagenet_preset(tmp_path: Path) -> None:
    from npuc.midend.quantize.images import PRESETS
    from tools.photos import PHOTO_NAMES, photo

    for name in PHOTO_NAMES:
        Image.fromarray(photo(name)).save(tmp_path / f"{name}.png")
    info = TensorInfo(name="images", shape=(1, 3, 224, 224), dtype="float32")
    data = load_calibration(str(tmp_path), (info,), preprocess=PRESETS["imagenet"])
    calib, evaluate = data.split(4, 2)
    names = sorted(PHOTO_NAMES)
    for i, sample in enumerate([*calib, *evaluate]):
        np.testing.assert_array_equal(sample["images"], PRESETS["imagenet"](photo(names[i])))
