"""The Markdown report of a run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from bench.prompts import PROTOCOLS

COUNT_COLUMNS = ("n", "n_excluded", "n_penalised", "n_failed")


def format_estimate(mean: float, low: float, high: float, digits: int = 3) -> str:
    """``0.812 [0.780, 0.840]``; ``-`` when there is no value."""
    if mean is None or math.isnan(mean):
        return "-"
    if math.isnan(low) or math.isnan(high):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


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
        wide[metric] = [format_estimate(r.mean, r.ci_low, r.ci_high) for r in rows.itertuples()]
    for column in COUNT_COLUMNS:
        wide[column] = first[column].astype(int)
    return wide.reset_index()


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def render_markdown(summary: dict[str, Any], aggregates: pd.DataFrame, manifest: dict[str, Any],
                    figures: list[Path]) -> str:
    metrics = list(summary["metric_definitions"])
    lines = [f"# medsam2-bench report: suite `{summary['suite']}`", ""]
    if summary["demo_data"]:
        lines += ["> **Synthetic data.** No dataset root is configured for this suite, so it ran "
                  "on the built-in synthetic demo data. These numbers exercise the pipeline; they "
                  "say nothing about performance on real medical images.", ""]
    stamped = [name for name, fp in summary["adapters"].items() if fp.get("meaningless")]
    if stamped:
        lines += [f"> **Meaningless results for {', '.join(stamped)}:** randomly initialised "
                  "weights (smoke test only).", ""]
    failed = summary["failed_units"]
    read_failures = {name: entry["failures"] for name, entry in manifest["datasets"].items()
                     if entry["failures"]}
    lines += [f"Failed units: **{len(failed)}**; datasets with unreadable cases: "
              f"**{len(read_failures)}**.", ""]

    lines += ["## Protocol", ""]
    params = ", ".join(f"{k} = {v!r}" for k, v in sorted(summary["protocol_params"].items()))
    lines += [f"`{summary['protocol']}` ({params or 'defaults'}); seeds: "
              f"{', '.join(map(str, summary['seeds']))}.", ""]
    spec = PROTOCOLS.get(summary["protocol"])
    if spec is not None:
        lines += [spec.card(summary["protocol_params"]), ""]

    lines += ["## Results", "",
              "Mean [95 % bootstrap CI over patients]. `n` cases scored, `n_excluded` both "
              "empty (excluded from means), `n_penalised` exactly one empty (scored as a "
              "failure, inside `n`), `n_failed` no prediction (adapter error).", ""]
    if not aggregates.empty:
        lines += [markdown_table(results_table(aggregates, metrics)), ""]
    for figure in figures:
        lines += [f"![{figure.stem}]({figure.as_posix()})", ""]

    lines += ["## Metric definitions", ""]
    lines += [f"- `{name}`: {text}" for name, text in summary["metric_definitions"].items()]
    policy = summary["empty_policy"]
    lines += [f"- Empty masks (policy version {policy['version']}): both empty -> "
              f"{'excluded from means' if policy['both_empty'] == 'exclude' else 'scored 1'}; "
              "exactly one empty -> Dice 0, IoU 0, distances = image diagonal in mm.", ""]

    if failed or read_failures:
        lines += ["## Failures", ""]
        lines += [f"- {f['dataset']} / {f['flow']} / {f['model']} / seed {f['seed']}: "
                  f"{f['message']}" for f in failed]
        for name, failures in read_failures.items():
            lines += [f"- {name} (reading): {f['error']}" for f in failures]
        lines.append("")

    lines += ["## Models", ""]
    for name, fingerprint in summary["adapters"].items():
        description = fingerprint.get("description", "")
        lines.append(f"- `{name}`: {description}".rstrip(": "))
    provenance = summary.get("provenance", {})
    versions = provenance.get("versions", {})
    git = provenance.get("git", {})
    lines += ["", "## Provenance", "",
              f"- git commit: `{git.get('commit')}`" + (" (uncommitted changes)"
                                                     if git.get("dirty") else ""),
              "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v), ""]
    return "\n".join(lines)
