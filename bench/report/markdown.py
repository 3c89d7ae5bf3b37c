"""The Markdown report of a run, and the wide results table also printed by the CLI."""

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
from bench.report.tables import format_estimate

COUNT_COLUMNS = ("n", "n_excluded", "n_penalised", "n_failed")

__all__ = ["COUNT_COLUMNS", "format_estimate", "markdown_table", "render_markdown",
           "results_table"]


def results_table(aggregates: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Wide table: one row per dataset, target and model; a column per metric plus counts.

    Counts are those of the first metric (they are the same for every metric
    of a case, except that a failed metric computation is counted per metric).
    """
    keys = ["dataset", "target", "model"]
    first = aggregates[aggregates["metric"] == metrics[0]].set_index(keys)
    wide = pd.DataFrame(index=first.index)
    for metric in metrics:
        rows = aggregates[aggregates["metric"] == metric].set_index(keys).reindex(first.index)
        # One patient: nothing for the bootstrap to resample, so no interval is shown.
        wide[metric] = [format_estimate(r.mean, r.ci_low, r.ci_high)
                        if getattr(r, "n_patients", 2) >= 2 else
                        format_estimate(r.mean, float("nan"), float("nan"))
                        for r in rows.itertuples()]
    for column in COUNT_COLUMNS:
        wide[column] = first[column].astype(int)
    return wide.reset_index()


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
        elif isinstance(block, Table):
            if block.caption:
                lines += [f"*{block.caption}*", ""]
            lines += [markdown_table(block.frame), ""]
        elif isinstance(block, Figure):
            lines += [f"![{block.caption or block.path.stem}]({block.path.as_posix()})", ""]
            if block.caption:
                lines += [f"*{block.caption}*", ""]
    return "\n".join(lines)
