"""The ``sam-med3d-clicks`` protocol: SAM-Med3D's random clicks from the error region.

Upstream rule (uni-medical/SAM-Med3D, ``utils/infer_utils.py``,
``random_sample_next_click(method="random")`` as called by ``sam_model_infer``
from ``validate_paired_img_gt``; commit f3de1fa10da98e46f49f176773d2b1e306ba131f;
the training loop's ``utils/click_method.py`` ``get_next_click3D_torch_2`` is
the same rule without the fall-back):

1. a session is one target of one volume; it starts from an empty previous
   prediction;
2. the error region is the false negatives plus the false positives of the
   previous prediction (thresholded at 0.5); every error voxel is listed in
   the array's C order and one is drawn uniformly (``np.random.randint`` over
   the list); the click is positive when the voxel is a false negative,
   negative when it is a false positive;
3. when the error region is empty, a target voxel is drawn the same way and
   the click is positive; a target absent from the volume gets no click and
   an empty prediction;
4. the model receives every click so far (and, upstream, its previous
   low-resolution logits) and predicts again; ``num_clicks`` clicks in all
   (1 in ``validate_paired_img_gt``), the last prediction is the result.

So the first click (empty prediction: the error is the whole target) is a
uniform target voxel, positive. Upstream lists voxels of TorchIO's tensors,
whose axes are (x, y, z); the harness lists the voxels of its ``(z, y, x)``
arrays in that same (x, y, z) order (x slowest, z fastest), so equal draws
pick equal voxels on arrays of equal orientation (:func:`draw_click`). An
image of an image flow is a session of its own, a one-slice volume.

The draws come from keyed streams, one per session and click (purpose
``click-K``), instead of the global NumPy state seeded with 233 per case.
What the harness does not reproduce (the protocol card says so): upstream
resamples each class's volume to 1.5 mm isotropic spacing, reorients it to
RAS (``tio.ToCanonical``) and crops or pads a 128^3 box centred on the
class's label (``tio.CropOrPad(mask_name="label")``), z-normalises it, then
clicks and scores inside that crop before resampling the prediction back.
The harness clicks and scores on the dataset's own grid over the whole
volume; resampling, cropping and normalising are the adapter's business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.frames import PackedMasks, frame_shapes
from bench.prompts.interactive import dice
from bench.prompts.kinds import present_frames
from bench.prompts.streams import KeyedStream
from bench.types import Flow, Prediction, Prompt

PROTOCOL = "sam-med3d-clicks"
#: Upstream source of the rule (repository, file, commit).
UPSTREAM = ("uni-medical/SAM-Med3D", "utils/infer_utils.py (random_sample_next_click)",
            "f3de1fa10da98e46f49f176773d2b1e306ba131f")
#: The first click's ledger kind (a uniform target voxel).
KIND = "point-random"

Keyer = Callable[[str, "int | None", str], KeyedStream]
#: A click: (x, y, slice index within the session, positive).
Click3D = tuple[int, int, int, bool]


def purpose(number: int) -> str:
    """The keyed-stream purpose of click ``number`` (1-based) of a session."""
    return f"click-{int(number)}"


def _upstream_order(region: np.ndarray) -> np.ndarray:
    """``(x, y, z)`` of the region's voxels, x slowest and z fastest (upstream's order)."""
    return np.argwhere(np.transpose(region, (2, 1, 0)))


def draw_click(previous: np.ndarray, reference: np.ndarray, stream: KeyedStream) -> Click3D:
    """The next click of a session (see the module docstring).

    Parameters
    ----------
    previous, reference : ndarray, shape (Z, H, W)
        The previous prediction (all False before the first click) and the
        ground truth (not empty).
    stream : KeyedStream
        One uniform integer is drawn from it.

    Returns
    -------
    (x, y, z, positive)
    """
    previous = np.asarray(previous, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    if previous.shape != reference.shape or reference.ndim != 3:
        raise ValueError(f"sam-med3d clicks: prediction {previous.shape} and reference "
                         f"{reference.shape} must be 3D masks of one shape")
    if not reference.any():
        raise ValueError("sam-med3d clicks: the target is absent (no click to place)")
    false_negative = reference & ~previous
    error = false_negative | (previous & ~reference)
    region = error if error.any() else reference
    voxels = _upstream_order(region)
    x, y, z = (int(v) for v in voxels[stream.integer(len(voxels))])
    positive = bool(false_negative[z, y, x]) if error.any() else True
    return x, y, z, positive


def sessions(flow: Flow) -> list[tuple[str, list[int]]]:
    """The sessions of a flow: (target, frames) per volume target present, per
    image of an image flow where the target is present."""
    found = []
    for target in flow.targets:
        frames = present_frames(flow.masks[target])
        if not frames:
            continue
        if flow.kind == "volume":
            found.append((target, list(range(len(flow.frames)))))
        else:
            found.extend((target, [frame]) for frame in frames)
    return found


def _stack(flow: Flow, target: str, frames: Sequence[int]) -> np.ndarray:
    return np.stack([np.asarray(flow.masks[target][f], dtype=bool) for f in frames])


def _session_frame(flow: Flow, frames: Sequence[int]) -> int | None:
    """The stream key's frame: None for a volume's session, the image for an image's."""
    return None if flow.kind == "volume" else int(frames[0])


