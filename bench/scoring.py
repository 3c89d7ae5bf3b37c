"""Stage 4 of the data flow: score one flow's prediction against its ground truth.

A volume is one case scored in 3D; each image of an image flow is its own
case (DESIGN section 5). The output is tidy rows, one per case, target and
metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bench import metrics as metric_fns
from bench.types import Flow, Prediction


class PredictionError(ValueError):
    """An adapter returned something that cannot be scored (wrong shape, missing target)."""


def check_prediction(flow: Flow, prediction: Prediction, prompted_targets: Sequence[str]) -> None:
    """Raise :class:`PredictionError` unless every prompted target has one mask per frame
    of the frame's own shape."""
    for target in prompted_targets:
        if target not in prediction.masks:
            raise PredictionError(f"no prediction for prompted target {target!r}")
        masks = prediction.masks[target]
        if len(masks) != len(flow.frames):
            raise PredictionError(
                f"target {target!r}: {len(masks)} masks for {len(flow.frames)} frames"
            )
        for index, (mask, frame) in enumerate(zip(masks, flow.frames, strict=True)):
            if np.shape(mask) != np.shape(frame)[:2]:
                raise PredictionError(
                    f"target {target!r} frame {index}: mask shape {np.shape(mask)} "
                    f"differs from frame shape {np.shape(frame)[:2]}"
                )


def predicted_masks(flow: Flow, prediction: Prediction, target: str) -> list[np.ndarray]:
    """The adapter's masks for ``target``; all-empty when the target had no prompt."""
    if target in prediction.masks:
        return [np.asarray(mask, dtype=bool) for mask in prediction.masks[target]]
    return [np.zeros(np.shape(frame)[:2], dtype=bool) for frame in flow.frames]


def score_flow(
    flow: Flow,
    prediction: Prediction,
    *,
    scored_frames: Sequence[int] | None,
    metrics: Sequence[str],
    policy: metric_fns.EmptyPolicy,
    nsd_tolerance_mm: float,
) -> list[dict[str, Any]]:
    """Tidy metric rows for every case and target of ``flow``.

    Parameters
    ----------
    scored_frames : sequence of int or None
        Frames that count (a protocol may score a window only); None = all.
    metrics : sequence of str
        Names in :data:`bench.metrics.METRICS`.

    Returns
    -------
    list of dict
        Rows with keys ``case, patient, target, metric, value, status``.
    """
    frames = list(range(len(flow.frames))) if scored_frames is None else list(scored_frames)
    rows: list[dict[str, Any]] = []
    for target in flow.targets:
        pred_masks = predicted_masks(flow, prediction, target)
        ref_masks = flow.masks[target]
        if flow.kind == "volume":
            pred = np.stack([pred_masks[i] for i in frames])
            ref = np.stack([np.asarray(ref_masks[i], dtype=bool) for i in frames])
            cases = [(flow.case_ids[0], flow.patient_ids[0], pred, ref, flow.spacing)]
        else:
            cases = [
                (flow.case_ids[i], flow.patient_ids[i], pred_masks[i],
                 np.asarray(ref_masks[i], dtype=bool), flow.spacing)
                for i in frames
            ]
        for case, patient, pred, ref, spacing in cases:
            scores = metric_fns.score_case(
                pred, ref, spacing=spacing, metrics=tuple(metrics), policy=policy,
                nsd_tolerance_mm=nsd_tolerance_mm,
            )
            for name, (value, status) in scores.items():
                rows.append({"case": case, "patient": patient, "target": target,
                             "metric": name, "value": float(value), "status": status})
    return rows


def failure_rows(targets: Sequence[str], case_ids: Sequence[str], patient_ids: Sequence[str],
                 metrics: Sequence[str], message: str) -> list[dict[str, Any]]:
    """Rows recording that no score exists for any case and target (status ``error``).

    Takes the flow's ids rather than the flow, so a unit whose flow could not
    even be read is recorded the same way.
    """
    cases = list(zip(case_ids, patient_ids, strict=True))
    return [
        {"case": case, "patient": patient, "target": target, "metric": name,
         "value": float("nan"), "status": "error", "message": message}
        for target in targets for case, patient in cases for name in metrics
    ]
