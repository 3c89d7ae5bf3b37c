"""Harness self-test: the oracle returns the ground truth.

``oracle`` is the one adapter allowed to see ground truth
(``Capabilities.sees_ground_truth``: the runner hands it the full
:class:`~bench.types.Flow` rather than the mask-free view). Its predictions
are the reference masks themselves, so every scored case must come out with
Dice 1, IoU 1 and HD95 0; anything else is a bug in reading, prompting,
storing or scoring. It is hidden from the default suites and its numbers
mean nothing about any model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from bench.adapters.base import Adapter, Capabilities, register
from bench.adapters.reference import prompted_targets

from bench.prompts.alpnet import KIND as SUPPORT_VOLUME
from bench.types import PROMPT_KINDS, Flow, FlowFrames, Prediction, Prompt


@register
@dataclass
class OracleAdapter(Adapter):
    """Returns the ground-truth mask of every prompted target (a harness self-test)."""

    name = "oracle"
    description = (
        "Harness self-test, not a model: returns the ground truth of every prompted target, "
        "so every case must score Dice 1 and HD95 0. It sees ground truth by design."
    )
    capabilities = Capabilities(
        prompt_kinds=frozenset({*PROMPT_KINDS, "empty-mask", SUPPORT_VOLUME}),
        sees_ground_truth=True, prompt_free=True,
    )
    hidden = True

    def predict(self, flow: Flow | FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        masks = getattr(flow, "masks", None)
        if masks is None:
            raise TypeError(
                f"oracle: flow {flow.id} came without ground truth; the oracle needs the full "
                "Flow (its capabilities say sees_ground_truth=True)"
            )
        out: dict[str, list[np.ndarray]] = {}
        for target in prompted_targets(prompts):
            if target not in masks:
                raise ValueError(f"oracle: flow {flow.id} has no ground truth for target "
                                 f"{target!r} (targets: {', '.join(masks)})")
            out[target] = [np.asarray(mask, dtype=bool).copy() for mask in masks[target]]
        return Prediction(masks=out)
