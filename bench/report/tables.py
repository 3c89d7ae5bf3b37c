"""Paper-style tables built from a run's aggregates (numbers, then display strings).

- :func:`table1`: Dice per target and their average, a row per model (the
  paper's Table 1 on BTCV).
- :func:`table2`: a column group per dataset and target with Dice / IoU /
  HD95 (the paper's Table 2).
- :func:`figure4_data`: mean Dice per dataset, model and prompt kind (the
  paper's Figure 4).
- :func:`results_table`: every dataset, target and model with a column per
  metric and the counts (the report's results and the console's table).
- :func:`dataset_table`: one dataset's estimates with confidence intervals
  and counts.
- :func:`format_comparison`: paired comparisons (:mod:`bench.compare`) as
  display strings.
- :func:`seed_spread`, :func:`click_curve`: several seeds; interactive runs.
- :func:`official_side_by_side`, :func:`unavailable_metrics`: the official
  metrics beside the harness's (official-code suite).
- :func:`prompted_table`: the rows of given (prompted) frames kept with
  ``--score-prompted``, never part of the aggregates.
- :func:`per_case_values`, :func:`display_per_case`: a row per dataset,
  case, target, model and seed with a column per metric (``per_case.csv``
  and the report's collapsed per-case tables).

All builders take the frame of :func:`bench.aggregate.summarise` (or, for
seeds and clicks, the tidy per-case table) and return plain DataFrames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bench.aggregate import is_scored, per_case
from bench.report.published import TABLE1_DATASETS, TABLE1_TARGETS, normalise

AVERAGE = "Ave"
COUNT_COLUMNS = ("n", "n_excluded", "n_penalised", "n_failed")
PERCENT_METRICS = ("dice", "iou", "nsd", "nsd_deepmind", "dice_official", "iou_official")
METRIC_LABELS = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "hd95_max": "HD95-max",
                 "assd": "ASSD", "nsd": "NSD", "nsd_deepmind": "NSD (DeepMind)"}


def model_labels(aggregates: pd.DataFrame) -> pd.Series:
    """Row label per aggregate: the model, plus the protocol when a frame mixes protocols."""
    if aggregates["protocol"].nunique() > 1:
        return aggregates["model"] + " [" + aggregates["protocol"] + "]"
    return aggregates["model"].astype(str)


def target_order(dataset: str, targets: Sequence[str]) -> list[tuple[str, str]]:
    """``[(target, column label)]``: BTCV in the paper's order and abbreviations, else sorted.

    Targets of a BTCV run that the paper's Table 1 does not have come after
    its twelve columns, under their own names.
    """
    targets = sorted(set(targets))
    if normalise(dataset) not in {normalise(d) for d in TABLE1_DATASETS}:
        return [(t, t) for t in targets]
    ordered, used = [], set()
    for label, aliases in TABLE1_TARGETS.items():
        keys = {normalise(a) for a in aliases}
        match = next((t for t in targets if normalise(t) in keys and t not in used), None)
        if match is not None:
            ordered.append((match, label))
            used.add(match)
    return ordered + [(t, t) for t in targets if t not in used]


def table1(aggregates: pd.DataFrame, dataset: str, *, metric: str = "dice",
           models: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean ``metric`` per target of ``dataset`` and their average, a row per model.

    ``Ave`` is the unweighted mean of the row's target columns, as in the
    paper; it is NaN when a target has no value for that model (an average
    over fewer targets would not be comparable).

    ``models`` gives the row order (default: first appearance).

    Returns
    -------
    DataFrame
        Index: model; columns: the target labels (see :func:`target_order`)
        and ``Ave``; float values.
    """
    rows = aggregates[(aggregates["dataset"] == dataset) & (aggregates["metric"] == metric)]
    if rows.empty:
        return pd.DataFrame(columns=[AVERAGE], dtype=float)
    rows = rows.assign(row=model_labels(rows))
    order = target_order(dataset, rows["target"].unique())
    wide = rows.pivot_table(index="row", columns="target", values="mean", aggfunc="first",
                            dropna=False)
    wide = wide.reindex(columns=[t for t, _ in order])
    wide.columns = [label for _, label in order]
    # mean(skipna=False): one missing organ makes the average missing, not optimistic.
    wide[AVERAGE] = wide.mean(axis=1, skipna=False)
    wide.index.name = "model"
    return wide.reindex(sorted(wide.index, key=_model_order(rows, models)))


