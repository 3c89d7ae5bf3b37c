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
    The official 2D confidence bank (:mod:`bench.adapters.medsam2.memory_bank`): a bank of
    ``bank_size`` (16) entries per target and flow with the diversity and
    soft-confidence (``bank_margin`` 0.1) replacement rule; each tracked frame
    attends to ``bank_draws`` entries drawn with replacement by
    softmax(cosine) similarity (``flatten_order`` chooses the official,
    mismatched flatten order or the aligned one; draws come from a generator
    seeded by :func:`bank_generator` from the run's seed (``--seeds``, so the
    draws enter the seed spread and the CIs), ``bank_seed``, the dataset, the
    flow and the target, so runs repeat exactly).
``official`` (default)
    What the official code does per data kind: ``fifo`` for volumes (the
    official 3D code is SAM 2's video predictor), and for image flows the
    official 2D validation loop as its own code path
    (:mod:`bench.adapters.medsam2.official_loop`: stream order, batches of
    ``batch`` images (B, default 1; the official README uses 4), zeros
    instead of ``no_mem_embed`` on the first batch, memory encoder on
    post-attention features with soft masks, single-mask decoder without
    object-score gating or padding tokens on unprompted images; one bank per
    flow and target: the harness's unit is a flow, the official bank spans
    its whole test stream, equal when a flow is the whole test split).
    Tested equal (masks, logits within 1e-5) to an independent port of the
    official loop (``tests/test_official_loop.py``). It takes clicks (and
    boxes, an extension). The official 2D code never takes a mask prompt
    (its ``validation_sam`` calls the prompt encoder with ``masks=None``, and
    its 2D dataset yields clicks only), so there is nothing to reproduce: an
    image flow with a mask prompt (any prompt carrying a mask) runs, as a
    whole, under ``mask_memory`` (default ``"confidence"``, the paper's 2D
    memory; ``"fifo"``; or ``"refuse"``: a clear error, as before). Each
    unit records the memory that produced it (:meth:`MedSAM2Adapter.unit_notes`:
    ``notes`` of the unit record and ``units.csv``, listed in the report's
    Models section). ``click_order = "official"`` feeds each click as
    (row, col) where SAM expects (x, y), as the official code does (off by
    default: ``"xy"``; the ``official-code`` suite sets it). The run
    record's ``memory_policy`` says which ran.

``confidence`` is the harness's cleaner variant of the bank inside SAM 2's
video predictor; ``official`` is the official loop.

How ``confidence`` sits in SAM 2's video predictor
(:mod:`bench.adapters.medsam2.predictor`; documented deviations from the official
2D loop, which has no video predictor):

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

Hole filling
------------
``fill_hole_area = "official"`` (default): 8 on volumes, as the official 3D
code (its video predictor's default), 0 on image flows (the official 2D loop
has none). SAM 2 fills holes only with its compiled CUDA extension (``_C``);
without it pip ``sam2`` skips the step with a warning, so the setting is only
effective where the extension is built. An integer sets it for every flow.

Preprocessing
-------------
``preprocessing = "official"`` (default) is the official code's input:
2D without mean/std normalisation, volumes /255 then ImageNet mean/std.
The official code runs at 1024 px (``image_size`` default).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from bench.adapters import checkpoints
from bench.adapters.base import Number, register
from bench.adapters.reference import frame_sizes
from bench.adapters.sam2.adapter import SAM2Adapter, Sam2Options
from bench.adapters.sam2.build import check_config, expected_shapes
from bench.adapters.sam2.preprocess import Preprocessing
from bench.adapters.sam2.prompts import group_prompts
from bench.adapters.sam2.session import FlowInputs
from bench.adapters.torch_utils import autocast_for, require_torch
from pydantic import Field

from bench.errors import ConfigError
from bench.prompts.streams import keyed_stream
from bench.settings import Settings
from bench.types import FlowFrames, Prediction, Prompt

LOG = logging.getLogger(__name__)

PUBLISHED = ("https://huggingface.co/jiayuanz3/MedSAM2_pretrain (MedSAM2_pretrain.pth, "
             "hub id jiayuanz3/MedSAM2_pretrain)")
AUTO_CONFIGS = ("sam2_hiera_t", "sam2_hiera_s")
"""Tried in this order by ``config = "auto"``."""
MemoryPolicy = Literal["fifo", "confidence", "official"]
# The choices of memory_bank.FLATTEN_ORDERS; memory_bank imports torch, this module must not.
FlattenOrder = Literal["official", "aligned"]
MaskMemory = Literal["confidence", "fifo", "refuse"]
"""``mask_memory``: the memory of a mask-prompted image flow under ``memory = "official"``."""
MASK_FALLBACK = "mask prompt; the official 2D loop takes none"
"""Why a unit's memory is ``mask_memory`` (said beside it in the unit's notes)."""


class MedSam2Options(Sam2Options):
    """``[models.medsam2]``: the ``sam2`` settings (other defaults) and the memory bank's."""

    config: str = "auto"
    preprocessing: Preprocessing = "official"
    memory: MemoryPolicy = "official"
    # The official values (memory_bank.BANK_SIZE and REPLACE_MARGIN; a test checks).
    bank_size: Annotated[int, Field(ge=1)] = 16
    bank_margin: Number = 0.1
    bank_draws: Annotated[int, Field(ge=1)] = 1
    flatten_order: FlattenOrder = "official"
    bank_seed: int = 0
    bank_with_prompts: bool = False
    fill_hole_area: Annotated[int, Field(ge=0)] | Literal["official"] = "official"
    batch: Annotated[int, Field(ge=1)] = 1
    click_order: Literal["xy", "official"] = "xy"
    mask_memory: MaskMemory = "confidence"


OFFICIAL_HOLE_AREA_3D = 8
"""``fill_hole_area`` of the official 3D code (its video predictor's default)."""


def bank_generator(seed: int, dataset: str, flow_id: str, target: str,
                   bank_seed: int = 0) -> Any:
    """The CPU ``torch.Generator`` of one target's bank draws in one flow.

    Seeded from the harness's keyed streams (:mod:`bench.prompts.streams`,
    protocol ``"medsam2-bank"``) by the run seed ``seed`` (``--seeds``) and the
    ``bank_seed`` setting, so the draws of a flow and target do not depend on
    other flows, targets or the order they run in, and change with the seed.
    """
    import torch

    key = "draws" if bank_seed == 0 else f"draws/{bank_seed}"
    stream = keyed_stream(seed, dataset, flow_id, target, None, "medsam2-bank", key)
    return torch.Generator().manual_seed(stream.raw())


@register
@dataclass
class MedSAM2Adapter(SAM2Adapter):
    """MedSAM-2 with SAM 2's FIFO memory or the official confidence memory bank."""

    name = "medsam2"
    description = ("MedSAM-2 (MedSAM2_pretrain.pth in the SAM 2.0 architecture) on the SAM 2 "
                   "video predictor; memory: fifo, confidence bank (official 2D rules) or "
                   "official (fifo for volumes, the official 2D loop for image flows; "
                   "mask-prompted image flows: mask_memory).")
    Options: ClassVar[type[Settings]] = MedSam2Options
    allow_auto_config: ClassVar[bool] = True
    predictor_class: ClassVar[str] = "bench.adapters.medsam2.predictor.BankVideoPredictor"

    def __post_init__(self) -> None:
        super().__post_init__()
        #: The bank of the last target run with ``confidence`` memory (for inspection).
        self.last_bank: Any = None
        #: The unit's seed (``--seeds``), handed over by the harness; 0 outside a run.
        self.run_seed = 0
        #: The memory policy of the last flow predicted (:meth:`policy_for`).
        self.last_policy: str | None = None

    def use_run_seed(self, seed: int) -> bool:
        self.run_seed = int(seed)
        return self.options.memory != "fifo"  # the bank's draws follow the seed

    def hole_area(self, kind: str) -> int:
        """``fill_hole_area``; ``"official"``: 8 on volumes (official 3D code), else 0."""
        area = self.options.fill_hole_area
        if area == "official":
            return OFFICIAL_HOLE_AREA_3D if kind == "volume" else 0
        return int(area)

    def _published(self) -> str:
        return PUBLISHED

    def _select_config(self, state: Any, where: str) -> tuple[str, str]:
        requested = self.options.config
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
        hint = (f"set {self.where} config to the architecture it was trained in"
                if requested == "auto" else f"config = {requested!r} was asked for")
        raise checkpoints.CheckpointError(
            f"{where}: does not fit {' or '.join(candidates)} ({detail}); {hint}")

    def memory_policy(self) -> str:
        policy = self.options.memory
        if policy == "official":
            return (f"official (volume: fifo, image-flow: the official 2D loop, "
                    f"B={self.options.batch}, click_order={self.options.click_order}; "
                    f"image flows with a mask prompt: {self.options.mask_memory})")
        return policy

    def policy_for(self, kind: str, prompts: Sequence[Prompt] = ()) -> str:
        """The concrete memory policy for a flow of ``kind`` prompted with ``prompts``.

        Under ``memory = "official"``: ``fifo`` for volumes; for image flows
        the official 2D loop (``official-2d``), unless a prompt carries a mask
        (the official 2D loop takes none): then ``mask_memory``, or
        ``official-2d`` with ``mask_memory = "refuse"`` (which refuses it).
        """
        policy = self.options.memory
        if policy != "official":
            return policy
        if kind == "volume":
            return "fifo"
        if self.options.mask_memory != "refuse" and _has_mask(prompts):
            return self.options.mask_memory
        return "official-2d"

    def unit_notes(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> dict[str, str]:
        """``memory``: the policy that produces this unit's masks, and why when a fallback."""
        policy = self.policy_for(flow.kind, prompts)
        fallback = (self.options.memory == "official" and flow.kind != "volume"
                    and policy != "official-2d")
        return {"memory": f"{policy} ({MASK_FALLBACK}: mask_memory)" if fallback else policy}

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        self.last_policy = self.policy_for(flow.kind, prompts)
        if self.last_policy != "official-2d":
            return super().predict(flow, prompts)
        return self._predict_official_2d(flow, prompts)

    def _predict_official_2d(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        """The official 2D loop (:mod:`bench.adapters.medsam2.official_loop`), a stream per
        target."""
        torch = require_torch(self.name)
        import torch.nn.functional as F
        from bench.adapters.medsam2.official_loop import run_stream

        loaded = self.load()
        model = loaded.predictor
        shapes = frame_sizes(flow.frames)
        grouped = group_prompts(prompts, shapes, flow.id)
        opts = self.options
        inputs = FlowInputs(flow, model, loaded.weights_digest, self._cache(),
                            image_size=opts.image_size, preprocessing=opts.preprocessing,
                            cache_dir=opts.cache_dir, encode_batch=opts.encode_batch)
        masks: dict[str, list[np.ndarray]] = {}
        scores: dict[str, list[float | None]] = {}
        logits: dict[str, list[np.ndarray]] = {}
        with torch.inference_mode(), autocast_for(model.device):
            for target, frame_prompts in grouped.items():
                loop_prompts = {i: self._loop_prompt(p, shapes[i], target, i)
                                for i, p in frame_prompts.items()}
                result = run_stream(
                    model, len(shapes), lambda i: inputs.features(i)[1], loop_prompts,
                    batch=opts.batch, size=opts.bank_size, margin=float(opts.bank_margin),
                    flatten_order=opts.flatten_order,
                    generator=bank_generator(self.run_seed, flow.dataset, flow.id, target,
                                             opts.bank_seed))
                self.last_bank = result
                masks[target], logits[target] = [], []
                for low, shape in zip(result.logits, shapes, strict=True):
                    up = F.interpolate(low[None, None], size=tuple(shape), mode="bilinear",
                                       align_corners=False)
                    masks[target].append((up[0, 0] > 0).cpu().numpy())
                    logits[target].append(low.cpu().numpy().astype(np.float32))
                scores[target] = list(result.ious)
        return Prediction(masks=masks, scores=scores, logits=logits)

    def _loop_prompt(self, prompt: Any, shape: tuple[int, int], target: str,
                     frame: int) -> Any:
        """A frame's prompt in model input pixels; clicks (row, col) with click_order official."""
        import torch
        from bench.adapters.medsam2.official_loop import LoopPrompt

        if prompt.mask is not None:
            raise ConfigError(
                f"{self.where}.mask_memory: 'refuse' with memory 'official': the official "
                f"2D loop takes clicks (and boxes), not a mask prompt (target {target!r}, "
                f"frame {frame}); set mask_memory to 'confidence' or 'fifo'")
        size = self.options.image_size
        scale = torch.tensor([size / shape[1], size / shape[0]], dtype=torch.float64)
        points = labels = box = None
        if prompt.points:
            points = torch.tensor(prompt.points, dtype=torch.float64) * scale
            if self.options.click_order == "official":
                points = points.flip(-1)  # the official code feeds (row, col) as (x, y)
            points = points.float()
            labels = torch.tensor(prompt.labels, dtype=torch.int32)
        if prompt.box is not None:
            box = (torch.tensor(prompt.box, dtype=torch.float64).reshape(2, 2) * scale)
            box = box.reshape(4).float()
        return LoopPrompt(points, labels, box)

    def new_bank(self, flow: FlowFrames, target: str, policy: str | None = None) -> Any:
        """The confidence bank of one target's run, or None under SAM 2's FIFO memory.

        ``policy``: the flow's (:meth:`policy_for`); default: that of a flow of
        ``flow.kind`` without mask prompts.
        """
        if (policy or self.policy_for(flow.kind)) != "confidence":
            return None
        from bench.adapters.medsam2.memory_bank import ConfidenceBank

        opts = self.options
        return ConfidenceBank(size=opts.bank_size, margin=float(opts.bank_margin),
                              draws=opts.bank_draws, flatten_order=opts.flatten_order,
                              generator=bank_generator(self.run_seed, flow.dataset, flow.id,
                                                       target, opts.bank_seed))

    def _attach_memory(self, output_dict: dict[str, Any], flow: FlowFrames,
                       target: str) -> None:
        from bench.adapters.medsam2.predictor import BANK_KEY, WITH_PROMPTS_KEY

        bank = self.new_bank(flow, target, self.last_policy)
        if bank is not None:
            output_dict[BANK_KEY] = bank
            output_dict[WITH_PROMPTS_KEY] = self.options.bank_with_prompts
        self.last_bank = bank

    def fingerprint(self) -> dict[str, Any]:
        record = super().fingerprint()
        opts = self.options
        record["bank"] = {k: getattr(opts, k) for k in ("bank_size", "bank_margin", "bank_draws",
                                                        "flatten_order", "bank_seed",
                                                        "bank_with_prompts")}
        record["bank"]["draws_seeded_by"] = "run seed (--seeds) and bank_seed"
        return record


def _has_mask(prompts: Sequence[Prompt]) -> bool:
    # Mask and empty-mask prompts alike: the official 2D loop has no mask input.
    return any(prompt.mask is not None for prompt in prompts)
