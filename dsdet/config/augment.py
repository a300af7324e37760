"""`data.augment` items: one model per augmentation `name`, with the parameters of docs/CONTRACTS.md."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from dsdet.config.base import Float, Int, StrictModel, tagged_union

Probability = Annotated[Float, Field(ge=0, le=1)]
Factor = Annotated[Float, Field(ge=0)]
Pixels = Annotated[Int, Field(ge=1)]


class HFlip(StrictModel):
    """RandomHorizontalFlip."""

    name: Literal["hflip"]
    p: Probability = Field(0.5, description="Probability of flipping.")


class VFlip(StrictModel):
    """RandomVerticalFlip."""

    name: Literal["vflip"]
    p: Probability = Field(0.5, description="Probability of flipping.")


class Brightness(StrictModel):
    """ColorJitter(brightness=factor)."""

    name: Literal["brightness"]
    factor: Factor = Field(0.2, description="Brightness varies by up to this fraction.")


class Contrast(StrictModel):
    """ColorJitter(contrast=factor)."""

    name: Literal["contrast"]
    factor: Factor = Field(0.2, description="Contrast varies by up to this fraction.")


class Rotation(StrictModel):
    """RandomRotation; boxes follow."""

    name: Literal["rotation"]
    degrees: Annotated[Float, Field(ge=0, le=180)] = Field(
        10.0, description="Rotate by up to +/- this many degrees."
    )


class ScaleJitter(StrictModel):
    """ScaleJitter around a target size."""

    name: Literal["scale_jitter"]
    target_size: tuple[Pixels, Pixels] = Field(description="[H, W] the scales refer to.")
    scale_range: tuple[Annotated[Float, Field(gt=0)], Annotated[Float, Field(gt=0)]] = Field(
        (0.1, 2.0), description="[low, high] scale factors."
    )

    @model_validator(mode="after")
    def _range_in_order(self) -> ScaleJitter:
        if self.scale_range[0] > self.scale_range[1]:
            raise ValueError(f"scale_range {list(self.scale_range)} must be [low, high]")
        return self


class Resize(StrictModel):
    """Resize the shorter side to `size`, the longer side at most `max_size`."""

    name: Literal["resize"]
    size: Pixels = Field(description="Length of the shorter side after resizing.")
    max_size: Pixels | None = Field(None, description="Upper bound of the longer side (null = none).")

    @model_validator(mode="after")
    def _max_above_size(self) -> Resize:
        if self.max_size is not None and self.max_size <= self.size:
            raise ValueError(f"max_size {self.max_size} must be above size {self.size}")
        return self


class Photometric(StrictModel):
    """RandomPhotometricDistort."""

    name: Literal["photometric"]
    p: Probability = Field(0.5, description="Probability of each distortion.")


class ZoomOut(StrictModel):
    """RandomZoomOut: place the image on a larger canvas."""

    name: Literal["zoom_out"]
    fill: Annotated[Float, Field(ge=0)] = Field(0, description="Canvas fill value.")
    side_range: tuple[Annotated[Float, Field(ge=1)], Annotated[Float, Field(ge=1)]] = Field(
        (1.0, 4.0), description="[low, high] canvas side / image side."
    )
    p: Probability = Field(0.5, description="Probability of zooming out.")

    @model_validator(mode="after")
    def _range_in_order(self) -> ZoomOut:
        if self.side_range[0] > self.side_range[1]:
            raise ValueError(f"side_range {list(self.side_range)} must be [low, high]")
        return self


class SSDCrop(StrictModel):
    """RandomIoUCrop, as in SSD."""

    name: Literal["ssd_crop"]


AugmentConfig = tagged_union(
    "name",
    {
        "hflip": HFlip,
        "vflip": VFlip,
        "brightness": Brightness,
        "contrast": Contrast,
        "rotation": Rotation,
        "scale_jitter": ScaleJitter,
        "resize": Resize,
        "photometric": Photometric,
        "zoom_out": ZoomOut,
        "ssd_crop": SSDCrop,
    },
)