def table2(aggregates: pd.DataFrame, *, metrics: Sequence[str] = ("dice", "iou", "hd95"),
           datasets: Sequence[str] | None = None,
           models: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean of each metric per dataset and target (column groups), a row per model.

    Returns
    -------
    DataFrame
        Index: model; two-level columns ``(group, metric)`` where the group is
        ``dataset`` (or ``dataset/target`` for a dataset with several
        targets); float values in harness units (fractions and mm).
    """
    rows = aggregates[aggregates["metric"].isin(metrics)]
    if datasets is not None:
        rows = rows[rows["dataset"].isin(datasets)]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(row=model_labels(rows))
    n_targets = rows.groupby("dataset")["target"].nunique()
    rows = rows.assign(group=[d if n_targets[d] == 1 else f"{d}/{t}"
                              for d, t in zip(rows["dataset"], rows["target"], strict=True)])
    columns = [(group, metric) for group in sorted(rows["group"].unique()) for metric in metrics
               if ((rows["group"] == group) & (rows["metric"] == metric)).any()]
    wide = rows.pivot_table(index="row", columns=["group", "metric"], values="mean",
                            aggfunc="first", dropna=False)
    wide = wide.reindex(columns=pd.MultiIndex.from_tuples(columns))
    wide.index.name = "model"
    return wide.reindex(sorted(wide.index, key=_model_order(rows, models)))


def _model_order(rows: pd.DataFrame, models: Sequence[str] | None):
    # Rows in the order of ``models`` (the run's own order), then by first appearance.
    order = {name: i for i, name in enumerate(models or [])}
    first = {label: i for i, label in enumerate(dict.fromkeys(rows["row"]))}
    model_of = dict(zip(rows["row"], rows["model"], strict=True))
    return lambda label: (order.get(model_of.get(label), len(order)), first.get(label, 0))


def format_number(value: float, digits: int, scale: float = 1.0) -> str:
    """``value * scale`` with ``digits`` decimals; ``-`` for NaN (as the paper prints)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:.{digits}f}"


