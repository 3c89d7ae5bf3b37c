"""The cvpr25-interactive part of a run's summary and report: scores against the step.

A cvpr25-interactive unit writes per-step rows (``step`` 0 = the box, 1-5 =
the clicks; metrics ``dice`` and ``nsd_deepmind``), per-case rows
(``dice_auc``, ``nsd_auc``, ``dice_final``, ``nsd_final``) and, in its unit
record, the model's seconds per step. As the challenge does, a case's value is
the mean over its targets (the challenge's multi-class mean over the labels
present); the curve is the mean over cases with a 95 % bootstrap interval
resampling patients (:func:`bench.aggregate.cluster_bootstrap_ci`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.aggregate import cluster_bootstrap_ci, is_scored, per_case, stable_seed
from bench.rundir import STEP, RunDir

STEP_METRICS = ("dice", "nsd_deepmind")
CASE_METRICS = ("dice_auc", "nsd_auc", "dice_final", "nsd_final")
STEP_TEXT = (
    "cvpr25-interactive: step 0 is the prediction from the 3D box, steps 1-5 those after each "
    "corrective click (one per target and step, accumulated). A case's value is the mean over "
    "its targets (the challenge's multi-class mean); shown: the mean over cases [95 % "
    "bootstrap CI, patients resampled] per dataset and model. NSD is DeepMind's surfel "
    "definition at the run's tolerance, 0 at a step where the case's mean Dice is <= 0.2 (the "
    "challenge's rule). dice_auc / nsd_auc: trapezoid with unit spacing over the 5 click steps "
    "(maximum 4), as the challenge computes them; seconds: the model's wall time per step "
    "(all targets of the volume at once), from the unit records.")


def _case_means(rows: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean over targets per case (and ``keys``), scored rows only."""
    rows = rows[is_scored(rows)]
    group = ["dataset", "model", "seed", "flow", "case", "patient", *keys]
    return rows.groupby(group, sort=True, dropna=False)["value"].mean().reset_index()


def _with_ci(cases: pd.DataFrame, keys: Sequence[str], seed: int = 0) -> pd.DataFrame:
    records = []
    for key, group in cases.groupby(list(keys), sort=True):
        values = group["value"].to_numpy(dtype=float)
        low, high = cluster_bootstrap_ci(values, group["patient"].astype(str).tolist(),
                                         seed=stable_seed(seed, tuple(key)))
        records.append({**dict(zip(keys, key, strict=True)), "mean": float(values.mean()),
                        "ci_low": low, "ci_high": high, "n": int(values.size)})
    return pd.DataFrame.from_records(records, columns=[*keys, "mean", "ci_low", "ci_high", "n"])


