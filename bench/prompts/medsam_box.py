"""The ``medsam-box`` protocol: MedSAM's ground-truth box with its random shift.

Upstream rule (bowang-lab/MedSAM, ``train_one_gpu.py`` and ``train_multi_gpus.py``,
``NpyDataset.__getitem__``, commit d71e8a1a99ad751840a22a7fa3ecfb4166fb1488):

1. the tight box of the target on the 2D frame: the smallest and largest
   column and row index holding a target pixel;
2. four independent integer draws, each uniform in ``0 .. bbox_shift``
   *inclusive* (Python's ``random.randint``), taken in the order: left side,
   right side, top side, bottom side (``x_min``, ``x_max``, ``y_min``,
   ``y_max``; note this is not the ``x0, y0, x1, y1`` order);
3. the left and top sides move out by their draw and stop at 0; the right
   and bottom sides move out by theirs and stop at ``W`` and ``H``, the
   frame's width and height (not ``W - 1`` and ``H - 1``), so a box that
   reaches the right or bottom edge reads one past the last pixel index, as
   MedSAM's boxes do; ``bbox_shift`` defaults to 20 (the dataset's default).

The harness takes the four draws from one keyed stream per (target, frame)
(purpose ``bbox_shift``), in the upstream order; :func:`shift_box` is the
rule given the draws, so a test can hand it the integers an upstream run drew.

Upstream applies the rule to frames resampled to 1024 x 1024 (``pre_CT_MR.py``);
the harness applies it in each frame's own pixels, so ``bbox_shift`` pixels
are native pixels. Upstream draws from Python's global ``random`` (unseeded in
the training script); the harness's draws come from the keyed streams.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.prompts.kinds import present_frames, tight_box
from bench.prompts.streams import KeyedStream
from bench.types import Flow, Prompt

PROTOCOL = "medsam-box"
#: MedSAM's ``NpyDataset(bbox_shift=20)`` default.
DEFAULT_BBOX_SHIFT = 20
#: Upstream source of the rule (repository, files, commit).
UPSTREAM = ("bowang-lab/MedSAM", "train_one_gpu.py (NpyDataset.__getitem__)",
            "d71e8a1a99ad751840a22a7fa3ecfb4166fb1488")
#: The ledger kind of the protocol's prompts (a loosened box).
KIND = "box-jitter"


def shift_draws(stream: KeyedStream, bbox_shift: int) -> tuple[int, int, int, int]:
    """The four draws, each uniform in ``[0, bbox_shift]``, in upstream order.

    Returns
    -------
    (left, right, top, bottom) : tuple of int
        How far ``x_min``, ``x_max``, ``y_min`` and ``y_max`` move out.
    """
    if isinstance(bbox_shift, bool) or not isinstance(bbox_shift, (int, np.integer)) \
            or bbox_shift < 0:
        raise ValueError(f"bbox_shift: expected a non-negative integer, got {bbox_shift!r}")
    left, right, top, bottom = (stream.integer(int(bbox_shift) + 1) for _ in range(4))
    return left, right, top, bottom


def shift_box(box: Sequence[int], shape: Sequence[int],
              draws: Sequence[int]) -> tuple[int, int, int, int]:
    """MedSAM's shifted box given the tight box and the four draws.

    Parameters
    ----------
    box : (x0, y0, x1, y1)
        The tight inclusive box.
    shape : (H, W, ...)
        The frame's shape.
    draws : (left, right, top, bottom)
        The outward moves, in upstream draw order (:func:`shift_draws`).

    Returns
    -------
    (x0, y0, x1, y1) : tuple of int
        ``x0, y0 >= 0``; ``x1 <= W`` and ``y1 <= H`` (upstream's bounds).
    """
    height, width = int(shape[0]), int(shape[1])
    x0, y0, x1, y1 = (int(v) for v in box)
    left, right, top, bottom = (int(d) for d in draws)
    return max(0, x0 - left), max(0, y0 - top), min(width, x1 + right), min(height, y1 + bottom)


def medsam_box(mask: np.ndarray, stream: KeyedStream,
               bbox_shift: int = DEFAULT_BBOX_SHIFT) -> tuple[int, int, int, int]:
    """The ``medsam-box`` box of one frame's non-empty ``mask``."""
    mask = np.asarray(mask).astype(bool, copy=False)
    return shift_box(tight_box(mask), mask.shape, shift_draws(stream, bbox_shift))


def select(flow: Flow, params: Any, kind: str | None,
           keyer: Callable[[str, int | None, str], KeyedStream]) -> list[Prompt]:
    """One shifted box on every frame (slice or image) containing the target."""
    prompts = []
    for target in flow.targets:
        for frame in present_frames(flow.masks[target]):
            mask = np.asarray(flow.masks[target][frame]).astype(bool, copy=False)
            box = medsam_box(mask, keyer(target, frame, "bbox_shift"), params.bbox_shift)
            prompts.append(Prompt(target, int(frame), KIND, box=box))
    return prompts


def card(params: Any, kind: str | None) -> str:
    """The protocol card of ``medsam-box``."""
    shift = params.bbox_shift
    repo, file, commit = UPSTREAM
    return (f"medsam-box (MedSAM's box rule, {repo} {file} @ {commit[:7]}): one box on every "
            f"frame containing the target (every image of an image flow, every slice of a "
            f"volume where the target is present, as MedSAM segments volumes slice by "
            f"slice): the tight box with each side moved out by its own uniform draw in "
            f"0..{shift} px (inclusive; drawn left, right, top, bottom from the keyed "
            f"streams), the left and top sides stopped at 0, the right and bottom at the "
            f"frame's width and height (not width - 1: MedSAM's own bound). The shift is in "
            f"the frame's own pixels (MedSAM's are 1024 x 1024 resampled pixels). Taken from "
            f"ground truth beyond the prompts: which frames contain the target (frames "
            f"without a box are known to be empty) and the target's loosened box. Scoring: "
            f"every frame is scored, box-prompted ones included; on volumes the whole volume "
            f"is one case scored in 3D, slices without a box counting with whatever the "
            f"model predicts there (per-slice models predict nothing).")
