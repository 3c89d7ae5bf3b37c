"""Stage 4 of the data flow: score one flow's prediction against its ground truth.

A volume is one case scored in 3D; each image of an image flow is its own
case (DESIGN section 5). The output is tidy rows, one per case, target and
metric.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from bench import metrics as metric_fns
from bench.frames import PackedMasks, frame_shapes
from bench.official_metrics import official_image_scores, official_volume_scores
from bench.prompts.scope import ScoringScope
from bench.types import Flow, Prediction

#: Rows of frames whose answer the prompt gave (``--score-prompted``); never aggregated.
STATUS_PROMPTED = "prompted"
#: Official metrics of a model that exposes no logits (value NaN).
STATUS_UNAVAILABLE = "unavailable"
#: Nothing to score (e.g. an official window of 0 slices); value NaN.
STATUS_NOT_SCORED = "not_scored"
PROMPTED_MESSAGE = "prompted frame: its answer was given, not predicted"


class PredictionError(ValueError):
    """An adapter returned something that cannot be scored (wrong shape, missing target)."""


def check_prediction(flow: Flow, prediction: Prediction, prompted_targets: Sequence[str]) -> None:
    """Raise :class:`PredictionError` unless every prompted target has one mask per frame
    of the frame's own shape, and any logits are one 2D array per frame."""
    for target in prompted_targets:
        if target not in prediction.masks:
            raise PredictionError(f"no prediction for prompted target {target!r}")
        masks = prediction.masks[target]
        if len(masks) != len(flow.frames):
            raise PredictionError(
                f"target {target!r}: {len(masks)} masks for {len(flow.frames)} frames"
            )
        for index, (mask_shape, shape) in enumerate(zip(frame_shapes(masks),
                                                          frame_shapes(flow.frames),
                                                          strict=True)):
            if mask_shape != shape[:2]:
                raise PredictionError(
                    f"target {target!r} frame {index}: mask shape {mask_shape} "
                    f"differs from frame shape {shape[:2]}"
                )
    for target, logits in (prediction.logits or {}).items():
        if len(logits) != len(flow.frames):
            raise PredictionError(
                f"target {target!r}: {len(logits)} logit arrays for {len(flow.frames)} frames")
        for index, array in enumerate(logits):
            if np.ndim(array) != 2:
                raise PredictionError(f"target {target!r} frame {index}: logits must be 2D, "
                                      f"got shape {np.shape(array)}")


def predicted_masks(flow: Flow, prediction: Prediction, target: str) -> Sequence[np.ndarray]:
    """The adapter's masks for ``target``; all-empty when the target had no prompt."""
    if target in prediction.masks:
        return prediction.masks[target]
    return PackedMasks.filled((shape[:2] for shape in frame_shapes(flow.frames)), False)


def score_flow(
    flow: Flow,
    prediction: Prediction,
    *,
    scope: ScoringScope | None = None,
    metrics: Sequence[str],
    policy: metric_fns.EmptyPolicy,
    nsd_tolerance_mm: float,
    score_prompted: bool = False,
    model: str = "the model",
) -> list[dict[str, Any]]:
    """Tidy metric rows for every scored case and target of ``flow``.

    Parameters
    ----------
    scope : ScoringScope, optional
        The frames and targets the protocol scores and the frames whose
        answer was given (:mod:`bench.prompts.scope`); None: everything.
    metrics : sequence of str
        Names in :data:`bench.metrics.METRIC_NAMES`. The official metrics
        (:data:`bench.metrics.OFFICIAL_METRICS`) are computed from
        ``prediction.logits``; without logits they get status ``unavailable``.
    score_prompted : bool
        Also emit the given (prompted) frames, status ``prompted``: image
        flows: the given images as their own cases; volumes: the volume
        scored with the given slices left in. Never part of an aggregate.
    model : str
        Named in the ``unavailable`` message.

    Returns
    -------
    list of dict
        Rows with keys ``case, patient, target, metric, value, status, message``.
    """
    scope = scope or ScoringScope(None, tuple(flow.targets))
    mask_metrics = [m for m in metrics if m in metric_fns.METRICS]
    official = [m for m in metrics if m in metric_fns.OFFICIAL_METRICS]
    if scope.frames is not None and not scope.frames:
        return [_row(flow.case_ids[0], flow.patient_ids[0], target, name, float("nan"),
                     STATUS_NOT_SCORED, scope.empty_reason or "no frame to score")
                for target in flow.targets for name in metrics]
    rows: list[dict[str, Any]] = [
        _row(flow.case_ids[0], flow.patient_ids[0], target, name, float("nan"),
             STATUS_NOT_SCORED, reason)
        for target, reason in scope.not_scored.items() for name in metrics]
    for target in scope.targets:
        frames = scope.frames_for(target, len(flow.frames))
        given = scope.given_for(target)
        for case, patient, pred, ref, status, message in _cases(flow, prediction, target,
                                                                frames, given, score_prompted):
            scores = metric_fns.score_case(
                pred, ref, spacing=flow.spacing, metrics=tuple(mask_metrics), policy=policy,
                nsd_tolerance_mm=nsd_tolerance_mm,
            )
            for name, (value, case_status) in scores.items():
                rows.append(_row(case, patient, target, name, value, status or case_status,
                                 message))
        if official:
            rows.extend(_official_rows(flow, prediction, target, frames, given, official,
                                       score_prompted, model))
    return rows


