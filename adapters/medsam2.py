"""``medsam2``: MedSAM-2 (released ``MedSAM2_pretrain.pth``) in the SAM 2.0 architecture.

Weights
-------
The official training code saves ``{"model": state_dict, ...}``; the released
file (hub id ``jiayuanz3/MedSAM2_pretrain``) loads into the SAM 2.0
``sam2_hiera_t`` or ``sam2_hiera_s`` architecture, and which one is not
documented. With ``config = "auto"`` (default) the loader tries tiny, then
small, with a strict key check, and says which matched (log message and the
fingerprint's ``config_match``); a file that fits neither is an error that
summarises both mismatches. Set ``config`` to force one.

Memory policies (``memory``)
----------------------------
``fifo``
    SAM 2's own memory (6 most recent frames + every prompted frame + object
    pointers): exactly the ``sam2`` adapter's computation with these weights
    (tested), i.e. what the official code runs on 3D volumes.
``confidence``
    The official 2D confidence bank (:mod:`adapters.memory_bank`): a bank of
    ``bank_size`` (16) entries per target and flow with the diversity and
    soft-confidence (``bank_margin`` 0.1) replacement rule; each tracked frame
    attends to ``bank_draws`` entries drawn with replacement by
    softmax(cosine) similarity (``flatten_order`` chooses the official,
    mismatched flatten order or the aligned one; draws come from a generator
    seeded by ``bank_seed``, the flow and the target, so runs repeat exactly).
``official`` (default)
    What the official code does per data kind: ``fifo`` for volumes,
    ``confidence`` for image flows.

How ``confidence`` sits in SAM 2's video predictor (documented deviations
from the official 2D loop, which has no video predictor):

- memory attention of a tracked (non-prompted) frame sees only the drawn
  bank entries: their memory features and positional encodings, no temporal
  encoding and no object pointers, as in the official code. With
  ``bank_with_prompts = true`` the prompted frames' memories are also always
  attended to (as SAM 2 conditioning frames), the paper's "alongside the
  prompted templates".
- prompted frames are decoded as SAM 2 initial conditioning frames (from the
  prompt alone, before propagation) and then enter the bank first, in frame
  order, each with its IoU prediction (1.0 for a mask prompt, SAM 2's dummy)
  and its image embedding. The official loop instead conditions later
  prompted images on the bank and processes images in stream order.
- the bank lives for one target in one flow, and persists from the forward
  pass into the backward pass; the official bank persists over the whole
  test set (one flow here = one official test stream).
- SAM 2's decoder conventions are kept (multimask output on single clicks and
  in tracking, object-score gating); the official 2D loop decodes one mask
  without gating.
- the official batch size ``B`` sets how many entries each image draws; it
  is 1 in the official ``cfg.py`` (``-b``), 4 in its README's REFUGE
  command; ``bank_draws`` defaults to 1.

Preprocessing
-------------
``preprocessing = "official"`` (default) is the official code's input:
2D without mean/std normalisation, volumes /255 then ImageNet mean/std.
The official code runs at 1024 px (``image_size`` default).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from adapters import checkpoints
from adapters.base import register
from adapters.sam2_video import (
    DEFAULT_SETTINGS,
    SETTINGS_SCHEMA,
    SAM2Adapter,
    bank_seed,
    check_config,
    expected_shapes,
)
from bench.errors import ConfigError
from bench.types import FlowFrames

LOG = logging.getLogger(__name__)

PUBLISHED = ("https://huggingface.co/jiayuanz3/MedSAM2_pretrain (MedSAM2_pretrain.pth, "
             "hub id jiayuanz3/MedSAM2_pretrain)")
AUTO_CONFIGS = ("sam2_hiera_t", "sam2_hiera_s")
"""Tried in this order by ``config = "auto"``."""
MEMORY_POLICIES = ("fifo", "confidence", "official")
FLATTEN_ORDERS = ("official", "aligned")

MEDSAM2_SCHEMA: dict[str, type | tuple[type, ...]] = {
    **SETTINGS_SCHEMA,
    "memory": str,
    "bank_size": int,
    "bank_margin": (int, float),
    "bank_draws": int,
    "flatten_order": str,
    "bank_seed": int,
    "bank_with_prompts": bool,
}
MEDSAM2_DEFAULTS: dict[str, Any] = {
    **DEFAULT_SETTINGS,
    "config": "auto",
    "preprocessing": "official",
    "memory": "official",
    "bank_size": 16,
    "bank_margin": 0.1,
    "bank_draws": 1,
    "flatten_order": "official",
    "bank_seed": 0,
    "bank_with_prompts": False,
}


@register
@dataclass
class MedSAM2Adapter(SAM2Adapter):
    """MedSAM-2 with SAM 2's FIFO memory or the official confidence memory bank."""

    name = "medsam2"
    description = ("MedSAM-2 (MedSAM2_pretrain.pth in the SAM 2.0 architecture) on the SAM 2 "
                   "video predictor; memory: fifo, confidence bank (official 2D rules) or "
                   "official (fifo for volumes, bank for image flows).")
    settings_schema: ClassVar[dict[str, type | tuple[type, ...]]] = MEDSAM2_SCHEMA
    settings_defaults: ClassVar[dict[str, Any]] = MEDSAM2_DEFAULTS
    allow_auto_config: ClassVar[bool] = True

    def _check_options(self, where: str) -> None:
        super()._check_options(where)
        opts = self.options
        if opts["memory"] not in MEMORY_POLICIES:
            raise ConfigError(f"{where}.memory: expected one of {MEMORY_POLICIES}, "
                              f"got {opts['memory']!r}")
        if opts["flatten_order"] not in FLATTEN_ORDERS:
            raise ConfigError(f"{where}.flatten_order: expected one of {FLATTEN_ORDERS}, "
                              f"got {opts['flatten_order']!r}")
        for key in ("bank_size", "bank_draws"):
            if opts[key] < 1:
                raise ConfigError(f"{where}.{key}: expected at least 1, got {opts[key]}")

    def _published(self) -> str:
        return PUBLISHED

    def _select_config(self, state: Any, where: str) -> tuple[str, str]:
        requested = self.options["config"]
        candidates = AUTO_CONFIGS if requested == "auto" else (check_config(requested, where),)
        if state is None:
            auto = " (config auto: the first of tiny, small)" if requested == "auto" else ""
            message = f"random weights in {candidates[0]}{auto}"
            return candidates[0], message
        tried = []
        for config in candidates:
            check = checkpoints.check_keys(expected_shapes(config), state)
            if check.ok:
                message = (f"{where} matches {config} ({check.summary()}"
                           + (f"; tried {', '.join(c for c, _ in tried)} first)" if tried else ")"))
                LOG.info("medsam2: %s", message)
                return config, message
            tried.append((config, check.summary()))
        detail = "; ".join(f"{config}: {summary}" for config, summary in tried)
        hint = ("set [models.medsam2] config to the architecture it was trained in"
                if requested == "auto" else f"config = {requested!r} was asked for")
        raise checkpoints.CheckpointError(
            f"{where}: does not fit {' or '.join(candidates)} ({detail}); {hint}")

    def memory_policy(self) -> str:
        policy = self.options["memory"]
        return "official (volume: fifo, image-flow: confidence)" if policy == "official" else policy

    def policy_for(self, kind: str) -> str:
        """The concrete memory policy for a flow of ``kind``."""
        policy = self.options["memory"]
        if policy == "official":
            return "fifo" if kind == "volume" else "confidence"
        return policy

    def _bank(self, flow: FlowFrames, target: str) -> Any:
        if self.policy_for(flow.kind) != "confidence":
            return None
        import torch

        from adapters.memory_bank import ConfidenceBank

        opts = self.options
        generator = torch.Generator().manual_seed(bank_seed(opts["bank_seed"], flow.id, target))
        return ConfidenceBank(size=opts["bank_size"], margin=float(opts["bank_margin"]),
                              draws=opts["bank_draws"], flatten_order=opts["flatten_order"],
                              generator=generator)

    def fingerprint(self) -> dict[str, Any]:
        record = super().fingerprint()
        opts = self.options
        record["bank"] = {k: opts[k] for k in ("bank_size", "bank_margin", "bank_draws",
                                               "flatten_order", "bank_seed",
                                               "bank_with_prompts")}
        return record
