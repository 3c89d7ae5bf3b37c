"""Prompt protocols (DESIGN section 4): which frames of a flow get which prompts.

Every protocol is a :class:`ProtocolSpec` in :data:`PROTOCOLS`, with its
parameters declared once as a strict settings model (:class:`OnePromptParams`,
:class:`PaperRandomParams`, ...; set per suite in ``bench.toml`` under
``protocol_params``), and a protocol card: the text printed in reports that
says how many prompts a flow gets and what the harness took from the ground
truth beyond the prompts.

Prompt kinds. ``one-prompt`` takes its kind from the dataset card
(``one_prompt_kind``); ``paper-random`` and ``every-frame`` have a protocol
default (``mask`` and ``point``); all three accept an override, either as the
``prompt_kind`` argument of :func:`make_prompts` or as the ``prompt_kind``
protocol parameter. ``official-code`` and ``interactive`` fix their own kinds
and ignore the argument. :func:`resolve_prompt_kind` applies these rules.

Every random choice is drawn from a keyed stream (:mod:`bench.prompts.streams`)
keyed by ``(seed, dataset, flow id, target, frame, protocol, purpose)``.

The module is over 500 lines on purpose: each of the five protocols is its
parameters, its selection and its card (prompts, leakage and scoring rules),
read side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from bench.errors import unknown_name
from bench.prompts import alpnet, medsam_box, sam_med3d
from bench.prompts.cvpr25 import BOX_KIND as CVPR25_KIND
from bench.prompts.cvpr25 import PROTOCOL as CVPR25
from bench.prompts.cvpr25 import card as cvpr25_card
from bench.prompts.cvpr25 import select as cvpr25_select
from bench.prompts.kinds import (
    DEFAULT_MAX_JITTER,
    empty_mask_prompt,
    present_frames,
    prompt_from_mask,
    random_pixel,
)
from bench.prompts.medsam_box import DEFAULT_BBOX_SHIFT
from bench.prompts.streams import KeyedStream, keyed_stream
from bench.settings import Items, Settings, validate
from bench.types import PROMPT_KINDS, Flow, Prompt

# Paper section 4 (experiments): "prompts are provided randomly with a probability of 0.25 [3D],
# and for 2D images, the probability is 0.3".
PAPER_P_VOLUME = 0.25
PAPER_P_IMAGE_FLOW = 0.3

Keyer = Callable[[str, "int | None", str], KeyedStream]

PromptKindName = Literal[PROMPT_KINDS]  # type: ignore[valid-type]
Probability = Annotated[float, Field(gt=0, le=1)]


# ---------------------------------------------------------------- parameters


class ProtocolParams(Settings):
    """Base of every protocol's parameters (``[suites.NAME.protocol_params]``)."""


class PromptParams(ProtocolParams):
    """Parameters of the protocols whose prompt kind can be chosen (also ``every-frame``'s)."""

    prompt_kind: PromptKindName | None = Field(
        None, description="prompt kind; none: the dataset card's one_prompt_kind (one-prompt), "
        "mask (paper-random), point (every-frame)")
    max_jitter: int = Field(DEFAULT_MAX_JITTER, ge=0,
                            description="box-jitter: largest outward move of each side, in pixels")


def _not_bool(value: Any) -> Any:
    # Literal[1, ...] would take True (== 1): a boolean is not a support set size.
    if isinstance(value, bool):
        raise PydanticCustomError("k_shot", "expected one of 1, 2, 4, 8, 16, 32, 64")
    return value


#: The support set sizes ``k_shot`` accepts (the UniverSeg paper's powers of two).
KShot = Annotated[Literal[1, 2, 4, 8, 16, 32, 64], BeforeValidator(_not_bool)]
#: The ledger kind of a support-set row: a frame's ground-truth mask, handed only to in-context
#: models (as a ``mask`` prompt) and given (not scored) for every model of the run.
SUPPORT_KIND = "support"


