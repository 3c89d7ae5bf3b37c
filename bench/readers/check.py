"""Validation of a dataset on disk against its card.

:func:`check_dataset` reads every case the card describes and reports, one
line per problem and naming the file: missing pairs, image/mask shape or
geometry mismatches, label values the card does not know, empty masks,
unreadable or truncated files, NaNs, implausible spacing, cases holding another
case's pixels (:func:`duplicate_contents`), and the case count against the
card's ``expected_cases``. It never raises for a bad file.

:func:`layout_problems` is the structural part alone (no file is decoded),
two cases reading one mask file included (:func:`shared_files`): ``bench run``
calls it before any unit, so that an empty or ambiguous layout is refused
before work starts, exactly as ``bench datasets check`` reports it; it then
compares the cases' pixels with :func:`flow_contents` from the digests it
records anyway.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import BenchError, DataError, Problem
from bench.frames import LazyFrames, PackedMasks, array_sha256
from bench.readers.cards import Card
from bench.readers.cases import CaseRef, FileReader
from bench.readers.diagnose import count_matches, relative_files
from bench.readers.layout import PatternReader, layouts
from bench.readers.patterns import one_level_off
from bench.readers.registry import get_reader
from bench.types import Flow

# Voxel sizes outside this range (mm) are reported as implausible.
PLAUSIBLE_SPACING_MM = (0.01, 20.0)
# Two cases' identical masks smaller than this (foreground pixels or voxels, all
# targets) are not reported: a small structure at one place in aligned scans, or
# one marked pixel, can be alike by chance; larger identical masks are copies.
TINY_MASK = 100


def check_dataset(card: Card, root: Path | None, limit: int | None = None,
                  progress: Callable[[str], None] | None = None,
                  cards: Mapping[str, Card] | None = None) -> list[Problem]:
    """Check the dataset described by ``card`` under ``root``.

    Parameters
    ----------
    card : Card
        A card whose reader reads files (a generating reader, such as the
        demo's, gives one error line: nothing to check).
    root : Path or None
        The dataset folder.
    limit : int, optional
        Check only the first ``limit`` cases (the count line then says so).
    progress : callable, optional
        Called with each case id before it is read.
    cards : mapping, optional
        Every known card: when no case is found, the cards whose layout the
        root matches are named.

    Returns
    -------
    list of Problem
        Errors and warnings, one per finding, then one ``info`` line with the
        case count against ``card.expected_cases``. An empty error list means
        every case loaded.
    """
    reader = get_reader(card.reader, f"{card.where}.reader")
    if not isinstance(reader, FileReader):
        return [Problem("error", card.where, f"reader {card.reader!r} reads no files: "
                                             "nothing to check")]
    problems: list[Problem] = []
    try:
        refs, scan_problems = reader.scan(card, root)
    except (BenchError, ImportError) as err:  # a card, root or dependency problem
        where = err.path if isinstance(err, DataError) else card.where
        message = err.problem if isinstance(err, DataError) else " ".join(str(err).split())
        return [Problem("error", where, message)]
    problems.extend(scan_problems)
    problems.extend(shared_files(refs))
    if not refs and root is not None and cards:
        problems.extend(_other_layouts(card, Path(root), cards))
    if not refs and root is not None:
        problems.extend(_root_hint(reader, card, Path(root)))
    checked = refs if limit is None else refs[:limit]
    contents: list[CaseContent] = []
    for ref in checked:
        if ref.missing:  # already reported by the scan
            continue
        if progress is not None:
            progress(ref.id)
        problems.extend(_check_case(reader, card, ref, contents))
    problems.extend(duplicate_contents(contents))
    problems.append(_count_line(card, root, len(refs), len(checked)))
    return problems


def layout_problems(card: Card, root: Path | None,
                    cards: Mapping[str, Card] | None = None) -> list[Problem]:
    """The structural problems of a dataset on disk, without decoding any file.

    These are the problems of the listing (:meth:`FileReader.scan`): no case
    found (with what the root holds and what would match, also other cards in
    ``cards``), two files matching one case, duplicate case ids, empty
    sources, masks without an image; plus the case count against the card's
    ``expected_cases`` (a warning when it differs). A case whose own mask is
    missing is left to reading, where it is a failure of that case.

    Returns
    -------
    list of Problem
        Empty for readers that read no files (generated or hub data).

    Raises
    ------
    ConfigError, DataError
        No root configured, or a root that does not exist.
    """
    reader = get_reader(card.reader, f"{card.where}.reader")
    if not isinstance(reader, FileReader) or (root is None and not reader.needs_root(card)):
        return []
    refs, problems = reader.scan(card, root)
    own = {(ref.where, ref.missing) for ref in refs if ref.missing}
    found = [p for p in problems if (p.path, p.message) not in own]
    found.extend(shared_files(refs))
    if not refs and root is not None and cards:
        found.extend(_other_layouts(card, Path(root), cards))
    count = _count_line(card, root, len(refs), len(refs))
    if count.severity != "info":
        found.append(count)
    return found


def matching_cards(root: Path, cards: Mapping[str, Card], skip: str = ""
                   ) -> list[tuple[str, int]]:
    """Cards (other than ``skip``) whose image patterns match files under ``root``.

    Returns ``(name, number of matching images)``, most matches first.
    """
    files = relative_files(root)
    found = []
    for name, card in cards.items():
        if name == skip or not isinstance(get_reader(card.reader), PatternReader):
            continue
        count = sum(count_matches(layout.images, files, layout.options.exclude)
                    for layout in layouts(card))
        if count:
            found.append((name, count))
    return sorted(found, key=lambda item: (-item[1], item[0]))


def _other_layouts(card: Card, root: Path, cards: Mapping[str, Card]) -> list[Problem]:
    others = matching_cards(root, cards, skip=card.name)
    if not others:
        return []
    shown = ", ".join(f"{name!r} ({n} images)" for name, n in others[:3])
    return [Problem("error", str(root), f"the root holds another dataset's layout: it matches "
                                        f"the card(s) {shown}, not {card.name!r}; check the "
                                        "root, or run that dataset")]


def _root_hint(reader: FileReader, card: Card, root: Path) -> list[Problem]:
    """A root one level off: the folder that would match, as an info line."""

    def count(folder: Path) -> int:
        try:
            return len(reader.scan(card, folder)[0])
        except BenchError:  # a folder the card cannot read at all matches nothing
            return 0

    found = one_level_off(root, count)
    if found is None:
        return []
    folder, cases = found
    return [Problem("info", str(root), f"hint: the card's patterns match {cases} cases under "
                                       f"{folder}: pass --root {folder}")]


def _check_case(reader: FileReader, card: Card, ref: CaseRef, contents: list[CaseContent]
                ) -> list[Problem]:
    """The problems of one case; appends its content digests to ``contents``."""
    found: list[Problem] = []
    try:
        flow = reader.load_case(card, ref, sliced=False)
    except DataError as err:  # readers turn every fault of a file into a DataError
        return [Problem("error", err.path, err.problem)]
    except MemoryError:  # decoding or reordering a volume that fits on disk, not in memory
        return [Problem("error", ref.where, "too large to read: out of memory (MemoryError) "
                                            "while loading this case")]
    contents.extend(flow_contents(flow))
    where = ref.where
    meta = flow.meta
    masks = meta.get("mask") or [where]
    mask_file = str(masks[0] if isinstance(masks, list) else masks)
    if meta.get("unknown_labels"):
        found.append(Problem("warning", mask_file,
                             f"label values {meta['unknown_labels']} are not in the card "
                             "(ignored: set options.labels to use them)"))
    if meta.get("remapped_values"):
        found.append(Problem("info", mask_file,
                             f"mask values {meta['remapped_values']} remapped as the card "
                             "declares (options.remap)"))
    present = [t for t, masks in flow.masks.items() if any(bool(m.any()) for m in masks)]
    if not present:
        found.append(Problem("warning", mask_file,
                             "empty mask: no target present"))
    spacing = flow.spacing or ()
    low, high = PLAUSIBLE_SPACING_MM
    for value in spacing:
        if not math.isfinite(value) or value <= 0:
            found.append(Problem("error", where, f"invalid spacing {tuple(spacing)}"))
            break
        if not low <= value <= high:
            found.append(Problem("warning", where, f"implausible spacing {tuple(spacing)} mm"))
            break
    return found


# --------------------------------------------------------------------------- shared files


def shared_files(refs: Sequence[CaseRef]) -> list[Problem]:
    """Cases that read one file as their mask (or image): the same path, or links to it.

    A mask that is a link to another case's mask scores one case against the
    other's ground truth: an error. One image file read by two cases is a
    warning (two annotations of one image listed as cases can be meant).
    Only the file system is asked (``os.stat``), nothing is read.

    Returns
    -------
    list of Problem
        One per case whose file an earlier case already reads, naming both.
    """
    problems: list[Problem] = []
    for role, severity in (("mask", "error"), ("image", "warning")):
        owners: dict[tuple[int, int], tuple[CaseRef, Path]] = {}
        for ref in refs:
            mine: set[tuple[int, int]] = set()  # a case may read one file twice (raters)
            for path in _files(ref, role):
                key = _identity(path)
                if key is None or key in mine:
                    continue  # missing (the scan reports it), or this case's own again
                mine.add(key)
                first, first_path = owners.setdefault(key, (ref, path))
                if first is not ref:
                    problems.append(Problem(severity, str(path),
                                            _shared_message(role, ref, path, first, first_path)))
    return problems


def _files(ref: CaseRef, role: str) -> list[Path]:
    """The case's mask files (label maps and per-target files), or its image file."""
    if role == "image":
        image = ref.files.get("image")
        return [Path(image)] if image is not None else []
    found = ref.files.get("mask") or ()
    paths = [found] if isinstance(found, (str, Path)) else list(found)
    for group in (ref.files.get("targets") or {}).values():
        paths.extend(group)
    return [Path(p) for p in paths]


def _identity(path: Path) -> tuple[int, int] | None:
    """The file behind ``path`` (links followed; hard links too), or None if absent."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _shared_message(role: str, ref: CaseRef, path: Path, first: CaseRef, first_path: Path
                    ) -> str:
    if path == first_path:
        how = f"both read {path}"
    else:
        link = path if path.is_symlink() else first_path if first_path.is_symlink() else None
        how = (f"{path} and {first_path} are one file"
               + (f" ({link} is a link to {link.resolve()})" if link is not None else ""))
    if role == "mask":
        return (f"cases {first.id!r} and {ref.id!r} share one mask file: {how}; each would be "
                "scored against the other's ground truth: give each case its own mask, or "
                "leave one case out with options.exclude")
    return (f"cases {first.id!r} and {ref.id!r} share one image file: {how}; one image "
            "counted as two cases (check that this is meant)")


# --------------------------------------------------------------------------- same pixels


@dataclass(frozen=True)
class CaseContent:
    """A case's files and the digests of its decoded pixels, to find copies.

    Attributes
    ----------
    case : str
        The case id.
    image, mask : str
        Its image file and (first) mask file, named in messages.
    image_sha256, mask_sha256 : str
        Digests of the image as read and of every target's mask.
    foreground : int
        Foreground pixels (voxels) of all targets' masks together.
    """

    case: str
    image: str
    mask: str
    image_sha256: str
    mask_sha256: str
    foreground: int


def flow_contents(flow: Flow, frames_sha256: str | None = None,
                  masks_sha256: str | None = None) -> list[CaseContent]:
    """The :class:`CaseContent` of each case of ``flow``, from digests at hand if possible.

    Parameters
    ----------
    flow : Flow
        A volume (one case), or an image flow read from files (one case per
        frame: :class:`~bench.frames.LazyFrames` keep each frame's sha256,
        packed masks are hashed packed, so nothing is read again).
    frames_sha256, masks_sha256 : str, optional
        A volume's digests when already computed (a run's manifest has them).

    Returns
    -------
    list of CaseContent
        Empty for slices of volumes: blank slices of one scan are alike by
        nature (their volume is the case that could be copied).
    """
    if flow.kind == "volume":
        meta = flow.meta
        image = frames_sha256 or array_sha256(np.asarray(flow.frames))
        masks = masks_sha256 or _masks_sha256({t: m for t, m in flow.masks.items()}, None)
        foreground = sum(int(np.count_nonzero(m)) for m in flow.masks.values())
        return [_content(flow.case_ids[0], meta, image, masks, foreground)]
    found = []
    cases = flow.meta.get("cases") or [flow.meta]
    for index, case in enumerate(flow.case_ids):
        meta = cases[index] if index < len(cases) else {}
        if meta.get("slice") is not None:
            continue
        frames = flow.frames
        image = (frames.digests[index] if isinstance(frames, LazyFrames)
                 else array_sha256(np.asarray(frames[index])))
        masks = _masks_sha256(flow.masks, index)
        foreground = sum(_foreground(m, index) for m in flow.masks.values())
        found.append(_content(case, meta, image, masks, foreground))
    return found


def _content(case: str, meta: Mapping, image: str, masks: str, foreground: int
             ) -> CaseContent:
    mask_files = meta.get("mask") or [f for fs in (meta.get("target_masks") or {}).values()
                                      for f in fs]
    first = mask_files[0] if isinstance(mask_files, list) and mask_files else mask_files
    return CaseContent(case, str(meta.get("image") or case), str(first or case), image, masks,
                       foreground)


def _masks_sha256(masks: Mapping[str, Sequence[np.ndarray]], index: int | None) -> str:
    """sha256 over each target's name and mask (``index``: one frame of each; None: all)."""
    digest = hashlib.sha256()
    for target in sorted(masks):
        frames = masks[target]
        digest.update(f"|{target}|".encode())
        if isinstance(frames, PackedMasks) and index is not None:
            digest.update(f"{frames.shapes[index]}|".encode())
            digest.update(frames.bits(index).tobytes())
        else:
            chosen = frames if index is None else frames[index]
            digest.update(array_sha256(np.asarray(chosen, dtype=bool)).encode())
    return digest.hexdigest()


