"""Reports fit the data (issue 17 item 7; issue 20, empty official-metric table).

A run directory is written without running a model (``test_report_support.make_run``),
with a user's own dataset ``my-skin`` (a card as ``bench datasets new`` writes it: not
synthetic, not one of the paper's datasets) beside the synthetic stand-in ``fake-cells``.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import test_report_support as support
from test_report_support import make_run

import bench.report.figures as figs
from bench.readers.cards import Card
from bench.report import write_report
from bench.report.build import PAPER_DATASETS
from bench.report.document import Document, Note, Table
from bench.report.html import render_html
from bench.report.latex import MAX_ROWS, latex_table, render_latex
from bench.resources import builtin_config
from bench.settings import read_toml

OWN = "my-skin"
OWN_CARD = Card(name=OWN, reader=support.READER, kind="image-flow", targets=("cell",),
                one_prompt_kind="box")


@pytest.fixture(scope="module", autouse=True)
def own_card():
    """The user's card, known to the synthetic reader of ``test_report_support``."""
    support.CARDS[OWN] = OWN_CARD
    yield
    del support.CARDS[OWN]


def _own_run(path, *, datasets=("fake-cells", OWN), models=("good", "broken"),
             reproduces="Figure 4"):
    """A run of the one-prompt suite with ``--datasets ... my-skin``, as the plan records it."""
    run_dir = make_run(path, models=models, datasets=datasets, demo=False)
    config = json.loads((run_dir / "config.json").read_text())
    config["plan"].update(reproduces=reproduces,
                          extra_datasets=[d for d in datasets if d == OWN])
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


