"""The ``hf`` reader: 2D image/mask pairs stored as a HuggingFace dataset.

A dataset saved with ``save_to_disk`` is opened with ``load_from_disk``
(memory-mapped: rows are decoded one at a time); with ``hub_id`` it is
loaded with ``load_dataset`` (the user needs access and, the first time, a
network connection; the root is then not needed). Options:

``path``
    Folder of the saved dataset, relative to the root (default: the root).
``hub_id``, ``config``, ``revision``
    Load from the hub instead.
``split``
    Which split of a ``DatasetDict`` (required when there are several).
``image_column``, ``mask_column``
    Column names (default ``"image"`` and ``"mask"``); values may be PIL
    images, ``{"bytes", "path"}`` dicts or arrays.
``id_column``, ``patient_column``, ``group_column``
    Optional columns for case ids (default the row number), patient ids and
    flow groups (default one flow, or ``group``/``chunk_size`` as usual).

The common label options decode the mask column (grey levels, thresholds,
label maps); see :mod:`bench.readers.core`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ConfigError, DataError, Problem
from bench.readers.cards import Card
from bench.readers.core import CaseRef, RawCase, Source, card_options, register_source
from bench.readers.files import image_array, mask_array

_OPEN: dict[tuple, Any] = {}


@register_source("hf")
class HfSource(Source):
    """HuggingFace datasets with image and mask columns (see the module docstring)."""

    options = {
        "path": str,
        "hub_id": str,
        "config": str,
        "revision": str,
        "split": str,
        "image_column": str,
        "mask_column": str,
        "id_column": str,
        "patient_column": str,
        "group_column": str,
    }
    volumes = False

    def needs_root(self, card: Card) -> bool:
        return "hub_id" not in card.options

    def _dataset(self, card: Card, root: Path | None):
        options = card.options
        location = options.get("hub_id") or str(Path(root or ".") / options.get("path", "."))
        key = (location, options.get("config"), options.get("split"), options.get("revision"))
        if key not in _OPEN:
            _OPEN.clear()  # one dataset open at a time
            _OPEN[key] = _open(card, location)
        return _OPEN[key]

    def scan(self, card: Card, root: Path | None) -> tuple[list[CaseRef], list[Problem]]:
        options = card_options(card, self)
        dataset = self._dataset(card, root)
        where = f"{card.path or card.name}.options"
        image_col = options.get("image_column", "image")
        mask_col = options.get("mask_column", "mask")
        for column in (image_col, mask_col, *(options.get(k) for k in
                                              ("id_column", "patient_column", "group_column")
                                              if options.get(k))):
            if column not in dataset.column_names:
                raise ConfigError(f"{where}: column {column!r} not in the dataset (columns: "
                                  f"{', '.join(dataset.column_names)})")
        n = len(dataset)
        ids = _column(dataset, options.get("id_column"), [f"{i:06d}" for i in range(n)])
        patients = _column(dataset, options.get("patient_column"), ids)
        groups = _column(dataset, options.get("group_column"), None)
        template = options.get("group")
        refs = []
        for i in range(n):
            if groups is not None:
                group = groups[i]
            elif template in (None, "all"):
                group = "all"
            else:
                group = template.format(case=ids[i], patient=patients[i], source=card.name)
            refs.append(CaseRef(ids[i], patients[i], group=group, source=card.name,
                                files={"image": f"{card.name}[{i}]", "row": i, "root": root}))
        return refs, []

    def read(self, card: Card, ref: CaseRef, image: bool = True) -> RawCase:
        options = card.options
        dataset = self._dataset(card, ref.files.get("root"))
        where = ref.files["image"]
        try:
            row = dataset[int(ref.files["row"])]
        except Exception as err:
            raise DataError(where, f"unreadable row ({type(err).__name__}: {err})") from None
        picture = _decode(row[options.get("image_column", "image")], where, "image")
        mask = _decode(row[options.get("mask_column", "mask")], where, "mask",
                       options.get("mask_channel"))
        return RawCase(picture, [mask], {}, None, None, {"image": where, "mask": [where]})


def _open(card: Card, location: str):
    import datasets

    options = card.options
    try:
        if "hub_id" in options:
            data = datasets.load_dataset(location, name=options.get("config"),
                                         split=options.get("split"),
                                         revision=options.get("revision"))
        else:
            data = datasets.load_from_disk(location)
    except FileNotFoundError:
        raise DataError(location, "no saved HuggingFace dataset here") from None
    except Exception as err:
        raise DataError(location, f"cannot open the dataset ({type(err).__name__}: "
                                  f"{' '.join(str(err).split())[:200]})") from None
    if isinstance(data, datasets.DatasetDict):
        split = options.get("split")
        if split is None and len(data) == 1:
            split = next(iter(data))
        if split not in data:
            raise ConfigError(f"{card.path or card.name}.options.split: choose one of "
                              f"{', '.join(data)} (got {split!r})")
        data = data[split]
    return data


def _column(dataset, name: str | None, default):
    if not name:
        return default
    return [str(v) for v in dataset[name]]


def _decode(value: Any, where: str, role: str, channel: int | None = None) -> np.ndarray:
    from PIL import Image

    try:
        if isinstance(value, dict) and ("bytes" in value or "path" in value):
            data = value.get("bytes")
            value = Image.open(io.BytesIO(data) if data else value["path"])
            value.load()
        if isinstance(value, Image.Image):
            return image_array(value) if role == "image" else mask_array(value, channel, where)
        array = np.asarray(value)
    except DataError:
        raise
    except Exception as err:
        raise DataError(where, f"unreadable {role} ({type(err).__name__}: {err})") from None
    if role == "mask":
        return mask_array(array, channel, where)
    if array.ndim not in (2, 3):
        raise DataError(where, f"{role} has shape {array.shape}; expected a 2D image")
    return array


__all__ = ["HfSource"]
