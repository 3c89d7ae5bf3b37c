"""The machinery shared by the file-based readers.

A *source* knows a file layout: :meth:`Source.scan` lists the cases under a
root (cheaply, from file names) and :meth:`Source.read` reads one case's raw
arrays. Everything else is common and lives here:

- label decoding (label maps, merged regions, grey levels snapped to the
  nearest class, thresholds for JPEG masks, multi-rater votes);
- volume geometry (slicing axis, intensity windows, spacing in array order,
  the permutation back to the source file's order);
- slicing volumes into 2D images that contain the target, for the
  one-prompt suite's image flows;
- grouping cases into flows (one per volume; 2D images by a group template,
  in chunks).

Two-step use, so that one bad case never ends a run::

    for ref in list_flows(card, root):
        try:
            flow = load_flow(card, ref)
        except DataError as err:
            ...  # report err (one line naming the file), go on

or ``iter_flows(card, root, errors=[])``, which skips and collects bad cases.

Card options common to every file-based reader
----------------------------------------------
Labels (``[options]``):

``labels``
    Table ``name -> value`` of the dataset's label values (background is
    ``background``, default 0).
``regions``
    Table ``target -> [names or values]``: merged labels (BTCV ``AG`` =
    both adrenals) and nested regions (BraTS ``WT``/``TC``/``ET``).
``levels``
    Grey levels of the mask; any other value is snapped to the nearest level
    and reported as a stray value (WBC).
``threshold``
    Binarise masks: value >= threshold is foreground, value 1 (JPEG masks).
``unknown_labels``
    ``"error"`` (default: a value the card does not know fails the case) or
    ``"warn"`` (ignored, recorded in ``meta`` and reported by the checker).
``vote``
    Several raters: ``"majority"`` (mean >= 0.5, the official MedSAM-2
    rule), ``"any"`` or ``"all"``.

Volumes: ``axis`` (0, 1, 2 or ``"auto"`` = the axis with the largest
spacing; default 2), ``transpose`` (swap the in-plane axes), ``window``
(``[lo, hi]`` clipped and scaled to [0, 1], or ``"percentile"`` with
``percentiles``, default [0.5, 99.5]; default: raw float32), ``channel``
(index of a 4D image's last axis), ``spacing`` (for ``.npy``),
``check_geometry`` (compare image and mask affines, default true).

Image flows: ``as_image_flow`` (slice volumes into 2D images; the card's
``kind`` must be ``"image-flow"``), ``slices`` (``"target"``: slices that
contain ``slice_target``, default any target; or ``"all"``),
``slices_per_case`` (evenly spaced pick), ``group`` (template such as
``"{source}"``, ``"{parent}"``, ``"{patient}"`` or a file-name field;
``"all"`` = one group, the default), ``chunk_size`` (images per flow),
``pixel_spacing`` (``[row, col]`` mm for 2D images).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ConfigError, DataError, Problem
from bench.readers.cards import Card
from bench.types import Flow
from bench.validate import check_table

LABEL_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "labels": dict,
    "regions": dict,
    "background": int,
    "levels": list,
    "threshold": (int, float),
    "unknown_labels": str,
    "vote": str,
    "mask_channel": int,
}
VOLUME_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "axis": (int, str),
    "transpose": bool,
    "window": (list, str),
    "percentiles": list,
    "channel": (int, str),
    "spacing": list,
    "check_geometry": bool,
}
FLOW_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "as_image_flow": bool,
    "slices": str,
    "slice_target": str,
    "slices_per_case": int,
    "group": str,
    "chunk_size": int,
    "pixel_spacing": list,
}
COMMON_OPTIONS = {**LABEL_OPTIONS, **VOLUME_OPTIONS, **FLOW_OPTIONS}


# --------------------------------------------------------------------------- data types


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


@dataclass(frozen=True, eq=False)
class FlowRef:
    """The cases that make one flow, in order."""

    id: str
    cases: tuple[CaseRef, ...]


@dataclass
class RawCase:
    """What a source reads for one case, before decoding and geometry.

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
        (see :func:`frame_order`).
    """

    image: np.ndarray
    labels: list[np.ndarray] = field(default_factory=list)
    target_labels: dict[str, list[np.ndarray]] = field(default_factory=dict)
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Source:
    """A file layout: lists cases and reads one case's raw arrays.

    Subclasses set ``options`` (their own card options, added to
    :data:`COMMON_OPTIONS`) and implement :meth:`scan` and :meth:`read`.
    """

    name: str = ""
    options: dict[str, type | tuple[type, ...]] = {}
    volumes: bool = True  # False for sources of 2D images

    def scan(self, card: Card, root: Path) -> tuple[list[CaseRef], list[Problem]]:
        """List the cases under ``root``; problems are missing pairs and the like."""
        raise NotImplementedError

    def read(self, card: Card, ref: CaseRef, image: bool = True) -> RawCase:
        """Read one case; ``image=False`` may skip the image (used to pick slices)."""
        raise NotImplementedError

    def label_spec(self, card: Card, ref: CaseRef | None = None) -> LabelSpec:
        """How to turn ``ref``'s label maps into target masks; default from the card."""
        return label_spec(card)

    def needs_root(self, card: Card) -> bool:
        """False for sources that can load without a local folder (hub datasets)."""
        return True

    def main_file(self, ref: CaseRef) -> Path | str:
        return ref.files.get("image", ref.id)


