"""Stage 6 of the data flow: summary JSON, the report (Markdown, HTML, LaTeX) and figures.

``write_report(run_dir, formats=("md", "html", "tex"))`` writes
``summary.json``, ``per_case.csv`` (a row per dataset, case, target, model and
seed, a column per metric), ``figures/`` and ``report.md`` / ``report.html``
(one self-contained file, figures embedded) / ``report.tex`` (booktabs tables).
Everything comes from the run directory (:class:`bench.rundir.RunDir`), the
dataset cards included; never from the ``bench.toml`` of the working directory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from bench import atomic
from bench.aggregate import summarise
from bench.errors import ConfigError
from bench.metrics import DEFAULT_POLICY, METRIC_DEFINITIONS
from bench.rundir import REPORT_NAMES, RunDir, random_weight_models

SUMMARY_VERSION = "1"
FORMATS = tuple(REPORT_NAMES)


def build_summary(config: dict[str, Any], table: pd.DataFrame) -> dict[str, Any]:
    """The summary JSON: aggregates plus what is needed to read them honestly.

    ``config`` is the run's ``config.json``, ``table`` its tidy table.
    """
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
        # Models run with random initial weights (--random-weights): their numbers mean nothing.
        "random_weights": random_weight_models(config),
        "skipped_models": plan.get("skipped_models", {}),
        "failed_units": failed,
        "aggregates": aggregates.to_dict(orient="records"),
    }


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"md,html"`` -> ``("md", "html")``; ConfigError naming ``--format`` otherwise."""
    items = text.split(",") if isinstance(text, str) else list(text)
    chosen = [item.strip().lower() for item in items if item.strip()]
    unknown = [item for item in chosen if item not in FORMATS]
    if unknown or not chosen:
        raise ConfigError(f"--format: unknown format(s) {', '.join(unknown) or '(none)'}; "
                          f"choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(chosen))


def write_report(run_dir: Path, formats: str | Sequence[str] = ("md",), *,
                 gallery: bool = True, figure_cache: Path | None = None) -> Path:
    """Write ``summary.json``, ``per_case.csv``, ``figures/`` and the report in each of
    ``formats``.

    Parameters
    ----------
    run_dir : Path
        A run directory (``config.json``, ``metrics.csv``, ``manifest.json``,
        ``prompts.jsonl``).
    formats : str or sequence of str
        Any of ``md``, ``html``, ``tex`` (``"md,html"`` also accepted).
    gallery : bool
        Draw the qualitative gallery (re-reads the cases it shows through the
        dataset cards recorded in ``config.json``).
    figure_cache : Path, optional
        A cache folder (``bench run`` passes the prediction cache's): figures
        drawn before from the same content are copied from
        ``FOLDER/figures/`` instead of drawn (:mod:`bench.report.figure_cache`).

    Returns
    -------
    Path
        The first report written (``report.md`` when Markdown is asked for).
    """
    # Imported here: the builder needs scipy and matplotlib, which the console's use of
    # bench.report.tables (every `bench` command) should not load.
    from bench.report import tables
    from bench.report.build import PER_CASE_FILE, RunContext, build_document
    from bench.report.figure_cache import figure_cache as figures_from
    from bench.report.html import render_html
    from bench.report.latex import render_latex
    from bench.report.markdown import render_markdown

    rundir = RunDir(run_dir)
    chosen = parse_formats(formats)
    table = rundir.read_metrics()
    config = rundir.read_config()
    summary = build_summary(config, table)
    from bench.report.steps import summary_section  # cvpr25-interactive: scores per step
    steps = summary_section(table, rundir)
    if steps is not None:
        summary["steps"] = steps
    rundir.write_summary(summary)
    metrics = list(summary["metric_definitions"]) or sorted(table["metric"].unique())
    per_case = tables.per_case_values(table, metrics)
    # Stamped like metrics.csv: a row of a model run with --random-weights is meaningless.
    stamped = per_case.assign(
        random_weights=per_case["model"].isin(summary.get("random_weights") or ()))
    atomic.write_text(rundir.path / PER_CASE_FILE,
                      stamped.to_csv(index=False, float_format="%.10g"))
    context = RunContext(
        rundir=rundir, table=table, summary=summary,
        aggregates=pd.DataFrame(summary["aggregates"]),
        manifest=rundir.read_manifest() if rundir.manifest_path.exists() else {"datasets": {}},
        config=config,
        ledger=rundir.read_ledger() if rundir.ledger_path.exists() else [],
        cards=rundir.read_cards(),
        per_case=per_case,
    )
    with figures_from(figure_cache):
        document = build_document(context, gallery=gallery)
    renderers = {"md": render_markdown, "tex": render_latex,
                 "html": lambda doc: render_html(doc, rundir.path)}
    return [rundir.write_report(fmt, renderers[fmt](document)) for fmt in chosen][0]
