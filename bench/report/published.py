"""The paper's published numbers (Tables 1 and 2) and how they map to a run.

The CSVs in ``reports/`` keep every cell as printed in the paper (see
``reports/README.md``). This module reads them, converts the cells to the
harness's units (Dice and IoU as fractions, HD95 in mm) and matches them with
a run's aggregates through a documented naming map:

Table 1 (BTCV, Dice): dataset ``btcv``; the organ columns map to targets by
name (aliases in :data:`TABLE1_TARGETS`, compared lower-case with
punctuation removed; the first alias is the harness's canonical name). The
paper's ``AG`` is both adrenal glands merged (the BTCV card merges labels 12
and 13). ``Ave`` is the printed average, not a target.

Table 2: ``REFUGE2-Disc`` / ``REFUGE2-Cup`` are targets ``disc`` / ``cup`` of
dataset ``refuge2``; ``BraTs``, ``TNMIX`` and ``ISIC`` are datasets
``brats``, ``tnmix`` and ``isic``. The paper does not say which BraTS region
it scores; the map assumes the whole tumour (``wt``). A dataset with a single
target in the run matches whatever that target is called. Dice and IoU are
printed in percent (divided by 100 here); HD95 has no printed unit and is
read as mm.

Models match when their names agree lower-case with punctuation removed
(``MedSAM-2`` = ``medsam2``, ``SAM 2`` = ``sam2``), or through an explicit
``model_map``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import DataError
from bench.resources import reports_folder

TABLE1_FILE = "paper_table1_btcv.csv"
TABLE2_FILE = "paper_table2.csv"
MISSING = "-"

# Printed column -> target aliases (first = canonical harness name).
TABLE1_TARGETS: dict[str, tuple[str, ...]] = {
    "Spleen": ("spleen",),
    "R.Kid": ("right_kidney", "kidney_right", "r_kid", "rk", "kidney_r"),
    "L.Kid": ("left_kidney", "kidney_left", "l_kid", "lk", "kidney_l"),
    "Gall.": ("gallbladder", "gall"),
    "Eso.": ("esophagus", "oesophagus", "eso"),
    "Liver": ("liver",),
    "Stom.": ("stomach", "stom"),
    "Aorta": ("aorta",),
    "IVC": ("inferior_vena_cava", "ivc", "postcava"),
    "Veins": ("portal_and_splenic_veins", "portal_splenic_veins",
              "portal_vein_and_splenic_vein", "veins", "psv"),
    "Panc.": ("pancreas", "panc"),
    "AG": ("adrenal_glands", "adrenal_gland", "adrenals", "adrenal", "ag"),
}
TABLE1_AVERAGE = "Ave"
AVERAGE_ROUNDING = 0.001
TABLE1_DATASETS = ("btcv",)

# Printed column group -> (dataset aliases, target aliases).
TABLE2_GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "REFUGE2-Disc": (("refuge2",), ("disc", "optic_disc", "od")),
    "REFUGE2-Cup": (("refuge2",), ("cup", "optic_cup", "oc")),
    "BraTs": (("brats", "brats2021"), ("wt", "whole_tumor", "whole_tumour", "tumor", "tumour")),
    "TNMIX": (("tnmix",), ("nodule", "thyroid_nodule")),
    "ISIC": (("isic", "isic2016", "isic2017", "isic2018"), ("lesion", "skin_lesion")),
}
TABLE2_METRICS = {"Dice": "dice", "IoU": "iou", "HD95": "hd95"}

LONG_COLUMNS = ["table", "group", "model", "column", "paper_dataset", "paper_target", "metric",
                "printed", "value", "unit"]


def normalise(name: str) -> str:
    """Lower case with everything but letters and digits removed: the matching key."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def load_table1(path: Path | None = None) -> pd.DataFrame:
    """Table 1 as printed: a ``model`` column, the 12 organ columns and ``Ave`` (strings)."""
    path = path or reports_folder() / TABLE1_FILE
    frame = _read_printed(path)
    expected = ["model", *TABLE1_TARGETS, TABLE1_AVERAGE]
    if list(frame.columns) != expected:
        raise DataError(path, f"columns {list(frame.columns)}, "
                        f"expected {expected}")
    return frame


def load_table2(path: Path | None = None) -> pd.DataFrame:
    """Table 2 as printed: ``group``, ``model`` and one column per dataset and metric."""
    path = path or reports_folder() / TABLE2_FILE
    frame = _read_printed(path)
    if list(frame.columns) != table2_columns():
        raise DataError(path, f"columns {list(frame.columns)}, "
                        f"expected {table2_columns()}")
    return frame


def table2_columns() -> list[str]:
    """The printed header of Table 2 flattened: ``"REFUGE2-Disc Dice"`` and so on."""
    metrics = {"BraTs": ("Dice", "IoU", "HD95")}
    return ["group", "model", *(f"{group} {metric}" for group in TABLE2_GROUPS
                                for metric in metrics.get(group, ("Dice", "IoU")))]


