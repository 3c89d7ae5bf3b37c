"""The ``nnunet`` reader: nnU-Net raw datasets and Medical Segmentation Decathlon tasks.

Point a card with ``reader = "nnunet"`` at a folder holding ``dataset.json``,
``imagesTr`` and ``labelsTr``; nothing else is needed (``targets = []`` takes
every foreground label of ``dataset.json``)::

    name = "my-task"
    reader = "nnunet"
    kind = "volume"
    targets = []

Understood layouts:

- nnU-Net v2: ``labels`` maps names to values (a list of values is a
  region), ``channel_names``, ``file_ending``; images
  ``imagesTr/CASE_XXXX<ending>`` (one file per channel), labels
  ``labelsTr/CASE<ending>``.
- nnU-Net v1 / MSD: ``labels`` maps values (as strings) to names,
  ``modality``, and a ``training`` list of ``{"image", "label"}``; MSD images
  are 4D with channels last, v1 images carry the ``_XXXX`` suffix.

nnU-Net's 2D datasets (``file_ending`` ``.png``, ``.bmp``, ``.tif``) are read
by the ``nnunet-2d`` reader (kind ``image-flow``, one case per image, the
2D image options; :class:`NnUnet2dReader`).

Options (:class:`NnUnetOptions`): ``channel`` (an index, or a name from
``channel_names`` / ``modality``), ``dataset_json``, plus the common volume
and label options (card ``labels``/``regions`` add to or override the
dataset's).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, cast

from pydantic import Field

from bench.errors import ConfigError, DataError, Problem
from bench.readers.cards import Card
from bench.readers.cases import CaseRef, FileReader, RawCase
from bench.readers.files import Volume, read_image2d, read_mask2d
from bench.readers.labels import LabelSpec, label_spec
from bench.readers.options import ImageReaderOptions, VolumeReaderOptions
from bench.readers.patterns import natural_key
from bench.readers.registry import register_reader
from bench.readers.volumes import label_reader, read_volume_case


class NnUnetOptions(VolumeReaderOptions):
    """Options of an ``nnunet`` card."""

    channel: Annotated[int, Field(ge=0)] | str | None = Field(None, description=(  # type: ignore[assignment]
        "the image channel: an index, or a name from dataset.json's channel_names / modality "
        "(required when the dataset has several channels)"))
    dataset_json: str = Field("dataset.json", description=(
        "the dataset description, relative to the root"))


class NnUnet2dOptions(ImageReaderOptions):
    """Options of an ``nnunet-2d`` card."""

    channel: Annotated[int, Field(ge=0)] | str = Field(0, description=(
        "the image channel: an index, or a name from dataset.json's channel_names / modality"))
    dataset_json: str = Field("dataset.json", description=(
        "the dataset description, relative to the root"))


# File endings of nnU-Net's 2D datasets (read by the nnunet-2d reader).
IMAGE_ENDINGS = (".png", ".bmp", ".tif", ".tiff")


def read_dataset_json(root: Path, name: str = "dataset.json") -> dict[str, Any]:
    """Parse ``dataset.json`` (DataError when missing or invalid)."""
    path = root / name
    if not path.is_file():
        raise DataError(path, "file not found (an nnU-Net dataset needs dataset.json)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise DataError(path, f"invalid JSON ({err})") from None


def dataset_labels(info: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, list[int]],
                                                       int]:
    """Labels, regions and background value of a dataset.json (v1 or v2)."""
    labels: dict[str, int] = {}
    regions: dict[str, list[int]] = {}
    background = 0
    for key, value in dict(info.get("labels", {})).items():
        if str(key).lstrip("-").isdigit():  # v1 / MSD: "1": "liver"
            name, number = str(value), int(key)
        elif isinstance(value, list):  # v2 region
            regions[str(key)] = [int(v) for v in value]
            continue
        else:
            name, number = str(key), int(value)
        if name.lower() == "background":
            background = number
            continue
        labels[name] = number
    return labels, regions, background


class _NnUnetLayout(FileReader):
    """What the 3D and 2D nnU-Net readers share: dataset.json, case listing, labels."""

    #: Whether the reader reads 2D files (the other reader is named when not).
    two_d: bool = False

    def _options(self, card: Card) -> NnUnetOptions | NnUnet2dOptions:
        return cast(NnUnetOptions | NnUnet2dOptions, self.options(card))

    def _info(self, card: Card, root: Path) -> dict[str, Any]:
        return read_dataset_json(root, self._options(card).dataset_json)

    def _info_of(self, card: Card, ref: CaseRef | None) -> dict[str, Any]:
        if ref is None or "root" not in ref.files:
            raise ConfigError(f"{card.where}: the label map of an nnU-Net dataset "
                              "is in its dataset.json; pass a case reference")
        return self._info(card, Path(ref.files["root"]))

    def find_cases(self, card: Card, root: Path | None) -> tuple[list[CaseRef], list[Problem]]:
        assert root is not None  # nnU-Net folders need a root (see FileReader.scan)
        info = self._info(card, root)
        ending = str(info.get("file_ending", ".nii.gz"))
        if (ending.lower() in IMAGE_ENDINGS) != self.two_d:
            right = "nnunet-2d" if ending.lower() in IMAGE_ENDINGS else "nnunet"
            raise ConfigError(f"{card.where}.reader: the dataset's file_ending is {ending!r}; "
                              f"use reader = {right!r}" + (" and kind = 'image-flow'"
                                                          if right == "nnunet-2d" else ""))
        channel = _channel_index(card, self._options(card), info)
        problems: list[Problem] = []
        refs = []
        training = info.get("training")
        if isinstance(training, list) and training and isinstance(training[0], dict):
            for entry in training:
                label = root / str(entry.get("label", ""))
                image = root / str(entry.get("image", ""))
                name = label.name[: -len(ending)] if label.name.endswith(ending) else label.stem
                if not image.exists():
                    suffixed = image.with_name(
                        image.name[: -len(ending)] + f"_{channel:04d}{ending}")
                    image = suffixed if suffixed.exists() else image
                refs.append(self._ref(root, name, image, label))
        else:
            labels_dir = root / "labelsTr"
            for label in sorted(labels_dir.glob(f"*{ending}"), key=lambda p: natural_key(p.name)):
                name = label.name[: -len(ending)]
                image = root / "imagesTr" / f"{name}_{channel:04d}{ending}"
                refs.append(self._ref(root, name, image, label))
            known = {r.id for r in refs}
            for image in sorted((root / "imagesTr").glob(f"*_{channel:04d}{ending}")):
                name = image.name[: -len(f"_{channel:04d}{ending}")]
                if name not in known:
                    problems.append(Problem("error", str(image), "image without a label file"))
        return refs, problems

    @staticmethod
    def _ref(root: Path, name: str, image: Path, label: Path) -> CaseRef:
        missing = None
        if not label.exists():
            missing = f"label file {label} not found"
        elif not image.exists():
            missing = f"image file {image} not found"
        return CaseRef(name, name, files={"image": image, "mask": (label,), "root": root},
                       missing=missing)

    def label_spec(self, card: Card, ref: CaseRef | None = None) -> LabelSpec:
        options = self._options(card)
        labels, regions, background = dataset_labels(self._info_of(card, ref))
        labels.update(options.labels)
        regions.update(options.regions)
        targets = list(card.targets) or [*labels, *regions]
        if "background" in options.model_fields_set:
            background = options.background  # the card's overrides dataset.json's
        return label_spec(card, options, labels=labels, regions=regions, targets=targets,
                          background=background)


@register_reader("nnunet")
class NnUnetReader(_NnUnetLayout):
    """nnU-Net / MSD raw datasets of volumes (see the module docstring)."""

    options_model = NnUnetOptions

    def options(self, card: Card) -> NnUnetOptions:
        return cast(NnUnetOptions, super().options(card))

    def read_case(self, card: Card, ref: CaseRef, image: bool = True) -> RawCase:
        options = self.options(card)
        # MSD: one 4D file, the channel is an index into its last axis
        channel = _channel_index(card, options, self._info_of(card, ref))
        geometries: list[tuple[Path, Volume]] = []
        reader = label_reader(options, geometries)
        return read_volume_case(options, ref, image,
                                lambda shape: ([reader(p) for p in ref.files["mask"]], {}),
                                geometries, channel)


@register_reader("nnunet-2d")
class NnUnet2dReader(_NnUnetLayout):
    """nnU-Net raw datasets of 2D images (``file_ending`` ``.png``, ``.bmp``, ``.tif``).

    Each image is one case (file ``imagesTr/CASE_XXXX<ending>`` of the
    channel ``options.channel``), its label map ``labelsTr/CASE<ending>``
    holds dataset.json's label values; cases are grouped into image flows by
    ``group`` and ``chunk_size`` (default: one flow).
    """

    options_model = NnUnet2dOptions
    two_d = True

    def options(self, card: Card) -> NnUnet2dOptions:
        return cast(NnUnet2dOptions, super().options(card))

    def read_case(self, card: Card, ref: CaseRef, image: bool = True) -> RawCase:
        options = self.options(card)
        array = read_image2d(Path(ref.files["image"]))
        labels = [read_mask2d(Path(p), options.mask_channel) for p in ref.files["mask"]]
        meta = {"image": str(ref.files["image"]), "mask": [str(p) for p in ref.files["mask"]]}
        return RawCase(array, labels, {}, None, None, meta)


def _channel_index(card: Card, options: NnUnetOptions | NnUnet2dOptions,
                   info: Mapping[str, Any]) -> int:
    channel = options.channel
    if isinstance(channel, int):
        return channel
    names = dict(info.get("channel_names") or info.get("modality") or {})
    if channel is None:
        if len(names) <= 1:
            return 0
        raise ConfigError(f"{card.where}.options.channel: the dataset has {len(names)} "
                          f"channels {sorted(map(str, names.values()))}; set options.channel "
                          "to the one to read (index or name)")
    for key, value in names.items():
        if str(value).lower() == str(channel).lower():
            return int(key)
    raise ConfigError(f"{card.where}.options.channel: {channel!r} is not one of "
                      f"the dataset's channels {sorted(names.values())}")


__all__ = ["IMAGE_ENDINGS", "NnUnet2dOptions", "NnUnet2dReader", "NnUnetOptions", "NnUnetReader",
           "dataset_labels", "read_dataset_json"]