class OnePromptParams(PromptParams):
    """``one-prompt``: which frame is the template; the support set of in-context models."""

    template: Literal["first", "middle", "random"] | Annotated[int, Field(ge=0)] = Field(
        "first", description="'first' frame containing the target, the 'middle' of its extent "
        "(see middle_frame), a 'random' one (keyed stream) or a frame index")
    k_shot: KShot | Items[KShot] | None = Field(
        None, description="support set size k for in-context models (1, 2, 4, ..., 64; a list "
        "such as [1, 2, 4] runs them once per k, for a Dice-versus-k curve): the template and "
        "k - 1 frames drawn (keyed stream) among those containing the target, recorded as "
        "'support' ledger rows and not scored for any model; none: no support rows")


def k_values(params: ProtocolParams | None) -> tuple[int, ...]:
    """The support set sizes of ``params`` (``k_shot``), sorted; () when unset or another
    protocol's parameters."""
    k_shot = getattr(params, "k_shot", None)
    if k_shot is None:
        return ()
    return tuple(sorted({int(k) for k in (k_shot if isinstance(k_shot, tuple) else (k_shot,))}))


def without_k_shot(params: ProtocolParams) -> ProtocolParams:
    """``params`` as if ``k_shot`` had never been set.

    A run with no in-context model drops it (:func:`bench.plan.make_plan`):
    nothing would use the support sets, and leaving them out of scoring would
    only shrink every model's cases.
    """
    if getattr(params, "k_shot", None) is None:
        return params
    kept = {name: getattr(params, name) for name in params.model_fields_set if name != "k_shot"}
    return type(params).model_validate(kept)


def support_rank(seed: int, dataset: str, flow_id: str, target: str, frame: int,
                 protocol: str = "one-prompt") -> float:
    """The keyed draw that orders a target's candidate support frames (smallest first).

    The support set of size k is the template plus the k - 1 other frames
    containing the target with the smallest draws, so the sets of a list of
    k are nested, and the runner can tell which ledger ``support`` rows make
    up each k without anything beyond the ledger and the seed.
    """
    return keyed_stream(seed, dataset, flow_id, target, frame, protocol, "support").uniform()


class PaperRandomParams(PromptParams):
    """``paper-random``: the probability that a frame containing the target is prompted."""

    p: Probability | None = Field(
        None, description="probability; none: 0.25 for volumes, 0.3 for image flows (paper)")


class OfficialCodeParams(ProtocolParams):
    """``official-code``: the official repository's validation options."""

    prompt: Literal["box", "click"] = Field(
        "box", description="volumes: a tight box or one uniform random click (the official "
        "-prompt option)")
    prompt_freq: int = Field(2, ge=1, description="volumes: prompt every n-th slice of the window")
    click_every: int = Field(5, ge=1, description="image flows: click every n-th image")


class InteractiveParams(ProtocolParams):
    """``interactive``: the RITM clicker's budget and the NoC thresholds."""

    max_clicks: int = Field(20, ge=1, description="clicks per session")
    noc_thresholds: Items[Probability] = Field(
        (0.85, 0.9), min_length=1, description="Dice thresholds for NoC (number of clicks)")


class MedSAMBoxParams(ProtocolParams):
    """``medsam-box``: MedSAM's largest random move of each box side."""

    bbox_shift: int = Field(DEFAULT_BBOX_SHIFT, ge=0,
                            description="each side of the tight box moves out by a uniform "
                            "integer in 0..bbox_shift px (MedSAM's NpyDataset default 20)")


class SamMed3DParams(ProtocolParams):
    """``sam-med3d-clicks``: how many clicks each session gets."""

    num_clicks: int = Field(1, ge=1, description="clicks per target and volume (SAM-Med3D's "
                            "validate_paired_img_gt default 1)")


class Cvpr25Params(ProtocolParams):
    """``cvpr25-interactive``: fixed by the challenge; nothing to set."""


