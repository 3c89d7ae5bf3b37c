"""Label decoding: from a dataset's mask files to one boolean mask per target.

A :class:`LabelSpec`, built from the card's label options
(:class:`bench.readers.options.LabelOptions`), says which label values make
each target; :func:`decode_labels` applies it to one label map and
:func:`decode_case` combines label maps, per-target mask files and several
raters' masks (:func:`vote`).

A mask is decoded exactly as the card declares, or refused: a value the card
does not declare (as background, a label, a grey level or a ``remap`` entry)
is a :class:`~bench.errors.DataError` naming the file, the values found and
the option that would fix it. Nothing is snapped to a nearest class: an index
mask (0/1/2) read by a card of grey levels (0/128/255), a 16-bit mask
(0/32896/65535) or a lossy JPEG mask without ``threshold`` would otherwise
become empty or wrong targets that score like real ones.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import ConfigError, DataError
from bench.readers.options import LabelOptions

if TYPE_CHECKING:
    from bench.readers.cards import Card
    from bench.readers.cases import RawCase


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
    remap : dict of int to int
        Declared stray values and the value each stands for.
    remap_files : tuple of str
        Patterns of the mask files ``remap`` applies to (empty: all).
    threshold : float or None
        Binarisation threshold, or None.
    unknown : {"error", "warn"}
    vote : {"majority", "any", "all"}
    """

    targets: dict[str, tuple[int, ...]]
    known: frozenset[int]
    background: int = 0
    remap: Mapping[int, int] = field(default_factory=dict)
    remap_files: tuple[str, ...] = ()
    threshold: float | None = None
    unknown: str = "error"
    vote: str = "majority"


def label_spec(card: Card, options: LabelOptions | None = None,
               labels: Mapping[str, int] | None = None,
               regions: Mapping[str, Sequence[str | int]] | None = None,
               targets: Sequence[str] | None = None,
               background: int | None = None,
               own_files: Sequence[str] = ()) -> LabelSpec:
    """Build the label spec of ``card``.

    Parameters
    ----------
    card : Card
        Names the targets and, in messages, the card.
    options : LabelOptions, optional
        The label options (default: the card's own).
    labels, regions, targets, background : optional
        Override the options' values (nnU-Net takes them from ``dataset.json``).
    own_files : sequence of str
        Targets read from mask files of their own (``target_masks``), each
        binarised to value 1: not label values of one map.

    Raises
    ------
    ConfigError
        A target with no label value, a region naming an unknown label, two
        targets of one label map made of the same values.
    """
    opts = card.options if options is None else options
    if not isinstance(opts, LabelOptions):
        raise ConfigError(f"{card.where}.options: reader {card.reader!r} takes no label options")
    where = f"{card.where}.options"
    labels = dict(opts.labels if labels is None else labels)
    regions = dict(opts.regions if regions is None else regions)
    targets = list(card.targets if targets is None else targets)
    if opts.threshold is not None and not labels and len(targets) == 1:
        labels = {targets[0]: 1}  # a thresholded mask has foreground value 1
    resolved: dict[str, tuple[int, ...]] = {}
    for target in targets:
        if target in regions:
            members = regions[target]
            if not members:
                raise ConfigError(f"{where}.regions.{target}: expected a non-empty list")
            values = []
            for member in members:
                if isinstance(member, str):
                    if member not in labels:
                        raise ConfigError(f"{where}.regions.{target}: unknown label "
                                          f"{member!r}; known: {', '.join(labels)}")
                    values.append(labels[member])
                else:
                    values.append(int(member))
            resolved[target] = tuple(sorted(set(values)))
        elif target in labels:
            resolved[target] = (labels[target],)
        else:
            raise ConfigError(f"{card.where}.targets: {target!r} has no label "
                              "value; define it in options.labels or options.regions")
    _refuse_twins({t: v for t, v in resolved.items() if t not in own_files}, where)
    background = opts.background if background is None else background
    known = {background, *labels.values()}
    for values in resolved.values():
        known.update(values)
    if opts.levels is not None:
        known.update(int(v) for v in opts.levels)
    return LabelSpec(
        targets=resolved,
        known=frozenset(known),
        background=background,
        remap=dict(opts.remap),
        remap_files=tuple(opts.remap_files),
        threshold=opts.threshold,
        unknown=opts.unknown_labels,
        vote=opts.vote,
    )