def _row(case: str, patient: str, target: str, metric: str, value: float, status: str,
         message: str = "") -> dict[str, Any]:
    return {"case": case, "patient": patient, "target": target, "metric": metric,
            "value": float(value), "status": status, "message": message}


def _cases(flow: Flow, prediction: Prediction, target: str, frames: list[int],
           given: frozenset[int], score_prompted: bool) -> Iterator[tuple]:
    """``(case, patient, pred, ref, status, message)`` to score; status "" = the metric's own.

    Image flows yield one image at a time, so that masks stay packed until scored.
    """
    pred_masks = predicted_masks(flow, prediction, target)
    ref_masks = flow.masks[target]
    if flow.kind == "volume":
        pred = np.stack([np.asarray(pred_masks[i], dtype=bool) for i in frames])
        ref = np.stack([np.asarray(ref_masks[i], dtype=bool) for i in frames])
        case, patient = flow.case_ids[0], flow.patient_ids[0]
        hidden = [k for k, i in enumerate(frames) if i in given]
        cases = []
        if hidden and score_prompted:
            cases.append((case, patient, pred, ref, STATUS_PROMPTED,
                          f"volume scored with its {len(hidden)} given (mask-prompted) "
                          f"slice(s) left in"))
        if hidden:
            # A given slice is masked out of both prediction and reference.
            pred, ref = pred.copy(), ref.copy()
            pred[hidden] = False
            ref[hidden] = False
        yield from [(case, patient, pred, ref, "", ""), *cases]
        return
    for i in frames:
        if i in given and not score_prompted:
            continue
        yield (flow.case_ids[i], flow.patient_ids[i], np.asarray(pred_masks[i], dtype=bool),
               np.asarray(ref_masks[i], dtype=bool), STATUS_PROMPTED if i in given else "",
               PROMPTED_MESSAGE if i in given else "")


def _official_rows(flow: Flow, prediction: Prediction, target: str, frames: list[int],
                   given: frozenset[int], names: Sequence[str], score_prompted: bool,
                   model: str) -> list[dict[str, Any]]:
    """Rows of the official metrics (:mod:`bench.official_metrics`) for one target."""
    logits = (prediction.logits or {}).get(target)
    rows: list[dict[str, Any]] = []
    if flow.kind == "volume":
        groups = [(flow.case_ids[0], flow.patient_ids[0], [i for i in frames if i not in given],
                   "")]
        if given & set(frames) and score_prompted:
            groups.append((flow.case_ids[0], flow.patient_ids[0], frames, STATUS_PROMPTED))
    else:
        groups = [(flow.case_ids[i], flow.patient_ids[i], [i],
                   STATUS_PROMPTED if i in given else "")
                  for i in frames if score_prompted or i not in given]
    for case, patient, indices, status in groups:
        if logits is None:
            values = {name: (float("nan"), STATUS_UNAVAILABLE,
                             f"not available: {model} does not expose logits")
                      for name in names}
        elif not indices:
            values = {name: (float("nan"), STATUS_NOT_SCORED, "every scored slice was given")
                      for name in names}
        else:
            if flow.kind == "volume":
                dice, iou = official_volume_scores(
                    [logits[i] for i in indices],
                    [np.asarray(flow.masks[target][i], dtype=bool) for i in indices])
            else:
                dice, iou = official_image_scores(
                    logits[indices[0]], np.asarray(flow.masks[target][indices[0]], dtype=bool))
            message = PROMPTED_MESSAGE if status == STATUS_PROMPTED else ""
            both = {"dice_official": dice, "iou_official": iou}
            values = {name: (both[name], status or "ok", message) for name in names}
        rows.extend(_row(case, patient, target, name, *values[name]) for name in names)
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
