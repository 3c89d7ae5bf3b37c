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
- **official-code** restricts volumes to the window (first floor(n/4) slab
  slices) and to the targets present in it (:func:`official_targets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.prompts.protocols import ProtocolParams, official_targets, scored_frames
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
    """

    frames: tuple[int, ...] | None
    targets: tuple[str, ...]
    given: Mapping[str, frozenset[int]] = field(default_factory=dict)
    empty_reason: str = ""

    def given_for(self, target: str) -> frozenset[int]:
        return self.given.get(target, frozenset())


def given_frames(flow_kind: str, protocol: str,
                 prompts: Sequence[Prompt]) -> dict[str, frozenset[int]]:
    """Per target, the frames whose answer the prompts gave (see the module docstring)."""
    template_given = protocol == "one-prompt" and flow_kind == "image-flow"
    given: dict[str, set[int]] = {}
    for prompt in prompts:
        if prompt.kind == "mask" or template_given:
            given.setdefault(prompt.target, set()).add(int(prompt.frame))
    return {target: frozenset(frames) for target, frames in given.items()}


def scoring_scope(flow: Flow, protocol: str, prompts: Sequence[Prompt],
                  params: Mapping[str, Any] | ProtocolParams | None = None) -> ScoringScope:
    """The :class:`ScoringScope` of ``flow`` under ``protocol`` with its ledger ``prompts``."""
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


__all__ = ["ScoringScope", "given_frames", "scoring_scope"]