class AlpnetParams(ProtocolParams):
    """``alpnet-protocol``: parts, folds, the support volume, the setting, the classes
    (:mod:`bench.prompts.alpnet`)."""

    npart: Annotated[int, Field(ge=1)] = Field(
        3, description="parts each volume's class extent is split into, one support slice per "
        "part (odd, as upstream asserts; SSL-ALPNet's default 3)")
    folds: Annotated[int, Field(ge=2)] = Field(
        5, description="consecutive folds of the cases sorted by the last number in their id; "
        "each fold's support volume is the case just after it (SABS: 5 folds of 6 scans)")
    support_case: str | None = Field(
        None, description="one case id as the support volume of every other case (that case "
        "is then not scored); none: the fold rule")
    setting: Literal[1, 2] | None = Field(
        None, description="the ALPNet setting of the model scored: 1 (test classes seen, "
        "unlabelled, in training) or 2 (training slices containing them removed); recorded "
        "and reported, changes no prompt or score; none: not stated")
    targets: Items[str] | None = Field(
        None, min_length=1, description="the classes scored (SSL-ALPNet: liver, spleen, left "
        "and right kidney); each must be a target of some dataset of the run, names a dataset "
        "lacks are skipped there; none: every target of the card")

    @field_validator("npart")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 != 1:
            raise ValueError(f"must be odd (upstream asserts npart % 2 == 1), got {value}")
        return value


@dataclass(frozen=True)
class ProtocolSpec:
    """A prompt protocol.

    Attributes
    ----------
    name, description : str
    params : type of ProtocolParams
        The accepted parameters, with defaults.
    kind_source : {"card", "protocol", "fixed"}
        Where the prompt kind comes from when not overridden: the dataset
        card, ``default_kind``, or the protocol's own rules (no override).
    default_kind : str or None
        The kind used when ``kind_source == "protocol"``.
    """

    name: str
    description: str
    params: type[ProtocolParams]
    kind_source: str
    default_kind: str | None
    select: Callable[[Flow, Any, str | None, Keyer], list[Prompt]] = field(repr=False)
    scored: Callable[[Flow, Any], list[int] | None] = field(repr=False)
    describe: Callable[[Any, str | None], str] = field(repr=False)

    @property
    def defaults(self) -> dict[str, Any]:
        """Parameter names and their defaults."""
        return self.params().model_dump()

    def settings(self, params: Mapping[str, Any] | ProtocolParams | None = None,
                 where: str = "protocol_params") -> ProtocolParams:
        """The typed parameters: ``params`` validated, defaults for the rest.

        The fields the caller set are kept apart (``model_fields_set``): they
        identify a run's units.

        Raises
        ------
        ConfigError
            For an unknown parameter (naming the nearest valid one) or a bad value.
        """
        if type(params) is self.params:
            return params
        return validate(self.params, params, where)

    def resolve(self, params: Mapping[str, Any] | ProtocolParams | None = None,
                where: str = "protocol_params") -> dict[str, Any]:
        """:meth:`settings` as a plain dict of every parameter."""
        return self.settings(params, where).model_dump()

    def chosen_kind(self, params: ProtocolParams, given: str | None = None) -> str | None:
        """The prompt kind: ``given``, else the ``prompt_kind`` parameter, else the default.

        None for protocols that fix their own kinds (and for ``one-prompt``
        without a kind: the dataset card must give one).
        """
        if not isinstance(params, PromptParams):
            return None
        return given or params.prompt_kind or self.default_kind

    def card(self, params: Mapping[str, Any] | ProtocolParams | None = None,
             prompt_kind: str | None = None) -> str:
        """The protocol card: prompts per flow and what was taken from ground truth."""
        resolved = self.settings(params)
        return self.describe(resolved, self.chosen_kind(resolved, prompt_kind))


# ---------------------------------------------------------------- selection helpers


def _presence(flow: Flow) -> dict[str, list[int]]:
    return {target: present_frames(flow.masks[target]) for target in flow.targets}


def _frame_mask(flow: Flow, target: str, frame: int) -> np.ndarray:
    return np.asarray(flow.masks[target][frame]).astype(bool, copy=False)


def _prompt(flow: Flow, target: str, frame: int, kind: str, keyer: Keyer,
            max_jitter: int = DEFAULT_MAX_JITTER) -> Prompt:
    stream = keyer(target, frame, kind) if kind in ("point-random", "box-jitter") else None
    return prompt_from_mask(_frame_mask(flow, target, frame), kind, target=target, frame=frame,
                            stream=stream, max_jitter=max_jitter)


