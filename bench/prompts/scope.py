"""What a protocol scores: frames, targets, and the frames whose answer was given.

Rules (issue 12 items 1-2; each protocol card states its own):

- **Prompted = given, per target.** A frame that received a prompt for a
  target is *given* for that target (not predicted) when

  - the prompt is a ground-truth ``mask`` (any protocol: the answer itself
    was handed to the model), or
  - the protocol is ``one-prompt`` and the flow is an image flow (the
    template image is the example, whatever the prompt kind).

  The same frame is still scored for another target whose prompt is
  elsewhere. Point and box prompted frames are scored under
  ``paper-random`` and ``every-frame`` (as the paper does), and under
  ``official-code`` every window frame is scored, prompted or not, including
  the empty-mask prompts (as the official code does; its ``empty-mask``
  prompts are not ``mask`` prompts).
- **Image flows**: a given image is not a case for that target. With
  ``bench run --score-prompted`` its rows are kept with status ``prompted``,
  outside every aggregate, and reported in their own table.
- **Volumes** (one case scored in 3D): a given (mask-prompted) slice is
  masked out of both prediction and reference (set to background in both), so
  it adds nothing to the overlap counts; surface metrics see it as background
  in both masks. With ``--score-prompted`` the volume is also scored with the
  given slices left in (status ``prompted``).
- **Support sets** (``one-prompt`` with ``k_shot``): every ``support`` row's
  frame is given for its target, for every model of the run (in-context or
  not) and every k, so all of them are scored on the same cases.
  :func:`adapter_views` says what each model is shown: in-context models the
  support masks (as ``mask`` prompts), once per k, labelled ``MODEL@kK``;
  every other model the ledger without the support rows.
- **official-code** restricts volumes to the window (first floor(n/4) slab
  slices) and to the targets present in it (:func:`official_targets`).
- **alpnet-protocol** scores each target on its own z-extent of the query
  volume (``[z_min, z_max]``, :func:`bench.prompts.alpnet.scored_extent`),
  and only the targets with support slices; the others get ``not_scored``
  rows saying why. Its support slices are in another volume: nothing of the
  query is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bench.prompts import alpnet
from bench.prompts.protocols import (
    SUPPORT_KIND,
    ProtocolParams,
    get_protocol,
    k_values,
    official_targets,
    scored_frames,
    support_rank,
)
from bench.types import Flow, Prompt


@dataclass(frozen=True)
class ScoringScope:
    """Which frames and targets of a flow are scored.

    Attributes
    ----------
    frames : tuple of int or None
        The frames that count; None = all.
    targets : tuple of str
        The targets that are scored (others produce no rows).
    given : mapping of str to frozenset of int
        Per target, the frames whose answer was given by the prompt: not
        scored for that target (see the module docstring).
    empty_reason : str
        Why nothing is scored when ``frames`` is empty ("" otherwise).
    target_frames : mapping of str to tuple of int
        Per target, the frames that count for it instead of ``frames``
        (``alpnet-protocol``: the target's z-extent).
    not_scored : mapping of str to str
        Targets of the flow that get ``not_scored`` rows, with the reason.
    """

    frames: tuple[int, ...] | None
    targets: tuple[str, ...]
    given: Mapping[str, frozenset[int]] = field(default_factory=dict)
    empty_reason: str = ""
    target_frames: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    not_scored: Mapping[str, str] = field(default_factory=dict)

    def given_for(self, target: str) -> frozenset[int]:
        return self.given.get(target, frozenset())

    def frames_for(self, target: str, count: int) -> list[int]:
        """The frames scored for ``target`` in a flow of ``count`` frames."""
        if target in self.target_frames:
            return list(self.target_frames[target])
        return list(range(count)) if self.frames is None else list(self.frames)


def given_frames(flow_kind: str, protocol: str,
                 prompts: Sequence[Prompt]) -> dict[str, frozenset[int]]:
    """Per target, the frames whose answer the prompts gave (see the module docstring)."""
    template_given = protocol == "one-prompt" and flow_kind == "image-flow"
    given: dict[str, set[int]] = {}
    for prompt in prompts:
        if prompt.kind in ("mask", SUPPORT_KIND) or template_given:
            given.setdefault(prompt.target, set()).add(int(prompt.frame))
    return {target: frozenset(frames) for target, frames in given.items()}


def scoring_scope(flow: Flow, protocol: str, prompts: Sequence[Prompt],
                  params: Mapping[str, Any] | ProtocolParams | None = None) -> ScoringScope:
    """The :class:`ScoringScope` of ``flow`` under ``protocol`` with its ledger ``prompts``."""
    if protocol == alpnet.PROTOCOL:
        return _alpnet_scope(flow, prompts, params)
    frames = scored_frames(flow, protocol, params)
    targets = tuple(flow.targets)
    reason = ""
    if protocol == "official-code":
        targets = tuple(official_targets(flow))
        if frames is not None and not frames:
            reason = ("official-code: the labelled slab is shorter than 4 slices, so the "
                      "official window (first floor(n/4) slices) is empty")
    return ScoringScope(None if frames is None else tuple(frames), targets,
                        given_frames(flow.kind, protocol, prompts), reason)


def _alpnet_scope(flow: Flow, prompts: Sequence[Prompt],
                  params: Mapping[str, Any] | ProtocolParams | None) -> ScoringScope:
    """Each target with support slices on its own z-extent; the rest not scored, with why."""
    settings = get_protocol(alpnet.PROTOCOL).settings(params)
    if flow.id == settings.support_case:
        reason = f"{alpnet.PROTOCOL}: the support volume (support_case), not a query"
        return ScoringScope(None, (), not_scored={
            target: reason for target in alpnet.chosen_targets(flow.targets, settings)})
    supported = {p.target for p in prompts if p.kind == alpnet.KIND}
    sources = sorted({str(p.source) for p in prompts if p.kind == alpnet.KIND})
    source_text = f" ({', '.join(sources)})" if sources else ""
    targets, extents, not_scored = [], {}, {}
    for target in alpnet.chosen_targets(flow.targets, settings):
        extent = alpnet.scored_extent(flow, target)
        if target in supported and extent:
            targets.append(target)
            extents[target] = extent
        elif not extent:
            not_scored[target] = f"{alpnet.PROTOCOL}: {target!r} is absent from this volume"
        else:
            not_scored[target] = (f"{alpnet.PROTOCOL}: {target!r} is absent from the support "
                                  f"volume{source_text}")
    return ScoringScope(None, tuple(targets), {}, "", extents, not_scored)


def k_label(model: str, k: int) -> str:
    """The model column of an in-context model's rows with support set size ``k``."""
    return f"{model}@k{int(k)}"


def parse_k_label(label: str) -> tuple[str, int | None]:
    """``"universeg@k4"`` -> ``("universeg", 4)``; a plain model name -> ``(name, None)``."""
    model, sep, k = str(label).rpartition("@k")
    return (model, int(k)) if sep and model and k.isdigit() else (str(label), None)


def adapter_views(model: str, in_context: bool, prompts: Sequence[Prompt], *, protocol: str,
                  params: ProtocolParams | None, seed: int, dataset: str,
                  flow_id: str) -> list[tuple[str, list[Prompt]]]:
    """What a model is shown of a unit's ledger prompts, and the label of its rows.

    Parameters
    ----------
    model : str
        The model's name.
    in_context : bool
        ``Capabilities.in_context`` of its adapter.
    prompts : sequence of Prompt
        The unit's ledger prompts (support rows included).
    protocol, params, seed, dataset, flow_id
        The unit's; they order the support frames (:func:`support_rank`).

    Returns
    -------
    list of (label, prompts)
        Models that are not in-context, and in-context models when the
        ledger has no support rows: one view, ``(model, prompts without the
        support rows)``. In-context models with support rows: one view per k
        of ``k_shot``, ``(MODEL@kK, the k support masks of each target as
        mask prompts)``; the set of size k is the target's template frame and
        the k - 1 other support frames of smallest :func:`support_rank`.
    """
    if protocol == alpnet.PROTOCOL:
        # support slices of another volume: in-context models use them, models reading saved
        # masks only learn which targets to return (others are refused by the plan)
        return [(model, list(prompts))]
    support = [p for p in prompts if p.kind == SUPPORT_KIND]
    rest = [p for p in prompts if p.kind != SUPPORT_KIND]
    if not in_context or not support:
        return [(model, rest)]
    templates = {p.target: p.frame for p in rest}
    by_target: dict[str, list[Prompt]] = {}
    for prompt in support:
        by_target.setdefault(prompt.target, []).append(prompt)
    for target, members in by_target.items():
        members.sort(key=lambda p: (p.frame != templates.get(target),
                                    support_rank(seed, dataset, flow_id, target, p.frame,
                                                 protocol), p.frame))
    views = []
    for k in k_values(params) or (max(len(m) for m in by_target.values()),):
        shown = [replace(p, kind="mask") for members in by_target.values() for p in members[:k]]
        views.append((k_label(model, k), sorted(shown, key=lambda p: (p.target, p.frame))))
    return views


__all__ = ["ScoringScope", "adapter_views", "given_frames", "k_label", "parse_k_label",
           "scoring_scope"]
