"""Card options shared by the file-based readers, declared once as strict models.

A card's ``[options]`` table is validated against its reader's model when the
card is loaded (:func:`bench.readers.cards.card_from_table`); readers then use
the typed object. Each reader's model combines the groups below with its own
options (see :func:`bench.readers.registry.option_reference` for the full,
generated list).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, field_validator

from bench.settings import Items, Settings

T = TypeVar("T")


def _array_to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _int_keys(value: Any) -> Any:
    """TOML keys are strings: ``{ 9 = 0 }`` arrives as ``{"9": 0}``."""
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k: v
                for k, v in value.items()}
    return value


#: Two numbers, such as ``[low, high]`` or ``[row, col]``.
Pair = Annotated[tuple[float, float], BeforeValidator(_array_to_tuple)]
#: One template, or a list of alternatives.
Templates = str | Items[str]
#: Mask value -> the value it stands for (``remap = { 9 = 0 }``).
ValueMap = Annotated[dict[int, int], BeforeValidator(_int_keys)]
#: A voxel or pixel size in mm: finite and positive.
Size = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Spacing = Items[Size]
PixelSpacing = Annotated[tuple[Size, Size], BeforeValidator(_array_to_tuple)]
#: A slicing axis of a 3D array.
Axis = Annotated[int, Field(ge=0, le=2)]


class LabelOptions(Settings):
    """How a dataset's mask files become one boolean mask per target."""

    labels: dict[str, int] = Field(default_factory=dict, description=(
        "label values of the dataset, name -> value (background is 'background', default 0)"))
    regions: dict[str, Items[str | int]] = Field(default_factory=dict, description=(
        "target -> label names or values merged into it (BTCV 'AG' = both adrenals; "
        "BraTS WT/TC/ET)"))
    background: int = Field(0, description="label value of the background")
    levels: Items[float] | None = Field(None, description=(
        "every grey level the masks may hold (besides background and label values); a mask "
        "holding any other value is refused, never snapped to a level"))
    remap: ValueMap = Field(default_factory=dict, description=(
        "mask value -> the value it stands for, applied before decoding: declares stray "
        "values of a published mask, e.g. WBC's { 9 = 0 } (remapped values are reported)"))
    remap_files: Items[str] = Field((), description=(
        "shell-style patterns over mask paths relative to the root (* crosses folders): "
        "remap applies only to these files, e.g. ['Dataset 2/050.png'] (default: every mask)"))
    encoding: Literal["grey", "palette"] = Field("grey", description=(
        "how mask pixels are read: 'grey' (grey levels; a palette image must have a grey "
        "palette) or 'palette' (the palette indices of palette images, e.g. VOC-style PNGs)"))
    threshold: float | None = Field(None, description=(
        "binarise masks: value >= threshold is foreground (value 1), e.g. threshold = 128 "
        "for lossy JPEG masks; a mask whose non-zero values all lie below it is refused"))
    unknown_labels: Literal["error", "warn"] = Field("error", description=(
        "a mask value the card does not declare: 'error' refuses the case, 'warn' ignores "
        "it (as no target) and reports it"))
    vote: Literal["majority", "any", "all"] = Field("majority", description=(
        "how several raters' masks combine ('majority': mean >= 0.5, the official MedSAM-2 "
        "rule)"))
    mask_channel: int | None = Field(None, ge=0, description=(
        "channel of a colour mask to read (colour masks with unequal channels need it)"))

    @field_validator("labels")
    @classmethod
    def _distinct_values(cls, labels: dict[str, int]) -> dict[str, int]:
        """Two names with one value would be one structure scored twice, identically."""
        owners: dict[int, str] = {}
        for name, value in labels.items():
            if value in owners:
                raise ValueError(f"{owners[value]!r} and {name!r} both have label value "
                                 f"{value}: each name needs its own value (to score several "
                                 "values as one target, use options.regions)")
            owners[value] = name
        return labels


class VolumeFileOptions(Settings):
    """How a volume file is read (also per sub-layout)."""

    channel: int | None = Field(None, ge=0, description=(
        "index of the channel (modality) of a 4D image, along its last axis; a 4D image is "
        "refused without it"))
    spacing: Spacing | None = Field(None, description=(
        "voxel size in mm for formats without geometry (.npy); default 1 mm"))
    check_geometry: bool = Field(True, description=(
        "compare the image and mask affines and refuse a case where they differ"))


class VolumeOptions(VolumeFileOptions):
    """How a volume is read, ordered into frames and windowed."""

    axis: Axis | Literal["auto"] = Field(2, description=(
        "array axis to slice along (0, 1, 2) or 'auto' (the axis with the largest spacing)"))
    transpose: bool = Field(False, description="swap the in-plane axes (rows and columns)")
    window: Pair | Literal["percentile"] | None = Field(None, description=(
        "intensity window [low, high] clipped and scaled to [0, 1], or 'percentile' (see "
        "percentiles); default: raw float32"))
    percentiles: Pair = Field((0.5, 99.5), description=(
        "percentiles [low, high] of the 'percentile' window"))


class GroupOptions(Settings):
    """How 2D cases are grouped into image flows (also per sub-layout)."""

    group: str = Field("all", description=(
        "template naming each case's flow: '{source}', '{parent}', '{patient}', a file-name "
        "field, or 'all' (one flow)"))


class ImageFlowOptions(GroupOptions):
    """Image flows: groups of 2D images, in chunks."""

    chunk_size: int | None = Field(None, ge=1, description=(
        "images per flow (a group is split into chunks)"))


class SliceOptions(Settings):
    """Volumes read as image flows of their 2D slices."""

    as_image_flow: bool = Field(False, description=(
        "slice volumes into 2D images (the card's kind must then be 'image-flow')"))
    slices: Literal["target", "all"] = Field("target", description=(
        "which slices become images: those containing slice_target, or all"))
    slice_target: str = Field("any", description=(
        "the target whose slices are used ('any': any target)"))
    slices_per_case: int | None = Field(None, ge=1, description=(
        "evenly spaced pick of at most this many slices per volume"))


class ImageReaderOptions(ImageFlowOptions, LabelOptions):
    """The options every reader of 2D images accepts."""

    pixel_spacing: PixelSpacing | None = Field(None, description=(
        "[row, col] pixel size in mm of 2D images (default: unknown, metrics in pixels)"))


class VolumeReaderOptions(SliceOptions, ImageFlowOptions, VolumeOptions, LabelOptions):
    """The options every reader of volumes accepts."""


FileOptions = ImageReaderOptions | VolumeReaderOptions
"""The options of a file-based reader (2D images or volumes)."""


__all__ = ["Axis", "FileOptions", "GroupOptions", "ImageFlowOptions", "ImageReaderOptions",
           "Items", "LabelOptions", "Pair", "SliceOptions", "Spacing", "Templates", "ValueMap",
           "VolumeFileOptions", "VolumeOptions", "VolumeReaderOptions"]
