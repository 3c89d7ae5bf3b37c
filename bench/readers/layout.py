"""Pattern-based layouts: images and masks matched by file-name templates.

Used by the ``volumes`` and ``pairs2d`` readers. Card options
(``[options]``, or one table per sub-layout in ``[[options.sources]]``):

``image``
    Template (or list of templates) of the image files, relative to the
    root, e.g. ``"RawData/Training/img/img{id}.nii.gz"``. ``{name}`` captures
    a field; ``*``, ``?`` and ``**/`` are glob wildcards.
``mask``
    Template (or list of alternatives, first match wins) of the label map of
    each image, using the image's fields, e.g.
    ``"RawData/Training/label/label{id}.nii.gz"``. Masks may live anywhere:
    ``"**/ISIC_{id}_segmentation.png"`` is found wherever it is.
``target_masks``
    Table ``target -> template``: one mask file per target (binarised by
    ``threshold``, default non-zero) instead of one label map.
``raters``
    Values of a ``{rater}`` field in the mask templates; the raters' masks
    are combined by ``vote`` (majority by default).
``fields``
    Table ``field -> regular expression`` restricting what a field matches
    (``id = "\\d{4}"``).
``vars``
    Table ``name -> value`` substituted into the templates before matching
    (BraTS ``channel = "flair"``).
``case_id``, ``patient``, ``group``
    Templates over the fields (plus ``{source}``, ``{parent}``, ``{case}``)
    giving the case id (default ``{id}``), the patient id (default the case
    id) and the flow group (default ``"all"``).
``missing_mask``
    ``"error"`` (default: an image without mask is a bad case) or ``"skip"``
    (leave it out; ToothFairy has dense masks for only some volumes).
``exclude``
    Shell-style patterns over the path relative to the root (``*`` crosses
    folders) of files to ignore, e.g. ``"*Illustration*"``.
``mask_format``
    How masks are decoded from their files: by suffix (default) or a
    registered special format such as ``"ddti-xml"``.
``sources``
    A list of sub-layouts, each a table with the keys above plus ``name``
    and ``optional`` (a sub-layout with no files is then no problem); their
    cases are concatenated and their ids prefixed with the source name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ConfigError, Problem
from bench.readers.cards import Card
from bench.readers.core import (
    LABEL_OPTIONS,
    VOLUME_OPTIONS,
    CaseRef,
    LabelSpec,
    Pattern,
    Source,
    card_options,
    group_key,
    label_spec,
)
from bench.validate import check_table

PATTERN_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "image": (str, list),
    "mask": (str, list),
    "target_masks": dict,
    "raters": list,
    "fields": dict,
    "vars": dict,
    "case_id": str,
    "patient": str,
    "missing_mask": str,
    "exclude": list,
    "mask_format": str,
}
# What one entry of ``sources`` may set.
SOURCE_OPTIONS: dict[str, type | tuple[type, ...]] = {
    **PATTERN_OPTIONS,
    **LABEL_OPTIONS,
    **VOLUME_OPTIONS,
    "group": str,
    "pixel_spacing": list,
    "name": str,
    "optional": bool,
}

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
    options: dict[str, Any]
    images: list[Pattern]
    masks: list[str]
    target_masks: dict[str, list[str]]
    raters: list[str]
    optional: bool


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _substitute(template: str, variables: Mapping[str, Any]) -> str:
    for name, value in variables.items():
        template = template.replace("{" + name + "}", str(value))
    return template


def layouts(card: Card) -> list[Layout]:
    """The card's sub-layouts (one unless ``options.sources`` lists several)."""
    base = {k: v for k, v in card.options.items() if k != "sources"}
    where = f"{card.path or card.name}.options"
    entries = card.options.get("sources") or [{}]
    result = []
    for index, entry in enumerate(entries):
        here = f"{where}.sources[{index}]" if card.options.get("sources") else where
        if not isinstance(entry, dict):
            raise ConfigError(f"{here}: expected a table")
        check_table(entry, SOURCE_OPTIONS, here)
        options = {**base, **entry}
        name = str(entry.get("name", f"source{index}" if len(entries) > 1 else card.name))
        variables = options.get("vars", {})
        images = _as_list(options.get("image"))
        if not images:
            raise ConfigError(f"{here}: missing key 'image' (template of the image files)")
        field_res = {k: str(v) for k, v in options.get("fields", {}).items()}
        patterns = [Pattern(_substitute(t, variables), field_res) for t in images]
        masks = [_substitute(t, variables) for t in _as_list(options.get("mask"))]
        targets = {str(t): [_substitute(x, variables) for x in _as_list(v)]
                   for t, v in options.get("target_masks", {}).items()}
        if not masks and not targets:
            raise ConfigError(f"{here}: missing key 'mask' (or 'target_masks')")
        missing = options.get("missing_mask", "error")
        if missing not in ("error", "skip"):
            raise ConfigError(f"{here}.missing_mask: expected 'error' or 'skip', "
                              f"got {missing!r}")
        fmt = options.get("mask_format")
        if fmt is not None and fmt not in MASK_FORMATS:
            raise ConfigError(f"{here}.mask_format: unknown format {fmt!r}; known: "
                              f"{', '.join(sorted(MASK_FORMATS)) or 'none'}")
        image_fields = set().union(*(p.fields for p in patterns))
        for template in masks + [t for ts in targets.values() for t in ts]:
            extra = set(Pattern(template).fields) - image_fields - {"rater"}
            if extra:
                raise ConfigError(f"{here}: mask template {template!r} uses fields "
                                  f"{sorted(extra)} that the image template does not capture")
        raters = [str(r) for r in options.get("raters", [])]
        result.append(Layout(name, options, patterns, masks, targets, raters,
                             bool(entry.get("optional", False))))
    return result