def _add_rows(run_dir, rows: pd.DataFrame) -> None:
    table = pd.read_csv(run_dir / "metrics.csv", keep_default_na=False, na_values=[""])
    pd.concat([table, rows]).to_csv(run_dir / "metrics.csv", index=False,
                                    float_format="%.10g")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Mixed run, Figure 4 suite; metrics.csv also holds a given (prompted) frame's row and a
    per-click row, which belong in no per-case row."""
    run_dir = _own_run(tmp_path_factory.mktemp("fit") / "run")
    table = pd.read_csv(run_dir / "metrics.csv", keep_default_na=False, na_values=[""])
    first = table[(table["dataset"] == OWN) & (table["model"] == "good")
                  & (table["metric"] == "dice")].iloc[[0]]
    _add_rows(run_dir, pd.concat([first.assign(case="flow0/template", status="prompted",
                                                value=1.0),
                                  first.assign(click=3, value=0.123)]))
    write_report(run_dir, ("md", "html", "tex"), gallery=False)
    return run_dir


def _section(text: str, heading: str) -> str:
    """The Markdown from ``heading`` to the next heading of the same or a higher level."""
    start = text.index(heading + "\n")
    level = heading.split(" ")[0]
    ends = [m.start() for m in re.finditer(rf"(?m)^#{{1,{len(level)}}} ", text)
            if m.start() > start]
    return text[start:ends[0] if ends else len(text)]


# ------------------------------------------------------------------ own datasets' headings

def test_own_dataset_gets_its_own_heading_and_no_paper_layout(run):
    text = (run / "report.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    own = [h for h in headings if h.startswith("## ") and OWN in h]
    assert own == [f"## Your datasets: {OWN}"]
    section = _section(text, own[0])
    assert "Figure 4" not in section and "figure4" not in section
    assert f"| model | {OWN} Dice % | {OWN} IoU % | {OWN} HD95 |" in section
    # The mixed run keeps the paper layout, for the stand-in only.
    layouts = _section(text, "## Paper layouts (Figure 4 reproduced)")
    assert OWN not in layouts
    assert headings.index("## Paper layouts (Figure 4 reproduced)") < headings.index(
        "## Results") < headings.index(own[0])


def test_paper_layout_figure_draws_only_the_papers_datasets(tmp_path, monkeypatch):
    drawn = {}
    real = figs.figure4

    def record(data, path, **kwargs):
        drawn[path.name] = sorted(set(data["dataset"]))
        return real(data, path, **kwargs)

    monkeypatch.setattr(figs, "figure4", record)
    run_dir = _own_run(tmp_path / "run", models=("good",), reproduces="Table 2")
    write_report(run_dir, "md", gallery=False)
    for metric in ("dice", "iou", "hd95"):
        assert drawn[f"figure4_{metric}_by_prompt_kind.png"] == ["fake-cells"]
        assert drawn[f"datasets_{metric}_by_prompt_kind.png"] == [OWN]
    text = (run_dir / "report.md").read_text()
    assert OWN not in _section(text, "### Table 2 layout")


def test_a_run_of_only_own_datasets_has_no_paper_layouts(tmp_path):
    run_dir = _own_run(tmp_path / "run", datasets=(OWN,), models=("good",))
    write_report(run_dir, "md", gallery=False)
    text = (run_dir / "report.md").read_text()
    assert "Figure 4" not in text and "Paper layouts" not in text
    assert not [line for line in text.splitlines() if line.startswith("#") and "layout" in line]
    assert f"## Your datasets: {OWN}" in text


def test_paper_datasets_are_those_of_the_builtin_suites_that_reproduce_something():
    suites = read_toml(builtin_config())["suites"]
    expected = {name for suite in suites.values()
                if not str(suite.get("reproduces", "none")).startswith("none")
                for name in suite["datasets"]}
    assert set(PAPER_DATASETS) == expected
    assert OWN not in PAPER_DATASETS


# ------------------------------------------------------------------ backticks and wide tables

def test_no_literal_backtick_in_html_or_latex(run):
    html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", (run / "report.html").read_text())
    notes = re.findall(r'<div class="note">(.*?)</div>', html)
    extra = next(n for n in notes if "not part of the suite" in n)
    assert extra == (f"<strong>Dataset <code>{OWN}</code> is not part of the suite&#x27;s "
                     "published list.</strong>")
    assert "`" not in html
    tex = (run / "report.tex").read_text()
    assert "`" not in tex
    assert rf"\textbf{{Dataset \texttt{{{OWN}}} is not part" in tex


def test_markup_inside_bold_is_rendered_in_every_format():
    doc = Document("t", [Note("**Model `m_1` was not run:** see `x`; a stray ` stays text")])
    html = render_html(doc, ".")
    assert ('<div class="note"><strong>Model <code>m_1</code> was not run:</strong> see '
            "<code>x</code>; a stray ` stays text</div>") in html
    tex = render_latex(doc)
    assert (r"\textbf{Model \texttt{m\_1} was not run:} see \texttt{x}; a stray "
            r"\textasciigrave{} stays text") in tex


def test_html_tables_scroll_inside_the_page(run):
    html = (run / "report.html").read_text()
    assert ".scroll { overflow-x: auto;" in html
    assert html.count("<table>") == html.count('<div class="scroll"><table>') > 0


def test_latex_tables_shrink_to_the_text_width(run):
    tex = (run / "report.tex").read_text()
    shrink = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"
    assert tex.count(r"\begin{tabular}") == tex.count(shrink + "\n" + r"\begin{tabular}") > 0
    assert tex.count(r"\end{tabular}" + "\n}") == tex.count(r"\begin{tabular}")


def test_latex_splits_a_table_taller_than_a_page():
    rows = 2 * MAX_ROWS + 5
    frame = pd.DataFrame({"case": [f"c{i}" for i in range(rows)], "v": [str(i) for i in
                                                                         range(rows)]})
    tex = latex_table(frame, "Cases")
    assert tex.count(r"\begin{tabular}") == 3
    assert [r"\caption{Cases (part 1 of 3)}", r"\caption{Cases (part 3 of 3)}"] == [
        line for line in tex.splitlines() if "part 1" in line or "part 3" in line]
    bodies = [part.count(r" \\") - 1 for part in tex.split(r"\begin{table}")[1:]]
    assert bodies == [MAX_ROWS, MAX_ROWS, 5]  # every row once, header excluded
    assert "c0 &" in tex and f"c{rows - 1} &" in tex


# ------------------------------------------------------------------ per-case values

def _expected_per_case(run_dir) -> dict[tuple, dict]:
    """metrics.csv pivoted by hand: key -> {metric: value, "status": {...}}."""
    raw = pd.read_csv(run_dir / "metrics.csv", keep_default_na=False, na_values=[""])
    expected: dict[tuple, dict] = {}
    for row in raw.to_dict(orient="records"):
        if row["status"] == "prompted" or not math.isnan(row["click"]):
            continue
        key = (row["dataset"], row["flow"], row["case"], row["target"], row["model"],
               int(row["seed"]))
        entry = expected.setdefault(key, {"status": set()})
        entry[row["metric"]] = row["value"]
        entry["status"].add(row["status"])
    return expected


def test_per_case_csv_has_a_row_per_case_with_the_metrics_as_columns(run):
    got = pd.read_csv(run / "per_case.csv", keep_default_na=False, na_values=[""])
    assert list(got.columns) == ["dataset", "flow", "case", "patient", "target", "model",
                                 "protocol", "seed", "dice", "iou", "hd95", "status",
                                 "message", "random_weights"]
    assert not got["random_weights"].any()  # no --random-weights: no row stamped
    expected = _expected_per_case(run)
    # 2 datasets x 3 flows x 4 images x 2 models, one seed.
    assert len(got) == len(expected) == 48
    for row in got.to_dict(orient="records"):
        key = (row["dataset"], row["flow"], row["case"], row["target"], row["model"],
               row["seed"])
        want = expected.pop(key)
        for metric in ("dice", "iou", "hd95"):
            np.testing.assert_allclose(row[metric], want[metric], rtol=1e-9, equal_nan=True)
        assert set(row["status"].split(";")) == want["status"]
    assert expected == {}
    broken = got[(got["model"] == "broken") & (got["flow"] == "flow1")]
    assert len(broken) == 8 and (broken["status"] == "error").all()
    assert broken["dice"].isna().all() and (broken["message"] == "RuntimeError: boom").all()
    assert not (got["case"] == "flow0/template").any()  # the given frame stays out


def test_per_case_csv_is_named_and_its_rows_shown_collapsed(run):
    md = (run / "report.md").read_text()
    assert "Per-case values: `per_case.csv` in the run directory" in md
    section = _section(md, f"### {OWN}")
    assert f"Per-case values of {OWN} (24 rows): [per_case.csv](per_case.csv)." in section
    html = (run / "report.html").read_text()
    start = html.index(f"<details><summary>Per-case values of {OWN} (24 rows)</summary>")
    table = html[start:html.index("</details>", start)]
    assert table.count("<tr>") == 24 + 1  # header
    good = pd.read_csv(run / "per_case.csv")
    first = good[(good["dataset"] == OWN)].iloc[0]
    assert (f'<td class="text">{first["case"]}</td><td class="text">{first["patient"]}</td>'
            f'<td class="text">cell</td><td class="text">{first["model"]}</td><td>0</td>'
            f'<td>{first["dice"]:.3f}</td><td>{first["iou"]:.3f}</td>'
            f'<td>{first["hd95"]:.2f}</td>') in table
    assert "per\\_case.csv" in (run / "report.tex").read_text()


def test_collapsed_html_table_is_cut_with_a_pointer_to_the_csv(monkeypatch):
    import bench.report.html as html_module

    monkeypatch.setattr(html_module, "MAX_COLLAPSED_ROWS", 3)
    frame = pd.DataFrame({"case": [f"c{i}" for i in range(5)]})
    doc = Document("t", [Table(frame, details="Per-case values", csv="per_case.csv")])
    html = render_html(doc, ".")
    assert html.count("<tr>") == 3 + 1 and "c2" in html and "c3" not in html
    assert "First 3 of 5 rows; all are in <code>per_case.csv</code>." in html


# ------------------------------------------------------------------ figures

def test_distribution_figure_per_dataset_and_iou_hd95_beside_dice(run):
    md = (run / "report.md").read_text()
    for dataset in ("fake-cells", OWN):
        name = f"figures/per_case_{dataset}.png"
        assert (run / name).stat().st_size > 5000
        assert f"]({name})" in _section(md, f"### {dataset}")
    for prefix in ("figure4", "datasets"):
        for metric in ("dice", "iou", "hd95"):
            assert (run / "figures" / f"{prefix}_{metric}_by_prompt_kind.png").stat().st_size \
                > 5000


def test_distribution_figure_draws_every_scored_case(tmp_path, monkeypatch):
    seen = {}
    real = figs.case_distribution

    def record(values, path, **kwargs):
        seen[kwargs["dataset"]] = values.copy()
        seen["metrics"] = kwargs["metrics"]
        return real(values, path, **kwargs)

    monkeypatch.setattr(figs, "case_distribution", record)
    run_dir = _own_run(tmp_path / "run", datasets=(OWN,), models=("good", "broken"))
    write_report(run_dir, "md", gallery=False)
    raw = pd.read_csv(run_dir / "metrics.csv")
    scored = raw[(raw["status"] == "ok") & raw["value"].notna()]
    values = seen[OWN]
    assert seen["metrics"] == ["dice", "iou", "hd95"]  # a panel per metric present
    for metric in ("dice", "hd95"):
        want = sorted(scored.loc[scored["metric"] == metric, "value"])
        assert sorted(values.loc[values["metric"] == metric, "value"]) == pytest.approx(want)
    assert len(values[values["model"] == "broken"]) == 3 * 8  # flow1 failed: 2 flows x 4


# ------------------------------------------------------------------ official metric table

def _with_official(run_dir, *, good_has_it: bool) -> pd.DataFrame:
    """Add dice_official rows: ``good`` 0.9 x its Dice (or unavailable), ``broken``
    unavailable; drop hd95 from the run. Returns good's official rows."""
    table = pd.read_csv(run_dir / "metrics.csv", keep_default_na=False, na_values=[""])
    table = table[table["metric"] != "hd95"]
    dice = table[(table["metric"] == "dice") & (table["status"] == "ok")]
    unavailable = {"value": np.nan, "status": "unavailable",
                   "message": "not available: the model exposes no logits"}
    good = dice[dice["model"] == "good"].assign(metric="dice_official")
    good = (good.assign(value=0.9 * good["value"]) if good_has_it
            else good.assign(**unavailable))
    broken = dice[dice["model"] == "broken"].assign(metric="dice_official", **unavailable)
    pd.concat([table, good, broken]).to_csv(run_dir / "metrics.csv", index=False,
                                            float_format="%.10g")
    config = json.loads((run_dir / "config.json").read_text())
    config["plan"]["metrics"] = ["dice", "iou", "dice_official"]
    (run_dir / "config.json").write_text(json.dumps(config))
    return good


