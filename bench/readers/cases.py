"""File-based readers: a dataset is a list of cases on disk, grouped into flows.

A :class:`FileReader` knows one file layout through two hooks:
:meth:`FileReader.find_cases` lists the cases under a root (cheaply, from
file names) and :meth:`FileReader.read_case` reads one case's raw arrays.
Everything else is common and lives here or next door: label decoding
(:mod:`bench.readers.labels`), volume geometry (:mod:`bench.readers.geometry`),
slicing volumes into images (:mod:`bench.readers.slicing`) and grouping cases
into flows (one per volume; 2D images by the card's ``group`` template, in
chunks of ``chunk_size``).

Two-step use, so that one bad case never ends a run::

    reader = get_reader(card.reader)
    for ref in reader.list_flows(card, root):
        try:
            flow = reader.load_flow(card, ref)
        except DataError as err:
            ...  # report err (one line naming the file), go on
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np

from bench.errors import ConfigError, DataError, Problem
from bench.frames import LazyFrames, PackedMasks, array_sha256
from bench.readers.cards import Card
from bench.readers.geometry import source_frame_order, volume_frames
from bench.readers.labels import LabelSpec, decode_case, label_spec
from bench.readers.options import FileOptions, ImageReaderOptions, VolumeReaderOptions
from bench.readers.registry import FlowRef, Reader
from bench.readers.slicing import slice_refs
from bench.types import Flow


@dataclass(frozen=True, eq=False)
class CaseRef:
    """A reference to one case, cheap to list (no pixel data read).

    Attributes
    ----------
    id : str
        Case id, unique within the dataset (for a slice: ``case/sNNNN``).
    patient : str
        Patient id, for grouping and resampling.
    group : str
        The flow this case belongs to (image flows).
    source : str
        The sub-layout it came from (a card may combine several).
    files : mapping
        Role -> path(s): ``"image"``, ``"mask"`` (tuple, one per rater),
        ``"targets"`` (target -> tuple of rater paths), reader-specific extras.
    fields : mapping
        Values captured from the file names.
    slice : int or None
        Index along the slicing axis when a volume is sliced into images.
    missing : str or None
        Why this case cannot be loaded (for example its mask is missing);
        loading it raises :class:`DataError` with this message.
    bad_file : str or None
        The file ``missing`` is about, when it is not the image.
    """

    id: str
    patient: str
    group: str = "all"
    source: str = ""
    files: Mapping[str, Any] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)
    slice: int | None = None
    missing: str | None = None
    bad_file: str | None = None

    @property
    def where(self) -> str:
        """The file that best names the case in messages: its image, else its id."""
        image = self.files.get("image")
        return str(image if image is not None else self.id)

    @property
    def mask_where(self) -> str:
        """The case's (first) mask file, for messages about masks."""
        mask = self.files.get("mask")
        if isinstance(mask, (tuple, list)) and mask:
            return str(mask[0])
        return str(mask or self.where)


@dataclass(frozen=True, eq=False)
class CaseFlowRef(FlowRef):
    """A flow of a file-based dataset: its cases, in order."""

    cases: tuple[CaseRef, ...]

    @property
    def size(self) -> int:
        return len(self.cases)

    def head(self, count: int) -> CaseFlowRef:
        return self if count >= len(self.cases) else replace(self, cases=self.cases[:count])


@dataclass
class RawCase:
    """What a reader reads for one case, before decoding and geometry.

    Attributes
    ----------
    image : ndarray
        A volume in source index order (3D, or 4D with channels last), or a
        2D image ``(H, W)`` / ``(H, W, 3)``.
    labels : list of ndarray
        Label maps to decode with the card's label spec, one per rater.
    target_labels : dict of str to list of ndarray
        Per-target masks (one file per target and rater), binarised with the
        card's ``threshold`` (default: non-zero).
    spacing, affine
        Geometry of a volume (None for 2D images unless known).
    meta : dict
        Source paths and anything needed to write predictions back;
        ``storage`` is ``"fortran"`` (default: NIfTI, ITK) or ``"c"``
        (``.npy``, slice stacks), which sets the frames' in-plane order
        (see :func:`bench.readers.geometry.frame_order`).
    """

    image: np.ndarray
    labels: list[np.ndarray] = field(default_factory=list)
    target_labels: dict[str, list[np.ndarray]] = field(default_factory=dict)
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Prepared:
    """One base case read, decoded and reordered: kept while its slices are loaded."""

    key: tuple
    image: np.ndarray
    masks: dict[str, np.ndarray]
    spacing: tuple[float, ...] | None
    meta: dict[str, Any]
    source: np.ndarray | None = None  # intensities before the card's window


