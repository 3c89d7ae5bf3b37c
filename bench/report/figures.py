"""Figures of a run (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.io import atomic_path


def dice_bars(aggregates: pd.DataFrame, folder: Path, *, synthetic: bool) -> list[Path]:
    """Grouped bars of mean Dice (95 % CI whiskers) per dataset/target and model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dice = aggregates[aggregates["metric"] == "dice"]
    if dice.empty:
        return []
    dice = dice.assign(group=dice["dataset"] + "\n" + dice["target"])
    groups = sorted(dice["group"].unique())
    models = sorted(dice["model"].unique())
    width = 0.8 / len(models)
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.2))
    for offset, model in enumerate(models):
        rows = dice[dice["model"] == model].set_index("group").reindex(groups)
        means = rows["mean"].to_numpy(dtype=float)
        errors = np.vstack([means - rows["ci_low"].to_numpy(dtype=float),
                            rows["ci_high"].to_numpy(dtype=float) - means])
        ax.bar(x + (offset - (len(models) - 1) / 2) * width, means, width, label=model,
               yerr=np.nan_to_num(errors), capsize=2)
    ax.set_xticks(x, groups, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice (mean, 95 % CI)")
    title = "Dice per dataset and target"
    if synthetic:
        title += " (SYNTHETIC demo data)"
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(folder) / "dice_by_dataset.png"
    with atomic_path(path) as temp:
        fig.savefig(temp, dpi=120, format="png")
    plt.close(fig)
    return [path]
