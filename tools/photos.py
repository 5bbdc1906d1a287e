"""Bundled real photos for demos, benchmarks and tests (no download needed).

They come from packages installed with the ``test`` extra: scikit-image's
``skimage.data`` and scikit-learn's sample images. Every photo is ``(H, W, 3)``
uint8 in **RGB** order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

PhotoName = Literal["astronaut", "chelsea", "coffee", "rocket", "china", "flower"]
PHOTO_NAMES: tuple[PhotoName, ...] = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")


def photo(name: PhotoName) -> np.ndarray:
    """A bundled photo as ``(H, W, 3)`` uint8 RGB.

    ``astronaut`` (512x512, a person), ``chelsea`` (300x451, a cat),
    ``coffee`` (400x600, a cup), ``rocket`` (427x640) from scikit-image;
    ``china`` and ``flower`` (427x640) from scikit-learn.

    Raises
    ------
    ValueError
        The package returned something other than an RGB uint8 image.
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
