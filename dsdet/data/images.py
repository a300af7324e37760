"""Image files: a cheap header check at load time, and decoding to a float RGB `tv_tensors.Image`."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from dsdet.errors import DsdetError

# What PIL raises on files it cannot parse (truncated, not an image, bad chunk, too large).
PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageFileError(DsdetError):
    """An image file that is missing (`kind="missing"`) or cannot be read (`kind="unreadable"`)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header, after PIL's `verify()`; raises ImageFileError."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            image.verify()
    except FileNotFoundError:
        raise ImageFileError(f"image file not found: {path}", "missing") from None
    except PIL_ERRORS as exc:
        raise ImageFileError(f"cannot read image {path}: {exc}", "unreadable") from None
    return height, width


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert grayscale, palette, RGBA, CMYK, 16-bit and other modes to 8-bit RGB."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        scale = 1 / 256 if image.mode.startswith("I;16") else 1.0
        image = image.point(lambda value: value * scale).convert("L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def load_rgb(path: Path) -> tv_tensors.Image:
    """Decode `path` to a float32 CHW RGB image in [0, 1]; PIL errors propagate to the caller."""
    with Image.open(path) as image:
        rgb = to_rgb(image)
        rgb.load()
    return tv_tensors.Image(F.to_dtype(F.pil_to_tensor(rgb), torch.float32, scale=True))
