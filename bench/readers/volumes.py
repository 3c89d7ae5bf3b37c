"""The ``volumes`` reader: 3D images and label maps matched by file-name patterns.

NIfTI (nibabel), NRRD / MHA / MHD / DICOM series folders (SimpleITK, the
optional ``itk`` extra) and NumPy ``.npy`` volumes, in any mix. Spacing and
affine are kept so that predictions can be written back in source geometry.
Layout options are those of :mod:`bench.readers.layout`, geometry and label
options those of :mod:`bench.readers.options`. Example (BTCV)::

    reader = "volumes"
    kind = "volume"
    [options]
    image = "**/Training/img/img{id}.nii.gz"
    mask = "**/Training/label/label{id}.nii.gz"
    axis = 2
    window = [-125, 275]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np

from bench.errors import DataError
from bench.readers.cards import Card
from bench.readers.cases import CaseRef, RawCase
from bench.readers.files import Volume, read_volume, suffix
from bench.readers.geometry import geometry_difference
from bench.readers.layout import PatternReader, VolumeLayoutOptions, VolumesOptions, read_masks
from bench.readers.options import VolumeFileOptions
from bench.readers.registry import register_reader


@register_reader("volumes")
class VolumeReader(PatternReader):
    """Volumes and label maps matched by patterns (see the module docstring)."""

    options_model = VolumesOptions

    def read_case(self, card: Card, ref: CaseRef, image: bool = True) -> RawCase:
        layout = self.layout(card, ref)
        options = cast(VolumeLayoutOptions, layout.options)  # the layouts of a volumes card
        geometries: list[tuple[Path, Volume]] = []
        reader = label_reader(options, geometries)
        return read_volume_case(options, ref, image,
                                lambda shape: read_masks(layout, ref, shape, reader), geometries)


def label_reader(options: VolumeFileOptions, geometries: list[tuple[Path, Volume]]
                 ) -> Callable[[Path], np.ndarray]:
    """A function reading one label volume and recording its geometry in ``geometries``."""
    spacing = options.spacing or None

    def read(path: Path) -> np.ndarray:
        volume = read_volume(path, "label", spacing)
        array = volume.array
        if array.ndim == 4 and array.shape[3] == 1:
            array = array[..., 0]
        geometries.append((path, volume))
        return array

    return read


def select_channel(volume: Volume, channel: int | None, path: Path) -> np.ndarray:
    """A 3D array from a possibly 4D (channels last) image.

    A 4D image with several channels needs ``channel`` (the card's
    ``options.channel``): which modality to segment is never guessed.
    """
    array = volume.array
    if array.ndim == 4 and channel is None:
        if array.shape[3] != 1:
            raise DataError(path, f"4D image with {array.shape[3]} channels (shape "
                                  f"{array.shape}): set options.channel to the index of the "
                                  "channel (modality) to read")
        channel = 0
    if array.ndim == 4:
        assert channel is not None
        if not 0 <= channel < array.shape[3]:
            raise DataError(path, f"channel {channel!r} not in a 4D image with "
                                  f"{array.shape[3]} channels")
        array = array[..., channel]
    if array.ndim != 3:
        raise DataError(path, f"expected a 3D volume, got shape {array.shape}")
    return array


def read_volume_case(options: VolumeFileOptions, ref: CaseRef, image: bool,
                     masks_of: Callable[[tuple[int, ...]], tuple[list, dict]],
                     geometries: list[tuple[Path, Volume]], channel: int | None = None
                     ) -> RawCase:
    """Read a volume case: image (unless ``image`` is False) and its masks.

    ``masks_of(image_shape)`` returns ``(label maps, per-target masks)`` and
    records each label file's geometry in ``geometries``. ``channel``
    overrides ``options.channel``. Raises DataError when the image and mask
    geometries disagree (a zero, negative or NaN spacing is refused on reading).
    """
    image_path = Path(ref.files["image"])
    spacing, affine, array = None, None, None
    if image:
        volume = read_volume(image_path, "image", options.spacing or None)
        array = select_channel(volume, options.channel if channel is None else channel,
                               image_path)
        spacing, affine = volume.spacing, volume.affine
    labels, targets = masks_of(array.shape if array is not None else ())
    if array is None:
        if not geometries:
            raise DataError(image_path, "no mask to read")
        first = geometries[0][1]
        spacing, affine = first.spacing, first.affine
        array = np.zeros((0,), dtype=np.float32)
    elif options.check_geometry:
        for path, geometry in geometries:
            if geometry.array.shape[:3] == array.shape and not np.allclose(
                    geometry.affine, affine, rtol=1e-4, atol=1e-3):
                raise DataError(path, f"geometry differs from the image {image_path} "
                                      f"(affine: {geometry_difference(geometry.affine, affine)}"
                                      ", beyond 1e-3 mm; options.check_geometry = false "
                                      "accepts it)")
    meta = {
        "image": str(image_path),
        "mask": [str(p) for p in (ref.files.get("mask") or ())] or None,
        "format": _format(image_path),
        # .npy volumes are C-ordered: frames keep their array order (see frame_order)
        "storage": "c" if _format(image_path) in ("npy", "npy.gz") else "fortran",
    }
    if ref.files.get("targets"):
        meta["target_masks"] = {t: [str(p) for p in ps] for t, ps in ref.files["targets"].items()}
    return RawCase(array, labels, targets, spacing, affine, meta)


def _format(path: Path) -> str:
    return suffix(path).lstrip(".") or "dicom"


__all__ = ["VolumeReader", "label_reader", "read_volume_case", "select_channel"]
