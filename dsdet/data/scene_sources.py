"""Real images shipped inside scikit-learn and scikit-image (BSD-3): photos, handwritten digits, faces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import skimage.data
from sklearn.datasets import load_digits, load_sample_image

# Photos without people (astronaut and camera show faces, which would be unlabelled faces), each CC0 or
# public domain; see DEFAULT_DATASET.md.
SKIMAGE_PHOTOS = (
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "brick",
    "grass",
    "gravel",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
# Class name -> the handwritten digit it shows; "face" is the last class.
DIGIT_CLASSES = {"zero": 0, "one": 1, "four": 4, "seven": 7}
CLASS_NAMES = (*DIGIT_CLASSES, "face")
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class SceneSources:
    """Material for one split: background photos, digit glyphs per class, faces and face-free patches."""

    photos: tuple[np.ndarray, ...]
    digits: dict[str, np.ndarray]
    faces: np.ndarray
    non_faces: np.ndarray


def _rgb(image: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 from a gray or RGB(A) array."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def _split(items: np.ndarray, split: str, seed: int) -> np.ndarray:
    """The train or val share of `items`, from a fixed shuffle (train and val never share an item)."""
    order = np.random.default_rng(seed).permutation(len(items))
    cut = int(round(len(items) * VAL_FRACTION))
    return items[order[cut:] if split == "train" else order[:cut]]


def load_sources(split: str) -> SceneSources:
    """The photos (shared by both splits) and this split's own digits, faces and face-free patches."""
    photos = tuple(_rgb(getattr(skimage.data, name)()) for name in SKIMAGE_PHOTOS)
    photos += tuple(_rgb(load_sample_image(name)) for name in SKLEARN_PHOTOS)
    digits = load_digits()
    glyphs = (digits.images / 16.0).astype(np.float32)
    by_class = {
        name: _split(glyphs[digits.target == digit], split, digit) for name, digit in DIGIT_CLASSES.items()
    }
    lfw = skimage.data.lfw_subset().astype(np.float32)
    return SceneSources(photos, by_class, _split(lfw[:100], split, 100), _split(lfw[100:], split, 101))
