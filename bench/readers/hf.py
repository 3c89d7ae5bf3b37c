"""The ``hf`` reader: 2D image/mask pairs stored as a HuggingFace dataset.

A dataset saved with ``save_to_disk`` is opened with ``load_from_disk``
(memory-mapped: rows are decoded one at a time); with ``hub_id`` it is
loaded with ``load_dataset`` (the user needs access and, the first time, a
network connection; the root is then not needed). Image and mask values may
be PIL images, ``{"bytes", "path"}`` dicts or arrays. The options are those
of :class:`HfOptions`; the common label options decode the mask column
(grey levels, thresholds, label maps) and ``group``/``chunk_size`` make the
flows as usual.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, cast

import numpy as np
from pydantic import Field

from bench.errors import ConfigError, DataError, Problem
from bench.readers.cards import Card
from bench.readers.cases import CaseRef, FileReader, RawCase
from bench.readers.files import image_array, image_file_errors, mask_array
from bench.readers.options import ImageReaderOptions
from bench.readers.registry import register_reader


class HfOptions(ImageReaderOptions):
    """Options of an ``hf`` card."""

    path: str = Field(".", description="folder of the saved dataset, relative to the root")
    hub_id: str | None = Field(None, description=(
        "load this dataset from the HuggingFace hub instead (no root needed)"))
    config: str | None = Field(None, description="the hub dataset's configuration name")
    revision: str | None = Field(None, description="the hub dataset's revision")
    split: str | None = Field(None, description=(
        "which split of a DatasetDict (required when there are several)"))
    image_column: str = Field("image", description="column holding the images")
    mask_column: str = Field("mask", description="column holding the masks")
    id_column: str | None = Field(None, description=(
        "column of case ids (default: the row number)"))
    patient_column: str | None = Field(None, description=(
        "column of patient ids (default: the case id)"))
    group_column: str | None = Field(None, description=(
        "column naming each case's flow (default: the group template)"))


@register_reader("hf")
class HfReader(FileReader):
    """HuggingFace datasets with image and mask columns (see the module docstring)."""

    options_model = HfOptions

    def __init__(self) -> None:
        # The dataset opened last, by location: rows are read one at a time, so
        # one open dataset serves a whole listing and loading pass.
        self._open: tuple[tuple, Any] | None = None

    def options(self, card: Card) -> HfOptions:
        return cast(HfOptions, super().options(card))

    def needs_root(self, card: Card) -> bool:
        return self.options(card).hub_id is None

    def _dataset(self, card: Card, root: Path | None):
        options = self.options(card)
        location = options.hub_id or str(Path(root or ".") / options.path)
        key = (location, options.config, options.split, options.revision)
        if self._open is None or self._open[0] != key:
            self._open = None  # one dataset open at a time
            self._open = (key, _open(card, options, location))
        return self._open[1]

    def find_cases(self, card: Card, root: Path | None) -> tuple[list[CaseRef], list[Problem]]:
        options = self.options(card)
        dataset = self._dataset(card, root)
        where = f"{card.where}.options"
        image_col = options.image_column
        mask_col = options.mask_column
        for column in (image_col, mask_col, *(c for c in (options.id_column,
                                                          options.patient_column,
                                                          options.group_column) if c)):
            if column not in dataset.column_names:
                raise ConfigError(f"{where}: column {column!r} not in the dataset (columns: "
                                  f"{', '.join(dataset.column_names)})")
        n = len(dataset)
        ids = _column(dataset, options.id_column, [f"{i:06d}" for i in range(n)])
        patients = _column(dataset, options.patient_column, ids)
        groups = _column(dataset, options.group_column, None)
        template = options.group
        refs = []
        for i in range(n):
            if groups is not None:
                group = groups[i]
            elif template == "all":
                group = "all"
            else:
                group = template.format(case=ids[i], patient=patients[i], source=card.name)
            refs.append(CaseRef(ids[i], patients[i], group=group, source=card.name,
                                files={"image": f"{card.name}[{i}]", "row": i, "root": root}))
        return refs, []

    def read_case(self, card: Card, ref: CaseRef, image: bool = True) -> RawCase:
        options = self.options(card)
        dataset = self._dataset(card, ref.files.get("root"))
        where = ref.files["image"]
        try:  # datasets decodes image columns here: PIL's errors, and arrow's
            row = dataset[int(ref.files["row"])]
        except (*image_file_errors(), IndexError, _arrow_error()) as err:
            raise DataError(where, f"unreadable row ({type(err).__name__}: {err})") from None
        picture = _decode(row[options.image_column], where, "image")
        mask = _decode(row[options.mask_column], where, "mask", options.mask_channel,
                       options.encoding)
        return RawCase(picture, [mask], {}, None, None, {"image": where, "mask": [where]})


def _open(card: Card, options: HfOptions, location: str):
    import datasets

    try:
        if options.hub_id is not None:
            data = datasets.load_dataset(location, name=options.config, split=options.split,
                                         revision=options.revision)
        else:
            data = datasets.load_from_disk(location)
    except FileNotFoundError:
        raise DataError(location, "no saved HuggingFace dataset here") from None
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as err:
        # OSError: the hub unreachable (ConnectionError) or refusing; ValueError: a bad
        # config, split or revision
        raise DataError(location, f"cannot open the dataset ({type(err).__name__}: "
                                  f"{' '.join(str(err).split())[:200]})") from None
    if isinstance(data, datasets.DatasetDict):
        split = options.split
        if split is None and len(data) == 1:
            split = next(iter(data))
        if split not in data:
            raise ConfigError(f"{card.where}.options.split: choose one of "
                              f"{', '.join(data)} (got {split!r})")
        data = data[split]
    return data


def _arrow_error() -> type[BaseException]:
    import pyarrow

    return pyarrow.ArrowException


def _column(dataset, name: str | None, default):
    if not name:
        return default
    return [str(v) for v in dataset[name]]


def _decode(value: Any, where: str, role: str, channel: int | None = None,
            encoding: str = "grey") -> np.ndarray:
    from PIL import Image

    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        data = value.get("bytes")
        try:  # only the file's decoding: a fault in the conversions below is a bug
            value = Image.open(io.BytesIO(data) if data else value["path"])
            value.load()
        except image_file_errors() as err:
            raise DataError(where, f"unreadable {role} ({type(err).__name__}: {err})") from None
    if isinstance(value, Image.Image):
        if role == "image":
            return image_array(value)
        return mask_array(value, channel, where, encoding)
    try:
        array = np.asarray(value)
    except ValueError as err:  # a ragged nested list, not an image
        raise DataError(where, f"{role} is not an image or an array ({err})") from None
    if role == "mask":
        return mask_array(array, channel, where, encoding)
    if array.ndim not in (2, 3):
        raise DataError(where, f"{role} has shape {array.shape}; expected a 2D image")
    return array


__all__ = ["HfOptions", "HfReader"]
