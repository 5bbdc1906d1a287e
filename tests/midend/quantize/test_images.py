"""Image preprocessing for calibration: every step, the presets and the TOML table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    ImagePreprocess,
    center_crop,
    load_image,
    resize,
    resize_short_side,
)

RED, GREEN, BLUE = 200, 100, 20


def _flat_image(height: int = 300, width: int = 400) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[:] = (RED, GREEN, BLUE)
    return img


def test_imagenet_preset_normalises_each_channel() -> None:
    x = PRESETS["imagenet"](_flat_image())
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    for c, value in enumerate((RED, GREEN, BLUE)):
        expected = (value / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        np.testing.assert_allclose(x[0, c], expected, rtol=1e-6)


def test_bgr_reverses_channels_before_the_mean() -> None:
    x = PRESETS["imagenet_bgr"](_flat_image())
    for c, value in enumerate((BLUE, GREEN, RED)):
        expected = (value / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        np.testing.assert_allclose(x[0, c], expected, rtol=1e-6)


def test_layout_gray_and_integer_dtype() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    raw = ImagePreprocess(scale=1.0, layout="NHWC", dtype="uint8")(img)
    np.testing.assert_array_equal(raw, img[None])
    nchw = ImagePreprocess(scale=1.0, dtype="int16")(img)
    np.testing.assert_array_equal(nchw, img.transpose(2, 0, 1)[None].astype(np.int16))
    clipped = ImagePreprocess(scale=1.0, mean=(100.0,), dtype="int8")(img)
    np.testing.assert_array_equal(
        clipped, np.clip(img.astype(int) - 100, -128, 127).transpose(2, 0, 1)[None]
    )
    gray = ImagePreprocess(channel_order="GRAY", layout="NHWC")(img)
    assert gray.shape == (1, 20, 30, 1)
    expected = np.asarray(Image.fromarray(img).convert("L")) / 255.0
    np.testing.assert_allclose(gray[0, :, :, 0], expected, rtol=1e-6)


def test_geometry_helpers() -> None:
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    np.testing.assert_array_equal(center_crop(img, 2, 4), img[2:4, 2:6])
    assert resize(img, 3, 5).shape == (3, 5, 3)
    assert resize_short_side(img, 12).shape == (12, 16, 3)
    assert ImagePreprocess(resize=(10, 11)).output_shape(10, 11) == (1, 3, 10, 11)
    assert ImagePreprocess(resize=(10, 11))(img).shape == (1, 3, 10, 11)
    with pytest.raises(ValueError, match="larger than the image"):
        center_crop(img, 7, 2)


def test_load_decodes_files_and_names_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "flat.png"
    Image.fromarray(_flat_image(40, 50)).save(path)
    np.testing.assert_array_equal(load_image(path), _flat_image(40, 50))
    assert load_image(path, gray=True).shape == (40, 50, 1)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(InvalidInputError, match=r"broken\.jpg: cannot be decoded"):
        load_image(bad)
    with pytest.raises(InvalidInputError, match=r"flat\.png: crop 224x224 is larger") as info:
        ImagePreprocess(center_crop=(224, 224)).load(path)
    assert "center_crop" in (info.value.hint or "")


def test_from_mapping_preset_and_overrides() -> None:
    pre = ImagePreprocess.from_mapping(
        {"preset": "imagenet", "center_crop": 200, "layout": "nhwc", "mean": 0.5, "scale": 1}
    )
    assert pre.center_crop == (200, 200) and pre.resize == 256 and pre.layout == "NHWC"
    assert pre.mean == (0.5,) and pre.std == IMAGENET_STD and pre.scale == 1.0
    assert ImagePreprocess.from_mapping({"resize": [48, 320]}).resize == (48, 320)
    assert ImagePreprocess.from_mapping({}) == ImagePreprocess()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"resize": 256, "crop": 224}, "has an unknown key 'crop'"),
        ({"preset": "coco"}, "preset 'coco' is not known"),
        ({"resize": "big"}, "resize: expected an integer or"),
        ({"resize": True}, "resize: expected an integer or"),
        ({"center_crop": [1, 2, 3]}, "center_crop: expected an integer or"),
        ({"mean": "zero"}, "mean: expected a number"),
        ({"scale": [1, 2]}, "scale: expected a number"),
        ({"layout": "CHW"}, "layout: 'CHW' is not one of"),
        ({"channel_order": 3}, "channel_order: expected a string"),
        ({"dtype": "complex64"}, "dtype: 'complex64' is not one of"),
        ({"mean": [0.1, 0.2]}, "mean: 2 values for 3 channel"),
        ({"std": [1.0, 0.0, 1.0]}, "std: values must be finite and nonzero"),
        ({"scale": 0}, "scale: must be finite and nonzero"),
        ({"resize": 0}, "sizes must be positive"),
    ],
)
def test_from_mapping_rejects_bad_tables(table: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=r"\[preprocess\] " + message.replace("(", r"\(")):
        ImagePreprocess.from_mapping(table)