def _read_printed(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise DataError(path, "published-numbers table not found")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def printed_value(text: str, scale: float = 1.0) -> float:
    """A printed cell as a number (``-`` -> NaN), divided by ``scale``."""
    text = str(text).strip()
    if text in (MISSING, ""):
        return float("nan")
    return float(text) / scale


def published_long(folder: Path | None = None) -> pd.DataFrame:
    """Both tables in one tidy frame, values in harness units.

    Columns: ``table`` ("Table 1" | "Table 2"), ``group`` (Table 2's row
    group), ``model``, ``column`` (as printed), ``paper_dataset``,
    ``paper_target``, ``metric``, ``printed`` (the cell's text), ``value``
    (fraction for Dice/IoU, mm for HD95; NaN where the paper prints ``-``),
    ``unit`` (the printed unit).
    """
    folder = Path(folder) if folder is not None else reports_folder()
    records = []
    for row in load_table1(folder / TABLE1_FILE).to_dict(orient="records"):
        for column in (*TABLE1_TARGETS, TABLE1_AVERAGE):
            records.append({"table": "Table 1", "group": "", "model": row["model"],
                            "column": column, "paper_dataset": "BTCV", "paper_target": column,
                            "metric": "dice", "printed": row[column],
                            "value": printed_value(row[column]), "unit": "fraction"})
    for row in load_table2(folder / TABLE2_FILE).to_dict(orient="records"):
        for column in table2_columns()[2:]:
            group, metric = column.rsplit(" ", 1)
            percent = metric in ("Dice", "IoU")
            records.append({"table": "Table 2", "group": row["group"], "model": row["model"],
                            "column": column, "paper_dataset": group, "paper_target": group,
                            "metric": TABLE2_METRICS[metric], "printed": row[column],
                            "value": printed_value(row[column], 100.0 if percent else 1.0),
                            "unit": "%" if percent else "unstated (read as mm)"})
    return pd.DataFrame.from_records(records, columns=LONG_COLUMNS)


def _alias_match(name: str, aliases: tuple[str, ...]) -> bool:
    return normalise(name) in {normalise(a) for a in aliases}


def _run_target(targets: list[str], aliases: tuple[str, ...], fallback: bool) -> str | None:
    """The run's target named by ``aliases``; with ``fallback``, the only target if one."""
    hits = [t for t in targets if _alias_match(t, aliases)]
    if hits:
        return hits[0]
    return targets[0] if fallback and len(targets) == 1 else None


def locate(paper_table: str, paper_target: str, run_targets: Mapping[str, list[str]]
           ) -> tuple[str, str] | None:
    """The ``(dataset, target)`` of a run that a published column refers to, or None.

    ``run_targets`` maps each dataset of the run to its targets.
    """
    if paper_table == "Table 1":
        aliases = TABLE1_TARGETS.get(paper_target)
        if aliases is None:
            return None
        datasets, targets = TABLE1_DATASETS, aliases
    else:
        datasets, targets = TABLE2_GROUPS[paper_target]
    for dataset, names in run_targets.items():
        if _alias_match(dataset, datasets):
            # The single-target fallback only where one paper column maps to the dataset
            # (REFUGE2 has two: its disc must never stand in for its cup).
            sharing = sum(ds == datasets for ds, _ in TABLE2_GROUPS.values())
            fallback = paper_table == "Table 2" and sharing == 1
            target = _run_target(names, targets, fallback)
            if target is not None:
                return dataset, target
    return None


def published_beside(aggregates: pd.DataFrame, published: pd.DataFrame | None = None, *,
                     model_map: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Published cells next to the run's means for the same dataset, target, model, metric.

    Parameters
    ----------
    aggregates : DataFrame
        :func:`bench.aggregate.summarise` output of a run.
    published : DataFrame, optional
        :func:`published_long` output (default: the committed CSVs).
    model_map : mapping, optional
        Run model name -> paper model name, for names that do not match
        after normalisation.

    Returns
    -------
    DataFrame
        One row per matched cell: ``table, column, paper_model, model, dataset,
        target, metric, printed, published, reproduced, ci_low, ci_high, n,
        difference`` (reproduced - published, harness units). Table 1's
        ``Ave`` is matched when a model has all twelve organs: ``reproduced``
        is then the mean of its twelve organ means.
    """
    if published is None:
        published = published_long()
    columns = ["table", "column", "paper_model", "model", "dataset", "target", "metric",
               "printed", "published", "reproduced", "ci_low", "ci_high", "n", "difference"]
    if aggregates.empty:
        return pd.DataFrame(columns=columns)
    run_targets = {d: sorted(g["target"].unique()) for d, g in aggregates.groupby("dataset")}
    by_paper_name: dict[str, list[str]] = {}
    for model in aggregates["model"].unique():
        paper = (model_map or {}).get(model, model)
        by_paper_name.setdefault(normalise(paper), []).append(model)
    records = []
    for cell in published.itertuples(index=False):
        if cell.column == TABLE1_AVERAGE:
            continue
        place = locate(cell.table, cell.paper_target, run_targets)
        if place is None:
            continue
        for model in by_paper_name.get(normalise(cell.model), []):
            rows = aggregates[(aggregates["dataset"] == place[0])
                              & (aggregates["target"] == place[1])
                              & (aggregates["model"] == model)
                              & (aggregates["metric"] == cell.metric)]
            if rows.empty:
                continue
            row = rows.iloc[0]
            records.append({"table": cell.table, "column": cell.column, "paper_model": cell.model,
                            "model": model, "dataset": place[0], "target": place[1],
                            "metric": cell.metric, "printed": cell.printed,
                            "published": cell.value, "reproduced": float(row["mean"]),
                            "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"]),
                            "n": int(row["n"]), "difference": float(row["mean"]) - cell.value})
    result = pd.DataFrame.from_records(records, columns=columns)
    return pd.concat([result, _average_rows(result, published)], ignore_index=True)


def _average_rows(matched: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    table1 = matched[matched["table"] == "Table 1"]
    records = []
    for (paper_model, model), rows in table1.groupby(["paper_model", "model"]):
        if len(rows) != len(TABLE1_TARGETS):
            continue  # an average over fewer organs is not the paper's average
        printed = published[(published["table"] == "Table 1")
                            & (published["model"] == paper_model)
                            & (published["column"] == TABLE1_AVERAGE)].iloc[0]
        reproduced = float(rows["reproduced"].mean())
        records.append({"table": "Table 1", "column": TABLE1_AVERAGE, "paper_model": paper_model,
                        "model": model, "dataset": rows["dataset"].iloc[0],
                        "target": "(mean of 12 organs)", "metric": "dice",
                        "printed": printed["printed"], "published": printed["value"],
                        "reproduced": reproduced, "ci_low": np.nan, "ci_high": np.nan,
                        "n": int(rows["n"].min()), "difference": reproduced - printed["value"]})
    return pd.DataFrame.from_records(records, columns=matched.columns)


def table1_average_check(table1: pd.DataFrame | None = None) -> pd.DataFrame:
    """The printed ``Ave`` of each Table 1 row against the mean of its printed organs.

    Returns columns ``model, printed_ave, row_mean, difference`` (printed -
    row mean). Organ cells and the average are each rounded to 0.001,
    so a difference beyond :data:`AVERAGE_ROUNDING` (0.001) means the
    printed average is not the mean of the printed organ columns.
    """
    table1 = load_table1() if table1 is None else table1
    organs = table1[list(TABLE1_TARGETS)].map(printed_value).to_numpy(dtype=float)
    printed = table1[TABLE1_AVERAGE].map(printed_value).to_numpy(dtype=float)
    row_mean = organs.mean(axis=1)
    return pd.DataFrame({"model": table1["model"], "printed_ave": printed,
                         "row_mean": row_mean, "difference": printed - row_mean})


def iou_dice_consistency(table2: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 2 cells where the printed mean IoU is below what the mean Dice allows.

    Per case IoU = D / (2 - D), a convex function of Dice, so by Jensen's
    inequality the mean IoU over the same cases is at least
    ``mean_D / (2 - mean_D)``. A printed IoU below that bound (beyond
    rounding of 0.05 points) cannot come from per-case means over one set of
    cases. Returns ``model, group, dice, iou, iou_lower_bound`` in percent.
    """
    table2 = load_table2() if table2 is None else table2
    records = []
    for row in table2.to_dict(orient="records"):
        for group in TABLE2_GROUPS:
            dice = printed_value(row[f"{group} Dice"], 100.0)
            iou = printed_value(row[f"{group} IoU"], 100.0)
            if np.isnan(dice) or np.isnan(iou):
                continue
            bound = dice / (2.0 - dice)
            # Printed to 0.1 points: allow half a unit of rounding on each side.
            if iou + 0.0005 < bound - _bound_rounding(dice):
                records.append({"model": row["model"], "group": group, "dice": dice * 100,
                                "iou": iou * 100, "iou_lower_bound": bound * 100})
    return pd.DataFrame.from_records(
        records, columns=["model", "group", "dice", "iou", "iou_lower_bound"])


def _bound_rounding(dice: float) -> float:
    # d/dD [D / (2 - D)] = 2 / (2 - D)^2; Dice printed to 0.1 points (0.0005 half-unit).
    return 2.0 / (2.0 - dice) ** 2 * 0.0005
