"""Pattern-based layouts: images and masks matched by file-name templates.

Used by the ``volumes`` and ``pairs2d`` readers. A card describes its layout
with the options of :class:`PatternOptions` (templates such as
``image = "RawData/Training/img/img{id}.nii.gz"``, see
:mod:`bench.readers.patterns`), directly in ``[options]`` or, for a dataset
published as several sub-layouts, in one ``[[options.sources]]`` table each
(:class:`SourceOptions`): their cases are concatenated and their ids prefixed
with the source name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
from pydantic import Field

from bench.errors import ConfigError, Problem
from bench.readers.cards import Card
from bench.readers.cases import CaseRef, FileReader
from bench.readers.diagnose import exclude_hint, explain_empty
from bench.readers.labels import LabelSpec, label_spec
from bench.readers.options import (
    GroupOptions,
    ImageReaderOptions,
    Items,
    LabelOptions,
    Templates,
    VolumeFileOptions,
    VolumeReaderOptions,
)
from bench.readers.patterns import Pattern
from bench.readers.registry import get_reader
from bench.settings import Settings


class PatternOptions(Settings):
    """Where a layout's images and masks are, as file-name templates."""

    image: Templates | None = Field(None, description=(
        "template (or list of alternatives, the first that matches a case wins) of the image "
        "files, relative to the root, e.g. 'RawData/Training/img/img{id}.nii.gz'; {name} "
        "captures a field; *, ? and **/ are glob wildcards (required, here or in every "
        "source); two files matching one case through one template are an error"))
    mask: Templates | None = Field(None, description=(
        "template (or list of alternatives, first match wins) of each image's label map, using "
        "the image's fields, e.g. '**/ISIC_{id}_segmentation.png'"))
    target_masks: dict[str, Templates] = Field(default_factory=dict, description=(
        "target -> template: one mask file per target (binarised by threshold, default "
        "non-zero) instead of one label map"))
    raters: Items[str] = Field((), description=(
        "values of a {rater} field in the mask templates; the raters' masks are combined by "
        "vote"))
    fields: dict[str, str] = Field(default_factory=dict, description=(
        "field -> regular expression restricting what a field matches, e.g. id = '\\d{4}'"))
    vars: dict[str, str | int] = Field(default_factory=dict, description=(
        "name -> value substituted into the templates before matching (BraTS channel = "
        "'flair')"))
    case_id: str | None = Field(None, description=(
        "template over the fields (and {source}, {parent}) giving the case id (default {id})"))
    patient: str | None = Field(None, description=(
        "template over the fields (and {source}, {parent}, {case}) giving the patient id "
        "(default the case id)"))
    missing_mask: Literal["error", "skip"] = Field("error", description=(
        "an image without mask: 'error' (a bad case) or 'skip' (left out, e.g. ToothFairy's "
        "volumes without dense masks)"))
    exclude: Items[str] = Field((), description=(
        "shell-style patterns over the path relative to the root (* crosses folders) of "
        "files to ignore, e.g. '*Illustration*'"))
    mask_format: str | None = Field(None, description=(
        "a special mask format such as 'ddti-xml' (default: by file suffix)"))


class SourceOptions(PatternOptions, LabelOptions, GroupOptions):
    """One sub-layout of 2D images (an entry of ``sources``): its keys override the card's."""

    name: str | None = Field(None, description=(
        "the sub-layout's name, prefixed to its case ids (default sourceN)"))
    optional: bool = Field(False, description="a sub-layout with no files is no problem")


class VolumeSourceOptions(SourceOptions, VolumeFileOptions):
    """One sub-layout of volumes (an entry of ``sources``)."""


class ImageLayoutOptions(PatternOptions, ImageReaderOptions):
    """The options of one layout of 2D images: the card's, overridden by one source's."""


class VolumeLayoutOptions(PatternOptions, VolumeReaderOptions):
    """The options of one layout of volumes: the card's, overridden by one source's."""


class PairsOptions(ImageLayoutOptions):
    """Options of a ``pairs2d`` card."""

    sources: Items[SourceOptions] = Field((), description=(
        "sub-layouts, each a table of pattern, label and group options plus name and "
        "optional; their cases are concatenated"))