_SOURCES: dict[str, Source] = {}


def register_source(name: str) -> Callable[[type[Source]], type[Source]]:
    """Class decorator: register a source and a streaming reader of the same name."""
    from bench.readers import register_reader

    def decorate(cls: type[Source]) -> type[Source]:
        source = cls()
        source.name = name
        _SOURCES[name] = source

        def reader(card: Card, root: Path | None, limit: int | None,
                   errors: list[DataError] | None = None) -> Iterator[Flow]:
            return iter_flows(card, root, limit, errors)

        reader.__name__ = f"read_{name.replace('-', '_')}"
        reader.__doc__ = f"Stream the flows of a ``{name}`` card (see :mod:`{cls.__module__}`)."
        register_reader(name)(reader)
        return cls

    return decorate


def get_source(card: Card) -> Source:
    """The source behind ``card.reader``; ConfigError if it is not file based."""
    from bench.readers import get_reader

    get_reader(card.reader)  # loads the built-in reader modules
    if card.reader not in _SOURCES:
        raise ConfigError(f"{card.path or card.name}.reader: {card.reader!r} is not a "
                          "file-based reader (no case listing)")
    return _SOURCES[card.reader]


def card_options(card: Card, source: Source | None = None) -> dict[str, Any]:
    """The card's options, checked against the reader's schema (ConfigError)."""
    source = source or get_source(card)
    schema = {**COMMON_OPTIONS, **source.options}
    where = f"{card.path or card.name}.options"
    check_table(card.options, schema, where)
    options = dict(card.options)
    _check_choice(options, "unknown_labels", ("error", "warn"), where)
    _check_choice(options, "vote", ("majority", "any", "all"), where)
    _check_choice(options, "slices", ("target", "all"), where)
    sliced = bool(options.get("as_image_flow", False))
    if source.volumes and sliced != (card.kind == "image-flow"):
        raise ConfigError(f"{where}.as_image_flow: {sliced} does not fit kind = "
                          f"{card.kind!r} (slicing volumes into images needs kind "
                          "'image-flow' and as_image_flow = true)")
    if not source.volumes and card.kind != "image-flow":
        raise ConfigError(f"{card.path or card.name}.kind: reader {card.reader!r} reads 2D "
                          "images; kind must be 'image-flow'")
    return options


def _check_choice(options: dict[str, Any], key: str, choices: Sequence[str], where: str) -> None:
    if key in options and options[key] not in choices:
        raise ConfigError(f"{where}.{key}: expected one of {', '.join(choices)}, "
                          f"got {options[key]!r}")


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelSpec:
    """How raw masks become one boolean mask per target.

    Attributes
    ----------
    targets : dict of str to tuple of int
        The label values that make each target.
    known : frozenset of int
        Every value the card defines (background included).
    background : int
    levels : tuple of float or None
        Grey levels to snap to (nearest), or None.
    threshold : float or None
        Binarisation threshold, or None.
    unknown : {"error", "warn"}
    vote : {"majority", "any", "all"}
    """

    targets: dict[str, tuple[int, ...]]
    known: frozenset[int]
    background: int = 0
    levels: tuple[float, ...] | None = None
    threshold: float | None = None
    unknown: str = "error"
    vote: str = "majority"


