"""The report of a synthetic run directory: layouts, counts, formats, gallery."""

from __future__ import annotations

import base64
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from test_report_support import make_run, read_table, summary_of

from bench import atomic
from bench.aggregate import is_scored
from bench.cli import main
from bench.errors import ConfigError
from bench.report import parse_formats, tables, write_report
from bench.report.gallery import build_gallery, pick_cases
from bench.rundir import RunDir
from bench.store import image_path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three models (one failing on a flow), two seeds, the second seed shifting 'good'."""
    run_dir = make_run(tmp_path_factory.mktemp("report") / "run",
                       models=("good", "poor", "broken"), seeds=(0, 1),
                       extra_shift={("good", 1): 1})
    write_report(run_dir, ("md", "html", "tex"))
    return run_dir


def _valid_means(table: pd.DataFrame, **where) -> float:
    rows = table[is_scored(table)]
    for key, value in where.items():
        rows = rows[rows[key] == value]
    return float(rows["value"].mean())


def test_all_formats_are_written(run):
    for name in ("report.md", "report.html", "report.tex", "summary.json"):
        assert (run / name).is_file(), name
    for name in ("figure4_dice_by_prompt_kind.png", "seed_spread.png", "gallery_fake-cells.png",
                 "gallery_fake-ct.png"):
        assert (run / "figures" / name).stat().st_size > 5000, name


def test_table1_layout_averages_the_targets(run):
    table = read_table(run)
    aggregates = pd.DataFrame(summary_of(run)["aggregates"])
    assert list(tables.table1(aggregates, "fake-ct").index) == ["broken", "good", "poor"]
    wide = tables.table1(aggregates, "fake-ct", models=["good", "poor", "broken"])
    assert list(wide.columns) == ["liver", "spleen", "Ave"]
    assert list(wide.index) == ["good", "poor", "broken"]  # the run's model order
    for model in ("good", "poor"):
        liver = _valid_means(table, dataset="fake-ct", model=model, metric="dice",
                             target="liver")
        spleen = _valid_means(table, dataset="fake-ct", model=model, metric="dice",
                              target="spleen")
        assert wide.loc[model, "liver"] == pytest.approx(liver)
        assert wide.loc[model, "Ave"] == pytest.approx((liver + spleen) / 2)
    text = (run / "report.md").read_text()
    good = wide.loc["good"]
    assert (f"| good | {good['liver']:.3f} | {good['spleen']:.3f} | {good['Ave']:.3f} |"
            in text)


def test_table1_average_is_missing_when_a_target_is(run):
    aggregates = pd.DataFrame(summary_of(run)["aggregates"])
    dropped = aggregates[~((aggregates["model"] == "poor") & (aggregates["target"] == "spleen"))]
    wide = tables.table1(dropped, "fake-ct")
    assert np.isnan(wide.loc["poor", "Ave"]) and np.isnan(wide.loc["poor", "spleen"])
    assert tables.display_table1(wide).set_index("model").loc["poor", "Ave"] == "-"


def test_table2_layout_groups_and_units(run):
    table = read_table(run)
    aggregates = pd.DataFrame(summary_of(run)["aggregates"])
    wide = tables.table2(aggregates)
    assert list(dict.fromkeys(c[0] for c in wide.columns)) == ["fake-cells", "fake-ct/liver",
                                                                "fake-ct/spleen"]
    shown = tables.display_table2(wide).set_index(("", "model"))
    dice = _valid_means(table, dataset="fake-cells", model="poor", metric="dice")
    hd95 = _valid_means(table, dataset="fake-ct", target="liver", model="poor", metric="hd95")
    assert shown.loc["poor", ("fake-cells", "Dice %")] == f"{100 * dice:.1f}"
    assert shown.loc["poor", ("fake-ct/liver", "HD95")] == f"{hd95:.2f}"


def test_per_dataset_tables_state_counts_definitions_protocol_and_seeds(run):
    text = (run / "report.md").read_text()
    section = text[text.index("### fake-cells"):text.index("### fake-ct")]
    assert "prompt kind: `point`" in section and "seeds: 0, 1" in section
    assert "95th percentile of pooled surface distances" in section and "unit here" in section
    table = read_table(run)
    broken = table[(table["dataset"] == "fake-cells") & (table["model"] == "broken")
                   & (table["metric"] == "dice")]
    n_failed = int((broken["status"] == "error").sum())
    n = int(is_scored(broken).sum())
    assert n_failed == 8 and n == 16  # 1 failing flow x 4 images x 2 seeds
    row = next(line for line in section.splitlines() if line.startswith("| cell | broken |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-5:] == [str(n), "0", "0", str(n_failed), "4"]  # n, excl, penal, failed, pat.
    # Protocol cards for both prompt kinds.
    assert "prompt kind: box (tight)" in text and "prompt kind: point (deepest" in text


def test_single_patient_groups_show_no_interval(run):
    text = (run / "report.md").read_text()
    section = text[text.index("### fake-ct"):text.index("## Paired comparisons")]
    broken = next(line for line in section.splitlines() if line.startswith("| liver | broken |"))
    assert "(1 patient, no CI)" in broken


def test_paired_comparison_in_the_report(run):
    table = read_table(run)
    text = (run / "report.md").read_text()
    section = text[text.index("## Paired comparisons"):text.index("## Spread across seeds")]
    row = next(line for line in section.splitlines()
               if line.startswith("| fake-cells | cell | dice | good | poor |"))
    good = _valid_means(table, dataset="fake-cells", model="good", metric="dice")
    poor = _valid_means(table, dataset="fake-cells", model="poor", metric="dice")
    assert f"| {poor - good:.3f} [" in row


def test_seed_spread_is_per_seed_means(run):
    table = read_table(run)
    spread = tables.seed_spread(table).set_index(["dataset", "target", "model"])
    means = [_valid_means(table, dataset="fake-cells", model="good", metric="dice", seed=s)
             for s in (0, 1)]
    row = spread.loc[("fake-cells", "cell", "good")]
    assert row["seed 0"] == pytest.approx(means[0]) and row["seed 1"] == pytest.approx(means[1])
    assert row["std across seeds"] == pytest.approx(np.std(means, ddof=1))
    assert means[0] > means[1]  # the extra shift of seed 1 lowers Dice
    assert spread.loc[("fake-cells", "cell", "poor"), "range"] == pytest.approx(0.0)


def test_html_is_self_contained_with_every_figure_embedded(run):
    html = (run / "report.html").read_text()
    markdown = (run / "report.md").read_text()
    linked = re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)
    # Figure 4 layout with its IoU and HD95 companions, a per-case figure per dataset, seeds,
    # two galleries.
    assert len(linked) == 8
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(
        (run / path).read_bytes() for path in linked)
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing outside the file
    # Templates, results, Table 1, Table 2, two datasets, paired comparison, seeds; the
    # HTML also has a collapsed per-case table per dataset (Markdown links per_case.csv).
    assert markdown.count("\n|---") == 8 and html.count("<table>") == 8 + 2
    assert html.count("<details><summary>Per-case values of ") == 2


def test_latex_uses_booktabs(run):
    tex = (run / "report.tex").read_text()
    n_tables = tex.count(r"\begin{tabular}")
    assert n_tables == 8 and r"\usepackage{booktabs}" in tex
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(rule) == n_tables
    assert r"\hline" not in tex
    assert r"\cmidrule(lr)" in tex and r"\multicolumn{3}{c}{fake-ct/liver}" in tex
    assert r"n\_excluded" in tex and "95 \\%" in tex
    assert r"\includegraphics[width=\linewidth]{figures/figure4_dice_by_prompt_kind.png}" in tex


def test_gallery_picks_best_median_worst(run):
    table = read_table(run)
    picks = {(p.dataset, p.model, p.rank): p for p in pick_cases(table)}
    rows = table[(table["dataset"] == "fake-cells") & (table["model"] == "poor")
                 & (table["metric"] == "dice") & (table["seed"] == 0)]
    values = np.sort(rows["value"].to_numpy())
    assert picks[("fake-cells", "poor", "best")].value == values[-1]
    assert picks[("fake-cells", "poor", "worst")].value == values[0]
    assert picks[("fake-cells", "poor", "median")].value == values[(len(values) - 1) // 2]
    assert len(picks) == 2 * 3 * 3


def test_gallery_skips_what_it_cannot_draw_with_a_note(tmp_path):
    run_dir = make_run(tmp_path / "run", models=("good",), datasets=("fake-cells",))
    table = read_table(run_dir)
    best = next(p for p in pick_cases(table) if p.rank == "best")
    folder = RunDir(run_dir).prediction_folder("good", 0, "fake-cells")
    missing = image_path(folder, "cell", best.case)
    missing.unlink()
    rundir = RunDir(run_dir)
    ledger = rundir.read_ledger()
    drawn, notes = build_gallery(rundir, table, ledger, synthetic=True)
    assert [name for name, _ in drawn] == ["fake-cells"]  # the other panels are drawn
    assert notes == [f"fake-cells good best ({best.case}/cell) not drawn: DataError: "
                     f"{missing}: no prediction file"]
    # Frames that changed since the run are not drawn over the run's predictions.
    manifest = rundir.read_manifest()
    manifest["datasets"]["fake-cells"]["flows"][0]["frames_sha256"] = "0" * 64
    rundir.write_manifest(manifest)
    drawn, notes = build_gallery(rundir, table, ledger, synthetic=True)
    flow0 = [n for n in notes if "flow flow0" in n]
    assert len(flow0) == 1 and "frames differ from those read when the prompt ledger was " \
        "written" in flow0[0]
    # The cards come from the run directory only.
    config = rundir.read_config()
    del config["cards"]
    atomic.write_json(rundir.config_path, config)
    drawn, notes = build_gallery(rundir, table, ledger, synthetic=True)
    assert drawn == [] and notes == ["fake-cells: gallery skipped: no dataset card "
                                     "'fake-cells' recorded in the run's config.json"]


def test_published_numbers_are_not_shown_for_synthetic_runs(run):
    assert "Published numbers" not in (run / "report.md").read_text()


def test_click_curve():
    rows = [{"dataset": "d", "target": "t", "model": "m", "metric": "dice", "status": "ok",
             "click": c, "value": v, "seed": 0}
            for c, v in ((1, 0.5), (1, 0.7), (2, 0.8), (2, 0.9))]
    curve = tables.click_curve(pd.DataFrame(rows)).set_index("click")
    assert curve.loc[1, "mean"] == pytest.approx(0.6) and curve.loc[2, "mean"] == pytest.approx(
        0.85)
    assert tables.click_curve(pd.DataFrame(rows).drop(columns="click")).empty


def test_formats_are_validated():
    assert parse_formats("md, html,md") == ("md", "html")
    with pytest.raises(ConfigError, match="--format: unknown format"):
        parse_formats("md,pdf")


def test_cli_report(tmp_path, capsys):
    run_dir = make_run(tmp_path / "run", models=("good",), datasets=("fake-cells",))
    assert main(["report", str(run_dir), "--format", "html,tex", "--no-gallery"]) == 0
    assert (run_dir / "report.html").is_file() and (run_dir / "report.tex").is_file()
    assert not (run_dir / "report.md").exists()
    assert main(["report", str(run_dir), "--format", "docx"]) == 2
    assert "unknown format" in capsys.readouterr().err
    shutil.rmtree(run_dir / "figures")


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed: the .tex report is not compiled in CI "
                    "(README, top)")
def test_latex_compiles(run, tmp_path):
    import subprocess

    # Compile a copy so the run directory keeps only what the report wrote.
    folder = tmp_path / "tex"
    shutil.copytree(run, folder, ignore=shutil.ignore_patterns("predictions"))
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                             "report.tex"], cwd=folder, capture_output=True, text=True,
                            timeout=180, check=False)
    assert result.returncode == 0, result.stdout[-2000:]
    assert (folder / "report.pdf").stat().st_size > 10000


def test_clicks_section_when_the_table_has_a_click_column(tmp_path):
    run_dir = make_run(tmp_path / "run", models=("good",), datasets=("fake-cells",))
    table = read_table(run_dir)
    # As the runner writes interactive runs: the per-case rows (no click) plus the Dice
    # after each click; pretend every session had 3 clicks, the third 0.1 better.
    dice_rows = table[table["metric"] == "dice"]
    clicks = [dice_rows.assign(click=1), dice_rows.assign(click=3, value=dice_rows["value"] + 0.1)]
    pd.concat([table, *clicks]).to_csv(run_dir / "metrics.csv", index=False)
    write_report(run_dir, "md", gallery=False)
    text = (run_dir / "report.md").read_text()
    assert "## Dice against the number of clicks" in text
    assert (run_dir / "figures" / "dice_vs_clicks.png").stat().st_size > 5000
    dice = table[(table["metric"] == "dice")]["value"].mean()
    assert f"| fake-cells | cell | good | 3 | {dice + 0.1:.3f} | 12 |" in text


def test_published_numbers_beside_a_real_suite(tmp_path):
    import json

    run_dir = make_run(tmp_path / "run", models=("good", "poor"), datasets=("fake-ct",),
                       demo=False)
    # Present the fake volumes as BTCV scored by models named like the paper's.
    table = read_table(run_dir)
    table["dataset"] = "btcv"
    table["model"] = table["model"].map({"good": "MedSAM-2", "poor": "SAM"})
    table.to_csv(run_dir / "metrics.csv", index=False)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["datasets"] = {"btcv": {**manifest["datasets"]["fake-ct"], "synthetic": False}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    write_report(run_dir, "md", gallery=False)
    text = (run_dir / "report.md").read_text()
    section = text[text.index("## Published numbers"):text.index("## Metric definitions")]
    liver = _valid_means(table, model="MedSAM-2", target="liver", metric="dice")
    row = next(line for line in section.splitlines()
               if line.startswith("| Table 1 | Liver | MedSAM-2 |"))
    assert row.startswith("| Table 1 | Liver | MedSAM-2 | btcv/liver | dice | 0.836 | 0.836 |")
    assert f"| {liver - 0.836:.3f} |" in row
    assert "| Table 1 | Spleen | SAM | btcv/spleen | dice | 0.518 | 0.518 |" in section
    # Only two organs: no average row, and the note on the paper's own averages is shown.
    assert "| Ave |" not in section
    assert "not the mean of its organ columns for: TransUNet" in section


def test_unit_costs_summarise_units_csv_per_model():
    from bench.report.tables import unit_costs

    units = pd.DataFrame({
        "model": ["a", "a", "b"], "status": ["ok", "error", "ok"], "seconds": [1.0, 3.0, 0.5],
        "peak_rss_mb": [100.0, 250.0, 90.0], "cache": ["hit", "miss", "off"],
        "attempts": [1, 2, 1]})
    costs = unit_costs(units).set_index("model")
    assert costs.loc["a"].tolist() == [2, 1, 4.0, 2.0, 250.0, 1, 1]
    assert costs.loc["b"].tolist() == [1, 0, 0.5, 0.5, 90.0, 0, 0]
