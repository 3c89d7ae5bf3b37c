"""Figures of a run (matplotlib's Agg canvas, no display; written atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.atomic import atomic_path

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


def _grouped_bars(ax, frame: pd.DataFrame, groups: list[str], models: list[str]) -> None:
    """Bars of ``mean`` with CI whiskers, a cluster per group and a bar per model."""
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
    ax.set_ylim(0, 1.02)
    ax.grid(axis="y", alpha=0.3)


def _colours(models: list[str]) -> dict[str, tuple]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {model: cmap(i % 10) for i, model in enumerate(models)}


def figure4(data: pd.DataFrame, path: Path, *, synthetic: bool) -> Path | None:
    """The paper's Figure 4 layout: a panel per prompt kind, Dice bars per dataset and model.

    ``data`` is :func:`bench.report.tables.figure4_data`.
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
        _grouped_bars(ax, panel, list(dict.fromkeys(panel["label"])), models)
        ax.set_title(f"{kind} prompt", fontsize=10)
    axes[0][0].set_ylabel("Dice (mean, 95 % CI)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=min(len(models), 6),
               frameon=False)
    fig.suptitle("Dice per dataset and model, a panel per prompt kind"
                 + (SYNTHETIC_MARK if synthetic else ""), fontsize=10)
    bottom = 0.1 + 0.05 * ((len(models) - 1) // 6)
    fig.tight_layout(rect=(0, bottom, 1, 0.95))
    return save_figure(fig, path)


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
