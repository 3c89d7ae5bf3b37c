"""The HTML report: one self-contained file (styles inline, figures embedded as base64)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

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
    plain_text,
    spans,
    split_inline,
)

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; border-bottom: 2px solid #333; padding-bottom: .2em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #bbb; }
h3 { font-size: 1.1em; margin-top: 1.4em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .86em; }
p.caption { font-style: italic; font-size: .9em; margin: .8em 0 .2em; }
thead tr:first-child th { border-top: 2px solid #222; }
thead tr:last-child th { border-bottom: 1px solid #222; }
tbody tr:last-child td { border-bottom: 2px solid #222; }
th, td { padding: .25em .6em; text-align: right; white-space: nowrap; }
th.text, td.text { text-align: left; }
th.group { text-align: center; border-bottom: 1px solid #888; }
tbody tr:nth-child(even) { background: #f6f6f6; }
.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: .5em .8em; margin: 1em 0; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-style: italic; font-size: .9em; }
code { background: #f0f0f0; padding: 0 .25em; border-radius: 3px; }
.scroll { overflow-x: auto; max-width: 100%; }
details { margin: .4em 0 1.2em; }
details > summary { cursor: pointer; font-size: .95em; }
"""


def inline(text: str) -> str:
    """Escaped HTML of a text with ``code`` and ``**bold**`` (code inside bold too)."""
    out = []
    for kind, piece in split_inline(text):
        out.append(f"<code>{html.escape(piece)}</code>" if kind == "code" else
                   f"<strong>{inline(piece)}</strong>" if kind == "bold" else
                   html.escape(piece))
    return "".join(out)


def html_table(frame: pd.DataFrame, caption: str = "") -> str:
    """A table with a spanning header row for two-level columns, in a container that
    scrolls horizontally when the table is wider than the page."""
    parts = [f'<p class="caption">{inline(caption)}</p>'] if caption else []
    parts.append('<div class="scroll"><table>')
    parts.append("<thead>")
    text = [not _numeric(frame.iloc[:, i]) for i in range(frame.shape[1])]
    levels = header_levels(frame)
    if levels is not None:
        groups, names = levels
        cells = "".join(f'<th colspan="{width}" class="group">{html.escape(label)}</th>'
                        if label else f'<th colspan="{width}"></th>'
                        for label, width in spans(groups))
        parts.append(f"<tr>{cells}</tr>")
    else:
        names = [str(c) for c in frame.columns]
    parts.append("<tr>" + "".join(f"<th{_cls(t)}>{html.escape(n)}</th>"
                                  for n, t in zip(names, text, strict=True)) + "</tr>")
    parts.append("</thead><tbody>")
    for row in frame.itertuples(index=False):
        parts.append("<tr>" + "".join(f"<td{_cls(t)}>{html.escape(str(v))}</td>"
                                      for v, t in zip(row, text, strict=True)) + "</tr>")
    parts.append("</tbody></table></div>")
    return "".join(parts)


_NUMBER = re.compile(r"^[-+<]?\d|^-$")


def _numeric(column: pd.Series) -> bool:
    """Numbers (possibly with an interval) or '-' in every cell: right-aligned."""
    return all(_NUMBER.match(str(v).strip()) for v in column)


def _cls(text: bool) -> str:
    return ' class="text"' if text else ""


#: Rows of a collapsed table drawn in the HTML file; the rest are in its CSV.
MAX_COLLAPSED_ROWS = 2000


def _table_block(block: Table) -> str:
    """A table; a collapsed one inside ``<details>``, cut at :data:`MAX_COLLAPSED_ROWS`."""
    if not block.details:
        return html_table(block.frame, block.caption)
    frame, caption = block.frame, block.caption
    if len(frame) > MAX_COLLAPSED_ROWS:
        caption = (f"{caption} " if caption else "") + (
            f"First {MAX_COLLAPSED_ROWS} of {len(frame)} rows; all are in `{block.csv}`."
            if block.csv else f"First {MAX_COLLAPSED_ROWS} of {len(frame)} rows.")
        frame = frame.head(MAX_COLLAPSED_ROWS)
    return (f"<details><summary>{inline(block.details)}</summary>"
            f"{html_table(frame, caption)}</details>")


def embed_png(path: Path) -> str:
    """A ``data:`` URI of a PNG file."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def render_html(document: Document, run_dir: Path) -> str:
    """The document as one HTML file; figure paths are relative to ``run_dir``."""
    body = [f"<h1>{inline(document.title)}</h1>"]
    for block in document.blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 2), 6)
            body.append(f"<h{level}>{inline(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{inline(block.text)}</p>")
        elif isinstance(block, Note):
            body.append(f'<div class="note">{inline(block.text)}</div>')
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            body.append(_table_block(block))
        elif isinstance(block, Figure):
            source = Path(run_dir) / block.path
            alt = html.escape(plain_text(block.caption) or block.path.stem)
            caption = f"<figcaption>{inline(block.caption)}</figcaption>" if block.caption else ""
            body.append(f'<figure><img src="{embed_png(source)}" alt="{alt}">{caption}</figure>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(document.title)}</title><style>{STYLE}</style></head>"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")
