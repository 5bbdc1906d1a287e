"""Real-image sample sets built from the bundled photos, for calibration and evaluation.

Random crops (position, scale, mirror) of the colour photos that scikit-image
and scikit-learn ship: real pixels with real statistics, no download. Disjoint
sets come from disjoint seeds *and* disjoint photos when ``split`` is used.
"""

from __future__ import annotations

import numpy as np

from npuc.midend.quantize.images import IMAGENET_MEAN, IMAGENET_STD, resize
from tools.photos import PHOTO_NAMES, photo

EXTRA_SKIMAGE = ("stereo_motorcycle", "hubble_deep_field", "immunohistochemistry", "retina")


def color_photos() -> list[np.ndarray]:
    """Every bundled colour photo as ``(H, W, 3)`` uint8 RGB (11 images)."""
    import skimage.data

    images = [photo(name) for name in PHOTO_NAMES]
    for name in EXTRA_SKIMAGE:
        value = getattr(skimage.data, name)()
        for img in value[:2] if isinstance(value, tuple) else (value,):
            images.append(np.ascontiguousarray(np.asarray(img)[..., :3].astype(np.uint8)))
    return images


def random_crops(count: int, *, height: int, width: int, seed: int) -> np.ndarray:
    """``count`` random crops resized to ``height x width``: ``(count, H, W, 3)`` uint8 RGB.

    Each crop covers 30-100% of a photo's shorter side at a random position,
    mirrored half of the time; ``seed`` makes the set reproducible.
    """
    rng = np.random.default_rng(seed)
    images = color_photos()
    out = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        img = images[int(rng.integers(len(images)))]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        ch, cw = side, min(w, int(side * width / height))
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        crop = img[top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = resize(np.ascontiguousarray(crop), height, width)
    return out


def imagenet_batch(count: int, *, seed: int, size: int = 224) -> np.ndarray:
    """Random crops normalised for torchvision ImageNet models: ``(count, 3, S, S)`` float32."""
    crops = random_crops(count, height=size, width=size, seed=seed).astype(np.float32) / 255.0
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(((crops - mean) / std).transpose(0, 3, 1, 2))
