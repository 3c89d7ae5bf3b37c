"""``sam2``: the stock SAM 2 video predictor, driven with in-memory frames.

How a flow is run
-----------------
- Each prompted target is tracked in its own inference state, so a target's
  masks never depend on which other targets are prompted. Frame features come
  from the shared embedding cache (:mod:`bench.adapters.process_cache`), so the
  encoder runs once per frame however many targets, protocols and seeds
  there are.
- The inference state is built from tensors (no JPEG folder):
  :mod:`bench.adapters.sam2.session`; frames are preprocessed by the profile of
  :mod:`bench.adapters.sam2.preprocess`.
- Prompts are added with ``add_new_points_or_box`` (points and/or box,
  coordinates normalised by the frame's own width and height, so frames of
  mixed shapes work) and ``add_new_mask`` (``mask``; ``empty-mask`` is an
  all-zero mask, which SAM 2 takes as "object absent on this frame").
- Propagation: ``propagate_in_video`` forward from the earliest prompted
  frame, then ``reverse=True`` from it, so a template in the middle of a flow
  reaches both ends. Frames between prompted frames are tracked forward with
  every prompted frame as a conditioning memory (SAM 2's own rule).
- Output: SAM 2's low-resolution mask logits (``image_size / 4``) resized
  bilinearly to each frame's own shape, ``> 0``: the operation SAM 2 applies
  to reach its video resolution, done per frame so that image flows of mixed
  shapes get each frame back in its own shape (tested: identical to the stock
  predictor on a flow of one shape).
- ``logits[target][i]``: those low-resolution logits themselves (float32,
  ``image_size / 4`` square, after SAM 2's object-score gating and hole
  filling), for the official metrics (:mod:`bench.official_metrics`).
- ``scores[target][i]``: the IoU head's prediction for the mask SAM 2 kept on
  frame ``i``, ``None`` where the mask came straight from a mask prompt
  (recorded by :class:`~bench.adapters.sam2.predictor.BenchVideoPredictor`).

Settings (``[models.sam2]``, :class:`Sam2Options`)
---------------------------------------------------
``config`` one of :data:`~bench.adapters.sam2.build.CONFIGS` (default
``sam2_hiera_s``, the SAM 2.0 small model MedSAM-2 was fine-tuned from);
``image_size`` (1024); ``preprocessing``; ``checkpoint``; ``device``
(``auto|cpu|cuda|mps``; bf16 autocast on CUDA); ``random_weights`` (smoke
tests only: the fingerprint says ``meaningless``); ``init_seed`` (seed of the
random weights); ``fill_hole_area`` (SAM 2's hole filling needs its CUDA
extension; default 0 = off, so results do not depend on whether it was
compiled); ``cache_mb`` (in-memory embedding cache budget, 0 = off) and
``cache_dir`` (optional on-disk embedding cache); ``encode_batch`` (B: the
image encoder runs on B frames at once, ahead of the memory loop; 1 = one by
one, the default: :class:`~bench.adapters.sam2.session.FlowInputs`);
``compile`` (``off``; ``encoder``: ``torch.compile`` of the image encoder, as
sam2's ``compile_image_encoder``; ``vos``: also the memory encoder, memory
attention, prompt encoder and mask decoder, as sam2 1.1.0's
``SAM2VideoPredictorVOS`` / ``vos_optimized=True``:
:func:`~bench.adapters.sam2.build.compile_components`).

Subclasses (``medsam2``) choose the predictor class (``predictor_class``),
match a config to a checkpoint (:meth:`SAM2Adapter._select_config`) and
attach their own memory to a target's run (:meth:`SAM2Adapter._attach_memory`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from bench.adapters import checkpoints
from bench.adapters.base import Adapter, Capabilities, Number, register
from bench.adapters.process_cache import (
    PROCESS_CACHE,
    EmbeddingCache,
    cached_sha256_file,
    shared_embedding_cache,
)
from bench.adapters.reference import frame_sizes
from bench.adapters.sam2.build import (
    BENCH_PREDICTOR,
    PUBLISHED,
    LoadedModel,
    build_predictor,
    check_config,
    compile_components,
)
from bench.adapters.sam2.preprocess import Preprocessing
from bench.adapters.sam2.prompts import SAM_PROMPT_KINDS, FramePrompt, group_prompts
from bench.adapters.sam2.session import INFO_KEY, FlowInputs, add_prompt, new_inference_state
from bench.adapters.torch_utils import (
    Device,
    autocast_for,
    package_version,
    require_torch,
    select_device,
    state_dict_digest,
)
from pydantic import Field

from bench.errors import ConfigError
from bench.progress import frames_done
from bench.settings import Settings
from bench.types import FlowFrames, Prediction, Prompt

OBJECT_PRESENT_LOGIT = 10.0
"""Object-score logit of a random-weight model (:func:`force_object_present`)."""


FORCED_PRESENT = f"forced present (random weights: constant logit {OBJECT_PRESENT_LOGIT})"


@functools.cache
def _extension_imports() -> bool:
    try:
        from sam2 import _C  # noqa: F401  (what SAM 2's hole filling imports)
    except (ImportError, OSError):  # not built, or a library the compiled file needs is missing
        return False
    return True


def hole_filling_available(device: Any) -> bool:
    """Whether SAM 2 fills holes on ``device``: its extension imports and it is CUDA."""
    return getattr(device, "type", str(device)) == "cuda" and _extension_imports()


def force_object_present(model: Any) -> None:
    """Make ``model``'s object-score head always report the object as present.

    With random weights the head's logit is often negative, SAM 2 then gates
    every mask to empty and a smoke run cannot show anything (e.g. whether
    memory policies differ). The head's last layer is set to a constant
    output (zero weights, bias :data:`OBJECT_PRESENT_LOGIT`): the masks are the
    decoder's own. Used only with ``random_weights`` (recorded in the
    fingerprint as ``object_score``).
    """
    import torch

    head = getattr(model.sam_mask_decoder, "pred_obj_score_head", None)
    if head is None:  # a config without object scores: nothing gates the masks
        return
    last = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(OBJECT_PRESENT_LOGIT)


class Sam2Options(Settings):
    """``[models.sam2]``: see the module docstring."""

    config: str = "sam2_hiera_s"
    image_size: Annotated[int, Field(ge=64, multiple_of=16)] = 1024
    preprocessing: Preprocessing = "sam2"
    checkpoint: str = ""
    device: Device = "auto"
    random_weights: bool = False
    init_seed: int = 0
    fill_hole_area: Annotated[int, Field(ge=0)] = 0
    cache_mb: Annotated[Number, Field(ge=0)] = 2048
    cache_dir: str = ""
    encode_batch: Annotated[int, Field(ge=1, le=64)] = 1
    compile: Literal["off", "encoder", "vos"] = "off"


@register
@dataclass
class SAM2Adapter(Adapter):
    """The stock SAM 2 video predictor (SAM 2.0 / 2.1, tiny to large)."""

    name = "sam2"
    description = ("SAM 2 video predictor (sam2 package), frames in memory, propagation both "
                   "ways from the prompted frame(s); scores = IoU-head prediction per frame.")
    capabilities = Capabilities(
        prompt_kinds=SAM_PROMPT_KINDS,
        flow_kinds=frozenset({"volume", "image-flow"}),
        needs_weights=True,
        devices=frozenset({"cpu", "cuda", "mps"}),
    )
    Options: ClassVar[type[Settings]] = Sam2Options
    # ``config = "auto"`` (match the checkpoint) is allowed.
    allow_auto_config: ClassVar[bool] = False
    # Dotted path of the predictor class hydra builds.
    predictor_class: ClassVar[str] = BENCH_PREDICTOR

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.allow_auto_config and self.options.config == "auto"):
            check_config(self.options.config, self.where)
        self._loaded: LoadedModel | None = None

    def _published(self) -> str:
        return PUBLISHED[self.options.config]

    def unavailable(self) -> str | None:
        return checkpoints.why_unavailable(self.name, self.options.checkpoint,
                                           self.options.random_weights, ("torch", "sam2"),
                                           self._published())

    # -- model

    def _device(self) -> Any:
        try:
            return select_device(self.options.device)
        except ValueError as err:
            raise ConfigError(f"{self.where}.{err}") from None

    def _select_config(self, state: Mapping[str, Any] | None, where: str) -> tuple[str, str]:
        """Config to build and a message about it (``medsam2`` matches checkpoints)."""
        return self.options.config, ""

    def load(self) -> LoadedModel:
        """Build (or reuse) the model for these settings; raises clear errors."""
        if self._loaded is None:
            require_torch(self.name)
            if self.options.random_weights:
                self._loaded = self._load_random()
            else:
                self._loaded = self._load_checkpoint()
        return self._loaded

    def _model_key(self, config: str, weights: str) -> tuple[Any, ...]:
        opts = self.options
        # fill_hole_area is not part of the model: it is set on it for each call.
        return ("sam2", self.predictor_class, config, weights, opts.image_size,
                str(self._device()), opts.compile)

    def _load_random(self) -> LoadedModel:
        opts = self.options
        config, message = self._select_config(None, "random weights")

        def build() -> LoadedModel:
            predictor = build_predictor(config, opts.image_size, self._device(), None,
                                        predictor=self.predictor_class,
                                        init_seed=opts.init_seed)
            force_object_present(predictor)
            digest = state_dict_digest(predictor.state_dict())
            compile_components(predictor, opts.compile)
            return LoadedModel(predictor, config, digest)

        shared = PROCESS_CACHE.models.get(self._model_key(config, f"random:{opts.init_seed}"),
                                          build)
        return LoadedModel(shared.predictor, config, shared.weights_digest, message=message)

    def _load_checkpoint(self) -> LoadedModel:
        opts = self.options
        path = checkpoints.resolve_checkpoint(self.name, opts.checkpoint, self._published())
        sha = cached_sha256_file(path)
        read: dict[str, Mapping[str, Any]] = {}  # the state dict, read at most once here

        def state() -> Mapping[str, Any]:
            if "state" not in read:
                read["state"] = checkpoints.load_state_dict(path)
            return read["state"]

        config, message = PROCESS_CACHE.config_matches.get(
            (sha, self.name, opts.config), lambda: self._select_config(state(), str(path)))

        def build() -> LoadedModel:
            predictor = build_predictor(config, opts.image_size, self._device(), state(),
                                        predictor=self.predictor_class, where=str(path))
            compile_components(predictor, opts.compile)
            return LoadedModel(predictor, config, sha, str(path), sha)

        shared = PROCESS_CACHE.models.get(self._model_key(config, sha), build)
        return LoadedModel(shared.predictor, config, sha, str(path), sha, message)

    def fingerprint(self) -> dict[str, Any]:
        loaded = self.load()
        import torch

        opts = self.options
        device = self._device()
        record = super().fingerprint()
        record.update({
            "config": loaded.config,
            "config_match": loaded.message,
            "image_size": opts.image_size,
            "preprocessing": opts.preprocessing,
            "memory_policy": self.memory_policy(),
            "checkpoint": loaded.checkpoint,
            "checkpoint_sha256": loaded.checkpoint_sha256,
            "weights_digest": loaded.weights_digest,
            "meaningless": bool(opts.random_weights),
            "object_score": FORCED_PRESENT if opts.random_weights else "model",
            "device": str(device),
            "autocast": "bf16" if device.type == "cuda" else "none",
            "hole_filling": ("as set" if hole_filling_available(device) else
                             "off: needs sam2's compiled CUDA extension and a CUDA device"),
            "versions": {"torch": torch.__version__, "sam2": package_version("sam2")},
        })
        if opts.random_weights and opts.checkpoint:
            record["note"] = "random_weights: the checkpoint setting was ignored"
        return record

    def memory_policy(self) -> str:
        return "fifo"

    def hole_area(self, kind: str) -> int:
        """SAM 2's ``fill_hole_area`` for a flow of ``kind`` (set on the model per call)."""
        return int(self.options.fill_hole_area)

    def effective_hole_area(self, kind: str) -> int:
        """:meth:`hole_area` where SAM 2 can fill holes here, else 0.

        SAM 2 skips hole filling (warning on every frame) unless its compiled
        extension imports and the model runs on CUDA (the kernel is CUDA-only),
        so 0 gives the masks SAM 2 would give, without the warnings; the run
        record says which (``hole_filling``).
        """
        return self.hole_area(kind) if hole_filling_available(self._device()) else 0

    # -- prediction

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        torch = require_torch(self.name)
        loaded = self.load()
        predictor = loaded.predictor
        shapes = frame_sizes(flow.frames)
        grouped = group_prompts(prompts, shapes, flow.id)
        if not grouped:
            return Prediction(masks={}, scores={})
        opts = self.options
        inputs = FlowInputs(flow, predictor, loaded.weights_digest, self._cache(),
                            image_size=opts.image_size, preprocessing=opts.preprocessing,
                            cache_dir=opts.cache_dir, encode_batch=opts.encode_batch)
        masks: dict[str, list[np.ndarray]] = {}
        scores: dict[str, list[float | None]] = {}
        logits: dict[str, list[np.ndarray]] = {}
        predictor.fill_hole_area = self.effective_hole_area(flow.kind)
        with torch.inference_mode(), autocast_for(predictor.device):
            for target, frame_prompts in grouped.items():
                masks[target], scores[target], logits[target] = self._track(
                    predictor, inputs, shapes, target, frame_prompts)
        return Prediction(masks=masks, scores=scores, logits=logits)

    def _cache(self) -> EmbeddingCache:
        if self.options.cache_mb > 0:
            return shared_embedding_cache(self.options.cache_mb)
        return EmbeddingCache(0)

    def _attach_memory(self, output_dict: dict[str, Any], flow: FlowFrames,
                       target: str) -> None:
        """Put a memory other than SAM 2's FIFO into one target's output dict (none here)."""

    def _track(
        self,
        predictor: Any,
        inputs: FlowInputs,
        shapes: Sequence[tuple[int, int]],
        target: str,
        frame_prompts: Mapping[int, FramePrompt],
    ) -> tuple[list[np.ndarray], list[float | None], list[np.ndarray]]:
        """Masks, IoU predictions and low-res logits (float32) of one target per frame."""
        import torch.nn.functional as F

        # SAM 2 resizes its low-resolution logits (image_size / 4) to the video size in one
        # bilinear step. With the "video" at that low resolution, propagation hands them over
        # unresized and each frame is resized to its own shape with the same operation.
        low = predictor.image_size // 4
        state = new_inference_state(predictor, inputs, (low, low))
        obj_idx = predictor._obj_id_to_idx(state, 1)
        output_dict = state["output_dict_per_obj"][obj_idx]
        self._attach_memory(output_dict, inputs.flow, target)
        for frame_idx in sorted(frame_prompts):
            add_prompt(predictor, state, frame_idx, frame_prompts[frame_idx], shapes[frame_idx])
        logits: dict[int, Any] = {}
        for reverse in (False, True):
            for frame_idx, _, video_masks in predictor.propagate_in_video(state, reverse=reverse):
                logits[frame_idx] = video_masks[0:1].float()
                frames_done(len(logits), len(shapes))
        masks, low_res = [], []
        for frame_idx, shape in enumerate(shapes):
            frame_logits = logits[frame_idx]
            low_res.append(frame_logits[0, 0].cpu().numpy().astype(np.float32))
            if tuple(frame_logits.shape[-2:]) != tuple(shape):
                frame_logits = F.interpolate(frame_logits, size=tuple(shape), mode="bilinear",
                                             align_corners=False)
            masks.append((frame_logits[0, 0] > 0).cpu().numpy())
        info = output_dict.get(INFO_KEY, {})
        scores = [info.get(i, {}).get("iou") for i in range(len(shapes))]
        return masks, scores, low_res
