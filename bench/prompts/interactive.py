"""The RITM corrective clicker for the ``interactive`` protocol.

A session is one (flow, target, frame). The first click is the ledger's
prompt: the deepest ground-truth pixel (the ``point`` prompt, which equals
:func:`next_click` on an empty prediction). After each prediction the next
click goes to the error pixel deepest inside the false-negative (FN) or the
false-positive (FP) region, positive when the deepest FN distance is larger
(ties go negative, as in RITM). Distances use the convention of
:mod:`bench.prompts.kinds` (outside the image counts as outside the region),
and pixels already clicked are never clicked again.

A unit of the ``interactive`` protocol runs :func:`click_sessions`: one
session per ledger prompt, against ``adapter.predict_click``. Model adapters
never see ground truth; the harness owns it and asks the adapter once per
click. ``predict`` receives a :class:`bench.types.Prompt` of kind ``point`` holding
every click so far (``points`` and ``labels`` in click order) and the previous
prediction (None before the first click), and returns the new mask. The
later clicks depend on the model, so they are not in ``prompts.jsonl``; the
Dice after each click is stored with that model's results instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.frames import PackedMasks, frame_shapes
from bench.prompts.kinds import padded_distance
from bench.types import Flow, Prediction, Prompt

Click = tuple[int, int, bool]


def _pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred).astype(bool), np.asarray(ref).astype(bool)
    if ref.ndim != 2 or pred.shape != ref.shape:
        raise ValueError(f"clicker: prediction {pred.shape} and reference {ref.shape} must be "
                         "2D masks of one shape")
    return pred, ref


def next_click(pred: np.ndarray, ref: np.ndarray,
               clicks: Sequence[Sequence[int]] = ()) -> Click | None:
    """The next corrective click, ``(x, y, is_positive)``.

    Parameters
    ----------
    pred : ndarray
        The current prediction (all False before the first click).
    ref : ndarray
        The ground-truth mask.
    clicks : sequence of (x, y, ...)
        Clicks so far; their pixels are not chosen again.

    Returns
    -------
    tuple or None
        The click at the deepest error pixel (ties in raster order), positive
        if the deepest FN distance exceeds the deepest FP distance; None when
        no unclicked error pixel remains.
    """
    pred, ref = _pair(pred, ref)
    fn_dist = padded_distance(ref & ~pred)
    fp_dist = padded_distance(~ref & pred)
    for click in clicks:
        x, y = int(click[0]), int(click[1])
        fn_dist[y, x] = 0.0
        fp_dist[y, x] = 0.0
    fn_max = float(fn_dist.max(initial=0.0))
    fp_max = float(fp_dist.max(initial=0.0))
    if fn_max == 0.0 and fp_max == 0.0:
        return None
    positive = fn_max > fp_max
    dist = fn_dist if positive else fp_dist
    y, x = divmod(int(np.argmax(dist)), dist.shape[1])
    return int(x), int(y), bool(positive)


def click_prompt(target: str, frame: int, clicks: Sequence[Sequence[int]]) -> Prompt:
    """A ``point`` prompt holding every click so far (label 1 positive, 0 negative)."""
    points = tuple((int(c[0]), int(c[1])) for c in clicks)
    labels = tuple(int(bool(c[2])) if len(c) > 2 else 1 for c in clicks)
    return Prompt(target, int(frame), "point", points=points, labels=labels)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    pred, ref = np.asarray(pred).astype(bool), np.asarray(ref).astype(bool)
    total = int(pred.sum()) + int(ref.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & ref).sum()) / total


def noc(scores: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks to reach ``threshold``: the 1-based index of the first score
    at or above it among the first ``max_clicks``, else ``max_clicks`` (RITM's NoC).
    """
    for index, score in enumerate(list(scores)[:max_clicks]):
        if score >= threshold:
            return index + 1
    return int(max_clicks)


@dataclass
class ClickTrace:
    """One interactive session: the clicks made and the Dice after each."""

    target: str
    frame: int
    clicks: list[Click] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    # The prediction after the last click (None when no click was needed).
    mask: np.ndarray | None = field(default=None, repr=False)

    def noc(self, threshold: float, max_clicks: int = 20) -> int:
        return noc(self.dice, threshold, max_clicks)


def run_clicks(
    predict: Callable[[Prompt, np.ndarray | None], np.ndarray],
    ref: np.ndarray,
    *,
    target: str,
    frame: int,
    max_clicks: int = 20,
) -> ClickTrace:
    """Run one session of up to ``max_clicks`` clicks against ``predict``.

    The session stops early when no unclicked error pixel is left (the
    prediction equals the reference). See the module docstring.
    """
    ref = np.asarray(ref).astype(bool)
    trace = ClickTrace(target, int(frame))
    previous: np.ndarray | None = None
    for _ in range(max_clicks):
        current = previous if previous is not None else np.zeros_like(ref)
        click = next_click(current, ref, trace.clicks)
        if click is None:
            break
        trace.clicks.append(click)
        mask = np.asarray(predict(click_prompt(target, frame, trace.clicks), previous))
        previous, _ = _pair(mask, ref)
        trace.dice.append(dice(previous, ref))
    trace.mask = previous
    return trace


# The levels at which a session's NoC (clicks needed to reach that Dice) is recorded.
NOC_LEVELS = (0.85, 0.9)


def click_sessions(flow: Flow, prompts: Sequence[Prompt],
                   predict: Callable[[Prompt, np.ndarray | None], np.ndarray],
                   max_clicks: int) -> tuple[Prediction, list[dict[str, Any]]]:
    """Run one session per ledger prompt (its first click) of ``flow`` against ``predict``.

    ``predict(clicks, previous)`` is the model's answer to all clicks so far
    (see :func:`run_clicks`); this function owns the ground truth and places
    every further click. The final mask of each session becomes the
    prediction of its frame (scored like any other protocol); the Dice after
    every click (rows with ``click``) and NoC@85 / NoC@90 (clicks to reach
    that Dice, ``max_clicks`` when never reached, as RITM counts) become
    extra tidy rows. For a volume every prompted slice is a session of the
    volume's case.

    Returns
    -------
    (Prediction, list of dict)
        The final masks and the rows (``case, patient, target, status,
        metric, value`` and ``click`` for the per-click Dice).
    """
    sizes = [shape[:2] for shape in frame_shapes(flow.frames)]
    masks = {p.target: PackedMasks.filled(sizes, False) for p in prompts}
    rows: list[dict[str, Any]] = []
    for prompt in prompts:
        ref = np.asarray(flow.masks[prompt.target][prompt.frame], dtype=bool)
        trace = run_clicks(predict, ref, target=prompt.target, frame=prompt.frame,
                           max_clicks=max_clicks)
        if trace.mask is not None:
            masks[prompt.target][prompt.frame] = trace.mask
        index = 0 if flow.kind == "volume" else prompt.frame
        where = {"case": flow.case_ids[index], "patient": flow.patient_ids[index],
                 "target": prompt.target, "status": "ok"}
        rows += [{**where, "metric": "dice", "value": float(value), "click": number}
                 for number, value in enumerate(trace.dice, start=1)]
        rows += [{**where, "metric": f"noc{round(level * 100)}",
                  "value": float(trace.noc(level, max_clicks))} for level in NOC_LEVELS]
    return Prediction(masks=masks), rows
