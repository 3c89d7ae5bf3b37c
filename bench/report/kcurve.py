"""Dice against the support set size k (one-prompt with ``k_shot``).

An in-context model (e.g. ``universeg``) runs once per k of the protocol's
``k_shot``; its rows are labelled ``MODEL@kK``
(:func:`bench.prompts.scope.k_label`). Every other model gets the template
prompt alone whatever k is, so it is drawn as a flat line across the k range,
dashed and marked "one prompt". Every support frame of the largest k is left
out of scoring for all models and every k, so all points of a panel are on
the same cases. One panel per dataset (and target, for datasets with several).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.prompts.scope import parse_k_label
from bench.report.document import Document, Heading, Paragraph, Table
from bench.report.figures import SYNTHETIC_MARK, _pyplot, save_figure

COLUMNS = ["label", "dataset", "target", "model", "k", "mean", "ci_low", "ci_high", "n",
           "one_prompt"]
ONE_PROMPT = " (one prompt)"
RANDOM = " [RANDOM WEIGHTS]"
TEXT = ("In-context models (here: {models}) segment each frame from a support set of k "
        "(frame, mask) pairs: the template and k - 1 frames drawn per flow and target (keyed "
        "stream; nested sets, see the protocol card), once per k of k_shot. Models marked 'one "
        "prompt' get the template prompt alone at every k: a flat line. Every support frame "
        "of the largest k is left out of scoring for every model and every k, so all points "
        "of a panel are on the same cases. Mean Dice per dataset (and target) [95 % CI].")


def k_shot_values(summary: dict[str, Any]) -> tuple[int, ...]:
    """The run's ``k_shot`` values (summary ``protocol_params``), sorted; () when unset."""
    k_shot = (summary.get("protocol_params") or {}).get("k_shot")
    if k_shot is None:
        return ()
    return tuple(sorted({int(k) for k in (k_shot if isinstance(k_shot, list) else [k_shot])}))


