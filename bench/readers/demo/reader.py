"""The ``demo`` reader: its options, its flows and the generator table.

A flow is generated from the card's options and its index alone, so listing
the flows costs nothing and flow ``k`` is the same whatever was generated
before it (see the package docstring for the conventions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import numpy as np
from pydantic import Field, PositiveFloat

from bench.errors import ConfigError, DataError
from bench.readers.cards import Card
from bench.readers.demo.cells import cells_image, cells_patient
from bench.readers.demo.ct import ct_volume
from bench.readers.demo.dermoscopy import dermoscopy_image, dermoscopy_patient
from bench.readers.demo.draw import keyed_rng
from bench.readers.demo.fundus import fundus_image, fundus_patient
from bench.readers.demo.store import stored_arrays
from bench.readers.demo.ultrasound import ultrasound_image, ultrasound_patient
from bench.readers.geometry import window_intensities
from bench.readers.options import Items, Pair
from bench.readers.registry import FlowRef, Reader, register_reader
from bench.settings import Settings
from bench.types import Flow

DEMO_VERSION = 1
"""Version of the generated data; bump it whenever any generator's output changes."""


@dataclass(frozen=True)
class DemoGenerator:
    """A generator's fixed description: flow kind, targets and prompt kind."""

    kind: str
    targets: tuple[str, ...]
    one_prompt_kind: str


GENERATORS: dict[str, DemoGenerator] = {
    "fundus": DemoGenerator("image-flow", ("disc", "cup"), "box"),
    "dermoscopy": DemoGenerator("image-flow", ("lesion",), "box"),
    "ultrasound": DemoGenerator("image-flow", ("nodule",), "point"),
    "cells": DemoGenerator("image-flow", ("cytoplasm", "nucleus"), "point"),
    "ct": DemoGenerator("volume", ("liver", "spleen", "kidney_left", "kidney_right", "aorta"),
                        "box"),
}

# Image generators: (one patient's shared draw, one image of that patient).
_IMAGE_GENERATORS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[..., Any]]] = {
    "fundus": (fundus_patient, fundus_image),
    "dermoscopy": (dermoscopy_patient, dermoscopy_image),
    "ultrasound": (ultrasound_patient, ultrasound_image),
    "cells": (cells_patient, cells_image),
}
_VOLUME_MIN_FRAMES = 8

Spacing3 = Annotated[Items[PositiveFloat], Field(min_length=3, max_length=3)]


class DemoOptions(Settings):
    """Options of a ``demo`` card: which generator, and the size of its data."""

    generator: Literal["fundus", "dermoscopy", "ultrasound", "cells", "ct"] = Field(
        description="what to generate (a volume generator for kind 'volume')")
    flows: int = Field(3, ge=1, description="number of flows (volumes for 'ct')")
    frames: int = Field(8, ge=1, description=(
        f"images per flow, or slices per volume (at least {_VOLUME_MIN_FRAMES})"))
    size: int = Field(128, ge=64, description=(
        "image height in pixels (and width, unless aspect_jitter)"))
    seed: int = Field(0, ge=0, description="base seed of all random streams")
    images_per_patient: int = Field(2, ge=1, description=(
        "consecutive images of a flow that share one synthetic patient"))
    aspect_jitter: float = Field(0.0, ge=0, le=1, description=(
        "image width = height * U(1, 1 + aspect_jitter), rounded to 8 px"))
    spacing: Spacing3 = Field((5.0, 3.0, 3.0), description=(
        "volume spacing [slice, row, col] in mm (volume generators only)"))
    window: Pair | None = Field(None, description=(
        "intensity window [low, high] in HU, clipped and scaled to [0, 1] as the file readers "
        "do (volume generators only); default: Hounsfield units"))


@dataclass(frozen=True, eq=False)
class DemoFlowRef(FlowRef):
    """A generated flow: its index in the card's stream and its number of images."""

    index: int
    images: int = 1  # a volume is one case
    keep: int | None = None  # generate only the first images (--limit)

    @property
    def size(self) -> int:
        return self.images if self.keep is None else self.keep

    def head(self, count: int) -> DemoFlowRef:
        return self if count >= self.size else replace(self, keep=count)


@register_reader("demo")
class DemoReader(Reader):
    """Synthetic flows generated from the card's options; needs no files."""

    options_model = DemoOptions

    def options(self, card: Card) -> DemoOptions:
        return cast(DemoOptions, super().options(card))

    def needs_root(self, card: Card) -> bool:
        return False

    def check_card(self, card: Card) -> None:
        options = self.options(card)
        where = f"{card.where}.options"
        name = options.generator
        gen = GENERATORS[name]
        if card.kind != gen.kind:
            raise ConfigError(f"{where}.generator: {name!r} makes {gen.kind!r} flows, card kind "
                              f"is {card.kind!r}")
        if tuple(card.targets) != gen.targets:
            raise ConfigError(f"{where}.generator: {name!r} makes targets {list(gen.targets)}, "
                              f"card lists {list(card.targets)}")
        if gen.kind == "volume" and options.frames < _VOLUME_MIN_FRAMES:
            raise ConfigError(f"{where}.frames: must be at least {_VOLUME_MIN_FRAMES} for a "
                              f"volume, got {options.frames}")
        for key in ("spacing", "window"):
            if gen.kind != "volume" and key in options.model_fields_set:
                raise ConfigError(f"{where}.{key}: only volume generators take a {key}")
        if options.window is not None and options.window[1] <= options.window[0]:
            raise ConfigError(f"{where}.window: expected [low, high] in HU with low < high, "
                              f"got {list(options.window)}")

    def list_flows(self, card: Card, root: Path | None) -> list[DemoFlowRef]:
        options = self.options(card)
        images = options.frames if GENERATORS[options.generator].kind == "image-flow" else 1
        return [DemoFlowRef(flow_id(options, index), index, images)
                for index in range(options.flows)]

    def load_flow(self, card: Card, ref: FlowRef, errors: list[DataError] | None = None
                  ) -> Flow:
        if not isinstance(ref, DemoFlowRef):
            raise TypeError(f"the demo reader loads the flows it lists, not {ref!r}")
        options = self.options(card)
        if ref.keep is not None:  # image i depends on (seed, flow, i) only: a prefix is exact
            options = options.model_copy(update={"frames": ref.keep})
        return generate_flow(options, ref.index, dataset=card.name)


