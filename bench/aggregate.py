"""Stage 5 of the data flow: summary tables with counts and confidence intervals.

Every aggregate states how many cases it rests on (``n``), how many were
excluded because prediction and reference were both empty (``n_excluded``),
how many were penalised because exactly one was empty (``n_penalised``, these
are inside ``n``) and how many failed (``n_failed``, no score at all).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

GROUP = ["dataset", "target", "model", "protocol", "metric"]


def is_scored(table: pd.DataFrame, suffix: str = "") -> pd.Series:
    """Rows that enter means: a value exists and the unit did not fail.

    Penalised cases (exactly one mask empty) have a value and count; both-empty
    cases have a value only under a policy that scores them (the official
    code's empty/empty = 1), so under the default policy they drop out here.
    Rows of prompted frames (status ``prompted``, ``--score-prompted``: their
    answer was given) never enter means.
    """
    status = table[f"status{suffix}"]
    return (status != "error") & (status != "prompted") & table[f"value{suffix}"].notna()


def per_case(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that describe whole cases: without the per-click rows of interactive runs,
    the per-step rows of cvpr25-interactive runs (``step``) and the rows of given frames
    (status ``prompted``, ``--score-prompted``)."""
    table = table[table["status"] != "prompted"]
    if "step" in table.columns:
        table = table[pd.to_numeric(table["step"], errors="coerce").isna()]
    if "click" not in table.columns:
        return table
    return table[pd.to_numeric(table["click"], errors="coerce").isna()]


def is_excluded(table: pd.DataFrame, suffix: str = "") -> pd.Series:
    """Both-empty cases excluded from means by the empty-mask policy."""
    return (table[f"status{suffix}"] == "both_empty") & table[f"value{suffix}"].isna()


def cluster_bootstrap_ci(
    values: np.ndarray,
    clusters: Sequence[str],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling whole clusters.

    Slices or images of one patient are not independent, so patients
    (``clusters``) are drawn with replacement and all of a drawn patient's
    values enter the resampled mean.

    Returns
    -------
    (low, high) : tuple of float
        NaN when there are no values; the value itself for a single cluster.
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return (float("nan"), float("nan"))
    labels, index = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
    sums = np.bincount(index, weights=values, minlength=len(labels))
    counts = np.bincount(index, minlength=len(labels)).astype(float)
    if len(labels) == 1:
        mean = float(sums[0] / counts[0])
        return (mean, mean)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(labels), size=(n_resamples, len(labels)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def summarise(table: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per dataset, target, model, protocol and metric.

    Columns: ``mean, std, median, ci_low, ci_high`` (95 % cluster bootstrap
    over patients, seeded per group), ``n, n_excluded, n_penalised,
    n_failed, n_patients, seeds, seed_std`` (standard deviation of the
    per-seed means; NaN for a single seed).
    """
    records = []
    for key, group in per_case(table).groupby(GROUP, sort=True, dropna=False):
        valid = group[is_scored(group)]
        values = valid["value"].to_numpy(dtype=float)
        per_seed = valid.groupby("seed")["value"].mean()
        group_seed = stable_seed(seed, key)
        low, high = cluster_bootstrap_ci(values, valid["patient"].astype(str).tolist(),
                                         n_resamples=n_resamples, seed=group_seed)
        records.append({
            **dict(zip(GROUP, key, strict=True)),
            "mean": float(values.mean()) if values.size else float("nan"),
            "std": float(values.std(ddof=1)) if values.size > 1 else float("nan"),
            "median": float(np.median(values)) if values.size else float("nan"),
            "ci_low": low,
            "ci_high": high,
            "n": int(values.size),
            "n_excluded": int(is_excluded(group).sum()),
            "n_penalised": int((group["status"] == "penalised").sum()),
            "n_failed": int((group["status"] == "error").sum()),
            "n_patients": int(valid["patient"].nunique()),
            "seeds": ",".join(str(s) for s in sorted(group["seed"].unique())),
            "seed_std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan"),
        })
    return pd.DataFrame.from_records(records)


# The float columns of summarise(); NaN in them is written as null in summary.json.
FLOAT_COLUMNS = ("mean", "std", "median", "ci_low", "ci_high", "seed_std")


def aggregates_frame(records: Sequence[dict]) -> pd.DataFrame:
    """The ``aggregates`` of a ``summary.json`` as :func:`summarise` returned them.

    summary.json is strict JSON, where a NaN (no scored case, a single seed)
    is ``null``; this turns those back into NaN, so the columns stay floats.
    """
    frame = pd.DataFrame(list(records))
    for column in FLOAT_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].astype(float)
    return frame


def stable_seed(seed: int, key: tuple) -> int:
    """A seed for one group (``key``), so that results do not depend on the order of groups."""
    digest = hashlib.sha256(repr((seed, *map(str, key))).encode()).digest()
    return int.from_bytes(digest[:8], "little")
