"""The Markdown report of a run."""

from __future__ import annotations

import pandas as pd

from bench.report.document import (
    Bullets,
    Document,
    Figure,
    Heading,
    Note,
    Paragraph,
    Table,
    header_levels,
)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; two-level columns are joined as ``group metric``."""
    levels = header_levels(frame)
    if levels is not None:
        names = [" ".join(filter(None, (g, n))) for g, n in zip(*levels, strict=True)]
    else:
        names = [str(c) for c in frame.columns]
    header = "| " + " | ".join(_cell(n) for n in names) + " |"
    rule = "|" + "|".join("---" for _ in names) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def render_markdown(document: Document) -> str:
    """The document as Markdown (figures linked by their run-relative paths)."""
    lines = [f"# {document.title}", ""]
    for block in document.blocks:
        if isinstance(block, Heading):
            lines += ["#" * min(block.level, 6) + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Note):
            lines += ["> " + block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table) and block.csv:
            # Collapsed tables (per-case values) would swamp the page: link their CSV.
            label = block.details or block.caption or "Table"
            lines += [f"{label}: [{block.csv}]({block.csv}).", ""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [f"*{block.caption}*", ""]
            lines += [markdown_table(block.frame), ""]
        elif isinstance(block, Figure):
            lines += [f"![{block.caption or block.path.stem}]({block.path.as_posix()})", ""]
            if block.caption:
                lines += [f"*{block.caption}*", ""]
    return "\n".join(lines)