def label_spec(card: Card, options: Mapping[str, Any] | None = None,
               labels: Mapping[str, int] | None = None,
               regions: Mapping[str, Sequence[Any]] | None = None,
               targets: Sequence[str] | None = None) -> LabelSpec:
    """Build the label spec of ``card`` (``options`` override the card's).

    Raises
    ------
    ConfigError
        A target with no label value, a region naming an unknown label.
    """
    opts = dict(card.options if options is None else options)
    where = f"{card.path or card.name}.options"
    labels = dict(opts.get("labels", {}) if labels is None else labels)
    regions = dict(opts.get("regions", {}) if regions is None else regions)
    targets = list(card.targets if targets is None else targets)
    threshold = opts.get("threshold")
    if threshold is not None and not labels and len(targets) == 1:
        labels = {targets[0]: 1}  # a thresholded mask has foreground value 1
    for name, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}.labels.{name}: expected an integer label value, "
                              f"got {value!r}")
    resolved: dict[str, tuple[int, ...]] = {}
    for target in targets:
        if target in regions:
            members = regions[target]
            if not isinstance(members, list) or not members:
                raise ConfigError(f"{where}.regions.{target}: expected a non-empty list")
            values = []
            for member in members:
                if isinstance(member, str):
                    if member not in labels:
                        raise ConfigError(f"{where}.regions.{target}: unknown label "
                                          f"{member!r}; known: {', '.join(labels)}")
                    values.append(labels[member])
                elif isinstance(member, int) and not isinstance(member, bool):
                    values.append(member)
                else:
                    raise ConfigError(f"{where}.regions.{target}: {member!r} is neither a "
                                      "label name nor a value")
            resolved[target] = tuple(sorted(set(values)))
        elif target in labels:
            resolved[target] = (labels[target],)
        else:
            raise ConfigError(f"{card.path or card.name}.targets: {target!r} has no label "
                              "value; define it in options.labels or options.regions")
    background = int(opts.get("background", 0))
    levels = opts.get("levels")
    known = {background, *labels.values()}
    for values in resolved.values():
        known.update(values)
    if levels is not None:
        levels = tuple(float(v) for v in levels)
        known.update(int(v) for v in levels)
    return LabelSpec(
        targets=resolved,
        known=frozenset(known),
        background=background,
        levels=levels,
        threshold=None if threshold is None else float(threshold),
        unknown=str(opts.get("unknown_labels", "error")),
        vote=str(opts.get("vote", "majority")),
    )


def present_values(array: np.ndarray) -> np.ndarray:
    """Sorted distinct values of ``array``, computed in slabs to bound memory."""
    if array.size == 0:
        return np.zeros(0, dtype=array.dtype)
    flat = array.ravel(order="K")  # no copy for Fortran-ordered NIfTI arrays
    step = 1 << 22
    if array.dtype.kind in "ub" or (array.dtype.kind == "i" and array.dtype.itemsize <= 2):
        offset = 0 if array.dtype.kind in "ub" else 32768
        seen = np.zeros(65536 if array.dtype.itemsize > 1 or offset else 256, dtype=bool)
        for start in range(0, flat.size, step):
            chunk = flat[start:start + step]
            if offset:
                chunk = chunk.astype(np.int32) + offset
            seen |= np.bincount(chunk, minlength=seen.size) > 0
        return (np.flatnonzero(seen) - offset).astype(array.dtype)
    found: set = set()
    for start in range(0, flat.size, step):
        found.update(np.unique(flat[start:start + step]).tolist())
    return np.array(sorted(found), dtype=array.dtype)


def as_label_array(raw: np.ndarray, path: Path | str) -> np.ndarray:
    """Check that a label map holds finite integers and return it as integers."""
    if raw.dtype.kind == "b":
        return raw.astype(np.uint8)
    if raw.dtype.kind == "f":
        if not np.isfinite(raw).all():
            raise DataError(path, "NaN or infinite values in the mask")
        if not np.array_equal(raw, np.round(raw)):
            raise DataError(path, "non-integer values in the mask")
        low, high = float(raw.min(initial=0)), float(raw.max(initial=0))
        dtype = np.uint8 if low >= 0 and high < 256 else np.int32
        return raw.astype(dtype)
    if raw.dtype.kind not in "ui":
        raise DataError(path, f"unsupported mask data type {raw.dtype}")
    return raw