def _foreground(frames: Sequence[np.ndarray], index: int) -> int:
    if isinstance(frames, PackedMasks):  # counted packed: padding bits are zero
        return int(_BITS_SET[frames.bits(index)].sum())
    return int(np.count_nonzero(frames[index]))


# bits set in each byte value (np.bitwise_count needs NumPy 2; NumPy 1.24 is supported)
_BITS_SET = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1)


def duplicate_contents(cases: Iterable[CaseContent]) -> list[Problem]:
    """Cases holding the same pixels as an earlier case.

    - image and mask both the same: a duplicated case, counted twice in every
      mean: an **error**;
    - the same mask with another image: a mask copied from another case is
      scored as this one's ground truth: a **warning** (not an error: a
      dataset may give several images of one patient the same label map);
      identical empty masks are common and identical masks of fewer than
      :data:`TINY_MASK` pixels can be alike by chance: neither is reported;
    - the same image with another mask: a **warning**.

    Returns
    -------
    list of Problem
        One per case, naming both cases' files.
    """
    problems: list[Problem] = []
    pairs: dict[tuple[str, str], CaseContent] = {}
    masks: dict[str, CaseContent] = {}
    images: dict[str, CaseContent] = {}
    for case in cases:
        twin = pairs.setdefault((case.image_sha256, case.mask_sha256), case)
        if twin is not case and _same_file(case.mask, twin.mask):
            continue  # one mask file: already an error of the layout (shared_files)
        if twin is not case:
            problems.append(Problem("error", case.image, (
                f"case {case.case!r} duplicates case {twin.case!r}: its image and mask "
                f"({case.image}, {case.mask}) hold the same pixels as {twin.image} and "
                f"{twin.mask}; a case counted twice weighs twice in every mean: remove one, or "
                "leave it out with options.exclude")))
            continue
        if case.foreground >= TINY_MASK:
            first = masks.setdefault(case.mask_sha256, case)
            if first is not case and not _same_file(case.mask, first.mask):
                problems.append(Problem("warning", case.mask, (
                    f"mask of case {case.case!r} holds the same pixels as {first.mask} (case "
                    f"{first.case!r}) though the images differ: a mask copied from another "
                    "case is scored as this case's ground truth; check both files")))
        first = images.setdefault(case.image_sha256, case)
        if first is not case and not _same_file(case.image, first.image):
            problems.append(Problem("warning", case.image, (
                f"image of case {case.case!r} holds the same pixels as {first.image} (case "
                f"{first.case!r}) with another mask: one image counted as two cases; check "
                "that this is meant")))
    return problems


def _same_file(one: str, other: str) -> bool:
    """One file behind both names (reported by :func:`shared_files`, not again here)."""
    try:
        return os.path.samefile(one, other)
    except OSError:  # not files (a case id stands in for a generated case's file)
        return False


# --------------------------------------------------------------------------- counts


def _count_line(card: Card, root: Path | None, found: int, checked: int) -> Problem:
    what = f"{found} cases found"
    if checked != found:
        what += f", {checked} checked"
    expected = card.expected_cases
    if expected is None:
        return Problem("info", str(root), f"{what} (the card gives no expected count)")
    if found != expected:
        return Problem("warning", str(root), f"{what}, {expected} expected")
    return Problem("info", str(root), f"{what}, {expected} expected")


def has_errors(problems: list[Problem]) -> bool:
    """True when any problem is an error (the CLI exits non-zero then)."""
    return any(p.severity == "error" for p in problems)
