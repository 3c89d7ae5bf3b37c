"""The ``cvpr25-interactive`` protocol: the CVPR 2025 interactive 3D challenge's evaluation.

Upstream: the public repository JunMa11/CVPR-MedSegFMCompetition at commit
:data:`UPSTREAM_COMMIT`, files ``get_boxes.py`` (the box), ``CVPR25_iter_eval.py``
(the click loop and the scores) and ``SurfaceDice.py`` (NSD). The rules below
are written from reading them; no code was copied.

Step 0, the box (``get_boxes.py``), per target present in the volume:

- ``z_min``, ``z_max``: the first and last slice containing the target;
- ``z_mid``: the middle *labelled* slice, ``zs[len(zs) // 2]`` of the sorted
  slices containing it (not the middle of the range);
- on slice ``z_mid`` the tight 2D box ``x_min, y_min, x_max, y_max``, each side
  moved out by ``int(shift * W / 256)`` (x) or ``int(shift * H / 256)`` (y)
  pixels and clipped to the image, where ``shift`` is one uniform integer in
  ``0..5`` per target (upstream: ``np.random.randint(0, 6)`` after a global
  ``np.random.seed(2025)``, drawn in an order that depends on the file list and
  the worker pool; here one draw from the ledger's keyed stream
  ``(seed, dataset, case, target, None, "cvpr25-interactive", "box-shift")``,
  :func:`box_shift`). The ledger stores it as a ``box3d`` row on frame
  ``z_mid`` with ``z_range = [z_min, z_max]``.

Steps 1-5, the clicks (``CVPR25_iter_eval.py``), one per target and step, from
the model's previous prediction of that target (:func:`corrective_click`):

1. the error is ``prediction != reference``; nothing to click when it is empty;
2. its 26-connected components; the largest one (on equal sizes the one whose
   first voxel comes first in C raster order: upstream takes ``argmax`` of the
   component sizes of ``cc3d`` labels, numbered in that order);
3. the Euclidean distance transform (unit voxels, spacing ignored, as
   upstream) of that component inside its bounding box padded by
   ``max(int(0.25 * extent), 1)`` voxels per axis, so the image border counts
   as outside; a padded box over :data:`LARGE_ROI_VOXELS` voxels is reduced 2x
   by block maximum first and the distances repeated back (upstream's
   ``block_reduce`` branch); distances outside the component are set to 0;
4. if every distance is 0 (upstream: "artifacts in resizing"), every voxel of
   the component is a candidate instead;
5. the click is at a voxel of maximum distance; among several, upstream seeds
   NumPy's global legacy generator with 42 and calls ``np.random.choice(n)``
   over the maxima in C raster order. The legacy generator's stream is frozen
   by NumPy's compatibility policy (NEP 19), so :func:`tie_break` computes the
   same index with a private ``RandomState(42)``: the choice depends on ``n``
   only, and the global generator is left alone;
6. the click is positive (foreground) when the reference has the target
   there (under-segmentation), negative otherwise.

Clicks accumulate: at step k the model gets the box and every click of steps
1..k, plus (if it accepts one) its own step k-1 prediction.

Scores: Dice and ``nsd_deepmind`` (DeepMind's surfel NSD at the tolerance,
2 mm) per target after every step. Upstream computes NSD only when the case's
mean Dice over its classes exceeds 0.2 and writes 0 otherwise: reproduced
(:data:`NSD_DICE_GATE`; the row then says so in ``message``). ``dice_auc`` and
``nsd_auc`` are the trapezoid (unit spacing) over the 5 click steps only,
``sum((v[k] + v[k + 1]) / 2 for k = 1..4)`` (upstream's
``cumulative_trapezoid(values[-5:], arange(5))[-1]``, whose maximum is 4), and
``dice_final`` / ``nsd_final`` the step-5 values.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from bench.errors import ConfigError
from bench.prompts.streams import KeyedStream
from bench.types import Flow, Prediction, Prompt

PROTOCOL = "cvpr25-interactive"
UPSTREAM_REPO = "JunMa11/CVPR-MedSegFMCompetition"
UPSTREAM_COMMIT = "748e862d162e3e3ee8197bd4085b19bbbe0bb8a0"
BOX_KIND = "box3d"
N_CLICKS = 5
MAX_SHIFT = 5  # upstream np.random.randint(0, 6)
SHIFT_SCALE = 256  # the shift is in pixels of a 256-pixel image, scaled to the slice size
LARGE_ROI_VOXELS = 60_000_000
TIE_SEED = 42
NSD_DICE_GATE = 0.2
NSD_TOLERANCE_MM = 2.0
STEP_METRICS = ("dice", "nsd_deepmind")
CASE_METRICS = ("dice_auc", "nsd_auc", "dice_final", "nsd_final")

Click3D = tuple[int, int, int, bool]
"""``(z, y, x, positive)`` in array order."""


# ------------------------------------------------------------------ step 0: the box


@dataclass(frozen=True)
class ChallengeBox:
    """The challenge's 3D box of one target (``get_boxes.py``'s ``mask3D_to_bbox``)."""

    z_min: int
    z_max: int
    z_mid: int
    x_min: int
    y_min: int
    x_max: int
    y_max: int


def box_shift(stream: KeyedStream) -> int:
    """The random move of the box sides, uniform in ``0..MAX_SHIFT`` (one keyed draw)."""
    return stream.integer(MAX_SHIFT + 1)


def challenge_box(mask: np.ndarray, shift: int) -> ChallengeBox:
    """The 3D box of a ``(D, H, W)`` target mask with side move ``shift`` (module docstring).

    Raises
    ------
    ValueError
        If the mask is not 3D or is empty.
    """
    mask = np.asarray(mask).astype(bool, copy=False)
    if mask.ndim != 3:
        raise ValueError(f"cvpr25 box: expected a 3D mask, got shape {mask.shape}")
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    if slices.size == 0:
        raise ValueError("cvpr25 box: the target is absent")
    z_mid = int(slices[slices.size // 2])
    rows = np.flatnonzero(mask[z_mid].any(axis=1))
    cols = np.flatnonzero(mask[z_mid].any(axis=0))
    height, width = mask.shape[1:]
    move_x = int(shift * width / SHIFT_SCALE)
    move_y = int(shift * height / SHIFT_SCALE)
    return ChallengeBox(
        z_min=int(slices[0]), z_max=int(slices[-1]), z_mid=z_mid,
        x_min=max(0, int(cols[0]) - move_x), y_min=max(0, int(rows[0]) - move_y),
        x_max=min(width - 1, int(cols[-1]) + move_x),
        y_max=min(height - 1, int(rows[-1]) + move_y))


def box_prompt(target: str, box: ChallengeBox) -> Prompt:
    """The ledger prompt of a 3D box: kind ``box3d`` on ``z_mid`` with its z range."""
    return Prompt(target, box.z_mid, BOX_KIND, box=(box.x_min, box.y_min, box.x_max, box.y_max),
                  z_range=(box.z_min, box.z_max))


def select(flow: Flow, params: Any, kind: str | None,
           keyer: Callable[[str, int | None, str], KeyedStream]) -> list[Prompt]:
    """The ledger's step-0 prompts: one ``box3d`` per target present in the volume.

    Image flows have no z axis: the protocol refuses them.
    """
    if flow.kind != "volume":
        raise ConfigError(f"protocol {PROTOCOL}: dataset {flow.dataset!r} is an image flow "
                          f"(flow {flow.id!r}); the protocol needs volumes")
    prompts = []
    for target in flow.targets:
        mask = _volume(flow.masks[target])
        if not mask.any():
            continue  # upstream boxes and clicks only the labels present in the case
        shift = box_shift(keyer(target, None, "box-shift"))
        prompts.append(box_prompt(target, challenge_box(mask, shift)))
    return prompts


def card(params: Any, kind: str | None) -> str:
    """The protocol card."""
    return (f"cvpr25-interactive ({UPSTREAM_REPO}@{UPSTREAM_COMMIT[:7]}, CVPR25_iter_eval.py "
            f"and get_boxes.py): 6 predictions per volume. Step 0: per target present, a 3D "
            f"box (first and last slice containing it, and the 2D box of its middle labelled "
            f"slice, each side moved out by int(s x size / 256) px with s uniform in 0..5, "
            f"keyed stream). Steps 1-{N_CLICKS}: one click per target and step at the "
            f"distance-transform maximum of the largest 26-connected error component of the "
            f"previous prediction (ties: upstream's seed-42 choice), positive on missed "
            f"target, negative on false foreground; clicks accumulate. Dice and nsd_deepmind "
            f"({NSD_TOLERANCE_MM:g} mm; 0 when the case's mean Dice is <= {NSD_DICE_GATE}, as "
            f"upstream) after every step (rows with a step), dice_auc / nsd_auc (trapezoid "
            f"over the {N_CLICKS} click steps), dice_final / nsd_final. Taken from ground "
            f"truth beyond the prompts: which targets are present (absent ones get no box and "
            f"are not scored); the clicker reads the ground truth after every prediction, by "
            f"design. A model is given only what its capabilities accept (report: what each "
            f"model was given).")


def _volume(masks: Sequence[np.ndarray]) -> np.ndarray:
    """A target's per-slice masks as one ``(D, H, W)`` boolean array."""
    if isinstance(masks, np.ndarray):
        return masks.astype(bool, copy=False)
    return np.stack([np.asarray(mask, dtype=bool) for mask in masks])


