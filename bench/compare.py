"""Paired comparisons: two models, or two runs, on the same cases under the same prompts.

A pair is one case, target, seed and metric scored by both sides. Within a
run every model reads the same prompt ledger, so its models pair on every
case; across runs a flow pairs only when both ledgers hold exactly the same
prompts for it (same row hashes), otherwise it is counted as
``n_prompts_differ`` and left out.

Statistics of the differences ``b - a``:

- mean difference with a percentile bootstrap interval that resamples
  patients (all the slices or images of a drawn patient enter together, as
  in :func:`bench.aggregate.cluster_bootstrap_ci`);
- Wilcoxon signed-rank p-value (two-sided, :func:`scipy.stats.wilcoxon`) on
  the per-patient mean differences, so that the test's independence
  assumption holds when one patient contributes several cases. A side with
  a failed or both-empty case leaves that pair out (counted).
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.aggregate import cluster_bootstrap_ci, is_excluded, is_scored, per_case, stable_seed
from bench.errors import ConfigError, unknown_name
from bench.metrics import METRICS
from bench.prompts import ledger
from bench.prompts.cvpr25 import CASE_METRICS as CVPR25_CASE_METRICS
from bench.rundir import RunDir

CASE_KEYS = ["dataset", "flow", "case", "patient", "target", "protocol", "seed", "metric"]
GROUP_KEYS = ["dataset", "target", "protocol", "metric"]
RESULT_COLUMNS = ["dataset", "target", "protocol", "metric", "model_a", "model_b", "mean_a",
                  "mean_b", "difference", "ci_low", "ci_high", "p_wilcoxon", "n_pairs",
                  "n_patients", "n_unpaired", "n_excluded"]


def wilcoxon_p(differences: np.ndarray, patients: Sequence[str]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the per-patient mean differences.

    Returns 1.0 when every patient's mean difference is zero and NaN with
    fewer than two patients.
    """
    differences = np.asarray(differences, dtype=float)
    if differences.size == 0:
        return float("nan")
    per_patient = pd.Series(differences).groupby(np.asarray(patients, dtype=str)).mean()
    if len(per_patient) < 2:
        return float("nan")
    if np.all(per_patient.to_numpy() == 0):
        return 1.0
    with warnings.catch_warnings():
        # scipy warns when ties or zeros force the normal approximation; the p-value is valid.
        warnings.simplefilter("ignore", UserWarning)
        return float(stats.wilcoxon(per_patient.to_numpy()).pvalue)