def expected_case_count(options: DemoOptions) -> int:
    """Number of scoring cases the options generate (a volume is one case)."""
    if GENERATORS[options.generator].kind == "volume":
        return options.flows
    return options.flows * options.frames


def flow_id(options: DemoOptions, index: int) -> str:
    """The id of flow number ``index``."""
    if GENERATORS[options.generator].kind == "volume":
        return f"{options.generator}-v{index}"
    return f"{options.generator}-f{index}"


def generate_flow(options: DemoOptions, index: int, dataset: str = "demo") -> Flow:
    """Generate flow number ``index`` of a demo dataset.

    Parameters
    ----------
    options : DemoOptions
        Generator and sizes.
    index : int
        Flow index, 0-based; below ``options.flows`` in a card's stream, but
        any non-negative index gives a valid, distinct flow.
    dataset : str
        Dataset name stored in the flow.

    Returns
    -------
    Flow
    """
    if index < 0:
        raise ValueError(f"flow index must be non-negative, got {index}")
    gen = GENERATORS[options.generator]
    meta: dict[str, Any] = {
        "generator": options.generator,
        "demo_version": DEMO_VERSION,
        "seed": options.seed,
        "flow_index": index,
        "size": options.size,
        "frames": options.frames,
    }
    if gen.kind == "volume":
        return _volume_flow(options, index, dataset, meta)
    return _image_flow(options, index, dataset, meta)


def _identity(options: DemoOptions, index: int) -> dict[str, Any]:
    """What a flow's arrays depend on (:func:`~bench.readers.demo.store.stored_arrays`)."""
    return {"options": options.model_dump(mode="json"), "index": index,
            "demo_version": DEMO_VERSION}


def _image_flow(options: DemoOptions, index: int, dataset: str, meta: dict[str, Any]) -> Flow:
    name = options.generator
    make_patient, make_image = _IMAGE_GENERATORS[name]
    fid = flow_id(options, index)

    def draw() -> dict[str, Any]:
        frames: list[np.ndarray] = []
        masks: dict[str, list[np.ndarray]] = {t: [] for t in GENERATORS[name].targets}
        for i in range(options.frames):
            p = i // options.images_per_patient
            patient = make_patient(keyed_rng(name, options.seed, index, 0, p), options.size)
            rng = keyed_rng(name, options.seed, index, 1, i)
            width = options.size
            if options.aspect_jitter > 0:
                width = 8 * round(options.size * rng.uniform(1, 1 + options.aspect_jitter) / 8)
            image, frame_masks = make_image(patient, rng, (options.size, width))
            frames.append(image)
            for target in masks:
                masks[target].append(frame_masks[target])
        return {"frames": frames, "masks": masks}

    arrays = stored_arrays(_identity(options, index), draw)
    frames, masks = arrays["frames"], arrays["masks"]
    patient_ids = [f"{fid}-p{i // options.images_per_patient:02d}"
                   for i in range(options.frames)]
    meta.update(images_per_patient=options.images_per_patient,
                aspect_jitter=options.aspect_jitter)
    return Flow(
        id=fid,
        dataset=dataset,
        kind="image-flow",
        frames=frames,
        masks=masks,
        spacing=None,
        case_ids=[f"{fid}/img{i:02d}" for i in range(options.frames)],
        patient_ids=patient_ids,
        meta=meta,
    )


def _volume_flow(options: DemoOptions, index: int, dataset: str, meta: dict[str, Any]) -> Flow:
    fid = flow_id(options, index)

    def draw() -> dict[str, Any]:
        rng = keyed_rng(options.generator, options.seed, index, 2, 0)
        volume, masks = ct_volume(rng, options.frames, options.size, options.spacing)
        source = None
        if options.window is not None:
            # The same windowing as the file readers, so adapters see CT alike (and keep
            # the HU, as they do, for recipes that start from them).
            source = volume.copy()
            volume, _ = window_intensities(volume, list(options.window), None, dataset)
        return {"volume": volume, "masks": masks, "source": source}

    arrays = stored_arrays(_identity(options, index), draw)
    volume, masks, source = arrays["volume"], arrays["masks"], arrays["source"]
    intensity = "HU"
    if options.window is not None:
        intensity = f"HU window [{options.window[0]:g}, {options.window[1]:g}] scaled to [0, 1]"
    meta.update(spacing_mm=options.spacing, intensity=intensity, window=options.window,
                orientation="slice 0 inferior; rows anterior to posterior; "
                            "columns patient right to left")
    return Flow(
        id=fid,
        dataset=dataset,
        kind="volume",
        frames=volume,
        masks=masks,
        spacing=options.spacing,
        case_ids=[fid],
        patient_ids=[fid],
        meta=meta,
        source_frames=source,
    )


__all__ = ["DEMO_VERSION", "GENERATORS", "DemoFlowRef", "DemoGenerator", "DemoOptions",
           "DemoReader", "expected_case_count", "flow_id", "generate_flow"]