def test_official_table_has_rows_only_where_the_metric_exists(tmp_path):
    run_dir = _own_run(tmp_path / "run", datasets=("fake-cells", "fake-ct"))
    good = _with_official(run_dir, good_has_it=True)
    write_report(run_dir, "md", gallery=False)
    section = _section((run_dir / "report.md").read_text(),
                       "## Official metric beside the harness metric")
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    # One row per dataset/target of good; broken has no official value: no row for it.
    assert [r.split(" | ")[:3] for r in rows] == [
        ["| fake-cells", "cell", "good"], ["| fake-ct", "liver", "good"],
        ["| fake-ct", "spleen", "good"]]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert "-" not in cells
        dataset, target = cells[0], cells[1]
        want = good[(good["dataset"] == dataset) & (good["target"] == target)]["value"]
        assert cells[4] == f"{want.mean():.3f}" and cells[-1] == str(len(want))
    assert "iou_official" not in section.split("\n|---")[0].splitlines()[-1]
    assert "- `dice_official` for `broken`: not available: the model exposes no logits" \
        in section
    # hd95 is absent from this run: no HD95 figure.
    assert not list((run_dir / "figures").glob("*hd95*"))
    assert (run_dir / "figures" / "figure4_iou_by_prompt_kind.png").is_file()


def test_official_section_without_any_value_has_no_table(tmp_path):
    run_dir = _own_run(tmp_path / "run", datasets=("fake-cells",))
    _with_official(run_dir, good_has_it=False)
    write_report(run_dir, "md", gallery=False)
    section = _section((run_dir / "report.md").read_text(),
                       "## Official metric beside the harness metric")
    assert "|" not in section
    assert "No model of this run produced an official metric value:" in section
    assert "- `dice_official` for `good`: not available" in section