def paired_statistics(differences: np.ndarray, patients: Sequence[str], *,
                      n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> dict[str, float]:
    """Mean of paired differences, its patient-bootstrap interval and the Wilcoxon p-value.

    Returns
    -------
    dict
        ``difference, ci_low, ci_high, p_wilcoxon, n_pairs, n_patients``.
    """
    differences = np.asarray(differences, dtype=float)
    patients = [str(p) for p in patients]
    if differences.shape[0] != len(patients):
        raise ValueError(f"paired_statistics: {differences.shape[0]} differences but "
                         f"{len(patients)} patient labels")
    low, high = cluster_bootstrap_ci(differences, patients, n_resamples=n_resamples,
                                     confidence=confidence, seed=seed)
    return {
        "difference": float(differences.mean()) if differences.size else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "p_wilcoxon": wilcoxon_p(differences, patients),
        "n_pairs": int(differences.size),
        "n_patients": len(set(patients)),
    }


def pair_rows(table_a: pd.DataFrame, table_b: pd.DataFrame) -> pd.DataFrame:
    """Outer join of two tidy tables on :data:`CASE_KEYS`.

    Columns ``value_a, status_a, value_b, status_b`` and ``paired`` (both
    sides have a score: status ``ok`` or ``penalised``).
    """
    keep = [*CASE_KEYS, "value", "status"]
    merged = pd.merge(_keyed(table_a)[keep], _keyed(table_b)[keep], on=CASE_KEYS, how="outer",
                      suffixes=("_a", "_b"))
    merged["paired"] = is_scored(merged, "_a") & is_scored(merged, "_b")
    return merged


def _keyed(table: pd.DataFrame) -> pd.DataFrame:
    table = per_case(table).copy()
    for column in ("dataset", "flow", "case", "patient", "target", "protocol", "metric"):
        table[column] = table[column].astype(str)
    table["seed"] = table["seed"].astype(int)
    return table


def summarise_pairs(pairs: pd.DataFrame, *, label_a: str, label_b: str,
                    n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per dataset, target, protocol and metric: the statistics of ``b - a`` over pairs.

    ``mean_a`` and ``mean_b`` are the means over the paired cases only, so
    that they differ by exactly ``difference``. ``n_unpaired`` counts cases
    without a score on at least one side (failed there, or missing),
    ``n_excluded`` the cases excluded on either side (both masks empty).
    """
    records = []
    for key, group in pairs.groupby(GROUP_KEYS, sort=True):
        paired = group[group["paired"]]
        excluded = is_excluded(group, "_a") | is_excluded(group, "_b")
        difference = (paired["value_b"] - paired["value_a"]).to_numpy(dtype=float)
        result = paired_statistics(difference, paired["patient"].tolist(),
                                   n_resamples=n_resamples,
                                   seed=stable_seed(seed, (*key, label_a, label_b)))
        records.append({
            **dict(zip(GROUP_KEYS, key, strict=True)), "model_a": label_a, "model_b": label_b,
            "mean_a": float(paired["value_a"].mean()) if len(paired) else float("nan"),
            "mean_b": float(paired["value_b"].mean()) if len(paired) else float("nan"),
            **result,
            "n_unpaired": int((~group["paired"] & ~excluded).sum()),
            "n_excluded": int(excluded.sum()),
        })
    return pd.DataFrame.from_records(records, columns=RESULT_COLUMNS)


def compare_models(table: pd.DataFrame, models: Sequence[str] | None = None, *,
                   metrics: Sequence[str] | None = None, n_resamples: int = 2000,
                   seed: int = 0) -> pd.DataFrame:
    """Every pair of models of one run (same ledger, hence identical prompts).

    ``difference`` is ``model_b - model_a`` with ``model_a`` the earlier of
    the two in ``models`` (default: the run's order of appearance).
    """
    if metrics is not None:
        table = table[table["metric"].isin(metrics)]
    models = list(models) if models is not None else list(dict.fromkeys(table["model"]))
    frames = []
    for model_a, model_b in itertools.combinations(models, 2):
        pairs = pair_rows(table[table["model"] == model_a], table[table["model"] == model_b])
        frames.append(summarise_pairs(pairs, label_a=model_a, label_b=model_b,
                                      n_resamples=n_resamples, seed=seed))
    if not frames:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def ledger_hashes(run_dir: Path) -> dict[tuple[str, str, str, int], frozenset[str]]:
    """The prompt row hashes of each (dataset, flow, protocol, seed) of a run's ledger."""
    groups = ledger.group_rows(RunDir(run_dir).read_ledger())
    return {key: frozenset(row["hash"] for row in rows) for key, rows in groups.items()}


def same_prompt_flows(run_a: Path, run_b: Path) -> set[tuple[str, str, str, int]]:
    """The (dataset, flow, protocol, seed) keys whose prompts are identical in both runs."""
    a, b = ledger_hashes(run_a), ledger_hashes(run_b)
    return {key for key in a.keys() & b.keys() if a[key] == b[key]}


# Interactive runs add "number of clicks to reach a Dice" metrics, e.g. noc90.
_CLICK_METRIC = re.compile(r"noc\d{1,3}")


def check_metric_names(names: Sequence[str], option: str) -> None:
    """Raise ConfigError (with a did-you-mean) for a name that is no metric of any table.

    Besides the mask metrics: interactive runs' ``nocNN`` and cvpr25 runs' case
    metrics (``dice_auc``, ``nsd_auc``, ``dice_final``, ``nsd_final``).
    """
    for name in names:
        if name not in METRICS and name not in CVPR25_CASE_METRICS \
                and not _CLICK_METRIC.fullmatch(name):
            raise unknown_name("metric", name, [*METRICS, *CVPR25_CASE_METRICS, "noc90"],
                               option)


def compare_runs(run_a: Path, run_b: Path, *, model_a: str | None = None,
                 model_b: str | None = None, metrics: Sequence[str] | None = None,
                 n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Side by side means of two runs and paired differences ``B - A`` where cases match.

    By default each model is compared with the model of the same name in the
    other run; ``model_a`` and ``model_b`` compare two differently named
    models instead. A flow pairs only when both ledgers hold the same prompts
    for it.

    Returns
    -------
    DataFrame
        :data:`RESULT_COLUMNS` plus ``model`` (``A vs B`` label when the
        names differ), ``run_mean_a``, ``run_n_a``, ``run_mean_b``,
        ``run_n_b`` (each run's own mean over all its scored cases) and
        ``n_prompts_differ`` (cases left out because their prompts differ).
    """
    if metrics is not None:
        check_metric_names(metrics, "--metrics")
    table_a, table_b = RunDir(run_a).read_metrics(), RunDir(run_b).read_metrics()
    if metrics is not None:
        table_a = table_a[table_a["metric"].isin(metrics)]
        table_b = table_b[table_b["metric"].isin(metrics)]
    if (model_a is None) != (model_b is None):
        raise ConfigError("--model-a and --model-b: give both, or neither")
    if model_a is not None:
        for name, table, run, option in ((model_a, table_a, run_a, "--model-a"),
                                         (model_b, table_b, run_b, "--model-b")):
            if name not in set(table["model"]):
                raise unknown_name("model", name, set(table["model"]), f"{option} ({run})")
        couples = [(model_a, model_b)]
    else:
        couples = [(m, m) for m in dict.fromkeys(table_a["model"]) if m in set(table_b["model"])]
    same = same_prompt_flows(run_a, run_b)
    frames = []
    for name_a, name_b in couples:
        rows_a = table_a[table_a["model"] == name_a]
        rows_b = table_b[table_b["model"] == name_b]
        pairs = pair_rows(rows_a, rows_b)
        flow_keys = list(zip(pairs["dataset"], pairs["flow"], pairs["protocol"],
                             pairs["seed"].astype(int), strict=True))
        matches = np.array([key in same for key in flow_keys], dtype=bool)
        differ = pairs[~matches & pairs["paired"]]
        pairs = pairs.assign(paired=pairs["paired"] & matches)
        label = name_a if name_a == name_b else f"{name_a} vs {name_b}"
        result = summarise_pairs(pairs, label_a=name_a, label_b=name_b,
                                 n_resamples=n_resamples, seed=seed)
        result.insert(0, "model", label)
        result["n_unpaired"] -= _count(differ, result)
        result["n_prompts_differ"] = _count(differ, result)
        for suffix, rows in (("a", rows_a), ("b", rows_b)):
            means = _run_means(rows)
            joined = result[GROUP_KEYS].merge(means, on=GROUP_KEYS, how="left")
            result[f"run_mean_{suffix}"] = joined["mean"].to_numpy()
            result[f"run_n_{suffix}"] = joined["n"].fillna(0).astype(int).to_numpy()
        frames.append(result)
    if not frames:
        raise ConfigError(f"{run_a} and {run_b} have no model in common; pass --model-a and "
                          "--model-b")
    return pd.concat(frames, ignore_index=True)


def _count(rows: pd.DataFrame, result: pd.DataFrame) -> np.ndarray:
    counts = rows.groupby(GROUP_KEYS).size()
    return np.array([int(counts.get(tuple(k), 0)) for k in
                     result[GROUP_KEYS].itertuples(index=False, name=None)], dtype=int)


def _run_means(rows: pd.DataFrame) -> pd.DataFrame:
    valid = _keyed(rows)
    valid = valid[is_scored(valid)]
    return valid.groupby(GROUP_KEYS)["value"].agg(mean="mean", n="size").reset_index()
