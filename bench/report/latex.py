"""The LaTeX report: a standalone document whose tables use booktabs.

Figures are included from the run's ``figures/`` folder with ``graphicx``.
Every table sits in a ``\resizebox`` that shrinks it to the text width when it
is wider (never enlarges it); collapsed tables (per-case values) name their CSV
instead. ``pdflatex report.tex`` in the run directory builds it.
"""

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
    spans,
    split_inline,
)

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
            "`": r"\textasciigrave{}", "_": r"\_", "{": r"\{", "}": r"\}",
            "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
            ">": r"\textgreater{}"}
_UNICODE = {"±": r"$\pm$", "≤": r"$\leq$", "≥": r"$\geq$", "−": "-", "∩": r"$\cap$",
            "∪": r"$\cup$", "×": r"$\times$", "–": "--", "—": "---", "…": r"\ldots{}"}


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (and a few symbols mapped)."""
    return "".join(_SPECIAL.get(c, _UNICODE.get(c, c)) for c in str(text))


def inline(text: str) -> str:
    """LaTeX of a text with ``code`` (``\\texttt``) and ``**bold**`` (code inside bold too)."""
    out = []
    for kind, piece in split_inline(text):
        out.append(rf"\texttt{{{escape(piece)}}}" if kind == "code" else
                   rf"\textbf{{{inline(piece)}}}" if kind == "bold" else escape(piece))
    return "".join(out)


#: Rows of one LaTeX table; a longer table is split into parts (a float cannot break
#: across pages, and a page holds about this many rows of \small text).
MAX_ROWS = 40


def latex_table(frame: pd.DataFrame, caption: str = "", *, wide: bool = False) -> str:
    """A booktabs ``table`` (``\\toprule``, ``\\midrule``, ``\\bottomrule``; ``\\cmidrule``
    under the groups of two-level columns), shrunk to the text width when wider and
    split into parts of :data:`MAX_ROWS` rows when taller than a page.

    ``wide`` is kept for callers; every table gets the shrink-only ``\\resizebox``
    (a narrow table keeps its size), since a few long cells overflow as surely as
    many columns.
    """
    if len(frame) <= MAX_ROWS:
        return _one_table(frame, caption)
    parts = range(0, len(frame), MAX_ROWS)
    count = len(parts)
    return "\n".join(
        _one_table(frame.iloc[start:start + MAX_ROWS],
                   (f"{caption} " if caption else "") + f"(part {i + 1} of {count})")
        for i, start in enumerate(parts))


def _one_table(frame: pd.DataFrame, caption: str) -> str:
    levels = header_levels(frame)
    n = len(frame.columns)
    # [H] (float package): tables stay under their headings, as in the other formats.
    lines = [r"\begin{table}[H]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{inline(caption)}}}")
    # Shrink to the text width when wider; never enlarge a narrow table.
    lines.append(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%")
    lines += [rf"\begin{{tabular}}{{l{'r' * (n - 1)}}}", r"\toprule"]
    if levels is not None:
        groups, names = levels
        cells, rules, column = [], [], 1
        for label, width in spans(groups):
            cells.append(rf"\multicolumn{{{width}}}{{c}}{{{escape(label)}}}" if label else
                         " & ".join([""] * width))
            if label:
                rules.append(rf"\cmidrule(lr){{{column}-{column + width - 1}}}")
            column += width
        lines.append(" & ".join(cells) + r" \\")
        if rules:
            lines.append(" ".join(rules))
    else:
        names = [str(c) for c in frame.columns]
    lines += [" & ".join(escape(c) for c in names) + r" \\", r"\midrule"]
    for row in frame.itertuples(index=False):
        lines.append(" & ".join(escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", "}"]
    lines.append(r"\end{table}")
    return "\n".join(lines)


def render_latex(document: Document) -> str:
    """The document as a standalone LaTeX file (booktabs, graphicx)."""
    body = []
    commands = {1: "section", 2: "section", 3: "subsection", 4: "subsubsection"}
    for block in document.blocks:
        if isinstance(block, Heading):
            body.append(rf"\{commands.get(block.level, 'paragraph')}*{{{inline(block.text)}}}")
        elif isinstance(block, Paragraph):
            body.append(inline(block.text) + "\n")
        elif isinstance(block, Note):
            body.append(r"\noindent\fbox{\parbox{\dimexpr\linewidth-2\fboxsep-2\fboxrule}{"
                        + inline(block.text) + "}}\n")
        elif isinstance(block, Bullets):
            body += [r"\begin{itemize}", *(rf"\item {inline(i)}" for i in block.items),
                     r"\end{itemize}"]
        elif isinstance(block, Table) and block.csv:
            label = block.details or block.caption or "Table"
            body.append(f"{inline(label)}: {inline(f'`{block.csv}`')} in the run "
                        "directory.\n")
        elif isinstance(block, Table):
            body.append(latex_table(block.frame, block.caption, wide=block.wide))
        elif isinstance(block, Figure):
            body += [r"\begin{figure}[H]", r"\centering",
                     rf"\includegraphics[width=\linewidth]{{{block.path.as_posix()}}}"]
            if block.caption:
                body.append(rf"\caption{{{inline(block.caption)}}}")
            body.append(r"\end{figure}")
    preamble = [r"\documentclass[10pt]{article}", r"\usepackage[margin=2cm]{geometry}",
                r"\usepackage[T1]{fontenc}", r"\usepackage[utf8]{inputenc}",
                r"\usepackage{booktabs}", r"\usepackage{graphicx}", r"\usepackage{float}",
                rf"\title{{{inline(document.title)}}}", r"\author{medsam2-bench}", r"\date{}",
                r"\begin{document}", r"\maketitle"]
    return "\n".join([*preamble, *body, r"\end{document}", ""])