def select(flow: Flow, params: Any, kind: str | None, keyer: Keyer) -> list[Prompt]:
    """The ledger's prompts: the first click of every session (later ones need the model)."""
    prompts = []
    for target, frames in sessions(flow):
        reference = _stack(flow, target, frames)
        stream = keyer(target, _session_frame(flow, frames), purpose(1))
        x, y, z, _ = draw_click(np.zeros_like(reference), reference, stream)
        prompts.append(Prompt(target, int(frames[z]), KIND, points=((x, y),), labels=(1,)))
    return prompts


def click_prompts(target: str, frames: Sequence[int],
                  clicks: Sequence[Click3D]) -> list[Prompt]:
    """Every click so far as ``point`` prompts, one per frame holding clicks (click order)."""
    by_frame: dict[int, list[Click3D]] = {}
    for click in clicks:
        by_frame.setdefault(int(frames[click[2]]), []).append(click)
    return [Prompt(target, frame, "point", points=tuple((c[0], c[1]) for c in held),
                   labels=tuple(int(c[3]) for c in held))
            for frame, held in sorted(by_frame.items())]


def run_session(predict: Callable[[list[Prompt], np.ndarray | None], np.ndarray],
                reference: np.ndarray, frames: Sequence[int], target: str,
                first: Click3D, streams: Callable[[int], KeyedStream],
                num_clicks: int, capabilities: Any = None
                ) -> tuple[list[Click3D], list[float], np.ndarray]:
    """One session: ``num_clicks`` clicks, a prediction after each.

    Parameters
    ----------
    predict : callable
        ``predict(prompts, previous)``: the model's ``(Z, H, W)`` answer to
        every click so far (:func:`click_prompts`); ``previous`` is its
        answer to the clicks before (None at the first click).
    reference : ndarray, shape (Z, H, W)
    frames : sequence of int
        The flow frame of each slice of ``reference``.
    first : (x, y, z, positive)
        The ledger's first click.
    streams : callable
        ``streams(k)``: the keyed stream of click ``k`` (2, 3, ...).
    capabilities : object, optional
        The model's; it is given only the clicks they accept (:func:`given_clicks`).

    Returns
    -------
    (clicks, dice per click, final prediction)
    """
    clicks, scores = [first], []
    previous: np.ndarray | None = None
    for number in range(1, num_clicks + 1):
        if number > 1:
            clicks.append(draw_click(previous, reference, streams(number)))
        given = given_clicks(target, frames, clicks, capabilities)
        answer = np.asarray(predict(given, previous), dtype=bool)
        if answer.shape != reference.shape:
            raise ValueError(f"sam-med3d clicks: the model answered {answer.shape} for target "
                             f"{target!r}, expected {reference.shape}")
        previous = answer
        scores.append(dice(previous, reference))
    return clicks, scores, previous


