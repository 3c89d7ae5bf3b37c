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

- the kind from the image files: NIfTI / NRRD / MHA / MHD / ``.npy`` / DICOM
  series folders -> ``volume``, PNG / JPEG / BMP / TIFF / GIF / PPM / PGM (and
  their ``.gz``) -> ``image-flow``;
- the flows of 2D images (:func:`default_group`): one flow per dataset, or
  one per split when a folder (or a free file-name field) names splits
  (``training``, ``test``, ``Dataset 1``...); never one flow per case folder;
- the pairing of images and masks is checked before anything is written
  (:func:`pairing_problem`): an image without a mask, a mask without an
  image and two images claiming one mask are refused, naming the files and
  the option that fixes them;
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

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".npy")
# Every 2D format bench.readers.files reads (PIL's plugins; STARE ships .ppm.gz).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm",
                  ".pbm", ".pnm", ".ppm.gz", ".pgm.gz")
LOSSY_SUFFIXES = (".jpg", ".jpeg")
# Masks read to infer the encoding: evenly spaced over the listing (volumes are slow).
SAMPLE_MASKS = {"image-flow": 40, "volume": 5}
# More distinct values than this (without --labels) look like grey levels, not labels.
MAX_LABELS = 20
DEFAULT_TARGET = "foreground"
# A card name is a file name in a cards folder: no path separators, no "..".
CARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
# Folder (or free file-name field) values that name a split of the data, not a case.
SPLIT_WORDS = re.compile(r"train|valid|val(?![a-z])|test|dev(?![a-z])|set|fold|split",
                         re.IGNORECASE)
# Names shown when a pairing problem lists files.
SHOWN = 3


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


def check_name(name: str) -> str:
    """``name`` when it can be a card's file name, else a ConfigError (before any write)."""
    if not CARD_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"card name {name!r}: use letters, digits and . _ + - only (no '/', "
                          "no '..'); the card is written as NAME.toml in the cards folder")
    return name


def card_from_globs(name: str, images: str, masks: str, *, kind: str | None = None,
                    labels: Mapping[str, int] | None = None, threshold: float | None = None,
                    case_id: str | None = None, base: Path | None = None,
                    group: str | None = None, chunk_size: int | None = None,
                    exclude: Sequence[str] = (), missing_mask: str | None = None
                    ) -> NewCard:
    """A ``pairs2d`` or ``volumes`` card from image and mask globs.

    Parameters
    ----------
    name : str
        The card's name.
    images, masks : str
        Globs (or templates) of the image and mask files, relative to ``base``
        or absolute (see the module docstring). The k-th ``*`` of ``masks``
        stands for the k-th ``*`` of ``images``; further ``*`` of ``images``
        are free (e.g. ``21_training.tif`` against ``21_manual1.gif``).
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
    group : str, optional
        The flows of 2D images: a template over the fields, or ``"all"``
        (default: :func:`default_group`).
    chunk_size : int, optional
        Images per flow (a group is split into chunks).
    exclude : sequence of str
        Shell-style patterns of files to leave out (card option ``exclude``).
    missing_mask : {"error", "skip"}, optional
        What an image without a mask is (card option ``missing_mask``).

    Raises
    ------
    ConfigError
        One line saying what to pass: globs that match nothing or do not
        pair up, a kind that does not fit the files, an ambiguous mask
        encoding (with the values found), a layout one-prompt cannot score.
    """
    check_name(name)
    base = Path.cwd() if base is None else base
    root, (image_t, mask_t) = split_root([images, masks], base)
    fields: list[str] = []
    if "{" not in images:
        image_t, fields = _stars_to_fields(image_t, None, "--images")
        mask_t, _ = _stars_to_fields(mask_t, fields, "--masks")
    exclude = list(exclude)
    mask_files = [path for path, _ in Pattern(_wildcards(mask_t)).find(root, exclude)]
    if not mask_files:
        raise ConfigError(f"--masks {masks!r} matches no file under {root}")
    field_re = _apart(image_t, mask_t, mask_files, root)
    found = Pattern(image_t, field_re).find(root, exclude)
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
    if exclude:
        options["exclude"] = exclude
    if missing_mask is not None:
        options["missing_mask"] = missing_mask
    # Folder fields that repeat the file's id (a folder per case) add nothing to the case id.
    dir_fields = [f for f in fields if not f.startswith("id")
                  and not all(found_fields.get(f) == found_fields.get("id")
                              for _, found_fields in found)]
    # File-name fields the masks share identify the case; free ones (e.g. "training") do not.
    name_fields = [f for f in fields if f.startswith("id") and f in Pattern(mask_t).fields]
    if case_id is not None:
        options["case_id"] = case_id
    elif dir_fields or len(name_fields) > 1:
        options["case_id"] = "/".join(["{" + f + "}" for f in dir_fields]
                                      + ["_".join("{" + f + "}" for f in name_fields)])
    if card_kind == "image-flow":
        chosen = group if group is not None else default_group(image_t, found, fields)
        if chosen != "all":
            options["group"] = chosen
        if chunk_size is not None:
            options["chunk_size"] = chunk_size
    elif group is not None or chunk_size is not None:
        raise ConfigError("--group and --chunk-size group 2D images into flows; a volume is "
                          "its own flow (use --kind image-flow to slice volumes into images)")
    if card_kind == "image-flow" and file_kind == "volume":
        options["as_image_flow"] = True
    table = _card(name, "volumes" if file_kind == "volume" else "pairs2d", card_kind, targets,
                  f"Written by `bench datasets new` from images {images!r} and masks "
                  f"{masks!r} (root {root}).", options)
    problem = pairing_problem(table, root)
    if problem:
        raise ConfigError(problem)
    return NewCard(table, root, len(found))