def _refuse_twins(resolved: Mapping[str, tuple[int, ...]], where: str) -> None:
    """Refuse two targets made of the same label values: they would score identically."""
    owners: dict[tuple[int, ...], str] = {}
    for target, values in resolved.items():
        if values in owners:
            shown = values[0] if len(values) == 1 else list(values)
            raise ConfigError(f"{where}: targets {owners[values]!r} and {target!r} are both "
                              f"label value {shown}, so they would score identically: give "
                              "each target its own value in options.labels or options.regions")
        owners[values] = target


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

    ``spec.remap`` is applied first; with ``spec.threshold`` the map is then
    binarised (value >= threshold is 1).

    Returns
    -------
    masks : dict of str to ndarray of bool
    info : dict
        ``unknown``: values the card does not declare (when ``unknown_labels``
        is ``"warn"``); ``remapped``: values found and changed by ``remap``.

    Raises
    ------
    DataError
        NaNs, non-integer values, a thresholded mask whose non-zero values all
        lie below the threshold, or (``unknown_labels = "error"``) values the
        card does not declare; the message names the option that would fix it.
    """
    raw = as_label_array(raw, path)
    info: dict[str, list] = {"unknown": [], "remapped": []}
    present = present_values(raw)
    if _remaps(spec, path):
        raw, info["remapped"] = _remapped(raw, present, spec.remap)
    if info["remapped"]:
        present = present_values(raw)
    if spec.threshold is not None:
        _check_threshold(present, spec.threshold, path)
        raw = (raw >= spec.threshold).astype(np.uint8)
        present = present_values(raw)
    unknown = sorted(int(v) for v in present.tolist() if int(v) not in spec.known)
    if unknown:
        if spec.unknown == "error":
            raise DataError(path, undeclared_message(unknown, present, spec, path))
        info["unknown"] = unknown
    masks = {}
    for target, values in spec.targets.items():
        mask = raw == values[0]
        for value in values[1:]:
            mask |= raw == value
        masks[target] = mask
    return masks, info


def _remaps(spec: LabelSpec, path: Path | str) -> bool:
    """True when ``spec.remap`` applies to the mask file ``path``."""
    if not spec.remap_files:
        return bool(spec.remap)
    where = Path(path).as_posix()
    return any(fnmatch.fnmatchcase(where, f"*/{pattern}") for pattern in spec.remap_files)


def _remapped(raw: np.ndarray, present: np.ndarray, remap: Mapping[int, int]
              ) -> tuple[np.ndarray, list[int]]:
    """``raw`` with the declared stray values replaced; the values that were present."""
    found = [int(v) for v in present.tolist() if int(v) in remap]
    if not found:
        return raw, []
    info = np.iinfo(raw.dtype)
    fits = all(info.min <= remap[v] <= info.max for v in found)
    raw = raw.copy() if fits else raw.astype(np.int64)
    for value in found:
        raw[raw == value] = remap[value]
    return raw, found


def _check_threshold(present: np.ndarray, threshold: float, path: Path | str) -> None:
    """Refuse a mask that the threshold would silently turn empty (a 0/1 mask at 128)."""
    values = [v for v in present.tolist() if v != 0]
    if values and max(values) < threshold:
        raise DataError(path, f"mask values {_shown(present.tolist())} all lie below "
                              f"threshold = {threshold:g}, so every target would be empty (an "
                              f"index or 0/1 mask?): set options.threshold = 1, or drop "
                              "threshold and declare options.labels")


def _shown(values: Sequence, limit: int = 8) -> str:
    """At most ``limit`` values, for messages."""
    values = [int(v) if float(v).is_integer() else v for v in values]
    if len(values) <= limit:
        return str(values)
    return f"[{', '.join(map(str, values[:limit]))}, ... ({len(values)} values)]"


def undeclared_message(unknown: Sequence[int], present: np.ndarray, spec: LabelSpec,
                       path: Path | str) -> str:
    """Why a mask is refused, and the card option that would fix it."""
    declared = sorted(spec.known)
    text = (f"mask values {_shown(unknown)} are not declared by the card (found "
            f"{_shown(present.tolist())}, declared {_shown(declared)}); ")
    foreground = [v for v in declared if v != spec.background]
    remap = ("options.remap = { " + f"{unknown[0]} = {spec.background}" + " } declares a stray "
             "value as a class, options.unknown_labels = 'warn' ignores undeclared values")
    if str(path).lower().endswith((".jpg", ".jpeg")):
        hint = "a lossy JPEG mask: set options.threshold = 128 to binarise it"
    elif max(unknown) > 255 >= max(declared, default=0):
        hint = ("a 16-bit mask? declare the values it holds in options.labels / "
                "options.levels (by value, e.g. 65535 rather than 255)")
    elif foreground and not set(present.tolist()) & set(foreground):
        hint = ("class indices or a 0/1 mask? set options.labels to the values the files "
                "hold (e.g. { name = 1 }), or options.threshold = 1 for a binary mask")
    else:
        hint = "declare them: options.labels names a label"
    return f"{text}{hint}; or {remap}"


def binary_target(array: np.ndarray, threshold: float | None, path: Path | str
                  ) -> np.ndarray:
    """A per-target mask file as a boolean mask (``threshold``, default non-zero).

    Raises
    ------
    DataError
        Without a threshold, a mask with several non-zero values (lossy or
        grey-level masks need one); with one, a mask whose non-zero values all
        lie below it.
    """
    array = as_label_array(array, path)
    present = present_values(array)
    if threshold is not None:
        _check_threshold(present, threshold, path)
        return array >= threshold
    foreground = [v for v in present.tolist() if v != 0]
    if len(foreground) > 1:
        raise DataError(path, f"per-target mask holds several non-zero values "
                              f"{_shown(foreground)} (expected 0 and one foreground value): "
                              "set options.threshold (e.g. threshold = 128 for JPEG masks)")
    return array != 0


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
    info: dict[str, list] = {"unknown": [], "remapped": []}
    per_rater: dict[str, list[np.ndarray]] = {t: [] for t in spec.targets}
    for labels in raw.labels:
        masks, found = decode_labels(labels, spec, where)
        for key in info:
            info[key] = sorted(set(info[key]) | set(found[key]))
        for target, mask in masks.items():
            per_rater[target].append(mask)
    paths = raw.meta.get("target_masks") or {}
    for target, files in raw.target_labels.items():
        if target not in per_rater:
            continue
        names = list(paths.get(target) or [])
        for index, array in enumerate(files):
            path = names[index] if index < len(names) else where
            per_rater[target].append(binary_target(array, spec.threshold, path))
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


__all__ = ["LabelSpec", "as_label_array", "binary_target", "decode_case", "decode_labels",
           "label_spec", "present_values", "undeclared_message", "vote"]
