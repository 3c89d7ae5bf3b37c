"""The paper's published numbers: the CSVs against the paper, and Table 1 rebuilt from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report import published, tables
from bench.report.latex import latex_table
from bench.report.markdown import markdown_table

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "medsam2-paper.txt"
ORGANS = list(published.TABLE1_TARGETS)


def _paper_lines() -> list[str]:
    if not PAPER.is_file():
        pytest.skip(f"paper text not found at {PAPER}")
    return PAPER.read_text(encoding="utf-8").splitlines()


def _paper_table1() -> list[list[str]]:
    """Table 1 rows parsed from the paper text: the lines after the 'Model<TAB>Spleen' header."""
    lines = _paper_lines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Model\tSpleen"))
    header = lines[start].rstrip().split("\t")
    assert header == ["Model", *ORGANS, "Ave"]
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(line.rstrip().split("\t"))
    return rows


def _paper_table2() -> list[list[str]]:
    """Table 2 rows as [group, model, 11 values]; the merged group cell filled down."""
    lines = _paper_lines()
    start = next(i for i, line in enumerate(lines) if line.startswith("\t\tREFUGE2-Disc"))
    assert lines[start + 1].split() == ["Dice", "IoU"] * 2 + ["Dice", "IoU", "HD95"] + [
        "Dice", "IoU"] * 2
    rows, group = [], ""
    for line in lines[start + 2:]:
        if not line.strip():
            break
        cells = line.rstrip().split("\t")
        if len(cells) == 13:  # group (possibly empty: merged cell), model, 11 values
            group = cells[0] or group
            rows.append([group, *cells[1:]])
        else:  # Med-SA: the paper text prints no group cell
            assert len(cells) == 12
            rows.append(["", *cells])
    return rows


def test_table1_csv_matches_the_paper_cell_for_cell():
    csv = published.load_table1()
    paper = _paper_table1()
    assert len(csv) == len(paper) == 16
    assert csv.values.tolist() == paper


def test_table2_csv_matches_the_paper_cell_for_cell():
    csv = published.load_table2()
    paper = _paper_table2()
    assert len(csv) == len(paper) == 24
    assert csv.values.tolist() == paper


def test_hand_checked_cells():
    # Typed from the paper's Tables 1 and 2 by hand, independently of any parser.
    t1 = published.load_table1().set_index("model")
    assert t1.loc["MedSAM-2"].tolist() == ["0.918", "0.924", "0.921", "0.927", "0.913", "0.836",
                                           "0.874", "0.894", "0.838", "0.838", "0.832", "0.901",
                                           "0.886"]
    assert t1.loc["SAM 2", "Aorta"] == "0.040" and t1.loc["SAM 2", "Ave"] == "0.516"
    assert t1.loc["nnUNet", "AG"] == "0.616"
    t2 = published.load_table2().set_index("model")
    assert t2.loc["MedSAM-2"].tolist() == ["Proposed", "97.8", "88.8", "87.6", "81.2", "90.5",
                                           "83.8", "7.26", "87.6", "80.1", "92.7", "84.6"]
    assert t2.loc["SAM"].tolist() == ["SAM Based", "-", "-", "-", "-", "63.2", "47.6", "32.53",
                                      "-", "-", "81.6", "70.4"]
    assert t2.loc["TransBTS", "BraTs IoU"] == "78.44"
    assert t2.loc["Med-SA", "group"] == "" and t2.loc["Med-SA", "ISIC IoU"] == "83.0"


def test_long_form_converts_units():
    long = published.published_long()
    assert len(long) == 16 * 13 + 24 * 11
    cell = long[(long["model"] == "MedSAM-2") & (long["column"] == "BraTs HD95")].iloc[0]
    assert cell["value"] == 7.26 and cell["metric"] == "hd95" and cell["printed"] == "7.26"
    cell = long[(long["model"] == "MedSAM-2") & (long["column"] == "REFUGE2-Cup Dice")].iloc[0]
    assert cell["value"] == pytest.approx(0.876) and cell["unit"] == "%"
    sam = long[(long["model"] == "SAM") & (long["column"] == "ISIC Dice")].iloc[0]
    assert sam["value"] == pytest.approx(0.816)
    missing = long[(long["model"] == "SAM") & (long["column"] == "TNMIX IoU")].iloc[0]
    assert np.isnan(missing["value"]) and missing["printed"] == "-"


def _aggregates_from_table1() -> pd.DataFrame:
    """A run's aggregates made of the paper's own Table 1 cells (organ columns only)."""
    long = published.published_long()
    cells = long[(long["table"] == "Table 1") & (long["column"] != "Ave")]
    canonical = {column: aliases[0] for column, aliases in published.TABLE1_TARGETS.items()}
    return pd.DataFrame({
        "dataset": "btcv", "target": cells["column"].map(canonical), "model": cells["model"],
        "protocol": "paper-random", "metric": "dice", "mean": cells["value"],
        "ci_low": np.nan, "ci_high": np.nan, "n": 30, "n_excluded": 0, "n_penalised": 0,
        "n_failed": 0, "n_patients": 30,
    }).reset_index(drop=True)


def test_table1_rebuilt_from_the_paper_has_row_mean_averages_and_the_paper_cells():
    wide = tables.table1(_aggregates_from_table1(), "btcv")
    assert list(wide.columns) == [*ORGANS, "Ave"]
    printed = published.load_table1().set_index("model")
    assert list(wide.index) == list(printed.index)  # the paper's row order is kept
    organs = printed[ORGANS].astype(float).to_numpy()
    np.testing.assert_allclose(wide[ORGANS].to_numpy(), organs)
    # Averages equal the row means (computed here independently of the builder).
    np.testing.assert_allclose(wide["Ave"].to_numpy(), organs.sum(axis=1) / 12)
    assert wide.loc["SAM 2", "Ave"] == pytest.approx(5.967 / 12)  # summed by hand: 0.49725
    # Rendered cells equal the paper's printed organ cells, cell for cell.
    shown = tables.display_table1(wide)
    assert shown[ORGANS].values.tolist() == printed[ORGANS].values.tolist()
    md = markdown_table(shown)
    assert "| MedSAM-2 | 0.918 | 0.924 | 0.921 | 0.927 | 0.913 | 0.836 | 0.874 | 0.894 | 0.838 " \
           "| 0.838 | 0.832 | 0.901 | 0.885 |" in md  # 0.884667 -> 0.885: the row mean
    tex = latex_table(shown, "Table 1")
    assert r"MedSAM-2 & 0.918 & 0.924" in tex and r"\toprule" in tex


def test_printed_averages_that_are_not_row_means_are_found():
    check = published.table1_average_check()
    off = check[check["difference"].abs() > published.AVERAGE_ROUNDING]
    assert sorted(off["model"]) == ["FCFI", "MedSAM", "MedSAM-2", "SAM 2", "TransUNet"]
    sam2 = check.set_index("model").loc["SAM 2"]
    assert sam2["row_mean"] == pytest.approx(0.49725) and sam2["difference"] == pytest.approx(
        0.516 - 0.49725)


def test_iou_below_the_jensen_bound_is_flagged():
    flagged = published.iou_dice_consistency()
    row = flagged[(flagged["model"] == "MedSAM-2") & (flagged["group"] == "REFUGE2-Disc")]
    assert row["iou_lower_bound"].item() == pytest.approx(100 * 0.978 / 1.022)
    # Cup cells of MedSAM-2 are consistent: 81.2 >= 87.6/(2-0.876) = 77.94.
    assert not ((flagged["model"] == "MedSAM-2") & (flagged["group"] == "REFUGE2-Cup")).any()


def _aggregate_row(dataset, target, model, metric, mean):
    return {"dataset": dataset, "target": target, "model": model, "protocol": "p",
            "metric": metric, "mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01,
            "n": 10, "n_excluded": 0, "n_penalised": 0, "n_failed": 0, "n_patients": 10}


def test_published_beside_follows_the_naming_map():
    rows = [_aggregate_row("btcv", aliases[-1], "medsam2", "dice", 0.5)
            for aliases in published.TABLE1_TARGETS.values()]
    rows += [_aggregate_row("refuge2", "optic_disc", "medsam2", "dice", 0.9),
             _aggregate_row("brats", "et", "medsam2", "dice", 0.1),
             _aggregate_row("brats", "wt", "medsam2", "hd95", 5.0),
             _aggregate_row("isic", "lesion_mask", "medsam2", "iou", 0.8),
             _aggregate_row("btcv", "spleen", "sam", "dice", 0.6)]
    beside = published.published_beside(pd.DataFrame(rows))
    t1 = beside[(beside["table"] == "Table 1") & (beside["model"] == "medsam2")]
    assert len(t1) == 13  # 12 organs + the average
    ave = t1[t1["column"] == "Ave"].iloc[0]
    assert ave["printed"] == "0.886" and ave["reproduced"] == pytest.approx(0.5)
    assert ave["difference"] == pytest.approx(0.5 - 0.886)
    spleen = t1[t1["column"] == "Spleen"].iloc[0]
    assert spleen["difference"] == pytest.approx(0.5 - 0.918)
    sam = beside[beside["model"] == "sam"]
    assert sam["column"].tolist() == ["Spleen"]  # no average over one organ
    assert sam["published"].item() == pytest.approx(0.518)
    t2 = beside[beside["table"] == "Table 2"].set_index("column")
    # REFUGE2 disc matches by alias; its cup is absent and must not borrow the disc.
    assert t2.loc["REFUGE2-Disc Dice", "published"] == pytest.approx(0.978)
    assert "REFUGE2-Cup Dice" not in t2.index
    # BraTS: the whole tumour by alias, never the enhancing tumour.
    assert t2.loc["BraTs HD95", "target"] == "wt" and "BraTs Dice" not in t2.index
    # ISIC has one target: it matches whatever its name.
    assert t2.loc["ISIC IoU", "difference"] == pytest.approx(0.8 - 0.846)


def test_the_dataset_cards_targets_map_to_the_paper_columns():
    # The naming map must find every paper column among the committed cards' targets.
    from bench.readers.cards import load_card

    folder = Path(__file__).resolve().parents[1] / "datasets"
    names = ("btcv", "refuge2", "brats", "tnmix", "isic")
    if not all((folder / f"{name}.toml").is_file() for name in names):
        pytest.skip("dataset cards not present")
    run_targets = {name: list(load_card(folder / f"{name}.toml").targets) for name in names}
    for column in published.TABLE1_TARGETS:
        assert published.locate("Table 1", column, run_targets) is not None, column
    placed = {group: published.locate("Table 2", group, run_targets)
              for group in published.TABLE2_GROUPS}
    assert placed["REFUGE2-Disc"][0] == placed["REFUGE2-Cup"][0] == "refuge2"
    assert placed["REFUGE2-Disc"][1] != placed["REFUGE2-Cup"][1]
    assert placed["BraTs"] == ("brats", "WT")
    assert placed["TNMIX"][0] == "tnmix" and placed["ISIC"][0] == "isic"
