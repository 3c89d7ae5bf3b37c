"""Reference floors: the all-background and all-foreground predictions.

A real method must beat both. ``empty`` scores Dice 0 wherever the target is
present; ``full-frame`` scores the target's area fraction, which is high for
large targets (e.g. a lesion filling a dermoscopy crop) and so is the more
telling floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from bench.adapters.base import Adapter, Capabilities, register

from bench.frames import PackedMasks, frame_shapes
from bench.prompts.alpnet import KIND as SUPPORT_VOLUME
from bench.types import PROMPT_KINDS, FlowFrames, Prediction, Prompt

_ALL_PROMPTS = frozenset({*PROMPT_KINDS, "empty-mask", SUPPORT_VOLUME})


def prompted_targets(prompts: Sequence[Prompt]) -> list[str]:
    """Targets that have at least one prompt, in order of first appearance."""
    return list(dict.fromkeys(prompt.target for prompt in prompts))


def frame_shape(frame: np.ndarray, index: int = 0) -> tuple[int, int]:
    """The ``(H, W)`` of a grey ``(H, W)`` or RGB ``(H, W, 3)`` frame."""
    frame = np.asarray(frame)
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3):
        return int(frame.shape[0]), int(frame.shape[1])
    raise ValueError(f"frame {index}: expected shape (H, W) or (H, W, 3), got {frame.shape}")


def frame_sizes(frames: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """The ``(H, W)`` of every frame (see :func:`frame_shape`), without reading lazy frames."""
    sizes = []
    for index, shape in enumerate(frame_shapes(frames)):
        if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
            raise ValueError(f"frame {index}: expected shape (H, W) or (H, W, 3), got {shape}")
        sizes.append((int(shape[0]), int(shape[1])))
    return sizes


def _constant_prediction(flow: FlowFrames, prompts: Sequence[Prompt], value: bool) -> Prediction:
    shapes = frame_sizes(flow.frames)
    masks = {target: PackedMasks.filled(shapes, value) for target in prompted_targets(prompts)}
    return Prediction(masks=masks)


@register
@dataclass
class EmptyAdapter(Adapter):
    """Predicts no foreground anywhere."""

    name = "empty"
    description = "Floor: predicts background everywhere (all-False masks); ignores prompts."
    capabilities = Capabilities(prompt_kinds=_ALL_PROMPTS, prompt_free=True)

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        return _constant_prediction(flow, prompts, False)


@register
@dataclass
class FullFrameAdapter(Adapter):
    """Predicts the whole frame as foreground."""

    name = "full-frame"
    description = (
        "Floor: predicts the whole frame as the target (all-True masks); ignores prompts. "
        "Its Dice is the target's area fraction, so a method must beat it to show any skill."
    )
    capabilities = Capabilities(prompt_kinds=_ALL_PROMPTS, prompt_free=True)

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        return _constant_prediction(flow, prompts, True)