def k_curve_data(aggregates: pd.DataFrame, ks: Sequence[int], *,
                 metric: str = "dice") -> pd.DataFrame:
    """The points of the curves: in-context models at their k, the others at every k.

    Columns :data:`COLUMNS`; ``label`` is the dataset, or ``dataset/target``
    for datasets with several targets; ``one_prompt`` marks the models that
    are not in-context (the same value repeated at every k). Empty when no
    model of ``aggregates`` is labelled with a k.
    """
    rows = aggregates[aggregates["metric"] == metric] if not aggregates.empty else aggregates
    if rows.empty or not ks:
        return pd.DataFrame(columns=COLUMNS)
    parsed = [parse_k_label(m) for m in rows["model"]]
    if not any(k is not None for _, k in parsed):
        return pd.DataFrame(columns=COLUMNS)
    n_targets = rows.groupby("dataset")["target"].nunique()
    records = []
    for (_, row), (model, k) in zip(rows.iterrows(), parsed, strict=True):
        label = row["dataset"] if n_targets[row["dataset"]] == 1 else \
            f"{row['dataset']}/{row['target']}"
        base = {"label": label, "dataset": row["dataset"], "target": row["target"],
                "mean": row["mean"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                "n": row["n"]}
        if k is not None:
            records.append({**base, "model": model, "k": k, "one_prompt": False})
        else:
            records.extend({**base, "model": model, "k": kk, "one_prompt": True} for kk in ks)
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    return frame.sort_values(["label", "one_prompt", "model", "k"],
                             kind="stable").reset_index(drop=True)


def k_curve_table(data: pd.DataFrame, digits: int = 3,
                  stamped: Sequence[str] = ()) -> pd.DataFrame:
    """Display strings: a row per panel and model, a column per k (``mean [low, high]``).

    ``stamped``: models run with random weights, marked ``[RANDOM WEIGHTS]``.
    """
    if data.empty:
        return pd.DataFrame()
    def cell(row: pd.Series) -> str:
        if pd.isna(row["mean"]):
            return "-"
        return (f"{row['mean']:.{digits}f} [{row['ci_low']:.{digits}f}, "
                f"{row['ci_high']:.{digits}f}]")
    shown = data.assign(cell=data.apply(cell, axis=1),
                        row=data["model"] + np.where(data["one_prompt"], ONE_PROMPT, "")
                        + np.where(data["model"].isin(list(stamped)), RANDOM, ""))
    wide = shown.pivot_table(index=["label", "row"], columns="k", values="cell",
                             aggfunc="first", sort=False)
    wide.columns = [f"k = {k}" for k in wide.columns]
    wide = wide.reset_index().rename(columns={"label": "dataset", "row": "model"})
    return wide


def k_curve_figure(data: pd.DataFrame, path: Path, *, synthetic: bool,
                   stamped: Sequence[str] = ()) -> Path | None:
    """Dice against k, a panel per dataset (and target); one-prompt models dashed and flat.

    ``stamped``: models run with random weights, marked in the legend.
    """
    if data.empty:
        return None
    plt = _pyplot()
    labels = list(dict.fromkeys(data["label"]))
    models = list(dict.fromkeys(data["model"]))
    cmap = plt.get_cmap("tab10")
    colours = {model: cmap(i % 10) for i, model in enumerate(models)}
    columns = min(len(labels), 4)
    rows = -(-len(labels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns + 0.5, 2.9 * rows + 0.9),
                             squeeze=False)
    ks = sorted(data["k"].unique())
    for ax, label in zip(axes.flat, labels, strict=False):
        panel = data[data["label"] == label]
        for model in models:
            line = panel[panel["model"] == model].sort_values("k")
            if line.empty:
                continue
            flat = bool(line["one_prompt"].iloc[0])
            name = model + (ONE_PROMPT if flat else "") + (RANDOM if model in stamped else "")
            ax.plot(line["k"], line["mean"], linestyle="--" if flat else "-",
                    marker=None if flat else "o", color=colours[model], label=name)
            ax.fill_between(line["k"].to_numpy(dtype=float),
                            line["ci_low"].to_numpy(dtype=float),
                            line["ci_high"].to_numpy(dtype=float),
                            color=colours[model], alpha=0.12, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_ylim(0, 1.02)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("support set size k", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    axes[0][0].set_ylabel("mean Dice, 95 % CI")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", fontsize=8, ncol=min(len(names), 3),
               frameon=False)
    fig.suptitle("Dice against the support set size k" + (SYNTHETIC_MARK if synthetic else ""),
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.1 + 0.04 * ((len(names) - 1) // 3), 1, 0.95))
    return save_figure(fig, path)


def add_section(doc: Document, ctx: Any) -> None:
    """The k-curve section of a report (nothing when the run has no in-context rows)."""
    ks = k_shot_values(ctx.summary)
    data = k_curve_data(ctx.aggregates, ks)
    if data.empty:
        return
    random = ctx.summary.get("random_weights") or []
    stamped = [m for m in data["model"].unique()
               if m in random or any(parse_k_label(s)[0] == m for s in random)]
    path = k_curve_figure(data, ctx.rundir.figures_dir / "dice_vs_k.png",
                          synthetic=ctx.synthetic, stamped=stamped)
    in_context = sorted(data.loc[~data["one_prompt"], "model"].unique())
    doc.add(Heading("Dice versus support set size k"),
            Paragraph(TEXT.format(models=", ".join(in_context))))
    if path is not None:
        doc.add(ctx.figure(path, "Mean Dice against k (log scale), a panel per dataset; dashed: "
                                 "models given one prompt (flat by construction)."))
    doc.add(Table(k_curve_table(data, stamped=stamped),
                  "Mean Dice [95 % CI] per k; one-prompt models repeat their single value.",
                  wide=len(ks) > 4))
