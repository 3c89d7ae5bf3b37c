"""Stage 6 of the data flow: summary JSON, the report (Markdown, HTML, LaTeX) and figures.

``write_report(run_dir, formats=("md", "html", "tex"))`` writes
``summary.json``, ``figures/`` and ``report.md`` / ``report.html`` (one
self-contained file, figures embedded) / ``report.tex`` (booktabs tables).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench import atomic
from bench.aggregate import summarise
from bench.metrics import DEFAULT_POLICY, METRIC_DEFINITIONS

SUMMARY_VERSION = "1"
FORMATS = ("md", "html", "tex")
REPORT_NAMES = {"md": "report.md", "html": "report.html", "tex": "report.tex"}


def load_metrics(run_dir: Path) -> pd.DataFrame:
    """The tidy table of a run (``metrics.csv``), with empty messages as ''."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metrics table; is {run_dir} a finished run?")
    table = pd.read_csv(path, keep_default_na=False, na_values=[""],
                        dtype={"case": str, "patient": str, "flow": str, "message": str,
                               "target": str, "dataset": str, "model": str})
    table["message"] = table["message"].fillna("")
    return table


def build_summary(run_dir: Path, table: pd.DataFrame) -> dict[str, Any]:
    """The summary JSON: aggregates plus what is needed to read them honestly."""
    config = atomic.read_json(Path(run_dir) / "config.json")
    plan = config["plan"]
    aggregates = summarise(table)
    errors = table[table["status"] == "error"]
    failed = (errors[["dataset", "flow", "model", "seed", "message"]]
              .drop_duplicates().to_dict(orient="records"))
    return {
        "summary_version": SUMMARY_VERSION,
        "suite": plan["suite"],
        "protocol": plan["protocol"],
        "protocol_params": plan["protocol_params"],
        "seeds": plan["seeds"],
        "demo_data": plan["demo"],
        "unconfigured": plan.get("unconfigured", []),
        "empty_policy": {"both_empty": plan["empty_policy"], "version": DEFAULT_POLICY.version},
        "metric_definitions": {m: METRIC_DEFINITIONS[m] for m in plan["metrics"]},
        "provenance": config.get("provenance", {}),
        "adapters": config.get("adapters", {}),
        "skipped_models": plan.get("skipped_models", {}),
        "failed_units": failed,
        "aggregates": aggregates.to_dict(orient="records"),
    }


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"md,html"`` -> ``("md", "html")``; ValueError naming ``--format`` otherwise."""
    items = text.split(",") if isinstance(text, str) else list(text)
    chosen = [item.strip().lower() for item in items if item.strip()]
    unknown = [item for item in chosen if item not in FORMATS]
    if unknown or not chosen:
        raise ValueError(f"--format: unknown format(s) {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(chosen))


def _default_cards(notes: list[str]) -> Mapping[str, Any]:
    try:
        from bench.config import load_config

        return load_config().cards
    except Exception as err:  # the gallery then says why it could not re-read the data
        notes.append(f"dataset cards not loaded ({type(err).__name__}: {err}); "
                     "the gallery cannot re-read the data")
        return {}


def write_report(run_dir: Path, formats: str | Sequence[str] = ("md",), *,
                 cards: Mapping[str, Any] | None = None, gallery: bool = True) -> Path:
    """Write ``summary.json``, ``figures/`` and the report in each of ``formats``.

    Parameters
    ----------
    run_dir : Path
        A run directory (``config.json``, ``metrics.csv``, ``manifest.json``,
        ``prompts.jsonl``).
    formats : str or sequence of str
        Any of ``md``, ``html``, ``tex`` (``"md,html"`` also accepted).
    cards : mapping, optional
        Dataset cards by name: kinds and prompt kinds of the datasets, and
        the readers that re-read frames for the gallery (default: those of
        the project's ``bench.toml``).
    gallery : bool
        Draw the qualitative gallery (re-reads the cases it shows).

    Returns
    -------
    Path
        The first report written (``report.md`` when Markdown is asked for).
    """
    from bench.report.build import RunContext, build_document, read_ledger_rows
    from bench.report.html import render_html
    from bench.report.latex import render_latex
    from bench.report.markdown import render_markdown

    run_dir = Path(run_dir)
    chosen = parse_formats(formats)
    table = load_metrics(run_dir)
    summary = build_summary(run_dir, table)
    atomic.write_json(run_dir / "summary.json", summary)
    notes: list[str] = []
    manifest_path = run_dir / "manifest.json"
    context = RunContext(
        run_dir=run_dir, table=table, summary=summary,
        aggregates=pd.DataFrame(summary["aggregates"]),
        manifest=atomic.read_json(manifest_path) if manifest_path.exists() else {"datasets": {}},
        config=atomic.read_json(run_dir / "config.json"),
        ledger=read_ledger_rows(run_dir / "prompts.jsonl"),
        cards=cards if cards is not None else _default_cards(notes),
        notes=notes,
    )
    document = build_document(context, gallery=gallery)
    renderers = {"md": render_markdown, "tex": render_latex,
                 "html": lambda doc: render_html(doc, run_dir)}
    written = []
    for fmt in chosen:
        path = run_dir / REPORT_NAMES[fmt]
        atomic.write_text(path, renderers[fmt](document))
        written.append(path)
    return written[0]
