"""The ledger's prompts of one flow grouped per target and frame, as SAM-family models take them.

Points of one target and frame are concatenated (with their labels); a box
may come with points; a mask (or ``empty-mask``, an all-zero mask that SAM 2
takes as "object absent on this frame") must be alone on its frame. Shared
by the SAM 2 video adapters and the per-frame SAM adapters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.types import PROMPT_KINDS, Prompt

SAM_PROMPT_KINDS = frozenset({*PROMPT_KINDS, "empty-mask"})


@dataclass
class FramePrompt:
    """All prompts of one target on one frame, merged for SAM 2."""

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[int, int, int, int] | None = None
    mask: np.ndarray | None = None


def group_prompts(
    prompts: Sequence[Prompt], shapes: Sequence[tuple[int, int]], flow_id: str = ""
) -> dict[str, dict[int, FramePrompt]]:
    """Prompts by target and frame, checked against the flow.

    Points of one target and frame are concatenated; a box may come with
    points; a mask (or ``empty-mask``) must be alone on its frame.
    """
    where = f"flow {flow_id}: " if flow_id else ""
    grouped: dict[str, dict[int, FramePrompt]] = {}
    for prompt in prompts:
        what = f"{where}prompt {prompt.kind!r} for target {prompt.target!r} on frame {prompt.frame}"
        if prompt.kind not in SAM_PROMPT_KINDS:
            raise ValueError(f"{what}: unsupported kind (supported: {sorted(SAM_PROMPT_KINDS)})")
        if not 0 <= prompt.frame < len(shapes):
            raise ValueError(f"{what}: the flow has {len(shapes)} frames")
        shape = shapes[prompt.frame]
        entry = grouped.setdefault(prompt.target, {}).setdefault(prompt.frame, FramePrompt())
        if prompt.kind in ("mask", "empty-mask"):
            if prompt.kind == "mask":
                if prompt.mask is None:
                    raise ValueError(f"{what}: the prompt carries no mask")
                mask = np.asarray(prompt.mask, dtype=bool)
            else:
                mask = np.zeros(shape, dtype=bool)
            if mask.shape != shape:
                raise ValueError(f"{what}: mask shape {mask.shape} differs from the frame {shape}")
            if entry.mask is not None or entry.points or entry.box is not None:
                raise ValueError(f"{what}: a mask prompt cannot be combined with other prompts")
            entry.mask = mask
            continue
        if entry.mask is not None:
            raise ValueError(f"{what}: a mask prompt cannot be combined with other prompts")
        if prompt.kind in ("box", "box-jitter"):
            if prompt.box is None or len(prompt.box) != 4:
                raise ValueError(f"{what}: expected a box (x0, y0, x1, y1)")
            if entry.box is not None:
                raise ValueError(f"{what}: two boxes on one frame")
            entry.box = tuple(int(v) for v in prompt.box)  # type: ignore[assignment]
        if prompt.kind in ("point", "point-random") or prompt.points:
            if not prompt.points or len(prompt.points) != len(prompt.labels):
                raise ValueError(f"{what}: expected points with one label each, got "
                                 f"{len(prompt.points)} points and {len(prompt.labels)} labels")
            entry.points.extend((float(x), float(y)) for x, y in prompt.points)
            entry.labels.extend(int(v) for v in prompt.labels)
    return grouped
