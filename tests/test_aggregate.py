"""Aggregates: counts by status and the patient-level bootstrap."""

import numpy as np
import pandas as pd

from bench.aggregate import cluster_bootstrap_ci, summarise


def _row(case, patient, value, status, seed=0, metric="dice"):
    return {"dataset": "d", "target": "t", "model": "m", "protocol": "p", "metric": metric,
            "case": case, "patient": patient, "value": value, "status": status, "seed": seed}


def test_counts_follow_the_empty_policy_statuses():
    table = pd.DataFrame([
        _row("a", "p1", 0.8, "ok"), _row("b", "p1", 0.6, "ok"),
        _row("c", "p2", 0.0, "penalised"), _row("d", "p2", np.nan, "both_empty"),
        _row("e", "p3", np.nan, "error"),
    ])
    summary = summarise(table, n_resamples=200).iloc[0]
    assert summary["n"] == 3 and summary["n_penalised"] == 1
    assert summary["n_excluded"] == 1 and summary["n_failed"] == 1
    # Penalised cases count in the mean; excluded and failed do not.
    assert summary["mean"] == np.mean([0.8, 0.6, 0.0])
    assert summary["n_patients"] == 2


def test_bootstrap_resamples_patients_not_cases():
    # Two patients, one with 99 identical cases at 1.0 and one with a single 0.0 case:
    # resampling patients puts every bootstrap mean at 0, 0.99 or 1.0.
    values = np.array([1.0] * 99 + [0.0])
    patients = ["a"] * 99 + ["b"]
    low, high = cluster_bootstrap_ci(values, patients, n_resamples=500, seed=1)
    assert low == 0.0 and high == 1.0
    # Resampling the 100 cases independently would give a narrow interval around 0.99.
    low_cases, _ = cluster_bootstrap_ci(values, [str(i) for i in range(100)], n_resamples=500)
    assert low_cases > 0.95


def test_seed_spread_is_the_std_of_per_seed_means():
    rows = [_row(f"c{i}", f"p{i}", v, "ok", seed=s)
            for s, vals in ((0, [0.5, 0.7]), (1, [0.9, 0.9])) for i, v in enumerate(vals)]
    summary = summarise(pd.DataFrame(rows), n_resamples=100).iloc[0]
    assert np.isclose(summary["seed_std"], np.std([0.6, 0.9], ddof=1))
    assert summary["seeds"] == "0,1"


def test_official_policy_scores_both_empty_cases_into_the_mean():
    # Under the official code's policy, empty/empty is scored 1 (status still both_empty).
    table = pd.DataFrame([_row("a", "p1", 0.5, "ok"), _row("b", "p2", 1.0, "both_empty")])
    summary = summarise(table, n_resamples=100).iloc[0]
    assert summary["mean"] == 0.75 and summary["n"] == 2 and summary["n_excluded"] == 0