def decode_labels(raw: np.ndarray, spec: LabelSpec, path: Path | str = "mask"
                  ) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Turn one label map into one boolean mask per target.

    Returns
    -------
    masks : dict of str to ndarray of bool
    info : dict
        ``unknown``: values the card does not know (when ``unknown_labels``
        is ``"warn"``); ``stray``: grey levels snapped to the nearest level.

    Raises
    ------
    DataError
        NaNs, non-integer values, or (``unknown_labels = "error"``) values the
        card does not know.
    """
    raw = as_label_array(raw, path)
    info: dict[str, list] = {"unknown": [], "stray": []}
    if spec.threshold is not None:
        raw = (raw >= spec.threshold).astype(np.uint8)
    present = present_values(raw)
    if spec.levels is not None and spec.threshold is None:
        levels = np.asarray(spec.levels, dtype=float)
        stray = [v for v in present.tolist() if float(v) not in spec.levels]
        if stray:
            raw = raw.copy()
            for value in stray:
                raw[raw == value] = int(levels[np.argmin(np.abs(levels - float(value)))])
            info["stray"] = [int(v) for v in stray]
            present = present_values(raw)
    unknown = sorted(int(v) for v in present.tolist() if int(v) not in spec.known)
    if unknown:
        if spec.unknown == "error":
            raise DataError(path, f"unknown label values {unknown} (the card knows "
                                  f"{sorted(spec.known)})")
        info["unknown"] = unknown
    masks = {}
    for target, values in spec.targets.items():
        mask = raw == values[0]
        for value in values[1:]:
            mask |= raw == value
        masks[target] = mask
    return masks, info


def vote(masks: Sequence[np.ndarray], rule: str) -> np.ndarray:
    """Combine rater masks: ``"majority"`` (mean >= 0.5), ``"any"`` or ``"all"``."""
    if len(masks) == 1:
        return masks[0]
    stack = np.stack(masks)
    if rule == "any":
        return stack.any(axis=0)
    if rule == "all":
        return stack.all(axis=0)
    return 2 * stack.sum(axis=0, dtype=np.int32) >= len(masks)


def decode_case(raw: RawCase, spec: LabelSpec, where: Path | str
                ) -> tuple[dict[str, np.ndarray], dict[str, list]]:
    """Decode a raw case's label maps and per-target files into target masks."""
    info: dict[str, list] = {"unknown": [], "stray": []}
    per_rater: dict[str, list[np.ndarray]] = {t: [] for t in spec.targets}
    for labels in raw.labels:
        masks, found = decode_labels(labels, spec, where)
        for key in info:
            info[key] = sorted(set(info[key]) | set(found[key]))
        for target, mask in masks.items():
            per_rater[target].append(mask)
    for target, files in raw.target_labels.items():
        if target not in per_rater:
            continue
        for array in files:
            array = as_label_array(array, where)
            mask = array >= spec.threshold if spec.threshold is not None else array != 0
            per_rater[target].append(mask)
    result = {}
    for target, masks in per_rater.items():
        if not masks:
            raise DataError(where, f"no mask for target {target!r}")
        shapes = {m.shape for m in masks}
        if len(shapes) > 1:
            raise DataError(where, f"rater masks of target {target!r} differ in shape "
                                   f"{sorted(shapes)}")
        result[target] = vote(masks, spec.vote)
    return result, info


# --------------------------------------------------------------------------- geometry


def slicing_axis(option: Any, spacing: Sequence[float], where: str) -> int:
    """The array axis to slice along: an int, or ``"auto"`` = largest spacing."""
    if option is None:
        return 2
    if option == "auto":
        values = list(spacing)
        top = max(values)
        # ties (isotropic) go to the last axis, NIfTI's usual through-plane axis
        return max(i for i, v in enumerate(values) if math.isclose(v, top, rel_tol=1e-3))
    if isinstance(option, bool) or not isinstance(option, int) or not 0 <= option <= 2:
        raise ConfigError(f"{where}.axis: expected 0, 1, 2 or 'auto', got {option!r}")
    return option


def frame_order(axis: int, transpose: bool, fortran: bool = True) -> tuple[int, int, int]:
    """Permutation taking source index order to ``(slice, row, col)``.

    For volumes stored with the first index fastest (NIfTI, NRRD/MHA: the
    ``fortran`` storage) the in-plane axes come in descending order, as in
    SimpleITK's ``(z, y, x)`` arrays: for ``axis = 2`` rows run along ``j``
    and columns along ``i`` (and the reordering is a cheap contiguous copy).
    C-ordered volumes (``.npy``, stacks of 2D slices) keep their array order.
    ``transpose`` swaps rows and columns.
    """
    rest = [a for a in ((2, 1, 0) if fortran else (0, 1, 2)) if a != axis]
    if transpose:
        rest.reverse()
    return (axis, rest[0], rest[1])


