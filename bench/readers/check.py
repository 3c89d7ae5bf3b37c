"""Validation of a dataset on disk against its card.

:func:`check_dataset` reads every case the card describes and reports, one
line per problem and naming the file: missing pairs, image/mask shape or
geometry mismatches, label values the card does not know, empty masks,
unreadable or truncated files, NaNs, implausible spacing, and the case count
against the card's ``expected_cases``. It never raises for a bad file.

:func:`layout_problems` is the structural part alone (no file is decoded):
``bench run`` calls it before any unit, so that an empty or ambiguous layout
is refused before work starts, exactly as ``bench datasets check`` reports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

from bench.errors import BenchError, DataError, Problem
from bench.readers.cards import Card
from bench.readers.cases import CaseRef, FileReader
from bench.readers.diagnose import count_matches, relative_files
from bench.readers.layout import PatternReader, layouts
from bench.readers.patterns import one_level_off
from bench.readers.registry import get_reader

# Voxel sizes outside this range (mm) are reported as implausible.
PLAUSIBLE_SPACING_MM = (0.01, 20.0)


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
    if not refs and root is not None and cards:
        problems.extend(_other_layouts(card, Path(root), cards))
    if not refs and root is not None:
        problems.extend(_root_hint(reader, card, Path(root)))
    checked = refs if limit is None else refs[:limit]
    for ref in checked:
        if ref.missing:  # already reported by the scan
            continue
        if progress is not None:
            progress(ref.id)
        problems.extend(_check_case(reader, card, ref))
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


def _check_case(reader: FileReader, card: Card, ref: CaseRef) -> list[Problem]:
    found: list[Problem] = []
    try:
        flow = reader.load_case(card, ref, sliced=False)
    except DataError as err:  # readers turn every fault of a file into a DataError
        return [Problem("error", err.path, err.problem)]
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