class VolumesOptions(VolumeLayoutOptions):
    """Options of a ``volumes`` card."""

    sources: Items[VolumeSourceOptions] = Field((), description=(
        "sub-layouts, each a table of pattern, label, group and volume file options plus "
        "name and optional; their cases are concatenated"))


LayoutOptions = ImageLayoutOptions | VolumeLayoutOptions


# A mask file no image claims, and the card option that leaves it out.
ORPHAN_MASK = ("mask without a matching image (leave it out with the card option exclude, "
               "e.g. exclude = [\"*/name_of_it.png\"])")

MaskFormat = Callable[[Path, Mapping[str, str], tuple[int, ...]], np.ndarray]
MASK_FORMATS: dict[str, MaskFormat] = {}


def register_mask_format(name: str) -> Callable[[MaskFormat], MaskFormat]:
    """Decorator: a special mask format, ``func(path, fields, image_shape) -> label map``."""

    def decorate(func: MaskFormat) -> MaskFormat:
        MASK_FORMATS[name] = func
        return func

    return decorate


@dataclass
class Layout:
    """One sub-layout of a card, its options merged over the card's."""

    name: str
    options: LayoutOptions
    images: list[Pattern]
    masks: list[str]
    target_masks: dict[str, list[str]]
    raters: list[str]
    optional: bool


