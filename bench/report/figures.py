"""Figures of a run (matplotlib's Agg canvas, no display; written atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.atomic import atomic_path
from bench.report.figure_cache import memoised

SYNTHETIC_MARK = " (SYNTHETIC demo data)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically and close it."""
    plt = _pyplot()
    with atomic_path(Path(path)) as temp:
        fig.savefig(temp, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)


#: Metrics in [0, 1] (drawn on a fixed 0-1 axis); the others are distances, axis from 0.
FRACTION_METRICS = ("dice", "iou", "nsd", "nsd_deepmind", "dice_official", "iou_official")
METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "hd95_max": "HD95-max",
                "assd": "ASSD", "nsd": "NSD", "nsd_deepmind": "NSD (DeepMind)",
                "dice_official": "Dice (official)",
                "iou_official": "IoU (official)"}


def metric_axis_label(metric: str) -> str:
    """``Dice``, ``HD95 (mm or px)``: the metric's name and, for distances, the unit."""
    name = METRIC_NAMES.get(metric, metric)
    return name if metric in FRACTION_METRICS else f"{name} (mm; px without spacing)"


def _grouped_bars(ax, frame: pd.DataFrame, groups: list[str], models: list[str], *,
                  fraction: bool = True) -> None:
    """Bars of ``mean`` with CI whiskers, a cluster per group and a bar per model
    (``fraction``: a fixed 0-1 axis; otherwise from 0 to the data)."""
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(groups))
    colours = _colours(models)
    for offset, model in enumerate(models):
        rows = (frame[frame["model"] == model].drop_duplicates("label").set_index("label")
                .reindex(groups))
        means = rows["mean"].to_numpy(dtype=float)
        errors = np.vstack([means - rows["ci_low"].to_numpy(dtype=float),
                            rows["ci_high"].to_numpy(dtype=float) - means])
        ax.bar(x + (offset - (len(models) - 1) / 2) * width, np.nan_to_num(means), width,
               label=model, color=colours[model], yerr=np.nan_to_num(np.clip(errors, 0, None)),
               capsize=2, error_kw={"linewidth": 0.8})
    ax.set_xticks(x, groups, fontsize=8, rotation=20 if len(groups) > 4 else 0, ha="right"
                  if len(groups) > 4 else "center")
    if fraction:
        ax.set_ylim(0, 1.02)
    else:
        ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)


def _colours(models: list[str]) -> dict[str, tuple]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {model: cmap(i % 10) for i, model in enumerate(models)}