def display_table1(wide: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Table 1 as display strings (fractions, 3 decimals like the paper)."""
    shown = wide.map(lambda v: format_number(v, digits))
    return shown.reset_index()


def display_table2(wide: pd.DataFrame) -> pd.DataFrame:
    """Table 2 as display strings: Dice/IoU/NSD in percent (1 decimal), distances 2 decimals."""
    data: dict[tuple[str, str], list[str]] = {("", "model"): [str(i) for i in wide.index]}
    for group, metric in wide.columns:
        percent = metric in PERCENT_METRICS
        label = METRIC_LABELS.get(metric, metric) + (" %" if percent else "")
        data[(group, label)] = [format_number(v, 1 if percent else 2, 100.0 if percent else 1.0)
                                for v in wide[(group, metric)]]
    shown = pd.DataFrame({i: values for i, values in enumerate(data.values())})
    shown.columns = pd.MultiIndex.from_tuples(list(data))
    return shown


def chunk_groups(wide: pd.DataFrame, per_table: int = 5) -> list[pd.DataFrame]:
    """Split a Table 2 frame into pieces of at most ``per_table`` column groups."""
    if wide.empty:
        return []
    groups = list(dict.fromkeys(c[0] for c in wide.columns))
    return [wide[[c for c in wide.columns if c[0] in groups[i:i + per_table]]]
            for i in range(0, len(groups), per_table)]


def format_estimate(mean: float, low: float, high: float, digits: int = 3) -> str:
    """``0.812 [0.780, 0.840]``; ``-`` when there is no value."""
    if mean is None or math.isnan(mean):
        return "-"
    if math.isnan(low) or math.isnan(high):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def results_table(aggregates: pd.DataFrame, metrics: Sequence[str], *,
                  intervals: bool = True) -> pd.DataFrame:
    """Wide table: one row per dataset, target and model; a column per metric plus counts.

    Cells are display strings: ``mean [95 % CI]`` (``intervals``; no interval
    for one patient, when the bootstrap has nothing to resample) or the mean
    alone, 3 decimals, ``-`` when missing. Counts (:data:`COUNT_COLUMNS`) are
    those of the first metric (they are the same for every metric of a case,
    except that a failed metric computation is counted per metric).
    """
    keys = ["dataset", "target", "model"]
    first = aggregates[aggregates["metric"] == metrics[0]].set_index(keys)
    wide = pd.DataFrame(index=first.index)
    for metric in metrics:
        rows = aggregates[aggregates["metric"] == metric].set_index(keys).reindex(first.index)
        wide[metric] = [format_estimate(r.mean, r.ci_low, r.ci_high)
                        if intervals and r.n_patients >= 2 else
                        format_estimate(r.mean, math.nan, math.nan)
                        for r in rows.itertuples()]
    for column in COUNT_COLUMNS:
        wide[column] = first[column].astype(int)
    return wide.reset_index()


def dataset_table(aggregates: pd.DataFrame, dataset: str, metrics: Sequence[str]) -> pd.DataFrame:
    """One dataset: a row per target and model, mean [95 % CI] per metric and the counts.

    Counts (``n``, ``n_excluded``, ``n_penalised``, ``n_failed``,
    ``patients``) are those of the first metric.
    """
    rows = aggregates[aggregates["dataset"] == dataset]
    first = rows[rows["metric"] == metrics[0]]
    records = []
    for key in first.itertuples(index=False):
        record = {"target": key.target, "model": key.model}
        for metric in metrics:
            match = rows[(rows["target"] == key.target) & (rows["model"] == key.model)
                         & (rows["protocol"] == key.protocol) & (rows["metric"] == metric)]
            digits = 3 if metric in PERCENT_METRICS else 2
            if match.empty:
                text = "-"
            elif int(match["n_patients"].iloc[0]) < 2:
                # One patient: the bootstrap has nothing to resample; no interval.
                text = format_estimate(match["mean"].iloc[0], math.nan, math.nan, digits)
                text += " (1 patient, no CI)" if text != "-" else ""
            else:
                text = format_estimate(match["mean"].iloc[0], match["ci_low"].iloc[0],
                                       match["ci_high"].iloc[0], digits)
            record[METRIC_LABELS.get(metric, metric)] = text
        record.update(n=int(key.n), n_excluded=int(key.n_excluded),
                      n_penalised=int(key.n_penalised), n_failed=int(key.n_failed),
                      patients=int(key.n_patients))
        records.append(record)
    return pd.DataFrame.from_records(records)


def figure4_data(aggregates: pd.DataFrame, kinds: Mapping[str, str], *,
                 metric: str = "dice") -> pd.DataFrame:
    """Mean ``metric`` with its interval per prompt kind, dataset (and target) and model.

    Columns: ``kind, label, dataset, target, model, mean, ci_low, ci_high``;
    ``label`` is the dataset, or ``dataset/target`` for datasets with several
    targets. Datasets missing from ``kinds`` get the kind ``"unknown"``.
    """
    rows = aggregates[aggregates["metric"] == metric]
    columns = ["kind", "label", "dataset", "target", "model", "mean", "ci_low", "ci_high"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    n_targets = rows.groupby("dataset")["target"].nunique()
    frame = rows.assign(
        kind=[kinds.get(d, "unknown") for d in rows["dataset"]],
        label=[d if n_targets[d] == 1 else f"{d}/{t}"
               for d, t in zip(rows["dataset"], rows["target"], strict=True)],
        model=model_labels(rows),
    )
    return frame[columns].sort_values(["kind", "label"], kind="stable").reset_index(drop=True)


def seed_spread(table: pd.DataFrame, *, metric: str = "dice") -> pd.DataFrame:
    """Mean per seed, their standard deviation and range, per dataset, target and model.

    Empty when the table has a single seed.
    """
    rows = table[(table["metric"] == metric) & is_scored(table)]
    seeds = sorted(rows["seed"].unique())
    if len(seeds) < 2:
        return pd.DataFrame()
    per_seed = (rows.groupby(["dataset", "target", "model", "seed"])["value"].mean()
                .unstack("seed").reindex(columns=seeds))
    result = per_seed.copy()
    result.columns = [f"seed {s}" for s in seeds]
    result["std across seeds"] = per_seed.std(axis=1, ddof=1)
    result["range"] = per_seed.max(axis=1) - per_seed.min(axis=1)
    return result.reset_index()


def click_curve(table: pd.DataFrame, *, metric: str = "dice") -> pd.DataFrame:
    """Mean ``metric`` after each click per dataset, target and model (interactive runs).

    Needs a ``click`` column in the tidy table (the number of clicks given
    when the row was scored); empty otherwise.
    """
    if "click" not in table.columns:
        return pd.DataFrame()
    rows = table[(table["metric"] == metric) & is_scored(table)]
    rows = rows[pd.to_numeric(rows["click"], errors="coerce").notna()]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(click=rows["click"].astype(int))
    curve = rows.groupby(["dataset", "target", "model", "click"])["value"].agg(["mean", "count"])
    return curve.reset_index()


def as_strings(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Floats formatted with ``digits`` decimals (``-`` for NaN); other cells as text."""
    def cell(value: object) -> str:
        if isinstance(value, float | np.floating):
            return format_number(float(value), digits)
        return str(value)

    return frame.map(cell)


def unit_costs(units: pd.DataFrame, manifest: Mapping[str, Any] | None = None
               ) -> pd.DataFrame:
    """Cost per model from ``units.csv``: units, wall time, peak memory, cache and retries.

    ``peak_rss_mb`` is the worker process's high-water mark (it includes the
    model's weights), so the column shows the largest over the model's units.
    With the run's ``manifest`` (frames per flow), also seconds per frame:
    the model's time over the frames of its units that ran (not cache hits).
    """
    if units.empty:
        return pd.DataFrame()
    grouped = units.groupby("model", sort=True)
    table = pd.DataFrame({
        "units": grouped.size(),
        "failed": grouped["status"].apply(lambda s: int((s == "error").sum())),
        "seconds total": grouped["seconds"].sum().round(1),
        "seconds per unit": grouped["seconds"].mean().round(2),
    })
    if manifest is not None:
        table["seconds per frame"] = _seconds_per_frame(units, manifest)
    table["peak RSS MB"] = grouped["peak_rss_mb"].max().round(0)
    table["cache hits"] = grouped["cache"].apply(lambda s: int((s == "hit").sum()))
    table["retried"] = grouped["attempts"].apply(lambda s: int((s > 1).sum()))
    return table.reset_index()


def cost_strings(costs: pd.DataFrame) -> pd.DataFrame:
    """:func:`unit_costs` for display: numbers as computed, ``n/a`` where none is known."""
    return costs.astype(str).replace("nan", "n/a")


def _seconds_per_frame(units: pd.DataFrame, manifest: Mapping[str, Any]) -> pd.Series:
    frames = {(name, flow["id"]): flow["frames"]
              for name, entry in manifest.get("datasets", {}).items()
              for flow in entry.get("flows", [])}
    counted = units.assign(frames=[frames.get((d, f)) for d, f in
                                   zip(units["dataset"], units["flow"], strict=True)])
    counted = counted[(counted["cache"] != "hit") & (counted["status"] == "ok")
                      & counted["frames"].notna()]
    grouped = counted.groupby("model")
    return (grouped["seconds"].sum() / grouped["frames"].sum()).round(4)


def format_comparison(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A comparison (:mod:`bench.compare`) as display strings.

    ``difference [low, high]`` and the p-value; means with ``digits``
    decimals; counts as integers.
    """
    shown = pd.DataFrame()
    for column in ("model", "dataset", "target", "metric", "model_a", "model_b"):
        if column in frame:
            shown[column] = frame[column].astype(str)
    for column in ("run_mean_a", "run_mean_b", "mean_a", "mean_b"):
        if column in frame:
            shown[column] = [_fmt(v, digits) for v in frame[column]]
    shown["b - a [95 % CI]"] = [format_estimate(r.difference, r.ci_low, r.ci_high, digits)
                                for r in frame.itertuples()]
    shown["p (Wilcoxon)"] = [_fmt_p(p) for p in frame["p_wilcoxon"]]
    for column in ("n_pairs", "n_patients", "n_unpaired", "n_excluded", "n_prompts_differ"):
        if column in frame:
            shown[column] = frame[column].astype(int).astype(str)
    return shown


def _fmt(value: Any, digits: int) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"


def _fmt_p(value: Any) -> str:
    if value is None or pd.isna(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


#: Harness metric -> the official code's metric of the same name (bench.official_metrics).
OFFICIAL_PAIRS = {"dice": "dice_official", "iou": "iou_official"}


def official_side_by_side(aggregates: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Per dataset, target and model: each harness metric beside its official counterpart.

    Columns ``dataset, target, model`` then, per pair with an official value
    anywhere, ``dice``, ``dice_official`` and ``official - harness`` (display
    strings); ``n`` and ``n_official`` (cases with a value). Only rows with
    an official value: a model without logits has none, and its row would be
    empty (:func:`unavailable_metrics` says why). Empty when no official value
    exists.
    """
    if aggregates.empty:
        return pd.DataFrame()
    valued = set(aggregates.loc[aggregates["mean"].notna(), "metric"])
    pairs = {a: b for a, b in OFFICIAL_PAIRS.items() if b in valued}
    if not pairs:
        return pd.DataFrame()
    keys = ["dataset", "target", "model"]
    means = aggregates.pivot_table(index=keys, columns="metric", values="mean",
                                   aggfunc="first", dropna=False)
    means = means[means[list(pairs.values())].notna().any(axis=1)]
    counts = aggregates.pivot_table(index=keys, columns="metric", values="n",
                                    aggfunc="first", dropna=False).reindex(means.index)
    shown = pd.DataFrame(index=means.index)
    for harness, official in pairs.items():
        a = means.get(harness, pd.Series(np.nan, index=means.index))
        b = means.get(official, pd.Series(np.nan, index=means.index))
        shown[harness] = [_fmt(v, digits) for v in a]
        shown[official] = [_fmt(v, digits) for v in b]
        shown[f"{official} - {harness}"] = [_fmt(v, digits) for v in b - a]
    first, first_official = next(iter(pairs.items()))
    shown["n"] = [_fmt_count(v) for v in counts.get(first, pd.Series(np.nan, index=means.index))]
    shown["n_official"] = [_fmt_count(v) for v in counts.get(
        first_official, pd.Series(np.nan, index=means.index))]
    return shown.reset_index()


def unavailable_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Models and metrics reported as not available (status ``unavailable``), with the reason."""
    rows = table[table["status"] == "unavailable"]
    if rows.empty:
        return pd.DataFrame(columns=["model", "metric", "reason"])
    return (rows.groupby(["model", "metric"], sort=True)["message"].first()
            .rename("reason").reset_index())


def prompted_table(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Mean value of the prompted rows (``--score-prompted``) per dataset, target, model, metric.

    These frames were given by the prompt, not predicted; they are kept out
    of every aggregate and shown only here. Columns ``dataset, target, model,
    metric, mean, n``.
    """
    rows = table[(table["status"] == "prompted") & table["value"].notna()]
    if rows.empty:
        return pd.DataFrame()
    grouped = rows.groupby(["dataset", "target", "model", "metric"], sort=True)["value"]
    frame = grouped.agg(["mean", "count"]).reset_index().rename(columns={"count": "n"})
    frame["mean"] = [_fmt(v, digits) for v in frame["mean"]]
    frame["n"] = frame["n"].astype(int).astype(str)
    return frame


def _fmt_count(value: Any) -> str:
    return "-" if value is None or pd.isna(value) else str(int(value))


TEMPLATE_COLUMNS = ["dataset", "flow", "seed", "target", "frame", "template"]


def template_table(ledger: Sequence[Mapping[str, Any]],
                   manifest: Mapping[str, Any]) -> pd.DataFrame:
    """The template of each one-prompt flow: which frame, and which case, was prompted.

    One row per (dataset, flow, seed, target) of the ledger's ``one-prompt``
    rows; ``template`` names the case of an image flow's prompted frame, or
    ``CASE slice N`` for a volume (from the manifest's case ids).
    """
    flows = {(name, flow["id"]): flow for name, entry in manifest.get("datasets", {}).items()
             for flow in entry.get("flows", [])}
    records = {}
    for row in ledger:
        if row["protocol"] != "one-prompt" or row["kind"] == "support":  # k_shot support sets
            continue
        key = (row["dataset"], row["case"], row["seed"], row["target"])
        flow = flows.get((row["dataset"], row["case"]), {})
        cases = flow.get("case_ids", [])
        frame = int(row["frame"])
        if len(cases) > 1 and frame < len(cases):
            template = cases[frame]
        else:
            template = f"{cases[0] if cases else row['case']} slice {frame}"
        records[key] = [*key, frame, template]
    table = pd.DataFrame([records[key] for key in sorted(records, key=str)],
                         columns=TEMPLATE_COLUMNS)
    return table


PER_CASE_KEYS = ["dataset", "flow", "case", "patient", "target", "model", "protocol", "seed"]


def per_case_values(table: pd.DataFrame, metrics: Sequence[str] = ()) -> pd.DataFrame:
    """One row per dataset, case, target, model, protocol and seed; a column per metric.

    Parameters
    ----------
    table : DataFrame
        The run's tidy table (``metrics.csv``). Per-click rows of interactive
        runs and given (prompted) frames are left out, as in the aggregates.
    metrics : sequence of str
        Column order of the metrics (the run's); metrics of the table not
        named come after them.

    Returns
    -------
    DataFrame
        :data:`PER_CASE_KEYS`, the metric values (NaN where there is none:
        a failed unit, an excluded both-empty case, an unavailable metric),
        ``status`` (the case's distinct statuses joined with ``;``) and
        ``message`` (its first non-empty message). Rows grouped by dataset,
        target, model, protocol and seed, cases in the order of ``table``.
    """
    rows = per_case(table)
    present = list(dict.fromkeys(rows["metric"]))
    columns = [m for m in metrics if m in present] + [m for m in present if m not in metrics]
    if rows.empty:
        return pd.DataFrame(columns=[*PER_CASE_KEYS, *columns, "status", "message"])
    keys = PER_CASE_KEYS
    frame = rows.drop_duplicates(keys)[keys].reset_index(drop=True)
    values = (rows.drop_duplicates([*keys, "metric"]).set_index([*keys, "metric"])["value"]
              .unstack("metric").reindex(columns=columns).reset_index())
    values.columns.name = None
    statuses = (rows.drop_duplicates([*keys, "status"]).sort_values("status", kind="stable")
                .groupby(keys, sort=False, dropna=False)["status"].agg(";".join)
                .rename("status").reset_index())
    texts = rows[rows["message"].fillna("").astype(str) != ""]
    messages = (texts.drop_duplicates(keys)[[*keys, "message"]] if not texts.empty
                else pd.DataFrame(columns=[*keys, "message"]))
    frame = (frame.merge(values, on=keys, how="left").merge(statuses, on=keys, how="left")
             .merge(messages, on=keys, how="left"))
    frame["message"] = frame["message"].fillna("")
    order = ["dataset", "target", "model", "protocol", "seed"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def display_per_case(values: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The per-case rows of ``dataset`` as display strings (fractions 3 decimals, distances
    2, ``-`` where there is no value); the protocol only when the run mixes several."""
    rows = values[values["dataset"] == dataset]
    drop = ["dataset", "message"] + ([] if rows["protocol"].nunique() > 1 else ["protocol"])
    shown = rows.drop(columns=drop).reset_index(drop=True)
    metric_columns = [c for c in shown.columns if c not in (*PER_CASE_KEYS, "status")]
    for column in metric_columns:
        digits = 3 if column in PERCENT_METRICS else 2
        shown[column] = [format_number(float(v), digits) for v in shown[column]]
    return shown.astype(str)