def click_sessions(flow: Flow, prompts: Sequence[Prompt],
                   predict: Callable[[list[Prompt], np.ndarray | None, Sequence[int]],
                                     np.ndarray],
                   num_clicks: int, keyer: Keyer, capabilities: Any = None
                   ) -> tuple[Prediction, list[dict[str, Any]]]:
    """Run every session of ``flow`` whose first click is a ledger prompt.

    ``predict(prompts, previous, frames)`` answers for the session's frames.
    Returns the final masks (the prediction, scored as any other) and tidy
    rows of the Dice after each click (``click`` column), as the
    ``interactive`` protocol records them.
    """
    sizes = [shape[:2] for shape in frame_shapes(flow.frames)]
    masks = {p.target: PackedMasks.filled(sizes, False) for p in prompts}
    firsts = {(p.target, p.frame): p for p in prompts}
    rows: list[dict[str, Any]] = []
    for target, frames in sessions(flow):
        first = next((firsts[(target, f)] for f in frames if (target, f) in firsts), None)
        if first is None:
            continue
        (x, y), = first.points
        start = (int(x), int(y), list(frames).index(first.frame), True)
        key = _session_frame(flow, frames)
        _, scores, final = run_session(
            lambda clicks, previous, fs=frames: predict(clicks, previous, fs),
            _stack(flow, target, frames), frames, target, start,
            lambda number, t=target, k=key: keyer(t, k, purpose(number)), num_clicks,
            capabilities)
        for z, frame in enumerate(frames):
            masks[target][frame] = final[z]
        index = 0 if flow.kind == "volume" else frames[0]
        where = {"case": flow.case_ids[index], "patient": flow.patient_ids[index],
                 "target": target, "status": "ok"}
        rows += [{**where, "metric": "dice", "value": float(value), "click": number}
                 for number, value in enumerate(scores, start=1)]
    return Prediction(masks=masks), rows


def given_clicks(target: str, frames: Sequence[int], clicks: Sequence[Click3D],
                 capabilities: Any = None) -> list[Prompt]:
    """The clicks a model accepts, as :func:`click_prompts`: without ``negative_clicks``
    no negative click, without ``several_clicks`` only the latest (kept) click."""
    kept = list(clicks)
    if not getattr(capabilities, "negative_clicks", True):
        kept = [c for c in kept if c[3]]
    if not getattr(capabilities, "several_clicks", True):
        kept = kept[-1:]
    return click_prompts(target, frames, kept)


def adapter_sessions(flow: Flow, seen: Any, adapter: Any, prompts: Sequence[Prompt],
                     num_clicks: int, keyer: Keyer) -> tuple[Prediction, list[dict[str, Any]]]:
    """:func:`click_sessions` against a model adapter.

    Volumes: the adapter's ``predict_step`` (else ``predict``) on the volume
    with the clicks it accepts (:func:`given_clicks`) and, when its
    capabilities say ``previous_mask``, its previous prediction. Images of an
    image flow: its ``predict_click`` on the image, as the ``interactive``
    protocol asks.
    """
    capabilities = adapter.capabilities
    wants_previous = bool(getattr(capabilities, "previous_mask", False))
    step = getattr(adapter, "predict_step", None)

    def predict(given: list[Prompt], previous: np.ndarray | None,
                frames: Sequence[int]) -> np.ndarray:
        target = given[0].target
        if flow.kind != "volume":
            before = None if previous is None else previous[0]
            return np.asarray(adapter.predict_click(seen, given[0], before), dtype=bool)[None]
        earlier = None
        if wants_previous and previous is not None:
            earlier = Prediction(masks={target: previous})
        answer = step(seen, given, earlier) if step is not None else adapter.predict(seen, given)
        return np.stack([np.asarray(answer.masks[target][f], dtype=bool) for f in frames])

    return click_sessions(flow, prompts, predict, num_clicks, keyer, capabilities)


def card(params: Any, kind: str | None) -> str:
    """The protocol card of ``sam-med3d-clicks``."""
    repo, file, commit = UPSTREAM
    return (f"sam-med3d-clicks (SAM-Med3D's click rule, {repo} {file} @ {commit[:7]}): one "
            f"session per target and volume (per image of an image flow), "
            f"{params.num_clicks} click(s) in all. The first click is a target voxel drawn "
            f"uniformly (positive); each next one a voxel drawn uniformly from the previous "
            f"prediction's error (false negatives and false positives), positive on a false "
            f"negative, negative on a false positive (a target voxel, positive, when there is "
            f"no error); draws from the keyed streams over voxels listed in upstream's (x, y, "
            f"z) order. The model gets every click so far (those it accepts); the last "
            f"prediction is scored as usual, the Dice after each click is recorded. Not "
            f"reproduced: SAM-Med3D's "
            f"evaluation resamples to 1.5 mm isotropic, reorients to RAS, crops or pads "
            f"128^3 around the label and scores inside that crop; the harness clicks and "
            f"scores on the dataset's grid over the whole volume, and its seed is the keyed "
            f"streams' (not np.random.seed(233)). Taken from ground truth beyond the prompts: "
            f"which targets are present; the clicker reads the ground truth after every "
            f"prediction, by design.")
