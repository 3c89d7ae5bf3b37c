"""The few formats that need code of their own.

``ddti-xml`` (mask format, used with the ``pairs2d`` reader)
    DDTI thyroid ultrasound (Pedraza et al. 2015): one ``N.xml`` per patient
    with ``<mark><image>M</image><svg>[{"points": [{"x":..,"y":..}, ..]}, ..]
    </svg></mark>`` for image ``N_M.jpg``. The polygons of the image's mark
    are filled (boundary included) into a 0/255 mask. The image template must
    capture the mark number as ``{mark}``, e.g. ``image = "{patient}_{mark}.jpg"``
    with ``mask = "{patient}.xml"``.

``medsam2-btcv`` (reader)
    The BTCV layout the official MedSAM-2 code downloads from its hub:
    ``<split>/image/<case>/<i>.jpg`` (one JPEG per slice) and
    ``<split>/mask/<case>/<i>.npy`` (integer label map per slice). Each case
    is a volume of its slices in index order; physical spacing is unknown
    (``spacing`` None, metrics in pixel units). Options: ``splits`` (default
    ``["Test"]``).

ToothFairy (2023, ``PNN/data.npy`` + ``gt_alpha.npy``), the REFUGE multi-rater
layouts and the other published layouts need no code: they are
``volumes``/``pairs2d`` cards (see ``datasets/``).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import numpy as np
from pydantic import Field

from bench.errors import DataError, Problem
from bench.readers.cards import Card
from bench.readers.cases import CaseRef, FileReader, RawCase
from bench.readers.files import read_array2d, read_image2d
from bench.readers.layout import register_mask_format
from bench.readers.options import Items, VolumeReaderOptions
from bench.readers.patterns import natural_key
from bench.readers.registry import register_reader


@register_mask_format("ddti-xml")
def ddti_mask(path: Path, fields: Mapping[str, str], shape: tuple[int, ...]) -> np.ndarray:
    """Rasterise the DDTI polygons of image ``fields["mark"]`` into a 0/255 mask.

    Raises
    ------
    DataError
        Unreadable XML, no ``<mark>`` for the image, or an unparsable polygon
        list. A mark with an empty ``<svg>`` gives an empty mask.
    """
    from skimage.draw import polygon, polygon_perimeter

    if "mark" not in fields:
        raise DataError(path, "the image template must capture the mark number as {mark}")
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError, ValueError) as err:  # malformed, unreadable, not text
        raise DataError(path, f"unreadable XML ({type(err).__name__}: {err})") from None
    wanted = str(int(fields["mark"])) if fields["mark"].isdigit() else fields["mark"]
    marks = [m for m in tree.getroot().iter("mark")
             if (m.findtext("image") or "").strip() == wanted]
    if not marks:
        raise DataError(path, f"no <mark> for image {wanted}")
    mask = np.zeros(shape[:2], dtype=np.uint8)
    for mark in marks:
        text = (mark.findtext("svg") or "").strip()
        if not text:
            continue
        try:
            shapes = json.loads(text)
            outlines = [[(float(p["x"]), float(p["y"])) for p in item["points"]]
                        for item in shapes]
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(path, f"mark {wanted}: unparsable polygon list "
                                  f"({type(err).__name__})") from None
        for points in outlines:
            if len(points) < 3:
                continue
            cols, rows = np.asarray(points).T
            mask[polygon(rows, cols, shape=mask.shape)] = 255
            mask[polygon_perimeter(rows, cols, shape=mask.shape, clip=True)] = 255
    return mask


class MedSam2BtcvOptions(VolumeReaderOptions):
    """Options of a ``medsam2-btcv`` card."""

    splits: Items[str] = Field(("Test",), description=(
        "the splits to read (folders <split>/image and <split>/mask)"))


@register_reader("medsam2-btcv")
class MedSam2BtcvReader(FileReader):
    """The official MedSAM-2 BTCV hub layout (see the module docstring)."""

    options_model = MedSam2BtcvOptions

    def find_cases(self, card: Card, root: Path | None) -> tuple[list[CaseRef], list[Problem]]:
        assert root is not None  # the hub layout needs a root (see FileReader.scan)
        splits = list(cast(MedSam2BtcvOptions, self.options(card)).splits)
        refs, problems = [], []
        for split in splits:
            images = root / split / "image"
            if not images.is_dir():
                problems.append(Problem("error", str(images), "folder not found"))
                continue
            cases = sorted((p for p in images.iterdir() if p.is_dir()),
                           key=lambda p: natural_key(p.name))
            masks_dir = root / split / "mask"
            for case in cases:
                mask = masks_dir / case.name
                cid = case.name if len(splits) == 1 else f"{split}/{case.name}"
                refs.append(CaseRef(cid, cid, source=split, files={"image": case, "mask": mask},
                                    fields={"split": split, "case": case.name},
                                    missing=None if mask.is_dir() else
                                    f"no mask folder {mask}"))
            if masks_dir.is_dir():
                for extra in sorted(set(p.name for p in masks_dir.iterdir() if p.is_dir())
                                    - {c.name for c in cases}):
                    problems.append(Problem("error", str(masks_dir / extra),
                                            "mask folder without an image folder"))
        return refs, problems

    def read_case(self, card: Card, ref: CaseRef, image: bool = True) -> RawCase:
        image_dir, mask_dir = Path(ref.files["image"]), Path(ref.files["mask"])
        masks = _numbered(mask_dir, ".npy")
        frames = _numbered(image_dir, ".jpg")
        if image and len(frames) != len(masks):
            raise DataError(mask_dir, f"{len(masks)} mask slices for {len(frames)} image "
                                      f"slices in {image_dir}")
        labels = np.stack([read_array2d(p) for p in masks]) if masks else None
        if labels is None:
            raise DataError(mask_dir, "no mask slices (<i>.npy)")
        if image:
            stack = np.stack([_grey(read_image2d(p)) for p in frames])
        else:
            stack = np.zeros((0,), dtype=np.float32)
        meta = {"image": str(image_dir), "mask": [str(mask_dir)], "format": "jpg-slices",
                "storage": "c"}
        return RawCase(stack, [labels], {}, None, np.eye(4), meta)


def _numbered(folder: Path, ending: str) -> list[Path]:
    """``0<ending>``, ``1<ending>``, ... in numeric order; gaps are an error."""
    files = [p for p in folder.glob(f"*{ending}") if p.stem.isdigit()]
    files.sort(key=lambda p: int(p.stem))
    numbers = [int(p.stem) for p in files]
    if numbers != list(range(len(numbers))):
        raise DataError(folder, f"slice files are not numbered 0..{len(numbers) - 1}")
    return files


def _grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    if np.array_equal(frame[..., 0], frame[..., 1]) and np.array_equal(frame[..., 0],
                                                                        frame[..., 2]):
        return frame[..., 0]
    # JPEG chroma noise on a grey slice: luminance, as PIL's convert("L")
    return (frame[..., :3] @ np.array([0.299, 0.587, 0.114])).astype(np.float32)


__all__ = ["MedSam2BtcvOptions", "MedSam2BtcvReader", "ddti_mask"]
