"""Drawing prompts over a frame (for ``bench prompts RUN_DIR``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.atomic import atomic_path
from bench.types import Prompt

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#17becf", "#bcbd22", "#7f7f7f")


def draw_prompts(frame: np.ndarray, prompts: Sequence[Prompt], path: str | os.PathLike[str],
                 *, title: str | None = None) -> Path:
    """Draw ``prompts`` over ``frame`` and save a PNG to ``path`` (written atomically).

    Positive clicks are stars, negative clicks crosses, boxes rectangles and
    mask prompts contours; one colour per target. ``empty-mask`` prompts are
    listed in the legend. Uses matplotlib's Agg canvas, no display needed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    image = np.asarray(frame)
    if image.ndim not in (2, 3):
        raise ValueError(f"draw_prompts: expected a 2D or RGB frame, got shape {image.shape}")
    height, width = image.shape[:2]
    figure = Figure(figsize=(6, 6 * height / max(width, 1) + 0.4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    targets = sorted({p.target for p in prompts})
    colour = {t: _COLOURS[i % len(_COLOURS)] for i, t in enumerate(targets)}
    labelled: set[str] = set()
    for prompt in prompts:
        c = colour[prompt.target]
        label = None if prompt.target in labelled else prompt.target
        labelled.add(prompt.target)
        for (x, y), positive in zip(prompt.points, prompt.labels, strict=True):
            axes.plot([x], [y], marker="*" if positive else "X", markersize=14, color=c,
                      markeredgecolor="white", linestyle="none", label=label)
            label = None
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            # Inclusive pixel box: edges at the outer pixel borders.
            axes.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False,
                                     edgecolor=c, linewidth=2, label=label))
            label = None
        if prompt.kind == "empty-mask":
            axes.plot([], [], linestyle="none", marker="s", color=c,
                      label=f"{prompt.target}: empty-mask (absent)")
        elif prompt.mask is not None and np.any(prompt.mask):
            axes.contour(np.asarray(prompt.mask, dtype=float), levels=[0.5], colors=[c],
                         linewidths=2)
            if label:
                axes.plot([], [], color=c, label=label)
    if prompts:
        axes.legend(loc="upper right", fontsize=8, framealpha=0.7)
    axes.set_xlim(-0.5, width - 0.5)
    axes.set_ylim(height - 0.5, -0.5)
    axes.set_axis_off()
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as temp:
        figure.savefig(temp, format="png")
    return path
