"""Why a dataset root yields no case, and which files make a case ambiguous.

When a card's image patterns match nothing under a root, the error says what
the root holds and what would match instead: a subfolder (the root is one
level too high) or the parent folder (one level too low); the dataset check
adds other cards whose layout matches (:func:`bench.readers.check.matching_cards`).
When two files match one case, the error
names both and suggests an ``exclude`` pattern (:func:`exclude_hint`): the
harness never picks one by sort order.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.readers.patterns import Pattern, excluded

# Folders are listed up to this many files: a diagnosis must stay quick on a
# wrong root such as a home folder.
MAX_FILES = 20000


def relative_files(root: Path, limit: int = MAX_FILES) -> list[str]:
    """Paths of the files under ``root``, relative and with ``/``; hidden ones left out."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        base = Path(folder).relative_to(root).as_posix()
        for name in sorted(files):
            if name.startswith("."):
                continue
            found.append(name if base == "." else f"{base}/{name}")
            if len(found) >= limit:
                return found
    return found


def count_matches(patterns: Sequence[Pattern], files: Sequence[str],
                  exclude: Sequence[str] = ()) -> int:
    """How many of ``files`` match one of ``patterns`` (and no ``exclude`` pattern)."""
    return sum(1 for rel in files
               if not excluded(rel, exclude) and any(p.regex.match(rel) for p in patterns))


def summary(files: Sequence[str], limit: int = MAX_FILES) -> str:
    """``"12 files (8 .png, 4 .jpg), e.g. 'a/1.png'"``, or ``"no files"``."""
    if not files:
        return "no files"
    kinds = Counter(Path(f).suffix.lower() or "(no suffix)" for f in files)
    shown = ", ".join(f"{n} {k}" for k, n in kinds.most_common(4))
    count = f"{len(files)}+" if len(files) >= limit else str(len(files))
    return f"{count} files ({shown}), e.g. {', '.join(repr(f) for f in files[:2])}"


def explain_empty(patterns: Sequence[Pattern], root: Path, exclude: Sequence[str] = ()) -> str:
    """One line: no image matches ``patterns`` under ``root``, what is there, what would."""
    files = relative_files(root)
    templates = ", ".join(repr(p.template) for p in patterns)
    text = (f"no case found: no file matches the card's image pattern(s) {templates}; the "
            f"root holds {summary(files)}")
    best: tuple[int, str] = (0, "")
    for sub in sorted({f.split("/", 1)[0] for f in files if "/" in f}):
        inner = [f.split("/", 1)[1] for f in files if f.startswith(sub + "/")]
        best = max(best, (count_matches(patterns, inner, exclude), sub))
    if best[0]:
        return (f"{text}; the root looks one level too high: its subfolder {root / best[1]} "
                f"matches {best[0]} image(s), set the dataset root to it")
    parent = root.parent
    # only anchored templates: with **/ the parent would match its sibling folders
    if parent != root and not any("**" in p.template for p in patterns):
        above = count_matches(patterns, relative_files(parent), exclude)
        if above:
            return (f"{text}; the root looks one level too low: its parent {parent} matches "
                    f"{above} image(s), set the dataset root to it")
    return text + "; check the root folder and the card's patterns"


def exclude_hint(root: Path, first: Path, second: Path) -> str:
    """``exclude`` patterns that would keep only one of two files matching one case."""
    a = first.relative_to(root).as_posix().split("/")
    b = second.relative_to(root).as_posix().split("/")
    options = []
    for parts, other in ((a, b), (b, a)):
        dirs, other_dirs = parts[:-1], other[:-1]
        depth = next((i for i, (x, y) in enumerate(zip(dirs, other_dirs, strict=False))
                      if x != y), None)
        if depth is None and len(dirs) > len(other_dirs):
            depth = len(other_dirs)  # this one lies in a subfolder of the other's folder
        if depth is None:
            options.append("/".join(parts))  # same folder, different names: that file
        else:
            options.append("/".join(parts[:depth + 1]) + "/*")
    return f"add options.exclude = [{options[1]!r}] (or [{options[0]!r}]) to keep one of them"


__all__ = ["count_matches", "exclude_hint", "explain_empty", "relative_files", "summary"]
