"""Slicing volumes into 2D images, for cards that read volumes as image flows.

The one-prompt suite treats some 3D datasets (KiTS23, ATLAS23, TDSC-ABUS, ...)
as flows of 2D images: each volume becomes the slices that contain the target
(``slices = "target"``, of ``slice_target`` or any target) or all its slices,
optionally an evenly spaced pick of ``slices_per_case`` of them. Picking the
slices reads every mask once, when the dataset is listed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import ConfigError, DataError
from bench.readers.geometry import slicing_axis
from bench.readers.labels import decode_case

if TYPE_CHECKING:
    from bench.readers.cards import Card
    from bench.readers.cases import CaseRef, FileReader
    from bench.readers.options import VolumeReaderOptions


def slice_refs(reader: FileReader, card: Card, ref: CaseRef, options: VolumeReaderOptions
               ) -> list[CaseRef]:
    """The slice references of one volume case, in slice order.

    A volume whose masks cannot be read becomes one reference whose loading
    raises its :class:`DataError` (the case is reported, the listing goes on).

    Raises
    ------
    ConfigError
        ``slice_target`` names no target of the case.
    """
    if ref.missing:
        return [ref]
    try:
        raw = reader.read_case(card, ref, image=False)
        spec = reader.label_spec(card, ref)
        masks, _ = decode_case(raw, spec, ref.mask_where)
    except DataError as err:
        return [replace(ref, missing=err.problem, bad_file=err.path)]
    axis = slicing_axis(options.axis, raw.spacing or (1.0, 1.0, 1.0))
    n = next(iter(masks.values())).shape[axis]
    which = options.slice_target
    if options.slices == "all":
        chosen = list(range(n))
    else:
        if which != "any" and which not in masks:
            raise ConfigError(f"{card.where}.options.slice_target: unknown target {which!r}")
        selected = [masks[which]] if which != "any" else list(masks.values())
        other = tuple(a for a in range(3) if a != axis)
        present = np.zeros(n, dtype=bool)
        for mask in selected:
            present |= mask.any(axis=other)
        chosen = np.flatnonzero(present).tolist()
    per_case = options.slices_per_case
    if per_case and len(chosen) > per_case:
        picks = np.linspace(0, len(chosen) - 1, per_case).round().astype(int)
        chosen = [chosen[i] for i in picks]
    return [replace(ref, id=f"{ref.id}/s{k:04d}", slice=k) for k in chosen]


__all__ = ["slice_refs"]