# ------------------------------------------------------------------ steps 1-5: clicks


def largest_error_component(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray | None:
    """The largest 26-connected component of ``prediction != reference`` (None: no error).

    Equal sizes: the component with the lowest label, i.e. whose first voxel
    comes first in C raster order (``scipy.ndimage.label`` numbers components
    in that order, as ``cc3d`` does).
    """
    error = np.asarray(prediction, dtype=bool) != np.asarray(reference, dtype=bool)
    if not error.any():
        return None
    labels, count = ndimage.label(error, structure=np.ones((3,) * error.ndim, dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def padded_edt(component: np.ndarray, large_roi: int | None = None) -> np.ndarray:
    """Upstream's distance transform of a component, in unit voxels, full-size.

    Computed in the component's bounding box padded by ``max(int(0.25 *
    extent), 1)`` per axis (beyond the image counts as outside). A padded box
    of more than ``large_roi`` voxels (default :data:`LARGE_ROI_VOXELS`) is
    reduced 2x by block maximum, transformed, and each distance repeated over
    its 2x2x2 block, as upstream does. Zero outside the bounding box.
    """
    component = np.asarray(component, dtype=bool)
    limit = LARGE_ROI_VOXELS if large_roi is None else large_roi
    where = np.argwhere(component)
    low, high = where.min(axis=0), where.max(axis=0) + 1
    extent = high - low
    pad = np.maximum((extent * 0.25).astype(int), 1)
    inner = component[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
    padded = np.pad(inner, [(int(p), int(p)) for p in pad])
    if padded.size > limit:
        distances = _reduced_edt(padded)
    else:
        distances = ndimage.distance_transform_edt(padded)
    full = np.zeros(component.shape, dtype=float)
    full[tuple(slice(a, b) for a, b in zip(low, high, strict=True))] = distances[
        tuple(slice(int(p), int(p) + int(e)) for p, e in zip(pad, extent, strict=True))]
    return full


def _reduced_edt(padded: np.ndarray) -> np.ndarray:
    """EDT of the 2x block maximum (odd sizes padded with background at the end), repeated
    back to 2x size: upstream's skimage ``block_reduce(..., (2, 2, 2), np.max)`` branch."""
    even = np.pad(padded, [(0, n % 2) for n in padded.shape])
    blocks = even.reshape([n for size in even.shape for n in (size // 2, 2)])
    reduced = blocks.max(axis=tuple(range(1, 2 * even.ndim, 2)))
    distances = ndimage.distance_transform_edt(reduced)
    for axis in range(distances.ndim):
        distances = np.repeat(distances, 2, axis=axis)
    return distances


def tie_break(count: int) -> int:
    """Index of the chosen voxel among ``count`` maxima: upstream's ``np.random.seed(42);
    np.random.choice(count)``, from a private legacy ``RandomState(42)`` (same stream)."""
    return int(np.random.RandomState(TIE_SEED).choice(count))


def corrective_click(prediction: np.ndarray, reference: np.ndarray,
                     large_roi: int | None = None) -> Click3D | None:
    """The challenge's next click for one target, ``(z, y, x, positive)``; None if perfect.

    See the module docstring (steps 1-6).
    """
    prediction = np.asarray(prediction, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    if prediction.shape != reference.shape or reference.ndim != 3:
        raise ValueError(f"cvpr25 click: prediction {prediction.shape} and reference "
                         f"{reference.shape} must be 3D masks of one shape")
    component = largest_error_component(prediction, reference)
    if component is None:
        return None
    distances = padded_edt(component, large_roi) * component
    if not distances.any():
        distances = component.astype(float)  # upstream's fall-back: any voxel of the component
    maxima = np.argwhere(distances == distances.max())
    z, y, x = (int(v) for v in maxima[tie_break(len(maxima))])
    return z, y, x, bool(reference[z, y, x])


def click_auc(values: Sequence[float]) -> float:
    """The challenge's AUC: trapezoid with unit spacing over the last :data:`N_CLICKS` values."""
    tail = [float(v) for v in values][-N_CLICKS:]
    return float(sum((a + b) / 2.0 for a, b in zip(tail[:-1], tail[1:], strict=True)))


# ------------------------------------------------------------------ what a model is given


@dataclass(frozen=True)
class Accepts:
    """What a model accepts in a session (from its adapter's capabilities)."""

    box3d: bool
    box: bool
    several_clicks: bool
    negative_clicks: bool
    previous_mask: bool

    @classmethod
    def of(cls, capabilities: Any) -> Accepts:
        kinds = capabilities.prompt_kinds
        return cls(box3d=BOX_KIND in kinds, box="box" in kinds,
                   several_clicks=bool(getattr(capabilities, "several_clicks", True)),
                   negative_clicks=bool(getattr(capabilities, "negative_clicks", True)),
                   previous_mask=bool(getattr(capabilities, "previous_mask", False)))

    def describe(self) -> str:
        """What the model was given, in words (for the report)."""
        if self.box3d:
            box = "the 3D box (z range and middle-slice box)"
        elif self.box:
            box = "the middle-slice 2D box only (no z range: box3d not accepted)"
        else:
            box = "no box (neither box3d nor box accepted)"
        clicks = "every click so far" if self.several_clicks else "only the latest click"
        signs = ("positive and negative" if self.negative_clicks
                 else "positive only (negative clicks withheld)")
        previous = ("its previous prediction" if self.previous_mask
                    else "no previous prediction")
        return f"{box}; {clicks}, {signs}; {previous}"


def step_prompts(boxes: Sequence[Prompt], clicks: Mapping[str, Sequence[Click3D]],
                 accepts: Accepts) -> list[Prompt]:
    """The prompts of one step as the model may receive them.

    Per target: its box (``box3d``, or the plain 2D ``box`` on the middle
    slice, or none), then one ``point`` prompt per clicked frame holding that
    frame's clicks in click order (``(x, y)``, label 1 positive, 0 negative),
    frames in increasing order.
    """
    prompts: list[Prompt] = []
    for box in boxes:
        if accepts.box3d:
            prompts.append(box)
        elif accepts.box:
            prompts.append(Prompt(box.target, box.frame, "box", box=box.box))
        given = [c for c in clicks.get(box.target, ()) if accepts.negative_clicks or c[3]]
        if not accepts.several_clicks:
            given = given[-1:]
        by_frame: dict[int, list[Click3D]] = {}
        for click in given:
            by_frame.setdefault(click[0], []).append(click)
        for frame in sorted(by_frame):
            points = tuple((c[2], c[1]) for c in by_frame[frame])
            labels = tuple(int(c[3]) for c in by_frame[frame])
            prompts.append(Prompt(box.target, frame, "point", points=points, labels=labels))
    return prompts


# ------------------------------------------------------------------ the session


@dataclass
class Session:
    """One volume's session: final prediction, tidy rows, clicks and timings."""

    prediction: Prediction
    rows: list[dict[str, Any]] = field(default_factory=list)
    clicks: list[dict[str, Any]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    given: str = ""


Predictor = Callable[[list[Prompt], Prediction | None], Prediction]
NsdFunction = Callable[[np.ndarray, np.ndarray, Any, float], float]


def run_session(flow: Flow, boxes: Sequence[Prompt], predict: Predictor, accepts: Accepts, *,
                nsd: NsdFunction | None, check: Callable[[Prediction], None] | None = None,
                tolerance_mm: float = NSD_TOLERANCE_MM, n_clicks: int = N_CLICKS,
                large_roi: int | None = None) -> Session:
    """Run the box step and ``n_clicks`` click steps of one volume against ``predict``.

    Parameters
    ----------
    flow : Flow
        The volume, with ground truth (the harness owns it; ``predict`` never sees it).
    boxes : sequence of Prompt
        The ledger's ``box3d`` prompts of the flow.
    predict : callable
        ``predict(prompts, previous)`` -> Prediction of every prompted target;
        ``previous`` is the model's previous Prediction when it accepts one, else None.
    accepts : Accepts
        What the model is given (:meth:`Accepts.of` its capabilities).
    nsd : callable or None
        ``nsd_deepmind(prediction, reference, spacing, tolerance_mm)``; None:
        the NSD rows are ``unavailable``.
    check : callable, optional
        Validates each step's Prediction (shapes, targets); raises to fail the unit.

    Returns
    -------
    Session
    """
    boxes = sorted(boxes, key=lambda p: p.target)
    refs = {box.target: _volume(flow.masks[box.target]) for box in boxes}
    clicks: dict[str, list[Click3D]] = {box.target: [] for box in boxes}
    session = Session(Prediction(masks={}), given=accepts.describe())
    previous: Prediction | None = None
    dice_by: dict[str, list[float]] = {t: [] for t in refs}
    nsd_by: dict[str, list[float]] = {t: [] for t in refs}
    where = {"case": flow.case_ids[0], "patient": flow.patient_ids[0], "status": "ok"}
    # The click is a function of (target, prediction): a model whose answer did not change
    # (e.g. one that ignores clicks) gets the same click without a second distance transform.
    known: dict[tuple[str, str], Click3D | None] = {}
    for step in range(n_clicks + 1):
        if step:
            for target, ref in refs.items():
                mask = _volume(previous.masks[target])
                seen = (target, hashlib.sha256(np.packbits(mask).tobytes()).hexdigest())
                if seen not in known:
                    known[seen] = corrective_click(mask, ref, large_roi)
                click = known[seen]
                if click is not None:
                    clicks[target].append(click)
                session.clicks.append(_click_record(target, step, click))
        prompts = step_prompts(boxes, clicks, accepts)
        started = time.perf_counter()
        current = predict(prompts, previous if accepts.previous_mask else None)
        session.seconds.append(round(time.perf_counter() - started, 6))
        if check is not None:
            check(current)
        masks = {t: _volume(current.masks[t]) for t in refs}
        dices = {t: _dice(masks[t], ref) for t, ref in refs.items()}
        gated = bool(dices) and float(np.mean(list(dices.values()))) <= NSD_DICE_GATE
        for target, ref in refs.items():
            dice_by[target].append(dices[target])
            session.rows.append({**where, "target": target, "metric": "dice",
                                 "value": dices[target], "message": "", "step": step})
            row = _nsd_row(masks[target], ref, flow.spacing, tolerance_mm, nsd, gated)
            nsd_by[target].append(row["value"])
            session.rows.append({**where, "target": target, **row, "step": step})
        previous = current
    session.prediction = previous if previous is not None else session.prediction
    for target in refs:
        for metric, values in (("dice", dice_by[target]), ("nsd", nsd_by[target])):
            available = not any(np.isnan(values))
            for name, value in ((f"{metric}_auc", click_auc(values)),
                                (f"{metric}_final", values[-1])):
                session.rows.append({**where, "target": target, "metric": name,
                                     "value": float(value) if available else float("nan"),
                                     "status": "ok" if available else "unavailable",
                                     "message": "" if available else _NSD_MISSING})
    return session


_NSD_MISSING = "nsd_deepmind is not available (bench.surface_dice is missing)"


def _dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    # The reference is never empty here (absent targets get no box), so Dice is defined.
    total = int(prediction.sum()) + int(reference.sum())
    return 2.0 * int(np.count_nonzero(prediction & reference)) / total


def _nsd_row(prediction: np.ndarray, reference: np.ndarray, spacing: Any, tolerance_mm: float,
             nsd: NsdFunction | None, gated: bool) -> dict[str, Any]:
    if nsd is None:
        return {"metric": "nsd_deepmind", "value": float("nan"), "status": "unavailable",
                "message": _NSD_MISSING}
    if gated:
        return {"metric": "nsd_deepmind", "value": 0.0, "status": "ok",
                "message": f"challenge rule: 0 when the case's mean Dice <= {NSD_DICE_GATE}"}
    value = float(nsd(prediction, reference, spacing, tolerance_mm))
    return {"metric": "nsd_deepmind", "value": value, "status": "ok", "message": ""}


def _click_record(target: str, step: int, click: Click3D | None) -> dict[str, Any]:
    if click is None:  # the prediction of this target was perfect: no click (upstream: None)
        return {"target": target, "step": step, "z": None, "y": None, "x": None,
                "label": None}
    z, y, x, positive = click
    return {"target": target, "step": step, "z": z, "y": y, "x": x, "label": int(positive)}


def load_nsd() -> NsdFunction | None:
    """``bench.surface_dice.nsd_deepmind`` when that module exists, else None."""
    try:
        from bench.surface_dice import nsd_deepmind  # type: ignore[import-not-found]
    except ImportError:
        return None
    return nsd_deepmind