def _require_kind(protocol: str, kind: str | None) -> str:
    if kind is None:
        raise ValueError(f"protocol {protocol!r}: no prompt kind given (pass prompt_kind, "
                         "e.g. the dataset card's one_prompt_kind)")
    if kind not in PROMPT_KINDS:
        raise ValueError(f"prompt_kind: unknown {kind!r}; known: {', '.join(PROMPT_KINDS)}")
    return kind


def _pick(frames: list[int], stream: KeyedStream) -> int:
    return frames[stream.integer(len(frames))]


def middle_frame(frames: Sequence[int]) -> int:
    """The middle of a target's extent: the frame of ``frames`` nearest ``(first + last) // 2``.

    ``frames`` are the (sorted) frames containing the target. On a volume this
    is the middle slice of the target's z-extent, the lower one of the two
    middle slices when the extent has an even number of slices; when the target
    is absent from that slice (a split target), the nearest slice containing
    it, the lower one on a tie.
    """
    centre = (frames[0] + frames[-1]) // 2
    return min(frames, key=lambda frame: (abs(frame - centre), frame))


def _kind_words(kind: str | None, max_jitter: int) -> tuple[str, str]:
    """(kind description, ground truth it reveals) for the protocol cards."""
    if kind == "mask":
        return "mask", "the ground-truth mask itself is the prompt"
    if kind == "box-jitter":
        return (f"box-jitter (each side moved out by 0-{max_jitter} px)",
                "the target's bounding box, loosened")
    if kind == "box":
        return "box (tight)", "the target's tight bounding box"
    if kind == "point-random":
        return "point-random (uniform target pixel)", "one pixel inside the target"
    if kind == "point":
        return "point (deepest target pixel)", "the target's deepest interior pixel"
    return "the dataset card's one_prompt_kind", "whatever the prompt kind reveals"


_MASK_SCORING = ("Scoring: a frame whose prompt is a ground-truth mask is given, not predicted, "
                 "so it is not scored for that target (image flows: the image is left out; "
                 "volumes: the slice is masked out of both prediction and reference); "
                 "--score-prompted reports such rows apart, outside every aggregate.")


# ---------------------------------------------------------------- one-prompt


def _one_prompt(flow: Flow, params: OnePromptParams, kind: str | None,
                keyer: Keyer) -> list[Prompt]:
    kind = _require_kind("one-prompt", kind)
    template = params.template
    prompts = []
    for target, frames in _presence(flow).items():
        if not frames:
            continue  # nothing to prompt: the target is absent from the whole flow
        if template == "first":
            frame = frames[0]
        elif template == "middle":
            frame = middle_frame(frames)
        elif template == "random":
            frame = _pick(frames, keyer(target, None, "template"))
        else:
            frame = int(template)
            if frame >= len(flow.frames):
                raise ValueError(f"one-prompt template index {frame}: flow {flow.id!r} has only "
                                 f"{len(flow.frames)} frames")
            if frame not in frames:
                raise ValueError(f"one-prompt template index {frame}: target {target!r} is "
                                 f"absent from that frame of flow {flow.id!r}")
        prompts.append(_prompt(flow, target, frame, kind, keyer, params.max_jitter))
        if params.k_shot is not None:
            prompts.extend(_support(flow, target, frame, frames, max(k_values(params)), keyer))
    return prompts


def _support(flow: Flow, target: str, template: int, frames: list[int], k: int,
             keyer: Keyer) -> list[Prompt]:
    """The ``support`` rows of one target: the template and k - 1 drawn frames.

    At least one frame containing the target is left out of the support set
    (when there is one besides the template), so that something is scored: a
    flow with n such frames gets at most n - 1 support frames.
    """
    others = sorted((f for f in frames if f != template),
                    key=lambda f: (keyer(target, f, "support").uniform(), f))
    drawn = others[:max(0, min(k - 1, len(others) - 1))]
    return [Prompt(target, f, SUPPORT_KIND, mask=_frame_mask(flow, target, f).copy())
            for f in sorted([template, *drawn])]


