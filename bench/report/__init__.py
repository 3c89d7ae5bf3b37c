"""Stage 6 of the data flow: summary JSON, Markdown report and figures of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench import io
from bench.aggregate import summarise
from bench.metrics import DEFAULT_POLICY, METRIC_DEFINITIONS
from bench.report.figures import dice_bars
from bench.report.markdown import render_markdown

SUMMARY_VERSION = "1"


def load_metrics(run_dir: Path) -> pd.DataFrame:
    """The tidy table of a run (``metrics.csv``), with empty messages as ''."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metrics table; is {run_dir} a finished run?")
    table = pd.read_csv(path, keep_default_na=False, na_values=[""],
                        dtype={"case": str, "patient": str, "flow": str, "message": str})
    table["message"] = table["message"].fillna("")
    return table


def build_summary(run_dir: Path, table: pd.DataFrame) -> dict[str, Any]:
    """The summary JSON: aggregates plus what is needed to read them honestly."""
    config = io.read_json(Path(run_dir) / "config.json")
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
        "empty_policy": {"both_empty": plan["empty_policy"], "version": DEFAULT_POLICY.version},
        "metric_definitions": {m: METRIC_DEFINITIONS[m] for m in plan["metrics"]},
        "provenance": config.get("provenance", {}),
        "adapters": config.get("adapters", {}),
        "failed_units": failed,
        "aggregates": aggregates.to_dict(orient="records"),
    }


def write_report(run_dir: Path) -> Path:
    """Write ``summary.json``, ``figures/`` and ``report.md``; return the report path."""
    run_dir = Path(run_dir)
    table = load_metrics(run_dir)
    summary = build_summary(run_dir, table)
    io.write_json(run_dir / "summary.json", summary)
    aggregates = pd.DataFrame(summary["aggregates"])
    figures = dice_bars(aggregates, run_dir / "figures", synthetic=summary["demo_data"])
    manifest = io.read_json(run_dir / "manifest.json")
    text = render_markdown(summary, aggregates, manifest,
                           [p.relative_to(run_dir) for p in figures])
    path = run_dir / "report.md"
    io.write_text(path, text)
    return path
