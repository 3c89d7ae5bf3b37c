"""Qualitative gallery: best, median and worst case per model and dataset.

Each panel shows the frame with the ground truth (green), the prediction
(red) and the prompts (yellow: positive clicks as stars, negative clicks as
crosses, boxes as rectangles). Frames and ground truth are re-read by flow id
through the dataset card recorded in the run
(:meth:`bench.rundir.RunDir.read_flow`, which checks that the frames are
those the run used); predictions come from the run's ``predictions/`` folder
as written by :mod:`bench.store`. A case that cannot be drawn (data no longer
readable or changed, prediction file missing) is skipped with a note.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.aggregate import is_scored
from bench.errors import DataError
from bench.report.figure_cache import active, cached_figure, sha256_file
from bench.report.figures import SYNTHETIC_MARK, _pyplot, save_figure
from bench.rundir import RunDir
from bench.store import image_path, read_image, read_volume, safe_name, volume_path
from bench.types import Flow

RANKS = ("best", "median", "worst")


@dataclass(frozen=True)
class Pick:
    """A case chosen for the gallery."""

    dataset: str
    model: str
    seed: int
    rank: str
    flow: str
    case: str
    target: str
    value: float


@dataclass
class Panel:
    pick: Pick
    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    prompts: list[dict[str, Any]]
    note: str = ""


def pick_cases(table: pd.DataFrame, *, metric: str = "dice") -> list[Pick]:
    """Best, median (lower median) and worst scored case per dataset and model.

    Uses the run's first seed; ties are broken by flow, case and target so
    the choice is reproducible.
    """
    rows = table[(table["metric"] == metric) & is_scored(table)]
    if rows.empty:
        return []
    rows = rows[rows["seed"] == rows["seed"].min()]
    picks = []
    for (dataset, model), group in rows.groupby(["dataset", "model"], sort=False):
        ordered = group.sort_values(["value", "flow", "case", "target"], kind="stable")
        chosen = {"best": ordered.iloc[-1], "median": ordered.iloc[(len(ordered) - 1) // 2],
                  "worst": ordered.iloc[0]}
        for rank in RANKS:
            row = chosen[rank]
            picks.append(Pick(str(dataset), str(model), int(row["seed"]), rank, str(row["flow"]),
                              str(row["case"]), str(row["target"]), float(row["value"])))
    return picks


def panels_for_flow(rundir: RunDir, flow: Flow, picks: Iterable[Pick],
                    ledger_rows: list[dict[str, Any]]) -> tuple[list[Panel], list[str]]:
    """The panels of the picks that belong to ``flow`` (and notes for those skipped)."""
    panels, notes = [], []
    for pick in picks:
        try:
            panels.append(_panel(rundir, flow, pick, ledger_rows))
        except DataError as err:
            notes.append(f"{pick.dataset} {pick.model} {pick.rank} ({pick.case}/{pick.target}) "
                         f"not drawn: {type(err).__name__}: {err}")
    return panels, notes


def _panel(rundir: RunDir, flow: Flow, pick: Pick, ledger_rows: list[dict[str, Any]]) -> Panel:
    folder = rundir.prediction_folder(pick.model, pick.seed, pick.dataset)
    if flow.kind == "volume":
        path = volume_path(folder, flow.id, pick.target)
        predicted = read_volume(path, flow.meta)
        truth = np.stack([np.asarray(m, dtype=bool) for m in flow.masks[pick.target]])
        _check_shape(path, predicted, truth)
        # The slice with the most ground truth (or prediction when the truth is empty).
        area = truth.reshape(len(truth), -1).sum(axis=1)
        if not area.any():
            area = predicted.reshape(len(predicted), -1).sum(axis=1)
        index = int(np.argmax(area))
        truth, predicted = truth[index], predicted[index]
    else:
        if pick.case not in flow.case_ids:
            raise DataError(f"{flow.dataset}/{flow.id}", f"no case {pick.case!r} read now")
        index = list(flow.case_ids).index(pick.case)
        path = image_path(folder, pick.target, pick.case)
        predicted = read_image(path)
        truth = np.asarray(flow.masks[pick.target][index], dtype=bool)
        _check_shape(path, predicted, truth)
    image = np.asarray(flow.frames[index])
    own = [r for r in ledger_rows if r["dataset"] == pick.dataset and r["case"] == flow.id
           and r["seed"] == pick.seed and r["target"] == pick.target]
    here = [r for r in own if r["frame"] == index]
    note = f"slice {index}" if flow.kind == "volume" else ""
    if not here:
        frames = sorted({r["frame"] for r in own})
        shown = ", ".join(map(str, frames[:5])) + ("..." if len(frames) > 5 else "")
        note = ", ".join(filter(None, [note, f"prompted on frame {shown}" if frames
                                       else "no prompt for this target"]))
    elif any(r["kind"] == "mask" for r in here):
        note = ", ".join(filter(None, [note, "mask prompt = ground truth here"]))
    return Panel(pick, image, truth, predicted, here, note)


def _check_shape(path: Path, predicted: np.ndarray, truth: np.ndarray) -> None:
    if predicted.shape != truth.shape:
        raise DataError(path, f"prediction shape {predicted.shape} differs from the ground "
                        f"truth's {truth.shape}")


def _display_image(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    image = np.asarray(image, dtype=float)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3]
        low, high = float(image.min()), float(image.max())
        return (image - low) / (high - low or 1.0), None
    low, high = np.percentile(image, [0.5, 99.5])
    return np.clip((image - low) / ((high - low) or 1.0), 0, 1), "gray"


def _crop_box(panel: Panel, margin: float = 0.35) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the region around truth, prediction and prompts (whole frame when
    they cover a quarter of it or more)."""
    height, width = panel.truth.shape
    mask = panel.truth | panel.prediction
    rows, cols = list(np.nonzero(mask.any(axis=1))[0]), list(np.nonzero(mask.any(axis=0))[0])
    for prompt in panel.prompts:
        for x, y in prompt.get("points") or []:
            rows.append(int(y))
            cols.append(int(x))
        if prompt.get("box"):
            x0, y0, x1, y1 = prompt["box"]
            rows += [int(y0), int(y1)]
            cols += [int(x0), int(x1)]
    if not rows:
        return 0, height, 0, width
    r0, r1, c0, c1 = min(rows), max(rows) + 1, min(cols), max(cols) + 1
    if (r1 - r0) * (c1 - c0) >= 0.25 * height * width:
        return 0, height, 0, width
    side = int(max(r1 - r0, c1 - c0) * (1 + 2 * margin)) + 10
    rc, cc = (r0 + r1) // 2, (c0 + c1) // 2
    r0, c0 = max(0, rc - side // 2), max(0, cc - side // 2)
    return r0, min(height, r0 + side), c0, min(width, c0 + side)


def draw_gallery(panels: list[Panel], path: Path, *, dataset: str, synthetic: bool,
                 metric: str = "dice") -> Path:
    """A grid: a row per model, a column per rank (best, median, worst)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    models = list(dict.fromkeys(p.pick.model for p in panels))
    fig, axes = plt.subplots(len(models), len(RANKS), figsize=(3.2 * len(RANKS),
                                                               3.6 * len(models) + 0.6),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.set_axis_off()
    for panel in panels:
        ax = axes[models.index(panel.pick.model)][RANKS.index(panel.pick.rank)]
        r0, r1, c0, c1 = _crop_box(panel)
        image, cmap = _display_image(panel.image)
        extent = (c0 - 0.5, c1 - 0.5, r1 - 0.5, r0 - 0.5)
        ax.imshow(image[r0:r1, c0:c1], cmap=cmap, extent=extent, interpolation="nearest")
        for mask, colour, style in ((panel.truth, "#00d000", "solid"),
                                    (panel.prediction, "#ff3030", "dashed")):
            part = mask[r0:r1, c0:c1]
            if part.any():
                # Padded with background so that a mask filling the crop still shows its edge.
                ax.contour(np.arange(c0 - 1, c1 + 1), np.arange(r0 - 1, r1 + 1),
                           np.pad(part, 1).astype(float), levels=[0.5], colors=[colour],
                           linewidths=1.4, linestyles=style)
        for prompt in panel.prompts:
            for (x, y), label in zip(prompt.get("points") or [], prompt.get("labels") or [],
                                     strict=False):
                ax.plot([x], [y], marker="*" if label else "X", markersize=12,
                        color="yellow" if label else "cyan", markeredgecolor="black",
                        linestyle="none")
            if prompt.get("box"):
                x0, y0, x1, y1 = prompt["box"]
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1,
                                       fill=False, edgecolor="yellow", linewidth=1.5))
        ax.set_xlim(c0 - 0.5, c1 - 0.5)
        ax.set_ylim(r1 - 0.5, r0 - 0.5)
        title = (f"{panel.pick.model}: {panel.pick.rank}, {metric} {panel.pick.value:.3f}\n"
                 f"{_short(panel.pick.case)} / {panel.pick.target}")
        if panel.note:
            title += f"\n({panel.note})"
        ax.set_title(title, fontsize=7)
    legend = [Line2D([], [], color="#00d000", label="ground truth"),
              Line2D([], [], color="#ff3030", linestyle="dashed", label="prediction"),
              Line2D([], [], color="yellow", marker="*", markeredgecolor="black",
                     linestyle="none", label="prompt")]
    fig.legend(handles=legend, loc="outside lower center", fontsize=8, ncol=3)
    fig.suptitle(f"{dataset}: best, median and worst cases" + (SYNTHETIC_MARK if synthetic
                                                              else ""), fontsize=10)
    return save_figure(fig, path, dpi=100)


def _short(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def build_gallery(rundir: RunDir, table: pd.DataFrame, ledger_rows: list[dict[str, Any]], *,
                  synthetic: bool) -> tuple[list[tuple[str, Path]], list[str]]:
    """Draw one gallery figure per dataset of the run.

    Flows are re-read with :meth:`bench.rundir.RunDir.read_flow` (the card
    and root the run recorded).

    Returns
    -------
    (figures, notes)
        ``[(dataset, path)]`` and one line per case or dataset not drawn.
    """
    picks = pick_cases(table)
    cards = rundir.read_cards()
    listings: dict[tuple[str, str], Any] = {}
    figures, notes = [], []
    for entry in rundir.read_plan()["datasets"]:
        name = entry["name"]
        wanted = [p for p in picks if p.dataset == name]
        if not wanted:
            continue
        if name not in cards:
            notes.append(f"{name}: gallery skipped: no dataset card {name!r} recorded in the "
                         "run's config.json")
            continue
        path = rundir.figures_dir / f"gallery_{safe_name(name)}.png"
        parts = _gallery_parts(rundir, cards[name].kind, wanted, ledger_rows, synthetic) \
            if active() else None
        found: list[str] = []
        draw = functools.partial(_dataset_gallery, rundir, wanted, ledger_rows, listings, path,
                                 synthetic, found)
        # Drawn before from the same data, predictions and prompts: not read or drawn again
        # (a gallery with notes is never stored, so the notes come back with it).
        figure = cached_figure("gallery", parts, path, draw,
                               keep=lambda found=found: not found) \
            if parts is not None else draw()
        notes += found
        if figure is not None:
            figures.append((name, figure))
    return figures, notes


def _dataset_gallery(rundir: RunDir, wanted: list[Pick], ledger_rows: list[dict[str, Any]],
                     listings: dict[tuple[str, str], Any], path: Path, synthetic: bool,
                     notes: list[str]) -> Path | None:
    """Read the flows of one dataset's picks and draw its gallery at ``path`` (None when
    no panel could be drawn); what was left out is added to ``notes``."""
    name = wanted[0].dataset
    panels: list[Panel] = []
    for flow_id in dict.fromkeys(p.flow for p in wanted):
        try:
            flow = rundir.read_flow(name, flow_id, listings)
        except DataError as err:
            notes.append(f"{name}: flow {flow_id} not drawn: {err}")
            continue
        drawn, skipped = panels_for_flow(rundir, flow, [p for p in wanted if p.flow == flow_id],
                                         ledger_rows)
        panels += drawn
        notes += skipped
    if not panels:
        return None
    return draw_gallery(panels, path, dataset=name, synthetic=synthetic)


def _gallery_parts(rundir: RunDir, kind: str, wanted: list[Pick],
                   ledger_rows: list[dict[str, Any]], synthetic: bool) -> Any:
    """What one dataset's gallery shows, for the figure cache: the picks, the digests the
    manifest recorded for their flows, their ledger rows and the sha256 of every
    prediction file drawn; None when a flow or prediction file is missing (then it is
    drawn, and the reason noted, as without a cache)."""
    dataset = wanted[0].dataset
    flows = {f["id"]: f for f in
             rundir.read_manifest().get("datasets", {}).get(dataset, {}).get("flows", [])}
    picked = list(dict.fromkeys(p.flow for p in wanted))
    if any(flow not in flows for flow in picked):
        return None
    files = []
    for pick in wanted:
        folder = rundir.prediction_folder(pick.model, pick.seed, pick.dataset)
        path = volume_path(folder, pick.flow, pick.target) if kind == "volume" else \
            image_path(folder, pick.target, pick.case)
        if not path.is_file():
            return None
        files.append(sha256_file(path))
    rows = [r for r in ledger_rows if r["dataset"] == dataset and r["case"] in picked]
    return {"kind": kind, "synthetic": synthetic, "files": files,
            "picks": [list(astuple(p)) for p in wanted],
            "flows": [[flows[f]["frames_sha256"], flows[f]["masks_sha256"],
                       flows[f].get("case_ids", [])] for f in picked],
            "ledger": [r["hash"] for r in rows]}