def _as_list(value: str | tuple[str, ...] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _substitute(template: str, variables: Mapping[str, str | int]) -> str:
    for name, value in variables.items():
        template = template.replace("{" + name + "}", str(value))
    return template


def layouts(card: Card) -> list[Layout]:
    """The card's sub-layouts (one unless ``options.sources`` lists several).

    Raises
    ------
    ConfigError
        A layout without image or mask templates, an unknown mask format, or a
        mask template using fields the image template does not capture.
    """
    reader = get_reader(card.reader, f"{card.where}.reader")
    card_options = cast(PairsOptions | VolumesOptions, reader.options(card))
    model = VolumeLayoutOptions if isinstance(card_options, VolumesOptions) else ImageLayoutOptions
    base = {k: getattr(card_options, k) for k in card_options.model_fields_set if k != "sources"}
    where = f"{card.where}.options"
    entries = card_options.sources or (SourceOptions(),)
    result = []
    for index, entry in enumerate(entries):
        here = f"{where}.sources[{index}]" if card_options.sources else where
        own = {k: getattr(entry, k) for k in entry.model_fields_set - {"name", "optional"}}
        options = model.model_validate({**base, **own})
        name = entry.name if entry.name is not None else (
            f"source{index}" if len(entries) > 1 else card.name)
        variables = options.vars
        images = _as_list(options.image)
        if not images:
            raise ConfigError(f"{here}: missing key 'image' (template of the image files)")
        patterns = [Pattern(_substitute(t, variables), options.fields) for t in images]
        masks = [_substitute(t, variables) for t in _as_list(options.mask)]
        targets = {t: [_substitute(x, variables) for x in _as_list(v)]
                   for t, v in options.target_masks.items()}
        if not masks and not targets:
            raise ConfigError(f"{here}: missing key 'mask' (or 'target_masks')")
        fmt = options.mask_format
        if fmt is not None and fmt not in MASK_FORMATS:
            raise ConfigError(f"{here}.mask_format: unknown format {fmt!r}; known: "
                              f"{', '.join(sorted(MASK_FORMATS)) or 'none'}")
        image_fields = set().union(*(p.fields for p in patterns))
        for template in masks + [t for ts in targets.values() for t in ts]:
            extra = set(Pattern(template).fields) - image_fields - {"rater"}
            if extra:
                raise ConfigError(f"{here}: mask template {template!r} uses fields "
                                  f"{sorted(extra)} that the image template does not capture")
        result.append(Layout(name, options, patterns, masks, targets, list(options.raters),
                             entry.optional))
    return result


class PatternReader(FileReader):
    """Base of the pattern readers; subclasses set their options model and read the files."""

    def check_card(self, card: Card) -> None:
        super().check_card(card)
        for layout in layouts(card):
            # targets without a value, or two targets of one value: refused when loaded
            self.label_spec(card, CaseRef(id="", patient="", source=layout.name))

    def find_cases(self, card: Card, root: Path | None) -> tuple[list[CaseRef], list[Problem]]:
        assert root is not None  # pattern layouts need a root (see FileReader.scan)
        refs: list[CaseRef] = []
        problems: list[Problem] = []
        all_layouts = layouts(card)
        used: set[Path] = set()
        candidates: set[Path] = set()
        for layout in all_layouts:
            found, issues = _scan_layout(card, layout, root, len(all_layouts) > 1, used,
                                         candidates)
            if not found and not layout.optional and len(all_layouts) > 1:
                issues.append(Problem("error", str(root), f"source {layout.name!r}: no image "
                                      f"matches {', '.join(p.template for p in layout.images)}"))
            refs.extend(found)
            problems.extend(issues)
        for path in sorted(candidates - used):
            problems.append(Problem("error", str(path), ORPHAN_MASK))
        return refs, problems

    def explain_empty(self, card: Card, root: Path | None) -> str:
        if root is None:
            return super().explain_empty(card, root)
        found = layouts(card)
        return explain_empty([p for layout in found for p in layout.images], root,
                             [x for layout in found for x in layout.options.exclude])

    def layout(self, card: Card, ref: CaseRef) -> Layout:
        for layout in layouts(card):
            if layout.name == ref.source:
                return layout
        raise ConfigError(f"{card.where}: no source named {ref.source!r}")

    def label_spec(self, card: Card, ref: CaseRef | None = None) -> LabelSpec:
        layout = self.layout(card, ref) if ref is not None else layouts(card)[0]
        labels = dict(layout.options.labels)
        for target in layout.target_masks:
            labels.setdefault(target, 1)  # read from its own files, not a label map
        return label_spec(card, layout.options, labels=labels,
                          own_files=tuple(layout.target_masks))


def _scan_layout(card: Card, layout: Layout, root: Path, prefix: bool, used: set[Path],
                 candidates: set[Path]) -> tuple[list[CaseRef], list[Problem]]:
    """Cases of one sub-layout; adds the mask files it uses to ``used`` and every
    mask file its templates match to ``candidates`` (the difference are orphans)."""
    options = layout.options
    exclude = list(options.exclude)
    where = f"{card.where}.options"
    problems: list[Problem] = []
    images: dict[str, tuple[Path, dict[str, str]]] = {}
    for pattern in layout.images:
        mine: dict[str, Path] = {}
        for path, fields in pattern.find(root, exclude):
            cid = _case_id(options, fields, where)
            if cid in mine:  # two files of one template: never resolved by sort order
                problems.append(_ambiguous(root, cid, mine[cid], path, pattern.template))
                continue
            mine[cid] = path
            if cid not in images:  # else an earlier alternative template matched it
                images[cid] = (path, fields)
    indexes: dict[tuple[str, str], dict[tuple, Path]] = {}
    clashes: dict[Path, tuple[Path, str]] = {}  # kept mask file -> (the other one, template)
    field_re = options.fields

    def index(template: str, rater: str) -> dict[tuple, Path]:
        key = (template, rater)
        if key not in indexes:
            pattern = Pattern(template.replace("{rater}", rater), field_re)
            entries: dict[tuple, Path] = {}
            for path, fields in pattern.find(root, exclude):
                found = tuple(sorted(fields.items()))
                if found in entries:
                    clashes.setdefault(entries[found], (path, pattern.template))
                else:
                    entries[found] = path
            indexes[key] = entries
        return indexes[key]

    raters = layout.raters or [""]
    refs = []
    skipped = 0
    for cid, (path, fields) in images.items():
        missing = []
        mask_paths = _match(layout.masks, raters, fields, index, missing) if layout.masks else ()
        target_paths = {t: _match(ts, raters, fields, index, missing)
                        for t, ts in layout.target_masks.items()}
        found = (not layout.masks or mask_paths) and all(target_paths.values())
        for group in (mask_paths, *target_paths.values()):
            used.update(group or ())
            for mask in group or ():
                if mask in clashes:
                    other, template = clashes[mask]
                    problems.append(_ambiguous(root, cid, mask, other, template))
        if not found and options.missing_mask == "skip":
            skipped += 1
            continue
        values = dict(fields, source=layout.name, parent=path.parent.name, case=cid)
        patient = options.patient
        patient_id = _format(patient, values, where, "patient") if patient else cid
        values["patient"] = patient_id
        ref_id = f"{layout.name}/{cid}" if prefix else cid
        refs.append(CaseRef(
            id=ref_id,
            patient=f"{layout.name}/{patient_id}" if prefix else patient_id,
            group=_group(options.group, values, where),
            source=layout.name,
            files={"image": path, "mask": mask_paths or None, "targets": target_paths},
            fields=fields,
            missing=None if found else "; ".join(missing),
        ))
    if skipped:
        problems.append(Problem("info", str(root), f"source {layout.name!r}: {skipped} images "
                                                   "without mask left out (missing_mask = skip)"))
    image_paths = {p for p, _ in images.values()}
    for entries in indexes.values():
        candidates.update(p for p in entries.values() if p not in image_paths)
    return refs, problems


def _ambiguous(root: Path, cid: str, first: Path, second: Path, template: str) -> Problem:
    return Problem("error", str(second), f"ambiguous: {first} and {second} both match case "
                                         f"{cid!r} (pattern {template!r}); "
                                         f"{exclude_hint(root, first, second)}")


def _match(templates: list[str], raters: list[str], fields: Mapping[str, str],
           index: Callable[[str, str], dict[tuple, Path]], missing: list[str]
           ) -> tuple[Path, ...]:
    """The mask files of one image: the first template whose raters' files all exist."""
    for template in templates:
        names = Pattern(template).fields
        key = tuple(sorted((n, fields[n]) for n in names if n != "rater"))
        paths = [index(template, rater).get(key) for rater in raters]
        if all(p is not None for p in paths):
            return tuple(paths)  # type: ignore[arg-type]
        if any(p is not None for p in paths):
            absent = [r for r, p in zip(raters, paths, strict=True) if p is None]
            missing.append(f"rater masks {absent} missing for {template!r}")
            return ()
    expected = Pattern(templates[0]).format(**{k: v for k, v in fields.items()})
    missing.append(f"no mask found (expected {expected}; the card option "
                   'missing_mask = "skip" leaves images without a mask out)')
    return ()


def _case_id(options: LayoutOptions, fields: Mapping[str, str], where: str) -> str:
    template = options.case_id
    if template:
        return _format(template, fields, where, "case_id")
    if "id" in fields:
        return fields["id"]
    return "_".join(fields.values()) or "case"


def _group(template: str, values: Mapping[str, str], where: str) -> str:
    """Format a group template (``"all"`` or e.g. ``"{source}"``)."""
    return "all" if template == "all" else _format(template, values, where, "group")


def _format(template: str, values: Mapping[str, str], where: str, key: str) -> str:
    try:
        return template.format(**values)
    except KeyError as err:
        raise ConfigError(f"{where}.{key}: unknown field {err.args[0]!r} in {template!r}; "
                          f"known: {', '.join(sorted(values))}") from None


def read_masks(layout: Layout, ref: CaseRef, image_shape: tuple[int, ...],
               reader: Callable[[Path], np.ndarray]) -> tuple[list[np.ndarray],
                                                             dict[str, list[np.ndarray]]]:
    """Read a case's label maps (one per rater) and per-target masks."""
    fmt = layout.options.mask_format

    def read(path: Path) -> np.ndarray:
        if fmt is not None:
            return MASK_FORMATS[fmt](path, ref.fields, image_shape)
        return reader(path)

    labels = [read(p) for p in (ref.files.get("mask") or ())]
    targets = {t: [read(p) for p in paths] for t, paths in ref.files.get("targets", {}).items()}
    return labels, targets


__all__ = ["MASK_FORMATS", "ORPHAN_MASK", "ImageLayoutOptions", "Layout", "LayoutOptions",
           "PairsOptions",
           "PatternOptions", "PatternReader", "SourceOptions", "VolumeLayoutOptions",
           "VolumeSourceOptions", "VolumesOptions", "layouts", "read_masks",
           "register_mask_format"]