@memoised
def figure4(data: pd.DataFrame, path: Path, *, synthetic: bool,
            metric: str = "dice") -> Path | None:
    """Bars of ``metric`` per dataset and model, a panel per prompt kind (with Dice: the
    paper's Figure 4 layout).

    ``data`` is :func:`bench.report.tables.figure4_data` for the same ``metric``.
    """
    if data.empty:
        return None
    plt = _pyplot()
    kinds = list(dict.fromkeys(data["kind"]))
    models = list(dict.fromkeys(data["model"]))
    sizes = [data.loc[data["kind"] == k, "label"].nunique() for k in kinds]
    fig, axes = plt.subplots(1, len(kinds), figsize=(max(6.0, 1.3 * sum(sizes) + 2.5), 4.2),
                             squeeze=False, gridspec_kw={"width_ratios": sizes})
    for ax, kind in zip(axes[0], kinds, strict=True):
        panel = data[data["kind"] == kind]
        _grouped_bars(ax, panel, list(dict.fromkeys(panel["label"])), models,
                      fraction=metric in FRACTION_METRICS)
        ax.set_title(f"{kind} prompt", fontsize=10)
    axes[0][0].set_ylabel(f"mean {metric_axis_label(metric)}, 95 % CI")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=min(len(models), 6),
               frameon=False)
    fig.suptitle(f"{METRIC_NAMES.get(metric, metric)} per dataset and model, a panel per "
                 "prompt kind"
                 + (SYNTHETIC_MARK if synthetic else ""), fontsize=10)
    bottom = 0.1 + 0.05 * ((len(models) - 1) // 6)
    fig.tight_layout(rect=(0, bottom, 1, 0.95))
    return save_figure(fig, path)


@memoised
def seed_strip(spread: pd.DataFrame, path: Path, *, synthetic: bool) -> Path | None:
    """Per-seed mean Dice as dots per dataset/target and model (the spread across seeds)."""
    seed_columns = [c for c in spread.columns if str(c).startswith("seed ")]
    if spread.empty or len(seed_columns) < 2:
        return None
    plt = _pyplot()
    labels = [f"{r.dataset}/{r.target}\n{r.model}" for r in spread.itertuples()]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.0))
    for i, row in enumerate(spread[seed_columns].to_numpy(dtype=float)):
        ax.plot(np.full(row.shape, i), row, "o", color="tab:blue", alpha=0.7)
        ax.plot([i - 0.2, i + 0.2], [np.nanmean(row)] * 2, color="black", linewidth=1.5)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("mean Dice per seed")
    ax.set_title("Spread across seeds (template choice)" + (SYNTHETIC_MARK if synthetic
                                                            else ""), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


@memoised
def click_lines(curve: pd.DataFrame, path: Path, *, synthetic: bool) -> Path | None:
    """Mean Dice after each click, a line per dataset/target and model."""
    if curve.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for (dataset, target, model), rows in curve.groupby(["dataset", "target", "model"]):
        ax.plot(rows["click"], rows["mean"], marker="o", markersize=3,
                label=f"{dataset}/{target} {model}")
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("Dice against the number of clicks" + (SYNTHETIC_MARK if synthetic else ""),
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


@memoised
def case_distribution(values: pd.DataFrame, path: Path, *, dataset: str, metrics: list[str],
                      synthetic: bool) -> Path | None:
    """Per-case values of one dataset: a panel per metric, a box per target and model with
    the cases drawn over it as jittered dots.

    ``values`` has columns ``target, model, metric, value`` (scored cases only).
    """
    metrics = [m for m in metrics if (values["metric"] == m).any()]
    if not metrics:
        return None
    plt = _pyplot()
    models = list(dict.fromkeys(values["model"]))
    targets = list(dict.fromkeys(values["target"]))
    colours = _colours(models)
    width = 0.8 / max(len(models), 1)
    # A row per metric; as wide as the boxes need, within what a page can show.
    fig, axes = plt.subplots(len(metrics), 1, squeeze=False, figsize=(
        min(16.0, max(6.0, 0.5 * len(targets) * len(models) + 2.0)), 2.6 * len(metrics) + 1.0))
    # Fixed seed: the dots' jitter is the same on every report of the run.
    jitter = np.random.default_rng(0)
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        rows = values[values["metric"] == metric]
        for t, target in enumerate(targets):
            for m, model in enumerate(models):
                case_values = rows.loc[(rows["target"] == target) & (rows["model"] == model),
                                       "value"].to_numpy(dtype=float)
                if case_values.size == 0:
                    continue
                x = t + (m - (len(models) - 1) / 2) * width
                box = ax.boxplot(case_values, positions=[x], widths=width * 0.8,
                                 patch_artist=True, showfliers=False, manage_ticks=False,
                                 medianprops={"color": "black"})
                for patch in box["boxes"]:
                    patch.set(facecolor=colours[model], alpha=0.35)
                ax.plot(x + jitter.uniform(-0.25, 0.25, case_values.size) * width, case_values,
                        "o", markersize=2.5, color=colours[model], alpha=0.8,
                        label=model if t == 0 else None)
        ax.set_xticks(range(len(targets)), targets, fontsize=8,
                      rotation=20 if len(targets) > 6 else 0,
                      ha="right" if len(targets) > 6 else "center")
        ax.set_ylabel(metric_axis_label(metric), fontsize=9)
        if metric in FRACTION_METRICS:
            ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=min(len(models), 6),
               frameon=False)
    fig.suptitle(f"{dataset}: per-case values, a box per target and model"
                 + (SYNTHETIC_MARK if synthetic else ""), fontsize=10)
    bottom = (0.45 + 0.25 * ((len(models) - 1) // 6)) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1 - 0.35 / fig.get_figheight()))
    return save_figure(fig, path)
