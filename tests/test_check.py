"""Regression check against a committed reference."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_report_support import make_run, read_table, write_table

from bench.check import (
    compare_means,
    load_reference,
    means_of_table,
    parse_tolerance,
    run_means,
    write_reference,
)
from bench.cli import main
from bench.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("check")
    reference_run = make_run(base / "reference", models=("good", "poor"))
    reference = write_reference(reference_run, base / "demo-reference.csv")
    return base, reference_run, reference


def test_reference_csv_holds_the_means(runs):
    _, reference_run, reference = runs
    frame = load_reference(reference)
    table = read_table(reference_run)
    rows = table[(table["dataset"] == "fake-cells") & (table["model"] == "good")
                 & (table["metric"] == "dice")]
    expected = rows.loc[rows["status"].isin(["ok", "penalised"]), "value"].mean()
    got = frame[(frame["dataset"] == "fake-cells") & (frame["model"] == "good")
                & (frame["metric"] == "dice")]
    assert got["mean"].item() == pytest.approx(expected, abs=1e-9)
    assert got["n"].item() == 12 and len(frame) == 2 * 3 * 3  # models x targets x metrics


def test_unchanged_rerun_passes(runs, capsys):
    base, _, reference = runs
    rerun = make_run(base / "rerun", models=("good", "poor"))
    assert main(["check", str(rerun), "--against", str(reference), "--tolerance", "1e-9"]) == 0
    assert "OK: every mean within tolerance" in capsys.readouterr().out


def test_injected_dice_drop_fails_and_names_it(runs, capsys, tmp_path):
    _, reference_run, reference = runs
    run = make_run(tmp_path / "run", models=("good", "poor"))
    table = read_table(run)
    hit = (table["dataset"] == "fake-cells") & (table["metric"] == "dice") & (
        table["model"] == "good")
    table.loc[hit, "value"] -= 0.02
    write_table(run, table)
    assert main(["check", str(run), "--against", str(reference), "--tolerance", "0.01"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("regression:")]
    assert len(lines) == 1
    assert lines[0].startswith("regression: worse dice fake-cells/cell good: reference ")
    assert "difference -0.02" in lines[0]
    # Within a looser tolerance the same drop passes.
    assert main(["check", str(run), "--against", str(reference), "--tolerance", "0.03"]) == 0


def _means(**changes) -> tuple[pd.DataFrame, pd.DataFrame]:
    reference = pd.DataFrame([
        {"dataset": "d", "target": "t", "model": "m", "protocol": "p", "metric": metric,
         "mean": mean, "n": 10, "n_excluded": 0, "n_penalised": 0, "n_failed": 0}
        for metric, mean in (("dice", 0.8), ("iou", 0.7), ("hd95", 5.0), ("assd", 2.0),
                             ("volume_error", 1.0))])
    now = reference.copy()
    for metric, mean in changes.items():
        now.loc[now["metric"] == metric, "mean"] = mean
    return now, reference


def test_direction_aware():
    kinds = lambda findings: {(f.metric, f.kind) for f in findings}  # noqa: E731
    # Lower Dice/IoU and higher HD95/ASSD are regressions ...
    now, ref = _means(dice=0.78, iou=0.6, hd95=5.5, assd=2.5)
    assert kinds(compare_means(now, ref, 0.01)) == {("dice", "worse"), ("iou", "worse"),
                                                    ("hd95", "worse"), ("assd", "worse")}
    # ... the opposite moves are improvements, not regressions.
    now, ref = _means(dice=0.9, hd95=4.0)
    findings = compare_means(now, ref, 0.01)
    assert kinds(findings) == {("dice", "improved"), ("hd95", "improved")}
    assert not any(f.is_regression for f in findings)
    # An unknown metric fails on any change beyond tolerance.
    now, ref = _means(volume_error=0.9)
    assert kinds(compare_means(now, ref, 0.01)) == {("volume_error", "worse")}
    # A change of exactly the tolerance passes.
    now, ref = _means(dice=0.75)
    assert compare_means(now, ref, 0.05) == []
    assert kinds(compare_means(now, ref, {"*": 0.1, "dice": 0.04})) == {("dice", "worse")}


def test_missing_rows_counts_and_nan_are_regressions():
    now, ref = _means()
    findings = compare_means(now[now["metric"] != "iou"], ref)
    assert [(f.kind, f.metric, f.detail) for f in findings] == [
        ("missing", "iou", "no such row in the run")]
    now, ref = _means(dice=math.nan)
    assert [(f.kind, f.metric) for f in compare_means(now, ref)] == [("missing", "dice")]
    now, ref = _means()
    now.loc[now["metric"] == "hd95", ["n", "n_failed"]] = [9, 1]
    (finding,) = compare_means(now, ref)
    assert (finding.kind, finding.metric, finding.detail) == ("count", "hd95",
                                                              "n 10 -> 9, failed 0 -> 1")
    extra = pd.concat([now, now.assign(model="new-model")], ignore_index=True)
    kinds = {(f.kind, f.model) for f in compare_means(extra, ref)}
    assert ("new", "new-model") in kinds


def test_reference_formats_and_errors(runs, tmp_path):
    _, reference_run, reference = runs
    from bench.report import write_report

    write_report(reference_run, "md", gallery=False)
    from_csv = load_reference(reference).sort_values(["model", "target", "metric"])
    from_json = load_reference(reference_run / "summary.json").sort_values(
        ["model", "target", "metric"])
    pd.testing.assert_frame_equal(from_csv.reset_index(drop=True),
                                  from_json.reset_index(drop=True), check_dtype=False)
    assert compare_means(run_means(reference_run), load_reference(reference_run)) == []
    bad = tmp_path / "bad.csv"
    bad.write_text("dataset,target,model\nd,t,m\n")
    with pytest.raises(DataError, match="bad.csv: reference lacks column"):
        load_reference(bad)
    with pytest.raises(DataError, match="none.csv: reference not found"):
        load_reference(tmp_path / "none.csv")


def test_parse_tolerance():
    assert parse_tolerance("0.01") == {"*": 0.01}
    assert parse_tolerance("0.02, hd95=1.5") == {"*": 0.02, "hd95": 1.5}
    assert parse_tolerance("hd95=1") == {"hd95": 1.0, "*": 1e-6}
    for text, message in (("x", "not a number"), ("-1", ">= 0"), ("dice=1,dice=2", "twice"),
                          ("", "empty")):
        with pytest.raises(ConfigError, match=f"--tolerance: .*{message}|--tolerance: {message}"):
            parse_tolerance(text)


def test_cli_usage_errors(runs, tmp_path, capsys):
    _, reference_run, reference = runs
    assert main(["check", str(reference_run)]) == 2
    assert "needs --against" in capsys.readouterr().err
    assert main(["check", str(reference_run), "--against", str(reference),
                 "--write-reference", str(tmp_path / "x.csv")]) == 2
    assert main(["check", str(reference_run), "--against", str(tmp_path / "nope.csv")]) == 2
    out = tmp_path / "ref.csv"
    assert main(["check", str(reference_run), "--write-reference", str(out)]) == 0
    pd.testing.assert_frame_equal(load_reference(out), load_reference(reference))


def test_means_follow_the_aggregate_rule():
    table = pd.DataFrame([
        {"dataset": "d", "target": "t", "model": "m", "protocol": "p", "metric": "dice",
         "value": v, "status": s}
        for v, s in ((0.8, "ok"), (0.0, "penalised"), (math.nan, "both_empty"),
                     (math.nan, "error"))])
    row = means_of_table(table).iloc[0]
    assert row["mean"] == pytest.approx(0.4)
    assert (row["n"], row["n_excluded"], row["n_penalised"], row["n_failed"]) == (2, 1, 1, 1)