def default_group(image_t: str, found: Sequence[tuple[Path, Mapping[str, str]]],
                  fields: Sequence[str]) -> str:
    """The flows of a new 2D card: ``"all"`` (one flow), or one per split field.

    A split field is a folder ``*`` (or a free ``*`` of the file name) whose
    every value, read with the literal text around it in its path segment,
    names a split: ``training``/``test``, ``Dataset 1``, ``fold0``... A
    case folder (``IMD002``) is never a flow of its own: one-prompt would
    then have nothing left to score.
    """
    segments = image_t.split("/")
    split = []
    for field in fields:
        if field == "id":
            continue
        holder = next((seg for seg in segments if "{" + field + "}" in seg), None)
        if holder is None:
            continue
        texts = {re.sub(r"\{\w+\}", "", holder.replace("{" + field + "}", f[field]))
                 for _, f in found if field in f}
        if not texts or not all(SPLIT_WORDS.search(text) for text in texts):
            continue
        # A field that splits the files exactly as those chosen (training/ and _training) is
        # the same split said twice.
        before = {tuple(f.get(x) for x in split) for _, f in found}
        after = {tuple(f.get(x) for x in [*split, field]) for _, f in found}
        if not split or len(after) > len(before):
            split.append(field)
    return "/".join("{" + f + "}" for f in split) or "all"


def pairing_problem(table: Mapping[str, Any], root: Path) -> str | None:
    """The first pairing problem of a new card's layout, as one line naming the fix.

    Reads no pixel: the reader's own listing (:meth:`FileReader.scan`) pairs
    the files exactly as ``bench run`` will. Problems, in order: files two
    templates both match (ambiguous), masks without an image (fix:
    ``--exclude``), images without a mask (fix: ``--missing-mask skip``),
    two images claiming one mask, and a layout whose every flow holds one
    image (one-prompt gives that image and scores nothing).
    """
    from bench.readers.layout import ORPHAN_MASK
    from bench.readers.registry import get_reader
    from bench.readers.scorable import unscorable_flows

    card = card_from_table(table, f"{table['name']}.toml")
    reader = get_reader(card.reader)
    refs, problems = reader.scan(card, root)
    ambiguous = [p for p in problems if p.severity == "error" and "ambiguous" in p.message]
    if ambiguous:
        return f"{ambiguous[0].path}: {ambiguous[0].message}"
    orphans = [Path(p.path) for p in problems if p.message == ORPHAN_MASK]
    if orphans:
        return (f"{len(orphans)} mask file(s) have no image ({_names(orphans, root)}): leave "
                "them out with --exclude PATTERN (card option exclude), or fix --images")
    unpaired = [ref for ref in refs if ref.missing]
    if unpaired:
        return (f"{len(unpaired)} image(s) have no mask "
                f"({_names([Path(r.files['image']) for r in unpaired], root)}; "
                f"{unpaired[0].missing}): pass --missing-mask skip (card option "
                'missing_mask = "skip") to leave them out, or fix --masks')
    owners: dict[Path, list[Path]] = {}
    for ref in refs:
        for mask in ref.files.get("mask") or ():
            owners.setdefault(Path(mask).resolve(), []).append(Path(ref.files["image"]))
    shared = {mask: imgs for mask, imgs in owners.items() if len(imgs) > 1}
    if shared:
        mask, imgs = next(iter(shared.items()))
        return (f"{len(shared)} mask file(s) are claimed by several images: "
                f"{_names(imgs, root)} all pair with {_relative(mask, root)}; give --images "
                "fewer free '*' or --masks more, so that each image has its own mask")
    if card.kind == "image-flow" and not getattr(card.options, "as_image_flow", False):
        return unscorable_flows(reader.list_flows(card, root), "--group all or --chunk-size N")
    return None


def _names(paths: Sequence[Path], root: Path) -> str:
    shown = ", ".join(_relative(p, root) for p in paths[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


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
    """Write ``folder/NAME.toml`` (name and table validated first); refuse to overwrite
    unless ``force``."""
    check_name(table["name"])
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
    names = own if fields is None else fields[:len(own)]
    if fields is not None and len(own) > len(fields):
        raise ConfigError(f"{flag}: {len(own)} '*' but --images has {len(fields)}; the k-th * "
                          "of --masks stands for the k-th * of --images (extra * of --images "
                          "are free)")
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
    if path.is_dir() or ext in VOLUME_SUFFIXES:  # a folder: a DICOM series
        return "volume"
    if ext in IMAGE_SUFFIXES:
        return "image-flow"
    raise ConfigError(f"{flag}: {path.name} is neither a volume ({', '.join(VOLUME_SUFFIXES)}, "
                      f"a DICOM series folder) nor a 2D image ({', '.join(IMAGE_SUFFIXES)}); "
                      "write the card by hand (see `bench datasets options`)")


def _listed(values: Sequence[float]) -> str:
    shown = [int(v) if float(v).is_integer() else v for v in values[:12]]
    more = f" and {len(values) - 12} more" if len(values) > 12 else ""
    return ", ".join(map(str, shown)) + more


def _labels_text(labels: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


__all__ = ["NewCard", "card_from_globs", "card_from_hf", "card_from_nnunet", "check_name",
           "default_group", "mask_options", "mask_values", "pairing_problem", "parse_labels",
           "split_root", "to_toml", "write_card"]
