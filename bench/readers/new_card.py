"""``bench datasets new``: a dataset card written from the files themselves.

Three sources, one function each, all returning a :class:`NewCard` (the
card's table, validated, and the dataset root it was made for):

- :func:`card_from_globs`: image and mask globs such as
  ``'skin/images/*.jpg'`` and ``'skin/masks/*_segmentation.png'``. The root is
  the folder the two globs share; each ``*`` becomes a field of the
  templates (the one in the file name is the case ``{id}``, those in folder
  names ``{dir1}``, ``{dir2}``...; the k-th ``*`` of the masks stands for the
  k-th of the images). Globs already written as templates (``{id}``) are
  kept as they are.
- :func:`card_from_nnunet`: an nnU-Net raw folder (``dataset.json``), 3D or 2D.
- :func:`card_from_hf`: a HuggingFace hub dataset (nothing is read).

What is inferred, and what is not guessed:

- the kind from the image files: NIfTI / NRRD / MHA / MHD -> ``volume``,
  PNG / JPEG / BMP / TIFF -> ``image-flow``;
- the modality only where the files say it (an nnU-Net dataset with one
  channel name); otherwise it is left empty;
- the mask encoding from the values found in (a sample of) the masks: one
  non-zero value -> a binary mask of one target; a lossy format (JPEG) or
  non-integer values need ``--threshold``; more than one non-zero value
  needs ``--labels`` (:func:`mask_options`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import atomic
from bench.errors import ConfigError
from bench.readers.cards import card_from_table
from bench.readers.files import read_mask2d, read_volume, suffix
from bench.readers.patterns import Pattern

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LOSSY_SUFFIXES = (".jpg", ".jpeg")
# Masks read to infer the encoding: evenly spaced over the listing (volumes are slow).
SAMPLE_MASKS = {"image-flow": 40, "volume": 5}
# More distinct values than this (without --labels) look like grey levels, not labels.
MAX_LABELS = 20
DEFAULT_TARGET = "foreground"


@dataclass
class NewCard:
    """A card written by ``bench datasets new``.

    Attributes
    ----------
    table : dict
        The card's keys, ``options`` as a table (validated).
    root : Path or None
        The dataset folder its templates are relative to (None for hub data).
    cases : int
        Images (or volumes) the templates matched; 0 when nothing was read.
    """

    table: dict[str, Any]
    root: Path | None
    cases: int = 0


def parse_labels(text: str | None) -> dict[str, int]:
    """``"cup=1,disc=2"`` -> ``{"cup": 1, "disc": 2}`` (ConfigError naming --labels)."""
    labels: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not re.fullmatch(r"-?\d+", value.strip()):
            raise ConfigError(f"--labels: expected target=value,... with integer values, got "
                              f"{item.strip()!r}")
        if name in labels:
            raise ConfigError(f"--labels: target {name!r} given twice")
        labels[name] = int(value)
    return labels


def card_from_globs(name: str, images: str, masks: str, *, kind: str | None = None,
                    labels: Mapping[str, int] | None = None, threshold: float | None = None,
                    case_id: str | None = None, base: Path | None = None) -> NewCard:
    """A ``pairs2d`` or ``volumes`` card from image and mask globs.

    Parameters
    ----------
    name : str
        The card's name.
    images, masks : str
        Globs (or templates) of the image and mask files, relative to ``base``
        or absolute (see the module docstring).
    kind : {"image-flow", "volume"}, optional
        Default from the image files; ``"image-flow"`` with volume files
        slices the volumes into 2D images.
    labels, threshold
        The mask encoding, when the values found do not settle it.
    case_id : str, optional
        Template of the case id over the fields (default ``{id}``, or the
        folder fields and ``{id}`` joined by ``/``).
    base : Path, optional
        Folder relative globs start from (default: the working directory).

    Raises
    ------
    ConfigError
        One line saying what to pass: globs that match nothing or do not
        pair up, a kind that does not fit the files, an ambiguous mask
        encoding (with the values found).
    """
    base = Path.cwd() if base is None else base
    root, (image_t, mask_t) = split_root([images, masks], base)
    fields: list[str] = []
    if "{" not in images:
        image_t, fields = _stars_to_fields(image_t, None, "--images")
        mask_t, _ = _stars_to_fields(mask_t, fields, "--masks")
    mask_files = [path for path, _ in Pattern(_wildcards(mask_t)).find(root)]
    if not mask_files:
        raise ConfigError(f"--masks {masks!r} matches no file under {root}")
    field_re = _apart(image_t, mask_t, mask_files, root)
    found = Pattern(image_t, field_re).find(root)
    if not found:
        raise ConfigError(f"--images {images!r} matches no file under {root}")
    file_kind = _kind_of(found[0][0], "--images")
    card_kind = kind or file_kind
    if card_kind == "volume" and file_kind != "volume":
        raise ConfigError(f"--kind volume: {found[0][0].name} is a 2D image; use --kind "
                          "image-flow")
    values, lossy = mask_values(mask_files, file_kind)
    targets, options = mask_options(values, lossy, labels, threshold)
    options = {"image": image_t, "mask": mask_t, **options}
    if field_re:
        options["fields"] = field_re
    dir_fields = [f for f in fields if f != "id"]
    if case_id is not None:
        options["case_id"] = case_id
    elif dir_fields:
        options["case_id"] = "/".join("{" + f + "}" for f in [*dir_fields, "id"])
    if card_kind == "image-flow" and dir_fields and file_kind == "image-flow":
        options["group"] = "/".join("{" + f + "}" for f in dir_fields)  # a flow per folder
    if card_kind == "image-flow" and file_kind == "volume":
        options["as_image_flow"] = True
    table = _card(name, "volumes" if file_kind == "volume" else "pairs2d", card_kind, targets,
                  f"Written by `bench datasets new` from images {images!r} and masks "
                  f"{masks!r} (root {root}).", options)
    return NewCard(table, root, len(found))


def card_from_nnunet(name: str, folder: Path) -> NewCard:
    """A card of an nnU-Net raw dataset (``dataset.json``, ``imagesTr``, ``labelsTr``).

    PNG / BMP / TIFF datasets (nnU-Net's 2D) get the ``nnunet-2d`` reader and
    kind ``image-flow``; others the ``nnunet`` reader and kind ``volume``.
    Targets are left ``[]``: every foreground label of ``dataset.json``.
    """
    from bench.readers.nnunet import read_dataset_json

    info = read_dataset_json(folder)
    ending = str(info.get("file_ending", ".nii.gz")).lower()
    two_d = ending in IMAGE_SUFFIXES
    channels = dict(info.get("channel_names") or info.get("modality") or {})
    modality = str(next(iter(channels.values()))) if len(channels) == 1 else ""
    table = _card(name, "nnunet-2d" if two_d else "nnunet", "image-flow" if two_d else "volume",
                  [], f"Written by `bench datasets new --nnunet` from {folder}.", {})
    table["title"] = str(info.get("name") or info.get("description") or "")
    table["modality"] = modality
    if info.get("licence") or info.get("license"):
        table["licence"] = str(info.get("licence") or info.get("license"))
    _validated(table)
    cases = info.get("numTraining")
    return NewCard(table, folder.resolve(), int(cases) if isinstance(cases, int) else 0)


def card_from_hf(name: str, hub_id: str, image_column: str, mask_column: str,
                 labels: Mapping[str, int] | None = None,
                 threshold: float | None = None) -> NewCard:
    """A card of a HuggingFace hub dataset; nothing is downloaded, so the mask
    encoding must be given (``labels`` or ``threshold``)."""
    if not labels and threshold is None:
        raise ConfigError("--hf: the masks cannot be read here; pass --labels target=value,... "
                          "or --threshold N")
    targets, options = mask_options(None, False, labels, threshold)
    options = {"hub_id": hub_id, "image_column": image_column, "mask_column": mask_column,
               **options}
    table = _card(name, "hf", "image-flow", targets,
                  f"Written by `bench datasets new --hf {hub_id}`.", options)
    table["download"] = f"https://huggingface.co/datasets/{hub_id}"
    _validated(table)
    return NewCard(table, None)


def mask_options(values: Sequence[float] | None, lossy: bool,
                 labels: Mapping[str, int] | None, threshold: float | None
                 ) -> tuple[list[str], dict[str, Any]]:
    """Targets and label options from the mask values found and the user's flags.

    Parameters
    ----------
    values : sequence of float or None
        Distinct values found in the masks (None: not read).
    lossy : bool
        True for masks in a lossy format (JPEG).
    labels, threshold
        ``--labels`` and ``--threshold``.

    Raises
    ------
    ConfigError
        When the values leave the encoding open, listing the values found.
    """
    found = _listed(values) if values is not None else ""
    if threshold is not None:
        if labels and len(labels) != 1:
            raise ConfigError("--threshold makes one target: give at most one --labels name")
        target = next(iter(labels)) if labels else DEFAULT_TARGET
        return [target], {"threshold": float(threshold), "labels": {target: 1}}
    if lossy:
        raise ConfigError(f"the masks are JPEG (lossy; values found: {found}): pass "
                          "--threshold N (e.g. 128): values >= N become the target")
    if values is not None and any(float(v) != int(v) for v in values):
        raise ConfigError(f"non-integer mask values found ({found}): pass --threshold N")
    present = sorted({int(v) for v in values or ()} - {0})
    if labels:
        unknown = [v for v in present if v not in labels.values()]
        if unknown:
            raise ConfigError(f"mask values {unknown} are not in --labels "
                              f"({_labels_text(labels)}); values found: {found}")
        return list(labels), {"labels": dict(labels)}
    assert values is not None  # the hub card asks for labels before reading nothing
    if not present:
        raise ConfigError(f"every mask is empty (values found: {found}): check --masks")
    if len(present) > 1:
        hint = ",".join(f"name{i}={v}" for i, v in enumerate(present[:3], 1))
        also = " or --threshold N" if len(present) > MAX_LABELS else ""
        raise ConfigError(f"mask values {found} found: pass --labels target=value,... "
                          f"(e.g. --labels {hint}){also}")
    return [DEFAULT_TARGET], {"labels": {DEFAULT_TARGET: present[0]}}


def mask_values(paths: Sequence[Path], kind: str) -> tuple[list[float], bool]:
    """Distinct values of an evenly spaced sample of the masks, and whether any is lossy."""
    count = SAMPLE_MASKS[kind]
    picks = sorted({round(i) for i in np.linspace(0, len(paths) - 1, min(count, len(paths)))})
    values: set[float] = set()
    for index in picks:
        path = paths[index]
        if kind == "volume":
            array = read_volume(path, "label").array
        else:
            array = read_mask2d(path)
        values.update(np.unique(array).tolist())
    lossy = any(suffix(p) in LOSSY_SUFFIXES for p in paths)
    return sorted(values), lossy


def split_root(globs: Sequence[str], base: Path) -> tuple[Path, list[str]]:
    """The deepest folder without wildcards that holds every glob, and the globs below it."""
    parts = [_absolute(g, base).split("/") for g in globs]
    common: list[str] = []
    for segments in zip(*(p[:-1] for p in parts), strict=False):
        if len(set(segments)) != 1 or re.search(r"[*?\[{]", segments[0]):
            break
        common.append(segments[0])
    root = Path("/".join(common) or "/")
    return root, ["/".join(p[len(common):]) for p in parts]


def write_card(table: Mapping[str, Any], folder: Path, force: bool = False) -> Path:
    """Write ``folder/NAME.toml`` (validated first); refuse to overwrite unless ``force``."""
    _validated(table)
    path = folder / f"{table['name']}.toml"
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, to_toml(table))
    return path


def to_toml(table: Mapping[str, Any]) -> str:
    """A card table as TOML: top-level keys, then ``[options]`` (inline sub-tables)."""
    lines = [f"{key} = {_value(value)}" for key, value in table.items()
             if not isinstance(value, Mapping)]
    for key, value in table.items():
        if isinstance(value, Mapping):
            lines += ["", f"[{key}]", *(f"{_key(k)} = {_value(v)}" for k, v in value.items())]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_value, value)) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _card(name: str, reader: str, kind: str, targets: list[str], description: str,
          options: dict[str, Any]) -> dict[str, Any]:
    table = {"name": name, "reader": reader, "kind": kind, "targets": targets,
             "title": name, "modality": "", "description": description, "options": options}
    _validated(table)
    return table


def _validated(table: Mapping[str, Any]) -> None:
    card_from_table(table, f"{table['name']}.toml")


def _absolute(glob: str, base: Path) -> str:
    path = Path(glob).expanduser()
    text = (path if path.is_absolute() else base / path).as_posix()
    return re.sub(r"/\./", "/", text)


def _stars_to_fields(template: str, fields: list[str] | None, flag: str
                     ) -> tuple[str, list[str]]:
    """Single ``*`` -> ``{id}`` (file name) and ``{dirN}`` (folders); ``**`` stays a wildcard.

    With ``fields`` (those of the images), the k-th star becomes the k-th field.
    """
    *folders, filename = template.split("/")
    stars = [f"dir{i}" for i, part in enumerate(folders, 1) for _ in _stars(part)]
    own = [*stars, *(["id"] + [f"id{i}" for i in range(2, 9)])[:len(_stars(filename))]]
    if fields is None and not _stars(filename):
        raise ConfigError(f"{flag} {template!r}: the file name needs a * standing for the "
                          "case id")
    names = own if fields is None else fields
    if fields is not None and len(own) != len(fields):
        raise ConfigError(f"{flag}: {len(own)} '*' but --images has {len(fields)}; the k-th * "
                          "of --masks stands for the k-th * of --images")
    counter = iter(names)
    text = re.sub(r"(?<!\*)\*(?!\*)", lambda m: "{" + next(counter) + "}", template)
    return text, names


def _apart(image_t: str, mask_t: str, mask_files: Sequence[Path], root: Path
           ) -> dict[str, str]:
    """Field expressions keeping mask files out of the images when they share a folder.

    A mask ``img1_mask.png`` matched by the image template ``{id}.png`` gives
    the id ``img1_mask`` where the mask template gives ``img1``: the extra
    ``_mask`` (suffix or prefix) is then forbidden in image ids.
    """
    images = {path: fields for path, fields in Pattern(image_t).find(root)}
    overlap = [path for path in mask_files if path in images]
    if not overlap or "id" not in images[overlap[0]]:
        return {}
    as_image = images[overlap[0]]["id"]
    as_mask = next((f.get("id") for p, f in Pattern(mask_t).find(root) if p == overlap[0]), None)
    if as_mask and as_image.startswith(as_mask) and len(as_image) > len(as_mask):
        return {"id": rf"[^/]+?(?<!{re.escape(as_image[len(as_mask):])})"}
    if as_mask and as_image.endswith(as_mask) and len(as_image) > len(as_mask):
        return {"id": rf"(?!{re.escape(as_image[:-len(as_mask)])})[^/]+?"}
    raise ConfigError(f"--images also matches the masks (e.g. {overlap[0].name}): give "
                      "--images a pattern that leaves them out")


def _stars(text: str) -> list[str]:
    return re.findall(r"(?<!\*)\*(?!\*)", text)


def _wildcards(template: str) -> str:
    """A template's fields as wildcards (to list every mask file)."""
    return re.sub(r"\{\w+\}", "*", template)


def _kind_of(path: Path, flag: str) -> str:
    ext = suffix(path)
    if ext in VOLUME_SUFFIXES:
        return "volume"
    if ext in IMAGE_SUFFIXES:
        return "image-flow"
    raise ConfigError(f"{flag}: {path.name} is neither a volume ({', '.join(VOLUME_SUFFIXES)}) "
                      f"nor a 2D image ({', '.join(IMAGE_SUFFIXES)}); write the card by hand "
                      "(see `bench datasets options`)")


def _listed(values: Sequence[float]) -> str:
    shown = [int(v) if float(v).is_integer() else v for v in values[:12]]
    more = f" and {len(values) - 12} more" if len(values) > 12 else ""
    return ", ".join(map(str, shown)) + more


def _labels_text(labels: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


__all__ = ["NewCard", "card_from_globs", "card_from_hf", "card_from_nnunet", "mask_options",
           "mask_values", "parse_labels", "split_root", "to_toml", "write_card"]