class FileReader(Reader):
    """A reader of cases stored as files (see the module docstring).

    Subclasses set :attr:`options_model`, deriving from
    :class:`~bench.readers.options.VolumeReaderOptions` for readers of
    volumes or :class:`~bench.readers.options.ImageReaderOptions` for readers
    of 2D images, and implement :meth:`find_cases` and :meth:`read_case`.
    """

    options_model: ClassVar[type[FileOptions]] = ImageReaderOptions

    @property
    def volumes(self) -> bool:
        """True for a reader of volumes (its options model says so)."""
        return issubclass(self.options_model, VolumeReaderOptions)

    # ----------------------------------------------------------------- hooks

    @abstractmethod
    def find_cases(self, card: Card, root: Path | None) -> tuple[list[CaseRef], list[Problem]]:
        """List the cases under ``root``; problems are missing pairs and the like."""

    @abstractmethod
    def read_case(self, card: Card, ref: CaseRef, image: bool = True) -> RawCase:
        """Read one case; ``image=False`` may skip the image (used to pick slices)."""

    def explain_empty(self, card: Card, root: Path | None) -> str:
        """Why no case was found under ``root`` (one line; pattern readers say more)."""
        return "no cases found (check the root folder and the card's file patterns)"

    def label_spec(self, card: Card, ref: CaseRef | None = None) -> LabelSpec:
        """How to turn ``ref``'s label maps into target masks; default from the card."""
        return label_spec(card)

    def options(self, card: Card) -> FileOptions:
        return cast(FileOptions, super().options(card))  # options_model is one of them

    def check_card(self, card: Card) -> None:
        options = self.options(card)
        if isinstance(options, VolumeReaderOptions):
            sliced = options.as_image_flow
            if sliced != (card.kind == "image-flow"):
                raise ConfigError(f"{card.where}.options.as_image_flow: {sliced} does not fit "
                                  f"kind = {card.kind!r} (slicing volumes into images needs kind "
                                  "'image-flow' and as_image_flow = true)")
        elif card.kind != "image-flow":
            raise ConfigError(f"{card.where}.kind: reader {card.reader!r} reads 2D "
                              "images; kind must be 'image-flow'")

    # ----------------------------------------------------------------- listing

    def scan(self, card: Card, root: Path | None) -> tuple[list[CaseRef], list[Problem]]:
        """Base cases (volumes or 2D images, never slices) and listing problems.

        Raises
        ------
        ConfigError
            No root folder for a reader that needs one.
        DataError
            The root folder does not exist.
        """
        if root is not None:
            root = Path(root)
            if not root.is_dir():
                raise DataError(root, "dataset root folder does not exist")
        elif self.needs_root(card):
            raise ConfigError(f"dataset {card.name!r} has no root folder configured")
        refs, problems = self.find_cases(card, root)
        seen: dict[str, CaseRef] = {}
        unique = []
        for ref in refs:
            if ref.id in seen:
                problems.append(Problem("error", ref.where, f"duplicate case id {ref.id!r}: "
                                                            f"{seen[ref.id].where} and "
                                                            f"{ref.where} (make the ids differ "
                                                            "with case_id, or exclude one)"))
                continue
            seen[ref.id] = ref
            unique.append(ref)
        if not unique:
            problems.append(Problem("error", str(root), self.explain_empty(card, root)))
        for ref in unique:
            if ref.missing:
                problems.append(Problem("error", ref.where, ref.missing))
        return unique, problems

    def list_cases(self, card: Card, root: Path | None) -> list[CaseRef]:
        """Every case of the dataset, in order.

        For cards that slice volumes into images this reads every mask once to
        find the slices that contain the target; a volume that cannot be read
        becomes one case whose loading raises its :class:`DataError`.
        """
        refs, _ = self.scan(card, root)
        options = self.options(card)
        if not (isinstance(options, VolumeReaderOptions) and options.as_image_flow):
            return refs
        return [s for ref in refs for s in slice_refs(self, card, ref, options)]

    def list_flows(self, card: Card, root: Path | None) -> list[CaseFlowRef]:
        """The flows of the dataset: one per volume, or 2D cases grouped by the card.

        2D cases are grouped by ``options.group`` (a template over the case's
        fields, ``{source}``, ``{parent}``, ``{patient}``; ``"all"`` by default)
        and split into chunks of ``options.chunk_size``.
        """
        cases = self.list_cases(card, root)
        if card.kind == "volume":
            return [CaseFlowRef(ref.id, (ref,)) for ref in cases]
        groups: dict[str, list[CaseRef]] = {}
        for ref in cases:
            groups.setdefault(ref.group, []).append(ref)
        chunk = self.options(card).chunk_size
        flows = []
        for name, members in groups.items():
            base = card.name if name == "all" else f"{card.name}/{name}"
            if chunk is None:
                flows.append(CaseFlowRef(base, tuple(members)))
                continue
            for start in range(0, len(members), chunk):
                flows.append(CaseFlowRef(f"{base}/{start // chunk:03d}",
                                         tuple(members[start:start + chunk])))
        return flows

    # ----------------------------------------------------------------- loading

    def load_flow(self, card: Card, ref: FlowRef, errors: list[DataError] | None = None
                  ) -> Flow:
        if not isinstance(ref, CaseFlowRef):
            raise TypeError(f"{type(self).__name__} loads the flows it lists, not {ref!r}")
        if card.kind == "volume":
            return self.load_case(card, ref.cases[0])
        # 2D files are read once here (checked, masks packed) and their frames again
        # when used, so memory stays about one image however long the flow; slices
        # of volumes stay in memory (re-reading one means reading its whole volume).
        lazy = not self.volumes
        frames: list[np.ndarray] = []
        shapes: list[tuple[int, ...]] = []
        digests: list[str] = []
        sources: list[str] = []
        read_cases: list[CaseRef] = []
        source_frames: list[np.ndarray | None] = []
        masks: dict[str, PackedMasks] = {}
        case_ids: list[str] = []
        patients: list[str] = []
        cases_meta: list[dict[str, Any]] = []
        skipped: list[str] = []
        spacings = []
        last: list[_Prepared] = []  # the volume whose slices are being loaded
        for case in ref.cases:
            try:
                one = self.load_case(card, case, last=last)
            except DataError as err:
                if errors is None:
                    raise
                errors.append(err)
                skipped.append(str(err))
                continue
            frame = one.frames[0]
            if lazy:
                shapes.append(frame.shape)
                digests.append(array_sha256(frame))
                sources.append(case.where)
                read_cases.append(case)
            else:
                frames.append(frame)
                source_frames.append(None if one.source_frames is None
                                     else one.source_frames[0])
            for target, mask in one.masks.items():
                masks.setdefault(target, PackedMasks()).append(mask[0])
            case_ids.append(case.id)
            patients.append(case.patient)
            cases_meta.append({**one.meta, "spacing": one.spacing})
            spacings.append(one.spacing)
        if not case_ids:
            raise DataError(ref.id, "no case of this flow could be read" + (
                f" ({skipped[0]})" if skipped else ""))
        spacing = spacings[0] if all(s == spacings[0] for s in spacings) else None
        meta = {"cases": cases_meta, "skipped": skipped}
        stored: Sequence[np.ndarray] = frames
        if lazy:
            stored = LazyFrames(_CaseFrame(self, card, tuple(read_cases)), shapes, digests,
                                sources)
        kept = (None if lazy or any(f is None for f in source_frames)
                else cast(list[np.ndarray], source_frames))
        return Flow(ref.id, card.name, "image-flow", stored, masks, spacing=spacing,
                    case_ids=case_ids, patient_ids=patients, meta=meta, source_frames=kept)

    def load_case(self, card: Card, ref: CaseRef, sliced: bool | None = None,
                  last: list[_Prepared] | None = None) -> Flow:
        """Load one case as a flow: a volume, or a one-image image flow.

        Parameters
        ----------
        card, ref
            The card and a reference from :meth:`list_cases` (or :meth:`scan`).
        sliced : bool, optional
            For a slice reference, False returns the whole volume; default: as
            the reference says.
        last : list, optional
            Holds the last volume read for a slice reference, so that the
            slices of one volume read it once (see :meth:`load_flow`).

        Raises
        ------
        DataError
            One line naming the bad file: unreadable, truncated, shapes or
            geometry that do not match, NaNs, unknown labels, a missing mask.
        """
        prepared = self._prepared(card, ref, last)
        image, masks, spacing, meta = (prepared.image, prepared.masks, prepared.spacing,
                                       prepared.meta)
        if not self.volumes:
            return Flow(ref.id, card.name, "image-flow", [image],
                        {t: [m] for t, m in masks.items()}, spacing=spacing,
                        case_ids=[ref.id], patient_ids=[ref.patient], meta=dict(meta))
        if ref.slice is not None and sliced is not False:
            k = ref.slice
            meta = dict(meta, slice=k)
            source = prepared.source
            return Flow(ref.id, card.name, "image-flow", [image[k].copy()],
                        {t: [m[k].copy()] for t, m in masks.items()},
                        spacing=spacing[1:] if spacing else None,
                        case_ids=[ref.id], patient_ids=[ref.patient], meta=meta,
                        source_frames=None if source is None else [source[k].copy()])
        base_id = ref.id.rsplit("/s", 1)[0] if ref.slice is not None else ref.id
        return Flow(base_id, card.name, "volume", image, masks, spacing=spacing,
                    case_ids=[base_id], patient_ids=[ref.patient], meta=dict(meta),
                    source_frames=prepared.source)

    def _prepared(self, card: Card, ref: CaseRef, last: list[_Prepared] | None) -> _Prepared:
        """Read, decode and (volumes) reorder one base case; reuse ``last`` for slices."""
        key = (ref.source, str(ref.files.get("image")))
        if ref.slice is not None and last and last[0].key == key:
            return last[0]
        if last:
            last.clear()
        if ref.missing:
            raise DataError(ref.bad_file or ref.where, ref.missing)
        options = self.options(card)
        raw = self.read_case(card, ref)
        spec = self.label_spec(card, ref)
        where = f"{card.where}.options"
        spatial = raw.image.shape[:3] if self.volumes else raw.image.shape[:2]
        arrays = [*raw.labels, *(a for arrays in raw.target_labels.values() for a in arrays)]
        for array in arrays:
            if array.shape != spatial:
                raise DataError(ref.mask_where, f"mask shape {array.shape} differs from image "
                                                f"shape {spatial} ({ref.where})")
        if isinstance(options, VolumeReaderOptions):
            if raw.image.ndim != 3:
                raise DataError(ref.where, f"expected a 3D volume, got shape {raw.image.shape}")
            # reorder the label maps (small) rather than every decoded target mask
            order = source_frame_order(options, raw.spacing, raw.meta.get("storage", "fortran"))
            raw.labels = [_reordered(a, order) for a in raw.labels]
            raw.target_labels = {t: [_reordered(a, order) for a in arrays]
                                 for t, arrays in raw.target_labels.items()}
        masks, info = decode_case(raw, spec, ref.mask_where)
        meta = dict(raw.meta)
        meta.update(unknown_labels=info["unknown"], remapped_values=info["remapped"])
        source = None
        if isinstance(options, VolumeReaderOptions):
            image, spacing, source = volume_frames(raw.image, raw.spacing, raw.affine, options,
                                                   meta, where)
        else:
            image = raw.image
            _check_image(image, ref.where)
            spacing = options.pixel_spacing or raw.spacing
        prepared = _Prepared(key, image, masks, spacing, meta, source)
        if ref.slice is not None and last is not None:
            last.append(prepared)
        return prepared


@dataclass(frozen=True)
class _CaseFrame:
    """Reads frame ``index`` of a lazily loaded image flow: its case's image again.

    It holds the case references, mask paths included, as a private part of
    :class:`~bench.frames.LazyFrames`: adapters are handed frames, never paths.
    """

    reader: FileReader
    card: Card
    cases: tuple[CaseRef, ...]

    def __call__(self, index: int) -> np.ndarray:
        return self.reader.load_case(self.card, self.cases[index]).frames[0]


def _reordered(array: np.ndarray, order: Sequence[int]) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(array, order))


def _check_image(image: np.ndarray, where: str) -> None:
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise DataError(where, "NaN or infinite values in the image")


__all__ = ["CaseFlowRef", "CaseRef", "FileReader", "RawCase"]