def window_intensities(volume: np.ndarray, option: Any, percentiles: Sequence[float] | None,
                       where: str) -> tuple[np.ndarray, list[float] | None]:
    """Clip and scale ``volume`` (float32, in place) to [0, 1] by the card's window."""
    if option is None:
        return volume, None
    if option == "percentile":
        low_q, high_q = (percentiles or (0.5, 99.5))
        sample = volume[:: max(1, volume.shape[0] // 64)]  # percentiles of a slab sample
        low, high = (float(v) for v in np.percentile(sample, [low_q, high_q]))
    elif isinstance(option, list) and len(option) == 2:
        low, high = float(option[0]), float(option[1])
    else:
        raise ConfigError(f"{where}.window: expected [low, high] or 'percentile', "
                          f"got {option!r}")
    if high <= low:
        high = low + 1.0
    np.clip(volume, low, high, out=volume)
    volume -= low
    volume /= high - low
    return volume, [low, high]


def to_source_order(volume: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """Put a ``(slice, row, col)`` array back in the source file's index order."""
    axes = meta.get("source_axes")
    return np.transpose(volume, axes) if axes is not None else volume


def main_file(ref: CaseRef) -> Path | str:
    """The file that best names a case in messages."""
    image = ref.files.get("image")
    return image if image is not None else ref.id


# --------------------------------------------------------------------------- scanning


def scan(card: Card, root: Path | None) -> tuple[list[CaseRef], list[Problem]]:
    """Base cases (volumes or 2D images, never slices) and listing problems."""
    source = get_source(card)
    card_options(card, source)
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(root, "dataset root folder does not exist")
    elif source.needs_root(card):
        raise ConfigError(f"dataset {card.name!r} has no root folder configured")
    refs, problems = source.scan(card, root)
    seen: dict[str, CaseRef] = {}
    unique = []
    for ref in refs:
        if ref.id in seen:
            problems.append(Problem("error", str(main_file(ref)),
                                    f"duplicate case id {ref.id!r} (also "
                                    f"{main_file(seen[ref.id])}); keeping the first"))
            continue
        seen[ref.id] = ref
        unique.append(ref)
    if not unique:
        problems.append(Problem("error", str(root), "no cases found (check the root folder "
                                                    "and the card's file patterns)"))
    for ref in unique:
        if ref.missing:
            problems.append(Problem("error", str(main_file(ref)), ref.missing))
    return unique, problems


def list_cases(card: Card, root: Path | None) -> list[CaseRef]:
    """Every case of the dataset, in order.

    For cards that slice volumes into images this reads every mask once to
    find the slices that contain the target; a volume that cannot be read
    becomes one case whose loading raises its :class:`DataError`.
    """
    refs, _ = scan(card, root)
    options = card_options(card)
    if not options.get("as_image_flow"):
        return refs
    return [s for ref in refs for s in _slice_refs(card, ref, options)]


def _slice_refs(card: Card, ref: CaseRef, options: Mapping[str, Any]) -> list[CaseRef]:
    if ref.missing:
        return [ref]
    source = get_source(card)
    try:
        raw = source.read(card, ref, image=False)
        spec = source.label_spec(card, ref)
        masks, _ = decode_case(raw, spec, _mask_name(ref))
    except DataError as err:
        return [replace(ref, missing=err.problem, bad_file=err.path)]
    axis = slicing_axis(options.get("axis"), raw.spacing or (1.0, 1.0, 1.0),
                        f"{card.path or card.name}.options")
    n = next(iter(masks.values())).shape[axis]
    which = options.get("slice_target", "any")
    if options.get("slices", "target") == "all":
        chosen = list(range(n))
    else:
        if which != "any" and which not in masks:
            raise ConfigError(f"{card.path or card.name}.options.slice_target: unknown target "
                              f"{which!r}")
        selected = [masks[which]] if which != "any" else list(masks.values())
        other = tuple(a for a in range(3) if a != axis)
        present = np.zeros(n, dtype=bool)
        for mask in selected:
            present |= mask.any(axis=other)
        chosen = np.flatnonzero(present).tolist()
    per_case = options.get("slices_per_case")
    if per_case and len(chosen) > per_case:
        picks = np.linspace(0, len(chosen) - 1, per_case).round().astype(int)
        chosen = [chosen[i] for i in picks]
    return [replace(ref, id=f"{ref.id}/s{k:04d}", slice=k) for k in chosen]


def _mask_name(ref: CaseRef) -> str:
    mask = ref.files.get("mask")
    if isinstance(mask, (tuple, list)) and mask:
        return str(mask[0])
    return str(mask or main_file(ref))


def list_flows(card: Card, root: Path | None) -> list[FlowRef]:
    """The flows of the dataset: one per volume, or 2D cases grouped by the card.

    2D cases are grouped by ``options.group`` (a template over the case's
    fields, ``{source}``, ``{parent}``, ``{patient}``; ``"all"`` by default)
    and split into chunks of ``options.chunk_size``.
    """
    options = card_options(card)
    cases = list_cases(card, root)
    if card.kind == "volume":
        return [FlowRef(ref.id, (ref,)) for ref in cases]
    groups: dict[str, list[CaseRef]] = {}
    for ref in cases:
        groups.setdefault(ref.group, []).append(ref)
    chunk = options.get("chunk_size")
    if chunk is not None and chunk < 1:
        raise ConfigError(f"{card.path or card.name}.options.chunk_size: must be >= 1")
    flows = []
    for name, members in groups.items():
        base = card.name if name == "all" else f"{card.name}/{name}"
        if chunk is None:
            flows.append(FlowRef(base, tuple(members)))
            continue
        for start in range(0, len(members), chunk):
            flows.append(FlowRef(f"{base}/{start // chunk:03d}",
                                 tuple(members[start:start + chunk])))
    return flows


def group_key(template: str | None, values: Mapping[str, str], where: str) -> str:
    """Format a group template (``"all"`` or e.g. ``"{source}"``)."""
    if template in (None, "all"):
        return "all"
    try:
        return template.format(**values)
    except KeyError as err:
        raise ConfigError(f"{where}.group: unknown field {err.args[0]!r} in {template!r}; "
                          f"known: {', '.join(sorted(values))}") from None


# --------------------------------------------------------------------------- loading

_CACHE: dict[str, Any] = {"key": None, "value": None}


def _prepared(card: Card, ref: CaseRef, options: Mapping[str, Any]
              ) -> tuple[np.ndarray, dict[str, np.ndarray], tuple[float, ...] | None, dict]:
    """Read, decode and (volumes) reorder one base case.

    Cached for slice references, so that the slices of one volume read it once.
    """
    key = (card.name, id(card), ref.source, str(ref.files.get("image")))
    if ref.slice is not None and _CACHE["key"] == key:
        return _CACHE["value"]
    _CACHE["key"] = _CACHE["value"] = None
    if ref.missing:
        raise DataError(ref.bad_file or main_file(ref), ref.missing)
    source = get_source(card)
    raw = source.read(card, ref)
    spec = source.label_spec(card, ref)
    where = f"{card.path or card.name}.options"
    spatial = raw.image.shape[:3] if source.volumes else raw.image.shape[:2]
    arrays = [*raw.labels, *(a for arrays in raw.target_labels.values() for a in arrays)]
    for array in arrays:
        if array.shape != spatial:
            raise DataError(_mask_name(ref), f"mask shape {array.shape} differs from image "
                                             f"shape {spatial} ({main_file(ref)})")
    if source.volumes:
        if raw.image.ndim != 3:
            raise DataError(main_file(ref), f"expected a 3D volume, got shape {raw.image.shape}")
        # reorder the label maps (small) rather than every decoded target mask
        order = _order(raw, options, where)
        raw.labels = [np.ascontiguousarray(np.transpose(a, order)) for a in raw.labels]
        raw.target_labels = {t: [np.ascontiguousarray(np.transpose(a, order)) for a in arrays]
                             for t, arrays in raw.target_labels.items()}
    masks, info = decode_case(raw, spec, _mask_name(ref))
    meta = dict(raw.meta)
    meta.update(unknown_labels=info["unknown"], stray_values=info["stray"])
    if source.volumes:
        image, spacing, meta = _volume_geometry(raw, options, where, meta)
    else:
        image = raw.image
        _check_image(image, str(main_file(ref)))
        spacing = options.get("pixel_spacing")
        spacing = tuple(float(s) for s in spacing) if spacing else raw.spacing
    value = (image, masks, spacing, meta)
    if ref.slice is not None:
        _CACHE["key"], _CACHE["value"] = key, value
    return value


def load_case(card: Card, ref: CaseRef, sliced: bool | None = None) -> Flow:
    """Load one case as a flow: a volume, or a one-image image flow.

    Parameters
    ----------
    card, ref
        The card and a reference from :func:`list_cases` (or :func:`scan`).
    sliced : bool, optional
        For a slice reference, False returns the whole volume; default: as
        the reference says.

    Raises
    ------
    DataError
        One line naming the bad file: unreadable, truncated, shapes or
        geometry that do not match, NaNs, unknown labels, a missing mask.
    """
    options = card_options(card)
    source = get_source(card)
    image, masks, spacing, meta = _prepared(card, ref, options)
    if not source.volumes:
        return Flow(ref.id, card.name, "image-flow", [image], {t: [m] for t, m in masks.items()},
                    spacing=spacing, case_ids=[ref.id], patient_ids=[ref.patient],
                    meta=dict(meta))
    if ref.slice is not None and sliced is not False:
        k = ref.slice
        meta = dict(meta, slice=k)
        return Flow(ref.id, card.name, "image-flow", [image[k].copy()],
                    {t: [m[k].copy()] for t, m in masks.items()},
                    spacing=spacing[1:] if spacing else None,
                    case_ids=[ref.id], patient_ids=[ref.patient], meta=meta)
    base_id = ref.id.rsplit("/s", 1)[0] if ref.slice is not None else ref.id
    return Flow(base_id, card.name, "volume", image, masks, spacing=spacing,
                case_ids=[base_id], patient_ids=[ref.patient], meta=dict(meta))


def _check_image(image: np.ndarray, where: str) -> None:
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise DataError(where, "NaN or infinite values in the image")


def _order(raw: RawCase, options: Mapping[str, Any], where: str) -> tuple[int, int, int]:
    axis = slicing_axis(options.get("axis"), raw.spacing or (1.0, 1.0, 1.0), where)
    fortran = raw.meta.get("storage", "fortran") == "fortran"
    return frame_order(axis, bool(options.get("transpose", False)), fortran)


def _volume_geometry(raw: RawCase, options: Mapping[str, Any], where: str,
                     meta: dict[str, Any]) -> tuple[np.ndarray, tuple[float, ...] | None, dict]:
    image = raw.image
    path = str(meta.get("image", "image"))
    if image.ndim != 3:
        raise DataError(path, f"expected a 3D volume, got shape {image.shape} (4D images "
                              "need options.channel)")
    known = raw.spacing is not None  # None: pixel units (e.g. slices stored as JPEG)
    spacing = raw.spacing if known else (1.0, 1.0, 1.0)
    order = _order(raw, options, where)
    axis = order[0]
    # one copy: reorder and convert in the same step, then window in place
    volume = np.ascontiguousarray(np.transpose(image, order), dtype=np.float32)
    if not np.isfinite(volume).all():
        raise DataError(path, "NaN or infinite values in the image")
    volume, window = window_intensities(volume, options.get("window"),
                                        options.get("percentiles"), where)
    meta.update(
        axis=axis,
        frame_order=order,
        source_axes=tuple(int(a) for a in np.argsort(order)),
        source_shape=tuple(int(s) for s in image.shape),
        affine=raw.affine,
        window=window,
    )
    return volume, tuple(float(spacing[a]) for a in order) if known else None, meta


def load_flow(card: Card, ref: FlowRef, errors: list[DataError] | None = None) -> Flow:
    """Load the cases of one flow.

    Parameters
    ----------
    card, ref
        The card and one entry of :func:`list_flows`.
    errors : list, optional
        When given, bad cases of an image flow are skipped and their
        :class:`DataError` appended here (and listed in ``meta["skipped"]``);
        otherwise the first bad case raises.

    Raises
    ------
    DataError
        A bad case (without ``errors``), or a flow none of whose cases loads.
    """
    if card.kind == "volume":
        return load_case(card, ref.cases[0])
    frames: list[np.ndarray] = []
    masks: dict[str, list[np.ndarray]] = {}
    case_ids: list[str] = []
    patients: list[str] = []
    cases_meta: list[dict[str, Any]] = []
    skipped: list[str] = []
    spacings = []
    for case in ref.cases:
        try:
            one = load_case(card, case)
        except DataError as err:
            if errors is None:
                raise
            errors.append(err)
            skipped.append(str(err))
            continue
        frames.append(one.frames[0])
        for target, mask in one.masks.items():
            masks.setdefault(target, []).append(mask[0])
        case_ids.append(case.id)
        patients.append(case.patient)
        cases_meta.append({**one.meta, "spacing": one.spacing})
        spacings.append(one.spacing)
    _CACHE["key"] = _CACHE["value"] = None
    if not frames:
        raise DataError(ref.id, "no case of this flow could be read" + (
            f" ({skipped[0]})" if skipped else ""))
    spacing = spacings[0] if all(s == spacings[0] for s in spacings) else None
    meta = {"cases": cases_meta, "skipped": skipped}
    return Flow(ref.id, card.name, "image-flow", frames, masks, spacing=spacing,
                case_ids=case_ids, patient_ids=patients, meta=meta)


def iter_flows(card: Card, root: Path | None, limit: int | None = None,
               errors: list[DataError] | None = None) -> Iterator[Flow]:
    """Stream the flows of a dataset, one at a time.

    Without ``errors`` the first bad case raises :class:`DataError` (and ends
    the iteration); with a list, bad cases and flows are skipped and their
    errors appended to it.
    """
    for count, ref in enumerate(list_flows(card, root)):
        if limit is not None and count >= limit:
            return
        try:
            yield load_flow(card, ref, errors)
        except DataError as err:
            if errors is None:
                raise
            errors.append(err)


# --------------------------------------------------------------------------- patterns

_TOKEN = re.compile(r"\*\*/|\*\*|\*|\?|\{(\w+)\}")


class Pattern:
    """A file-name template such as ``"RawData/Training/img/img{id}.nii.gz"``.

    ``{name}`` captures a field (any characters but ``/``, or the regular
    expression given in ``fields``); ``*``, ``?`` and ``**/`` are glob
    wildcards. Paths are matched relative to the dataset root.
    """

    def __init__(self, template: str, fields: Mapping[str, str] | None = None) -> None:
        self.template = template
        self.fields: list[str] = []
        regex, glob, pos = [], [], 0
        for match in _TOKEN.finditer(template):
            literal = template[pos:match.start()]
            regex.append(re.escape(literal))
            glob.append(literal)
            token = match.group(0)
            name = match.group(1)
            if name:
                if name in self.fields:
                    regex.append(f"(?P={name})")
                else:
                    self.fields.append(name)
                    expr = (fields or {}).get(name, r"[^/]+?")
                    regex.append(f"(?P<{name}>{expr})")
                glob.append("*")
            elif token == "**/":
                regex.append(r"(?:[^/]+/)*")
                glob.append("**/")
            elif token == "**":
                regex.append(r".*")
                glob.append("**")
            elif token == "*":
                regex.append(r"[^/]*")
                glob.append("*")
            else:
                regex.append(r"[^/]")
                glob.append("?")
            pos = match.end()
        regex.append(re.escape(template[pos:]))
        glob.append(template[pos:])
        self.regex = re.compile("".join(regex) + r"\Z")
        self.glob = "".join(glob)

    def find(self, root: Path, exclude: Sequence[str] = ()) -> list[tuple[Path, dict[str, str]]]:
        """Files under ``root`` matching the template, with their captured fields.

        Hidden files, ``__MACOSX`` folders and paths matching an ``exclude``
        pattern (shell-style over the whole relative path: ``*`` crosses
        folders) are skipped.
        """
        found = []
        for path in root.glob(self.glob):
            rel = path.relative_to(root).as_posix()
            if any(part.startswith(".") or part == "__MACOSX" for part in rel.split("/")):
                continue
            if any(fnmatch.fnmatchcase(rel, pattern) for pattern in exclude):
                continue
            match = self.regex.match(rel)
            if match:
                found.append((path, match.groupdict()))
        found.sort(key=lambda item: natural_key(item[0].relative_to(root).as_posix()))
        return found

    def format(self, **values: str) -> str:
        """The template with the given fields filled in."""
        text = self.template
        for name, value in values.items():
            text = text.replace("{" + name + "}", str(value))
        return text


def natural_key(text: str) -> list:
    """Sort key that orders ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
