"""A report as a list of blocks, rendered to Markdown, HTML or LaTeX.

The report's content is built once (:mod:`bench.report.build`) as blocks; each
output format is a renderer over the same blocks, so the three formats never
disagree on a number. Inline text may use ``code`` and ``**bold**`` (code spans
inside bold included); renderers turn them into their own markup, so no
backtick reaches HTML or LaTeX as a character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Note:
    """A callout (warnings such as "synthetic data")."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    """A table of display strings.

    ``frame`` may have two-level columns (a group and a metric, as in the
    paper's Table 2); renderers draw the groups as spanning headers.

    ``details``: the summary line of a table collapsed by default (HTML
    ``<details>``). ``csv``: the run-relative CSV that holds the whole table;
    formats without collapsing (Markdown, LaTeX) point to it instead of
    printing the table.
    """

    frame: pd.DataFrame
    caption: str = ""
    wide: bool = False
    details: str = ""
    csv: str = ""


@dataclass
class Figure:
    """A PNG written under the run directory; ``path`` relative to it."""

    path: Path
    caption: str = ""


Block = Heading | Paragraph | Note | Bullets | Table | Figure


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)


INLINE = re.compile(r"(`[^`]+`|\*\*[^*]+\*\*)")


def split_inline(text: str) -> list[tuple[str, str]]:
    """``[(kind, text)]`` with kind ``plain``, ``code`` or ``bold``."""
    parts = []
    for piece in INLINE.split(text):
        if not piece:
            continue
        if piece.startswith("`") and piece.endswith("`") and len(piece) > 1:
            parts.append(("code", piece[1:-1]))
        elif piece.startswith("**") and piece.endswith("**") and len(piece) > 3:
            parts.append(("bold", piece[2:-2]))
        else:
            parts.append(("plain", piece))
    return parts


def plain_text(text: str) -> str:
    """``text`` without its inline markup (for attributes such as an image's ``alt``)."""
    return "".join(plain_text(piece) if kind == "bold" else piece
                   for kind, piece in split_inline(text))


def header_levels(frame: pd.DataFrame) -> tuple[list[str], list[str]] | None:
    """For two-level columns: (group per column, name per column); None for one level."""
    if isinstance(frame.columns, pd.MultiIndex) and frame.columns.nlevels == 2:
        return ([str(c[0]) for c in frame.columns], [str(c[1]) for c in frame.columns])
    return None


def spans(groups: list[str]) -> list[tuple[str, int]]:
    """Runs of equal adjacent group labels: ``[(label, width), ...]``."""
    result: list[tuple[str, int]] = []
    for label in groups:
        if result and result[-1][0] == label:
            result[-1] = (label, result[-1][1] + 1)
        else:
            result.append((label, 1))
    return result