def step_curve(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model, metric and step: mean over cases with its 95 % CI; empty if none.

    Columns ``dataset, model, metric, step, mean, ci_low, ci_high, n``.
    """
    if STEP not in table.columns:
        return pd.DataFrame()
    rows = table[pd.to_numeric(table[STEP], errors="coerce").notna()
                 & table["metric"].isin(STEP_METRICS)]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(step=rows[STEP].astype(int))
    cases = _case_means(rows, ["metric", "step"])
    return _with_ci(cases, ["dataset", "model", "metric", "step"])


def case_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, model and metric of :data:`CASE_METRICS`: mean over cases [95 % CI]."""
    rows = per_case(table)
    rows = rows[rows["metric"].isin(CASE_METRICS)]
    if rows.empty:
        return pd.DataFrame()
    return _with_ci(_case_means(rows, ["metric"]), ["dataset", "model", "metric"])


def step_seconds(rundir: RunDir) -> pd.DataFrame:
    """Per dataset, model and step: mean and maximum seconds over the units that ran."""
    records = []
    for path in rundir.unit_paths():
        unit = rundir.read_unit(path)
        for step, seconds in enumerate(unit.step_seconds):
            records.append({"dataset": unit.dataset, "model": unit.model, "step": step,
                            "seconds": float(seconds)})
    if not records:
        return pd.DataFrame()
    frame = pd.DataFrame.from_records(records)
    return (frame.groupby(["dataset", "model", "step"])["seconds"]
            .agg(mean="mean", max="max", n="size").reset_index())


def given(rundir: RunDir) -> dict[str, str]:
    """What each model was given in its sessions (the units' ``cvpr25_given`` note)."""
    seen: dict[str, set[str]] = {}
    for path in rundir.unit_paths():
        unit = rundir.read_unit(path)
        if "cvpr25_given" in unit.notes:
            seen.setdefault(unit.model, set()).add(unit.notes["cvpr25_given"])
    return {model: " | ".join(sorted(texts)) for model, texts in sorted(seen.items())}


def summary_section(table: pd.DataFrame, rundir: RunDir) -> dict[str, Any] | None:
    """The ``steps`` entry of ``summary.json``; None for runs without per-step rows."""
    curve = step_curve(table)
    if curve.empty:
        return None
    seconds = step_seconds(rundir)
    return {"definition": STEP_TEXT,
            "curve": _records(curve),
            "case_scores": _records(case_scores(table)),
            "seconds_per_step": _records(seconds),
            "given": given(rundir)}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records with NaN as None (summary.json is strict JSON)."""
    if frame.empty:
        return []
    clean = frame.astype(object).where(frame.notna(), None)
    return [{key: (value.item() if isinstance(value, np.generic) else value)
             for key, value in row.items()} for row in clean.to_dict(orient="records")]


def step_figure(curve: pd.DataFrame, path: Path, *, synthetic: bool) -> Path | None:
    """Dice and NSD against the step: a panel per metric, a line per dataset and model with
    its 95 % CI shaded."""
    from bench.report.figures import SYNTHETIC_MARK, _pyplot, save_figure

    if curve.empty:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(STEP_METRICS), figsize=(9.0, 3.8), sharey=True)
    for ax, metric in zip(np.atleast_1d(axes), STEP_METRICS, strict=True):
        rows = curve[curve["metric"] == metric]
        for (dataset, model), line in rows.groupby(["dataset", "model"]):
            line = line.sort_values("step")
            ax.plot(line["step"], line["mean"], marker="o", markersize=3,
                    label=f"{dataset} {model}")
            ax.fill_between(line["step"], line["ci_low"], line["ci_high"], alpha=0.15)
        ax.set_xlabel("step (0: box, 1-5: clicks)")
        ax.set_ylabel("Dice" if metric == "dice" else "NSD (DeepMind)")
        ax.set_xticks(range(6))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle("Dice and NSD against the interaction step"
                 + (SYNTHETIC_MARK if synthetic else ""), fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def add_section(doc: Any, ctx: Any) -> None:
    """The report section (after "Dice against the number of clicks"); nothing without steps.

    ``doc`` is the report :class:`~bench.report.document.Document`, ``ctx`` its
    :class:`~bench.report.build.RunContext`.
    """
    from bench.report.document import Bullets, Heading, Paragraph, Table
    from bench.report.tables import as_strings

    curve = step_curve(ctx.table)
    if curve.empty:
        return
    doc.add(Heading("Dice and NSD against the interaction step"), Paragraph(STEP_TEXT))
    models = given(ctx.rundir)
    if models:
        doc.add(Paragraph("What each model was given (its adapter's capabilities decide):"),
                Bullets([f"{model}: {text}" for model, text in models.items()]))
    path = step_figure(curve, ctx.rundir.figures_dir / "dice_nsd_vs_step.png",
                       synthetic=ctx.synthetic)
    if path is not None:
        doc.add(ctx.figure(path, "Mean Dice and NSD after each step, 95 % CI shaded."))
    doc.add(Table(as_strings(curve)))
    scores = case_scores(ctx.table)
    if not scores.empty:
        doc.add(Paragraph("Per case (mean over its targets), then mean over cases:"),
                Table(as_strings(scores)))
    seconds = step_seconds(ctx.rundir)
    if not seconds.empty:
        doc.add(Paragraph("Seconds per step (the model's call for all targets of a volume):"),
                Table(as_strings(seconds)))
