"""Compose one scene of the default dataset: a photo crop with digits and faces pasted at several scales."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from dsdet.data.scene_sources import CLASS_NAMES, SceneSources

IMAGE_SIZE = 256
OBJECT_SIDE = (12, 120)
CROWD_SIDE = (12, 32)
FACE_MIN_SIDE = 14
MAX_IOU = 0.35
MAX_COVERED = 0.5  # at most this share of an earlier box may be hidden by later ones
PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class PlacedObject:
    """A pasted object: contiguous label 1..K, its box as XYXY pixel edges and its visible pixels (H x W bool)."""

    label: int
    box: tuple[int, int, int, int]
    mask: np.ndarray


def _resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a float 2-D array."""
    return np.asarray(Image.fromarray(array, mode="F").resize((width, height), Image.BILINEAR))


def _background(sources: SceneSources, rng: np.random.Generator) -> np.ndarray:
    """A random square crop of a random photo, resized to IMAGE_SIZE, maybe mirrored, float RGB."""
    photo = sources.photos[rng.integers(len(sources.photos))]
    height, width = photo.shape[:2]
    side = int(min(height, width) * rng.uniform(0.3, 1.0))
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    crop = Image.fromarray(photo[top : top + side, left : left + side]).resize(
        (IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR
    )
    image = np.asarray(crop, dtype=np.float32) / 255.0 * rng.uniform(0.7, 1.2)
    return np.clip(image[:, ::-1] if rng.random() < 0.5 else image, 0, 1)


def _digit(
    glyph: np.ndarray, side: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Alpha of a digit scaled to `side` pixels high (narrower by up to 30%), and the tight box of its ink."""
    width = max(int(side * rng.uniform(0.7, 1.0)), 4)
    alpha = np.clip((_resize(glyph, width, side) - 0.3) / 0.4, 0, 1)
    rows, cols = np.nonzero(alpha > 0.5)
    return alpha, (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)


def _patch(crop: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """A gray 25x25 face (or face-free) crop scaled to `side`, with a warm tint, float RGB."""
    tint = np.array([1.0, rng.uniform(0.8, 0.95), rng.uniform(0.65, 0.85)], dtype=np.float32)
    return np.clip(_resize(crop, side, side)[..., None] * tint * rng.uniform(0.8, 1.2), 0, 1)


def _ink_colour(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random colour far in brightness from the background under the digit."""
    dark = background.mean() > 0.5
    colour = rng.uniform(0.0, 0.3, 3) if dark else rng.uniform(0.7, 1.0, 3)
    channel = rng.integers(3)
    colour[channel] = rng.uniform(0.5, 1.0) if dark else rng.uniform(0.0, 0.5)
    return colour.astype(np.float32)


def _fits(box: tuple[int, int, int, int], placed: list[PlacedObject]) -> bool:
    """Whether `box` overlaps each placed box by less than MAX_IOU and hides at most MAX_COVERED of it."""
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    for other in placed:
        ox1, oy1, ox2, oy2 = other.box
        inter = max(0, min(x2, ox2) - max(x1, ox1)) * max(0, min(y2, oy2) - max(y1, oy1))
        other_area = (ox2 - ox1) * (oy2 - oy1)
        if inter / (area + other_area - inter) >= MAX_IOU or inter / other_area > MAX_COVERED:
            return False
    return True


def _log_uniform(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer between low and high, uniform in log scale."""
    return int(round(np.exp(rng.uniform(np.log(low), np.log(high)))))


def _paste(image: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """Alpha-blend `rgb` (h x w x 3 or a colour) at (x, y) in place."""
    h, w = alpha.shape
    region = image[y : y + h, x : x + w]
    region[:] = region * (1 - alpha[..., None]) + rgb * alpha[..., None]


def _place_one(image: np.ndarray, sources: SceneSources, side: int, placed: list[PlacedObject], rng) -> None:
    """Paste one object of a random class where it fits, appending it to `placed` (skipped if nothing fits)."""
    label = int(rng.integers(len(CLASS_NAMES))) + 1
    name = CLASS_NAMES[label - 1]
    if name == "face":
        side = max(side, FACE_MIN_SIDE)
        rgb = _patch(sources.faces[rng.integers(len(sources.faces))], side, rng)
        alpha, tight = np.ones((side, side), np.float32), (0, 0, side, side)
    else:
        glyphs = sources.digits[name]
        alpha, tight = _digit(glyphs[rng.integers(len(glyphs))], side, rng)
        rgb = None
    h, w = alpha.shape
    for _ in range(PLACEMENT_TRIES):
        x, y = int(rng.integers(0, IMAGE_SIZE - w + 1)), int(rng.integers(0, IMAGE_SIZE - h + 1))
        box = (x + tight[0], y + tight[1], x + tight[2], y + tight[3])
        if _fits(box, placed):
            colour = rgb if rgb is not None else _ink_colour(image[y : y + h, x : x + w], rng)
            _paste(image, colour, alpha, x, y)
            mask = np.zeros(image.shape[:2], bool)
            mask[y : y + h, x : x + w] = alpha > 0.5
            for earlier in placed:  # later objects hide what they cover of earlier ones
                earlier.mask[mask] = False
            placed.append(PlacedObject(label, box, mask))
            return


def compose_scene(sources: SceneSources, rng: np.random.Generator) -> tuple[np.ndarray, list[PlacedObject]]:
    """One uint8 IMAGE_SIZE x IMAGE_SIZE x 3 scene and its objects (some scenes empty, some crowded)."""
    image = np.array(_background(sources, rng), dtype=np.float32)
    for _ in range(rng.integers(0, 3)):  # face-free patches: unlabelled look-alikes of the face class
        side = _log_uniform(rng, FACE_MIN_SIDE, 80)
        crop = sources.non_faces[rng.integers(len(sources.non_faces))]
        x, y = rng.integers(0, IMAGE_SIZE - side + 1, size=2)
        _paste(image, _patch(crop, side, rng), np.ones((side, side), np.float32), int(x), int(y))
    kind = rng.random()
    count, sides = (
        (0, OBJECT_SIDE)
        if kind < 0.05
        else (rng.integers(6, 13), CROWD_SIDE)
        if kind < 0.2
        else (rng.integers(1, 7), OBJECT_SIDE)
    )
    placed: list[PlacedObject] = []
    for _ in range(count):
        _place_one(image, sources, _log_uniform(rng, *sides), placed, rng)
    return (image * 255 + 0.5).astype(np.uint8), placed