def _one_prompt_card(params: OnePromptParams, kind: str | None) -> str:
    template = params.template
    which = {"first": "the first frame containing the target",
             "middle": "the middle frame of the target's extent ((first + last) // 2 of the "
                       "frames containing it; if absent there, the nearest frame containing it, "
                       "the lower on a tie)",
             "random": "a frame drawn uniformly (keyed stream) among those containing the target"
             }.get(template, f"frame {template}")
    kind_text, reveals = _kind_words(kind, params.max_jitter)
    return (f"one-prompt: 1 prompt per flow and target, on {which}; prompt kind: {kind_text}. "
            f"Taken from ground truth beyond the prompt: which frames contain the target "
            f"(to place the template; targets absent from a flow get no prompt); {reveals}. "
            f"Scoring: on image flows the template image is given, not predicted, and is not "
            f"scored for its target (it is still scored for the other targets); on volumes "
            f"(one case scored in 3D) a mask-prompted template slice is masked out of both "
            f"prediction and reference, a point or box template slice is scored. "
            f"--score-prompted reports the template rows apart, outside every aggregate."
            + _support_card(params))


def _support_card(params: OnePromptParams) -> str:
    ks = k_values(params)
    if not ks:
        return ""
    return (f" Support set (k_shot = {', '.join(map(str, ks))}): per flow and target, the "
            f"template and up to {max(ks) - 1} more frames containing the target, drawn by "
            "keyed stream ('support' ledger rows, their ground-truth masks); the set of each "
            "k is the template and the k - 1 drawn frames of smallest draw (nested sets; at "
            "most n - 1 of the n frames containing the target, so one is always left to "
            "score). In-context models get the support masks as mask prompts, once per k "
            "(rows labelled MODEL@kK); other models get only the template prompt. Every "
            "support frame is given for every model and every k (not scored), so all models "
            "and all k are scored on the same cases; with k above 1 that is fewer cases than "
            "the paper's one-prompt setting (the template alone, k_shot = 1), whose n this "
            "run does not reproduce. Taken from ground truth beyond the "
            "prompt: the support masks, and which frames contain the target.")


# ---------------------------------------------------------------- paper-random


def paper_p(flow_kind: str, p: float | None) -> float:
    """The paper-random probability: ``p`` if given, else 0.25 (volume) / 0.3 (image flow)."""
    if p is not None:
        return float(p)
    return PAPER_P_VOLUME if flow_kind == "volume" else PAPER_P_IMAGE_FLOW


def _paper_random(flow: Flow, params: PaperRandomParams, kind: str | None,
                  keyer: Keyer) -> list[Prompt]:
    kind = _require_kind("paper-random", kind)
    p = paper_p(flow.kind, params.p)
    prompts = []
    for target, frames in _presence(flow).items():
        if not frames:
            continue
        chosen = [f for f in frames if keyer(target, f, "include").bernoulli(p)]
        if not chosen:
            # At least one prompt per flow and target: a keyed uniform pick.
            chosen = [_pick(frames, keyer(target, None, "fallback"))]
        prompts.extend(_prompt(flow, target, f, kind, keyer, params.max_jitter) for f in chosen)
    return prompts


def _paper_random_card(params: PaperRandomParams, kind: str | None) -> str:
    p = params.p
    p_text = (f"p = {PAPER_P_VOLUME} for volumes, {PAPER_P_IMAGE_FLOW} for image flows"
              if p is None else f"p = {p}")
    kind_text, reveals = _kind_words(kind, params.max_jitter)
    return (f"paper-random: each frame containing the target is prompted with probability "
            f"{p_text} (keyed stream), so about p x (frames containing the target) prompts per "
            f"flow and target, and at least 1 (if none is drawn, one such frame drawn "
            f"uniformly); prompt kind: {kind_text}. Taken from ground truth beyond the "
            f"prompts: which frames contain the target (only those are eligible, so a prompt "
            f"tells the model the target is present there); {reveals}. Point- and "
            f"box-prompted frames are scored (as in the paper). {_MASK_SCORING}")


# ---------------------------------------------------------------- every-frame


def _every_frame(flow: Flow, params: PromptParams, kind: str | None,
                 keyer: Keyer) -> list[Prompt]:
    kind = _require_kind("every-frame", kind)
    return [_prompt(flow, target, f, kind, keyer, params.max_jitter)
            for target, frames in _presence(flow).items() for f in frames]


