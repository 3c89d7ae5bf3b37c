"""Paired comparisons between models and between runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report_support import make_run, read_table

from bench.aggregate import is_scored
from bench.cli import main
from bench.compare import compare_models, compare_runs, paired_statistics, wilcoxon_p
from bench.errors import ConfigError
from bench.prompts.ledger import canonical_json, row_hash


def test_wilcoxon_exact_p_by_hand():
    # Five patients, all differences positive and distinct: the exact two-sided p-value is
    # 2 * P(W+ = 15) = 2 / 2^5 = 0.0625.
    assert wilcoxon_p(np.array([0.1, 0.2, 0.3, 0.4, 0.5]), list("abcde")) == pytest.approx(
        0.0625)
    # Signs +,+,+,+,- with |d| ranks 1..5 and the negative one smallest: W- = 1, and
    # P(W- <= 1) = 2/32, two-sided 0.125.
    assert wilcoxon_p(np.array([-0.1, 0.2, 0.3, 0.4, 0.5]), list("abcde")) == pytest.approx(
        0.125)


def test_wilcoxon_runs_on_patient_means_not_cases():
    differences = np.array([0.1, 0.3, 0.2, 0.2, -0.05, 0.4, 0.5, 0.6])
    patients = ["a", "a", "b", "b", "c", "d", "e", "e"]
    means = [0.2, 0.2, -0.05, 0.4, 0.55]  # per patient, computed by hand
    expected = stats.wilcoxon(means).pvalue
    assert wilcoxon_p(differences, patients) == pytest.approx(expected)
    assert wilcoxon_p(np.zeros(4), list("abcd")) == 1.0
    assert np.isnan(wilcoxon_p(np.array([0.1, 0.2]), ["a", "a"]))


def test_paired_statistics_mean_and_interval():
    differences = np.array([0.1, 0.1, 0.3, 0.3])
    result = paired_statistics(differences, ["a", "a", "b", "b"], n_resamples=500)
    assert result["difference"] == pytest.approx(0.2)
    # Two equal-size patients: every bootstrap mean is 0.1, 0.2 or 0.3.
    assert result["ci_low"] == pytest.approx(0.1) and result["ci_high"] == pytest.approx(0.3)
    assert result["n_pairs"] == 4 and result["n_patients"] == 2
    with pytest.raises(ValueError, match="4 differences but 3 patient labels"):
        paired_statistics(differences, ["a", "b", "c"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("compare") / "run", models=("good", "poor", "broken"),
                    datasets=("fake-cells",))


def test_compare_models_pairs_cases_of_one_run(run):
    table = read_table(run)
    result = compare_models(table, metrics=["dice"], n_resamples=300)
    assert list(zip(result["model_a"], result["model_b"], strict=True)) == [
        ("good", "poor"), ("good", "broken"), ("poor", "broken")]
    row = result.iloc[0]
    dice = table[table["metric"] == "dice"]
    good = dice[dice["model"] == "good"].set_index("case")["value"]
    poor = dice[dice["model"] == "poor"].set_index("case")["value"]
    assert row["difference"] == pytest.approx((poor - good).mean())
    assert row["n_pairs"] == 12 and row["n_unpaired"] == 0 and row["n_patients"] == 6
    assert row["ci_low"] < row["difference"] < row["ci_high"] < 0
    broken = result.iloc[1]
    # 'broken' fails on flow1 (4 images): those cases are unpaired, the rest pair.
    assert broken["n_pairs"] == 8 and broken["n_unpaired"] == 4
    scored = dice[(dice["model"] == "broken") & is_scored(dice)]
    assert broken["mean_b"] == pytest.approx(scored["value"].mean())


def test_compare_runs_identical_runs_differ_by_nothing(run, tmp_path):
    again = make_run(tmp_path / "again", models=("good", "poor", "broken"),
                     datasets=("fake-cells",))
    result = compare_runs(run, again, metrics=["dice"], n_resamples=200)
    assert (result["difference"] == 0).all() and (result["p_wilcoxon"] == 1.0).all()
    assert (result["n_prompts_differ"] == 0).all()
    assert result.set_index("model").loc["good", "n_pairs"] == 12


def test_compare_runs_pairs_only_flows_with_the_same_prompts(run, tmp_path):
    other = make_run(tmp_path / "other", models=("good",), datasets=("fake-cells",))
    table = read_table(other)
    # Run B scores 0.05 better everywhere ...
    dice = table["metric"] == "dice"
    table.loc[dice, "value"] += 0.05
    table.to_csv(other / "metrics.csv", index=False, float_format="%.10g")
    # ... but its prompt for flow0 moved one pixel: flow0's cases must not pair.
    rows = [json.loads(line) for line in (other / "prompts.jsonl").read_text().splitlines()]
    for row in rows:
        if row["case"] == "flow0":
            row["points"] = [[x + 1, y] for x, y in row["points"]]
            row["hash"] = row_hash(row)
    (other / "prompts.jsonl").write_text("".join(canonical_json(r) + "\n" for r in rows))
    result = compare_runs(run, other, metrics=["dice"], n_resamples=200).iloc[0]
    assert result["model"] == "good"
    assert result["n_pairs"] == 8 and result["n_prompts_differ"] == 4
    assert result["n_unpaired"] == 0
    assert result["difference"] == pytest.approx(0.05)
    assert result["run_n_a"] == result["run_n_b"] == 12


def test_compare_runs_named_models(run, tmp_path):
    result = compare_runs(run, run, model_a="good", model_b="poor", metrics=["dice"],
                          n_resamples=200)
    assert result["model"].tolist() == ["good vs poor"]
    within = compare_models(read_table(run), ["good", "poor"], metrics=["dice"],
                            n_resamples=200)
    assert result["difference"].item() == pytest.approx(within["difference"].item())
    with pytest.raises(ConfigError, match="--model-a .*: unknown model 'nope'"):
        compare_runs(run, run, model_a="nope", model_b="poor")


def test_cli_compare(run, tmp_path, capsys):
    out = tmp_path / "comparison.csv"
    assert main(["compare", str(run), str(run), "--metrics", "dice", "--out", str(out)]) == 0
    assert "A = " in capsys.readouterr().out
    saved = pd.read_csv(out)
    assert len(saved) == 3 and (saved["difference"] == 0).all()
    assert main(["compare", str(run), str(tmp_path / "missing")]) == 2
