"""Validation of a dataset on disk against its card.

:func:`check_dataset` reads every case the card describes and reports, one
line per problem and naming the file: missing pairs, image/mask shape or
geometry mismatches, label values the card does not know, empty masks,
unreadable or truncated files, NaNs, implausible spacing, and the case count
against the card's ``expected_cases``. It never raises for a bad file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from bench.errors import BenchError, DataError, Problem
from bench.readers.cards import Card
from bench.readers.cases import CaseRef, FileReader
from bench.readers.patterns import one_level_off
from bench.readers.registry import get_reader

# Voxel sizes outside this range (mm) are reported as implausible.
PLAUSIBLE_SPACING_MM = (0.01, 20.0)


def check_dataset(card: Card, root: Path | None, limit: int | None = None,
                  progress: Callable[[str], None] | None = None) -> list[Problem]:
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
    except DataError as err:
        return [Problem("error", err.path, err.problem)]
    except Exception as err:  # per case: recorded as this case's error, the check goes on
        text = " ".join(str(err).split())
        return [Problem("error", ref.where, f"{type(err).__name__}: {text}")]
    where = ref.where
    meta = flow.meta
    masks = meta.get("mask") or [where]
    mask_file = str(masks[0] if isinstance(masks, list) else masks)
    if meta.get("unknown_labels"):
        found.append(Problem("warning", mask_file,
                             f"label values {meta['unknown_labels']} are not in the card "
                             "(ignored: set options.labels to use them)"))
    if meta.get("stray_values"):
        found.append(Problem("warning", mask_file,
                             f"stray grey levels {meta['stray_values']} mapped to the nearest "
                             f"class"))
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