def _every_frame_card(params: PromptParams, kind: str | None) -> str:
    kind_text, reveals = _kind_words(kind, params.max_jitter)
    return (f"every-frame: 1 prompt on every frame containing the target (as many prompts per "
            f"flow and target as frames containing it); prompt kind: {kind_text}. Taken from "
            f"ground truth beyond the prompts: which frames contain the target (frames without "
            f"a prompt are known to be empty); {reveals}. Point- and box-prompted frames are "
            f"scored. {_MASK_SCORING}")


# ---------------------------------------------------------------- official-code


def labelled_slab(flow: Flow) -> tuple[int, int] | None:
    """``(start, stop)`` of the frames between the first and last containing any target.

    ``stop`` is exclusive. None when no target is present anywhere.
    """
    present = sorted({f for frames in _presence(flow).values() for f in frames})
    if not present:
        return None
    return present[0], present[-1] + 1


def official_window(flow: Flow) -> list[int]:
    """The frames the official code scores on a volume: the first floor(n/4) of the slab."""
    slab = labelled_slab(flow)
    if slab is None:
        return []
    start, stop = slab
    return list(range(start, start + (stop - start) // 4))


def _official_code(flow: Flow, params: OfficialCodeParams, kind: str | None,
                   keyer: Keyer) -> list[Prompt]:
    presence = {t: set(frames) for t, frames in _presence(flow).items()}
    prompts: list[Prompt] = []
    if flow.kind == "image-flow":
        # func_2d: a click on every image whose index is a multiple of click_every. Its
        # random_click puts a negative click at a random pixel when the mask is empty.
        for frame in range(0, len(flow.frames), params.click_every):
            for target in flow.targets:
                if frame in presence[target]:
                    prompts.append(_prompt(flow, target, frame, "point-random", keyer))
                else:
                    shape = np.shape(flow.masks[target][frame])
                    point = random_pixel(shape, keyer(target, frame, "point-random"))
                    prompts.append(Prompt(target, frame, "point-random", points=(point,),
                                          labels=(0,)))
        return prompts
    window = official_window(flow)
    if not window:
        return prompts
    # func_3d validation: objects present anywhere in the scored window; each gets a prompt on
    # window frames 0, prompt_freq, 2*prompt_freq, ...: box (or click) where present, an
    # all-zero mask where absent.
    targets = official_targets(flow)
    present_kind = "box" if params.prompt == "box" else "point-random"
    for frame in window[::params.prompt_freq]:
        for target in targets:
            if frame in presence[target]:
                prompts.append(_prompt(flow, target, frame, present_kind, keyer))
            else:
                shape = np.shape(flow.masks[target][frame])
                prompts.append(empty_mask_prompt(shape, target=target, frame=frame))
    return prompts


def _official_scored(flow: Flow, params: OfficialCodeParams) -> list[int] | None:
    return official_window(flow) if flow.kind == "volume" else None


def official_targets(flow: Flow) -> list[str]:
    """The targets the official code scores on a volume: those present in its window.

    func_3d/function.py collects the objects of the window's label maps; a
    target absent from every window slice gets no prompt and is not scored
    (scoring it would give empty/empty = 1 to any model). Image flows: every
    target (func_2d scores every image).
    """
    if flow.kind != "volume":
        return list(flow.targets)
    window = set(official_window(flow))
    return [t for t, frames in _presence(flow).items() if window & set(frames)]


def _official_code_card(params: OfficialCodeParams, kind: str | None) -> str:
    what = "a tight box" if params.prompt == "box" else "one uniform random click"
    freq, every = params.prompt_freq, params.click_every
    return (f"official-code (MedicineToken/Medical-SAM2 validation). Volumes: cropped to the "
            f"labelled slab (first to last slice containing any target, n slices; the official "
            f"code uses any nonzero label, the same when the card lists every label value as a "
            f"target and refuses unknown values, as official-btcv does) and scored "
            f"on its first floor(n/4) slices only (slabs under 4 slices give nothing to score); "
            f"prompts on slices 0, {freq}, {2 * freq}, ... of that window: {what} per target "
            f"present on the slice and an all-zero mask prompt per target absent from it; "
            f"targets absent from the whole window get no prompt and are not scored. Image "
            f"flows: on every image with index % {every} == 0, one uniform random click per "
            f"target (a negative click at a random pixel where the target is absent); all "
            f"images scored. The official code feeds each click as (row, col) where SAM reads "
            f"(x, y); the official-code suite reproduces this for medsam2 (click_order = "
            f"'official' in [suites.official-code.model_settings.medsam2]), other models get "
            f"(x, y). As in the official code, prompted slices and images are scored "
            f"too (none is given a mask: empty-mask prompts only declare absence). "
            f"dice_official / iou_official are the official code's own metric, from the "
            f"model's logits at 1024 px, reported beside dice / iou, never mixed. "
            f"Taken from ground truth beyond the prompts: the slab extent, the "
            f"n/4 cut, which targets occur in the window, and absence on prompted frames "
            f"(empty-mask prompts and negative clicks reveal it).")


# ---------------------------------------------------------------- interactive


def _interactive(flow: Flow, params: InteractiveParams, kind: str | None,
                 keyer: Keyer) -> list[Prompt]:
    # The ledger holds the first click of every session; later clicks depend on the model's
    # predictions and are made by the runner with bench.prompts.interactive.
    return [_prompt(flow, target, f, "point", keyer)
            for target, frames in _presence(flow).items() for f in frames]


def _interactive_card(params: InteractiveParams, kind: str | None) -> str:
    thresholds = ", ".join(f"{100 * t:g}" for t in params.noc_thresholds)
    return (f"interactive (RITM clicker): one session per frame containing the target; first "
            f"click at the deepest ground-truth pixel, then up to {params.max_clicks} clicks "
            f"in all, each at the error pixel deepest inside the false-negative or "
            f"false-positive region of the previous prediction (positive when the deepest "
            f"false-negative distance is larger); Dice after each click, NoC at {thresholds}. "
            f"Taken from ground truth beyond the prompts: which frames contain the target; the "
            f"clicker itself reads the ground truth after every prediction, by design.")


# ---------------------------------------------------------------- registry


def _all_frames(flow: Flow, params: ProtocolParams) -> list[int] | None:
    return None


def _per_dataset(flow: Flow, params: ProtocolParams, kind: str | None,
                 keyer: Keyer) -> list[Prompt]:
    raise ValueError(f"{alpnet.PROTOCOL} derives a flow's prompts from another flow (its "
                     "support volume): use bench.prompts.alpnet.ledger_rows on the dataset's "
                     "summaries, as bench.derive does")


PROTOCOLS: dict[str, ProtocolSpec] = {
    spec.name: spec
    for spec in (
        ProtocolSpec(
            "one-prompt",
            "One prompt on one frame (the template) per flow and target; the model segments "
            "the rest (paper Figure 4).",
            OnePromptParams, "card", None, _one_prompt, _all_frames, _one_prompt_card),
        # Paper section 3.1: the Table 1-2 experiments use auto-generated mask prompts.
        ProtocolSpec(
            "paper-random",
            "Each frame containing the target prompted with probability p (paper Tables 1-2).",
            PaperRandomParams, "protocol", "mask", _paper_random, _all_frames,
            _paper_random_card),
        ProtocolSpec(
            "official-code",
            "The official repository's validation loop: labelled slab, n/4 cut, prompts on "
            "every 2nd slice (volumes) or every 5th image (image flows).",
            OfficialCodeParams, "fixed", None, _official_code, _official_scored,
            _official_code_card),
        ProtocolSpec(
            "every-frame",
            "A prompt on every frame containing the target (per-frame interactive baselines).",
            PromptParams, "protocol", "point", _every_frame, _all_frames, _every_frame_card),
        ProtocolSpec(
            "interactive",
            "RITM-style corrective clicks on every frame containing the target; Dice per click, "
            "NoC@85 and NoC@90.",
            InteractiveParams, "fixed", "point", _interactive, _all_frames, _interactive_card),
        ProtocolSpec(
            CVPR25,
            "The CVPR 2025 interactive 3D challenge (JunMa11/CVPR-MedSegFMCompetition): a 3D "
            "box, then 5 corrective clicks per target from the model's previous prediction; "
            "Dice and NSD per step, their AUC over the clicks, final values.",
            Cvpr25Params, "fixed", CVPR25_KIND, cvpr25_select, _all_frames, cvpr25_card),
        ProtocolSpec(
            "medsam-box",
            "MedSAM's box: the tight box, each side moved out by 0..bbox_shift px "
            "(bowang-lab/MedSAM), on every frame containing the target.",
            MedSAMBoxParams, "fixed", medsam_box.KIND, medsam_box.select, _all_frames,
            medsam_box.card),
        ProtocolSpec(
            "sam-med3d-clicks",
            "SAM-Med3D's clicks (uni-medical/SAM-Med3D): the first at a random target voxel, "
            "each next one at a random voxel of the previous prediction's error.",
            SamMed3DParams, "fixed", "point-random", sam_med3d.select, _all_frames,
            sam_med3d.card),
        ProtocolSpec(
            alpnet.PROTOCOL,
            "The ALPNet family's 1-way 1-shot volume protocol (SSL-ALPNet, ADNet, Q-Net): "
            "query slices matched by relative position to support slices of another volume; "
            "the class's z-extent scored.",
            AlpnetParams, "fixed", alpnet.KIND, _per_dataset, _all_frames, alpnet.card),
    )
}

#: The protocol names, as a settings type (``protocol = "..."`` in a suite).
ProtocolName = Literal[tuple(PROTOCOLS)]  # type: ignore[valid-type]


def get_protocol(name: str) -> ProtocolSpec:
    """The spec of protocol ``name``; a clear error naming the nearest one otherwise."""
    if name not in PROTOCOLS:
        raise unknown_name("protocol", name, PROTOCOLS)
    return PROTOCOLS[name]


def resolve_prompt_kind(protocol: str,
                        params: Mapping[str, Any] | ProtocolParams | None = None,
                        card_kind: str | None = None) -> str | None:
    """The prompt kind a protocol uses for a dataset.

    The ``prompt_kind`` parameter wins; otherwise ``one-prompt`` uses the
    dataset card's kind and ``paper-random`` / ``every-frame`` their default.
    None for ``official-code`` and ``interactive``, whose kinds are fixed.
    """
    spec = get_protocol(protocol)
    kind = spec.chosen_kind(spec.settings(params))
    return card_kind if kind is None and spec.kind_source == "card" else kind


def make_prompts(
    flow: Flow,
    protocol: str,
    *,
    seed: int,
    prompt_kind: str | None = None,
    params: Mapping[str, Any] | ProtocolParams | None = None,
) -> list[Prompt]:
    """Derive the prompts of ``flow`` under ``protocol``.

    Parameters
    ----------
    flow : Flow
        With ground truth.
    protocol : str
        A key of :data:`PROTOCOLS`.
    seed : int
        Seed of the keyed random streams.
    prompt_kind : str, optional
        The prompt kind (for ``one-prompt`` the dataset card's
        ``one_prompt_kind``, required). None: the ``prompt_kind`` parameter,
        else the protocol default. Ignored by ``official-code`` and
        ``interactive``, which fix their own kinds.
    params : mapping or ProtocolParams, optional
        Protocol parameters; unknown names are an error.

    Returns
    -------
    list of Prompt
        Sorted by (target, frame). Mask prompts carry the mask.
    """
    spec = get_protocol(protocol)
    resolved = spec.settings(params)
    kind = spec.chosen_kind(resolved, prompt_kind)

    def keyer(target: str, frame: int | None, purpose: str) -> KeyedStream:
        return keyed_stream(seed, flow.dataset, flow.id, target, frame, protocol, purpose)

    prompts = spec.select(flow, resolved, kind, keyer)
    return sorted(prompts, key=lambda p: (p.target, p.frame))


def scored_frames(flow: Flow, protocol: str,
                  params: Mapping[str, Any] | ProtocolParams | None = None) -> list[int] | None:
    """Frames of ``flow`` that are scored under ``protocol``; None means all.

    Only ``official-code`` restricts them (volumes: the first floor(n/4)
    slices of the labelled slab). Under ``official-code`` the targets to score
    are also restricted: those present in the window (:func:`official_targets`).
    The complete scoring rules, given frames included, are
    :func:`bench.prompts.scope.scoring_scope`.
    """
    spec = get_protocol(protocol)
    return spec.scored(flow, spec.settings(params))