class PatternSource(Source):
    """Base of the pattern readers; subclasses read the files."""

    options = PATTERN_OPTIONS | {"sources": list}

    def scan(self, card: Card, root: Path) -> tuple[list[CaseRef], list[Problem]]:
        card_options(card, self)
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
            problems.append(Problem("error", str(path), "mask without a matching image"))
        return refs, problems

    def layout(self, card: Card, ref: CaseRef) -> Layout:
        for layout in layouts(card):
            if layout.name == ref.source:
                return layout
        raise ConfigError(f"{card.path or card.name}: no source named {ref.source!r}")

    def label_spec(self, card: Card, ref: CaseRef | None = None) -> LabelSpec:
        layout = self.layout(card, ref) if ref is not None else layouts(card)[0]
        options = dict(layout.options)
        labels = dict(options.get("labels", {}))
        for target in layout.target_masks:
            labels.setdefault(target, 1)  # read from its own files, not a label map
        return label_spec(card, options, labels=labels)


def _scan_layout(card: Card, layout: Layout, root: Path, prefix: bool, used: set[Path],
                 candidates: set[Path]) -> tuple[list[CaseRef], list[Problem]]:
    """Cases of one sub-layout; adds the mask files it uses to ``used`` and every
    mask file its templates match to ``candidates`` (the difference are orphans)."""
    options = layout.options
    exclude = [str(x) for x in options.get("exclude", [])]
    where = f"{card.path or card.name}.options"
    problems: list[Problem] = []
    images: dict[str, tuple[Path, dict[str, str]]] = {}
    for pattern in layout.images:
        for path, fields in pattern.find(root, exclude):
            cid = _case_id(options, fields, where)
            if cid in images:
                if images[cid][0] != path:
                    problems.append(Problem("error", str(path), f"duplicate case {cid!r} (also "
                                            f"{images[cid][0]}); keeping the first"))
                continue
            images[cid] = (path, fields)
    indexes: dict[tuple[str, str], dict[tuple, Path]] = {}
    field_re = {k: str(v) for k, v in options.get("fields", {}).items()}

    def index(template: str, rater: str) -> dict[tuple, Path]:
        key = (template, rater)
        if key not in indexes:
            pattern = Pattern(template.replace("{rater}", rater), field_re)
            indexes[key] = {tuple(sorted(f.items())): p
                            for p, f in pattern.find(root, exclude)}
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
        if not found and options.get("missing_mask") == "skip":
            skipped += 1
            continue
        values = dict(fields, source=layout.name, parent=path.parent.name, case=cid)
        patient = options.get("patient")
        patient_id = _format(patient, values, where, "patient") if patient else cid
        values["patient"] = patient_id
        ref_id = f"{layout.name}/{cid}" if prefix else cid
        refs.append(CaseRef(
            id=ref_id,
            patient=f"{layout.name}/{patient_id}" if prefix else patient_id,
            group=group_key(options.get("group"), values, where),
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
    missing.append(f"no mask found (expected {expected})")
    return ()


def _case_id(options: Mapping[str, Any], fields: Mapping[str, str], where: str) -> str:
    template = options.get("case_id")
    if template:
        return _format(template, fields, where, "case_id")
    if "id" in fields:
        return fields["id"]
    return "_".join(fields.values()) or "case"


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
    fmt = layout.options.get("mask_format")

    def read(path: Path) -> np.ndarray:
        if fmt is not None:
            return MASK_FORMATS[fmt](path, ref.fields, image_shape)
        return reader(path)

    labels = [read(p) for p in (ref.files.get("mask") or ())]
    targets = {t: [read(p) for p in paths] for t, paths in ref.files.get("targets", {}).items()}
    return labels, targets


__all__ = ["MASK_FORMATS", "Layout", "PatternSource", "layouts", "read_masks",
           "register_mask_format"]
