"""Validation of a dataset on disk against its card.

:func:`check_dataset` reads every case the card describes and reports, one
line per problem and naming the file: missing pairs, image/mask shape or
geometry mismatches, label values the card does not know, empty masks,
unreadable or truncated files, NaNs, implausible spacing, and the case count
against the card's ``expected_cases``. It never raises for a bad file.

:class:`DataError` is what readers raise for one bad file; the runner catches
it per case so that one bad case never ends a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import DataError, Problem

if TYPE_CHECKING:
    from bench.readers.cards import Card

SEVERITIES = ("error", "warning", "info")

# Voxel sizes outside this range (mm) are reported as implausible.
PLAUSIBLE_SPACING_MM = (0.01, 20.0)


def check_dataset(card: Card, root: Path | None, limit: int | None = None,
                  progress: Callable[[str], None] | None = None) -> list[Problem]:
    """Check the dataset described by ``card`` under ``root``.

    Parameters
    ----------
    card : Card
        A card whose reader is file based (not the synthetic demo reader).
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
    from bench.readers import core  # late import: core imports this module

    problems: list[Problem] = []
    try:
        refs, scan_problems = core.scan(card, root)
    except Exception as err:  # a card or root problem: report it, never crash
        where = getattr(err, "path", None) or str(card.path or card.name)
        message = getattr(err, "problem", None) or " ".join(str(err).split())
        return [Problem("error", where, message)]
    problems.extend(scan_problems)
    checked = refs if limit is None else refs[:limit]
    for ref in checked:
        if ref.missing:  # already reported by the scan
            continue
        if progress is not None:
            progress(ref.id)
        problems.extend(_check_case(card, ref))
    problems.append(_count_line(card, root, len(refs), len(checked)))
    return problems


def _check_case(card: Card, ref) -> list[Problem]:
    from bench.readers import core

    found: list[Problem] = []
    try:
        flow = core.load_case(card, ref, sliced=False)
    except DataError as err:
        return [Problem("error", err.path, err.problem)]
    except Exception as err:  # unexpected: still one line, never a crash
        text = " ".join(str(err).split())
        return [Problem("error", str(core.main_file(ref)), f"{type(err).__name__}: {text}")]
    where = str(core.main_file(ref))
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
