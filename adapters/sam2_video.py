"""``sam2``: the stock SAM 2 video predictor, driven with in-memory frames.

How a flow is run
-----------------
- Each prompted target is tracked in its own inference state, so a target's
  masks never depend on which other targets are prompted. Frame features come
  from the shared embedding cache (:mod:`adapters.torch_utils`), so the encoder
  runs once per frame however many targets, protocols and seeds there are.
- The inference state is built from tensors (no JPEG folder): the same keys
  as :meth:`SAM2VideoPredictor.init_state` fills, with ``images`` the
  preprocessed frames.
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

Per-frame confidence
--------------------
``scores[target][i]`` is the IoU head's prediction for the mask SAM 2 kept on
frame ``i`` (the largest of the three when it outputs several, which is the
one it keeps). It is captured by wrapping ``SAM2Base._track_step``, whose
``sam_outputs`` carry the IoU predictions; nothing else changes. Frames whose
mask came straight from a mask prompt (``mask``/``empty-mask``; SAM 2 then
skips the decoder and reports a dummy 1.0) get ``None``.

Frames and preprocessing
------------------------
Frames are grey ``(H, W)`` or RGB ``(H, W, 3)`` of any dtype. They are first
mapped to [0, 1] (:func:`unit_range`), grey is repeated to three channels,
each frame is resized to ``image_size`` x ``image_size`` (bilinear,
anti-aliased) and then normalised by the profile:

``sam2``         ImageNet mean/std (SAM 2's own video loader)
``official-2d``  no mean/std (the official MedSAM-2 2D loader: ``ToTensor``)
``official-3d``  ImageNet mean/std after /255 (official 3D loader); the same
                 numbers as ``sam2`` here, since frames are already in [0, 1]
``official``     ``official-3d`` for volumes, ``official-2d`` for image flows

SAM 2's own loader resizes with PIL; resizing here is torch bilinear, so
pixel values differ slightly from a JPEG-folder run (which also has JPEG loss).

Settings (``[models.sam2]``)
----------------------------
``config`` one of :data:`CONFIGS` (default ``sam2_hiera_s``, the SAM 2.0 small
model MedSAM-2 was fine-tuned from); ``image_size`` (1024); ``preprocessing``;
``checkpoint``; ``device`` (``auto|cpu|cuda|mps``; bf16 autocast on CUDA);
``random_weights`` (smoke tests only: the fingerprint says ``meaningless``);
``init_seed`` (seed of the random weights); ``fill_hole_area`` (SAM 2's
hole filling needs its CUDA extension; default 0 = off, so results do not
depend on whether it was compiled); ``cache_mb`` (in-memory embedding cache
budget, 0 = off) and ``cache_dir`` (optional on-disk embedding cache).
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from adapters import checkpoints
from adapters.base import Adapter, Capabilities, register
from adapters.reference import frame_shape
from adapters.torch_utils import (
    DEVICE_CHOICES,
    EmbeddingCache,
    autocast_for,
    cached_sha256_file,
    embedding_key,
    require_torch,
    select_device,
    shared_embedding_cache,
    state_dict_digest,
)
from bench.errors import ConfigError
from bench.types import PROMPT_KINDS, FlowFrames, Prediction, Prompt

SAM_PROMPT_KINDS = frozenset({*PROMPT_KINDS, "empty-mask"})

CONFIGS: dict[str, str] = {
    "sam2_hiera_t": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_s": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_b+": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_l": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
"""SAM 2.0 and 2.1 configs of the ``sam2`` package (tiny, small, base+, large)."""

PUBLISHED: dict[str, str] = {
    "sam2_hiera_t": "https://huggingface.co/facebook/sam2-hiera-tiny (sam2_hiera_tiny.pt)",
    "sam2_hiera_s": "https://huggingface.co/facebook/sam2-hiera-small (sam2_hiera_small.pt)",
    "sam2_hiera_b+": "https://huggingface.co/facebook/sam2-hiera-base-plus "
                     "(sam2_hiera_base_plus.pt)",
    "sam2_hiera_l": "https://huggingface.co/facebook/sam2-hiera-large (sam2_hiera_large.pt)",
    "sam2.1_hiera_t": "https://huggingface.co/facebook/sam2.1-hiera-tiny (sam2.1_hiera_tiny.pt)",
    "sam2.1_hiera_s": "https://huggingface.co/facebook/sam2.1-hiera-small "
                      "(sam2.1_hiera_small.pt)",
    "sam2.1_hiera_b+": "https://huggingface.co/facebook/sam2.1-hiera-base-plus "
                       "(sam2.1_hiera_base_plus.pt)",
    "sam2.1_hiera_l": "https://huggingface.co/facebook/sam2.1-hiera-large "
                      "(sam2.1_hiera_large.pt)",
}

PREPROCESSING = ("sam2", "official-2d", "official-3d", "official")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Robust range of frames that are not uint8 and not already in [0, 1].
UNIT_PERCENTILES = (0.5, 99.5)
# Percentiles of a large volume are taken on a strided subsample of this many values.
PERCENTILE_SAMPLE = 4_000_000

# Keys this module adds to SAM 2's inference state / per-object output dicts.
PROVIDER_KEY = "bench_feature_provider"
INFO_KEY = "bench_frame_info"
BANK_KEY = "bench_confidence_bank"
WITH_PROMPTS_KEY = "bench_bank_with_prompts"

SETTINGS_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "config": str,
    "image_size": int,
    "preprocessing": str,
    "checkpoint": str,
    "device": str,
    "random_weights": bool,
    "init_seed": int,
    "fill_hole_area": int,
    "cache_mb": (int, float),
    "cache_dir": str,
}
DEFAULT_SETTINGS: dict[str, Any] = {
    "config": "sam2_hiera_s",
    "image_size": 1024,
    "preprocessing": "sam2",
    "checkpoint": "",
    "device": "auto",
    "random_weights": False,
    "init_seed": 0,
    "fill_hole_area": 0,
    "cache_mb": 2048,
    "cache_dir": "",
}


# ----------------------------------------------------------------------------- frames


def unit_range(frames: Sequence[np.ndarray], kind: str) -> list[np.ndarray]:
    """Every frame as float32 ``(H, W, 3)`` in [0, 1].

    - ``uint8`` frames are divided by 255 (what SAM 2's loader and the
      official code do with 8-bit images);
    - boolean frames become 0/1;
    - any other dtype already within [0, 1] is kept as is;
    - otherwise the 0.5 and 99.5 percentiles are mapped to 0 and 1 and values
      clipped: over the whole volume for a volume (one window for all its
      slices, e.g. CT in Hounsfield units), per frame for an image flow.
      A constant range maps to zeros.

    Grey frames are repeated to three channels.
    """
    windows = unit_windows(frames, kind)
    return [to_unit(frame, window) for frame, window in zip(frames, windows, strict=True)]


def unit_windows(frames: Sequence[np.ndarray], kind: str) -> list[tuple[float, float] | None]:
    """Per frame, the intensity window of :func:`unit_range` (None: no stretch needed)."""
    arrays = [np.asarray(frame) for frame in frames]
    for index, array in enumerate(arrays):
        frame_shape(array, index)
    if kind == "volume":
        if all(_unit_ready(a) for a in arrays):
            return [None] * len(arrays)
        window = _robust_window(arrays)
        return [window] * len(arrays)
    return [None if _unit_ready(a) else _robust_window([a]) for a in arrays]


def to_unit(frame: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """One frame as float32 ``(H, W, 3)`` in [0, 1] (see :func:`unit_range`)."""
    array = np.asarray(frame)
    if array.dtype == np.uint8:
        out = array.astype(np.float32) / np.float32(255.0)
    elif window is None:
        out = array.astype(np.float32)
    else:
        lo, hi = window
        if not hi > lo:
            out = np.zeros(array.shape, dtype=np.float32)
        else:
            scaled = (np.nan_to_num(array.astype(np.float64), nan=lo) - lo) / (hi - lo)
            out = np.clip(scaled, 0.0, 1.0).astype(np.float32)
    return out if out.ndim == 3 else np.repeat(out[..., None], 3, axis=2)


def _unit_ready(array: np.ndarray) -> bool:
    if array.dtype in (np.uint8, np.bool_):
        return True
    return bool(np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1)


def _robust_window(arrays: Sequence[np.ndarray]) -> tuple[float, float]:
    # A strided subsample keeps a large volume's percentiles cheap in time and memory.
    step = max(1, math.ceil(sum(a.size for a in arrays) / PERCENTILE_SAMPLE))
    values = np.concatenate([np.asarray(a).ravel()[::step].astype(np.float64) for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(values, UNIT_PERCENTILES)
    return float(lo), float(hi)


def profile_for(preprocessing: str, kind: str) -> str:
    """The concrete profile (``official`` resolved by the flow kind)."""
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing: expected one of {PREPROCESSING}, got {preprocessing!r}")
    if preprocessing == "official":
        return "official-3d" if kind == "volume" else "official-2d"
    return preprocessing


def model_input(frame: np.ndarray, image_size: int, profile: str) -> Any:
    """One [0, 1] ``(H, W, 3)`` frame as the model's ``(3, S, S)`` float32 input."""
    import torch
    import torch.nn.functional as F

    image = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).permute(2, 0, 1)
    if image.shape[-2:] != (image_size, image_size):
        image = F.interpolate(image[None], size=(image_size, image_size), mode="bilinear",
                              align_corners=False, antialias=True)[0]
    if profile in ("sam2", "official-3d"):
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
        image = (image - mean) / std
    return image.contiguous()


# ---------------------------------------------------------------------------- prompts


@dataclass
class FramePrompt:
    """All prompts of one target on one frame, merged for SAM 2."""

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[int, int, int, int] | None = None
    mask: np.ndarray | None = None


def group_prompts(
    prompts: Sequence[Prompt], shapes: Sequence[tuple[int, int]], flow_id: str = ""
) -> dict[str, dict[int, FramePrompt]]:
    """Prompts by target and frame, checked against the flow.

    Points of one target and frame are concatenated; a box may come with
    points; a mask (or ``empty-mask``) must be alone on its frame.
    """
    where = f"flow {flow_id}: " if flow_id else ""
    grouped: dict[str, dict[int, FramePrompt]] = {}
    for prompt in prompts:
        what = f"{where}prompt {prompt.kind!r} for target {prompt.target!r} on frame {prompt.frame}"
        if prompt.kind not in SAM_PROMPT_KINDS:
            raise ValueError(f"{what}: unsupported kind (supported: {sorted(SAM_PROMPT_KINDS)})")
        if not 0 <= prompt.frame < len(shapes):
            raise ValueError(f"{what}: the flow has {len(shapes)} frames")
        shape = shapes[prompt.frame]
        entry = grouped.setdefault(prompt.target, {}).setdefault(prompt.frame, FramePrompt())
        if prompt.kind in ("mask", "empty-mask"):
            if prompt.kind == "mask":
                if prompt.mask is None:
                    raise ValueError(f"{what}: the prompt carries no mask")
                mask = np.asarray(prompt.mask, dtype=bool)
            else:
                mask = np.zeros(shape, dtype=bool)
            if mask.shape != shape:
                raise ValueError(f"{what}: mask shape {mask.shape} differs from the frame {shape}")
            if entry.mask is not None or entry.points or entry.box is not None:
                raise ValueError(f"{what}: a mask prompt cannot be combined with other prompts")
            entry.mask = mask
            continue
        if entry.mask is not None:
            raise ValueError(f"{what}: a mask prompt cannot be combined with other prompts")
        if prompt.kind in ("box", "box-jitter"):
            if prompt.box is None or len(prompt.box) != 4:
                raise ValueError(f"{what}: expected a box (x0, y0, x1, y1)")
            if entry.box is not None:
                raise ValueError(f"{what}: two boxes on one frame")
            entry.box = tuple(int(v) for v in prompt.box)  # type: ignore[assignment]
        if prompt.kind in ("point", "point-random") or prompt.points:
            if not prompt.points or len(prompt.points) != len(prompt.labels):
                raise ValueError(f"{what}: expected points with one label each, got "
                                 f"{len(prompt.points)} points and {len(prompt.labels)} labels")
            entry.points.extend((float(x), float(y)) for x, y in prompt.points)
            entry.labels.extend(int(v) for v in prompt.labels)
    return grouped


# ----------------------------------------------------------------------- the predictor

_PREDICTOR_CLASS: type | None = None


def predictor_class() -> type:
    """``BenchVideoPredictor``: SAM 2's video predictor with the harness's hooks.

    Defined on first use so that this module imports without torch.
    """
    global _PREDICTOR_CLASS
    if _PREDICTOR_CLASS is None:
        _PREDICTOR_CLASS = _define_predictor()
    return _PREDICTOR_CLASS


def __getattr__(name: str) -> Any:
    # Hydra instantiates ``adapters.sam2_video.BenchVideoPredictor`` by dotted path.
    if name == "BenchVideoPredictor":
        return predictor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _define_predictor() -> type:
    import torch
    from sam2.modeling.sam2_utils import select_closest_cond_frames
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    from adapters.memory_bank import BankEntry

    class BenchVideoPredictor(SAM2VideoPredictor):
        """SAM 2's video predictor plus three hooks.

        1. Frame features from the inference state's feature provider (the
           embedding cache) instead of re-running the encoder.
        2. The IoU head's prediction (and the object score) of every decoded
           frame, recorded in the per-object output dict.
        3. The confidence memory bank, active only for objects whose output
           dict holds one (``memory = "confidence"`` of ``medsam2``).

        Without a bank the masks are exactly SAM 2's (tested against the
        stock class).
        """

        def _get_image_feature(self, inference_state, frame_idx, batch_size):
            provider = inference_state.get(PROVIDER_KEY)
            if provider is None:
                return super()._get_image_feature(inference_state, frame_idx, batch_size)
            image, backbone_out = provider(frame_idx)
            expanded = {
                "backbone_fpn": [f.expand(batch_size, -1, -1, -1)
                                 for f in backbone_out["backbone_fpn"]],
                "vision_pos_enc": [p.expand(batch_size, -1, -1, -1)
                                   for p in backbone_out["vision_pos_enc"]],
            }
            features = self._prepare_backbone_features(expanded)
            return (image.expand(batch_size, -1, -1, -1),) + features

        def _track_step(self, frame_idx, is_init_cond_frame, current_vision_feats,
                        current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs,
                        output_dict, num_frames, track_in_reverse, prev_sam_mask_logits):
            result = super()._track_step(
                frame_idx, is_init_cond_frame, current_vision_feats,
                current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs,
                output_dict, num_frames, track_in_reverse, prev_sam_mask_logits)
            _, sam_outputs, _, pix_feat = result
            ious, object_score_logits = sam_outputs[2], sam_outputs[6]
            mask_as_output = mask_inputs is not None and self.use_mask_input_as_output_without_sam
            best = float(ious[0].max())
            info = {"iou": None if mask_as_output else best, "bank_confidence": best,
                    "object_score": float(object_score_logits[0, 0])}
            if BANK_KEY in output_dict:
                # Official entry embedding: the post-attention image embedding, (C, H, W) order.
                info["embedding"] = pix_feat[0].reshape(-1).detach().float()
            output_dict.setdefault(INFO_KEY, {})[frame_idx] = info
            return result

        def track_step(self, frame_idx, is_init_cond_frame, current_vision_feats,
                       current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs,
                       output_dict, num_frames, track_in_reverse=False, run_mem_encoder=True,
                       prev_sam_mask_logits=None):
            out = super().track_step(
                frame_idx, is_init_cond_frame, current_vision_feats,
                current_vision_pos_embeds, feat_sizes, point_inputs, mask_inputs,
                output_dict, num_frames, track_in_reverse, run_mem_encoder,
                prev_sam_mask_logits)
            bank = output_dict.get(BANK_KEY)
            if bank is not None and out["maskmem_features"] is not None:
                _offer(bank, output_dict, frame_idx, out["maskmem_features"],
                       out["maskmem_pos_enc"])
            return out

        def propagate_in_video_preflight(self, inference_state):
            super().propagate_in_video_preflight(inference_state)
            # Prompted frames get their memory here; they enter the bank first, in frame order.
            for output_dict in inference_state["output_dict_per_obj"].values():
                bank = output_dict.get(BANK_KEY)
                if bank is None:
                    continue
                seeded = {entry.frame for entry in bank.entries} | set(bank.seeded)
                for frame_idx in sorted(output_dict["cond_frame_outputs"]):
                    if frame_idx not in seeded:
                        out = output_dict["cond_frame_outputs"][frame_idx]
                        _offer(bank, output_dict, frame_idx, out["maskmem_features"],
                               out["maskmem_pos_enc"])
                        bank.seeded.append(frame_idx)

        def _prepare_memory_conditioned_features(self, frame_idx, is_init_cond_frame,
                                                 current_vision_feats,
                                                 current_vision_pos_embeds, feat_sizes,
                                                 output_dict, num_frames,
                                                 track_in_reverse=False):
            bank = output_dict.get(BANK_KEY)
            if bank is None or is_init_cond_frame or self.num_maskmem == 0:
                return super()._prepare_memory_conditioned_features(
                    frame_idx, is_init_cond_frame, current_vision_feats,
                    current_vision_pos_embeds, feat_sizes, output_dict, num_frames,
                    track_in_reverse)
            current = current_vision_feats[-1]
            batch, channels = current.size(1), self.hidden_dim
            height, width = feat_sizes[-1]
            if not bank.entries:
                # The official code adds nothing and skips memory attention on an empty bank.
                return current.permute(1, 2, 0).view(batch, channels, height, width)
            memory, memory_pos = bank.pick(current, frame_idx)
            memory = memory.to(current.device, current.dtype)
            memory_pos = memory_pos.to(current.device, current.dtype)
            if output_dict.get(WITH_PROMPTS_KEY):
                # Paper variant: the prompted templates stay in memory beside the bank's
                # draws, as SAM 2 keeps its conditioning frames (temporal position 0).
                selected, _ = select_closest_cond_frames(
                    frame_idx, output_dict["cond_frame_outputs"], self.max_cond_frames_in_attn)
                tokens, positions = [], []
                for out in selected.values():
                    feats = out["maskmem_features"].to(current.device, current.dtype)
                    tokens.append(feats.flatten(2).permute(2, 0, 1).expand(-1, batch, -1))
                    enc = out["maskmem_pos_enc"][-1].to(current.device, current.dtype)
                    enc = enc.flatten(2).permute(2, 0, 1) + self.maskmem_tpos_enc[
                        self.num_maskmem - 1]
                    positions.append(enc.expand(-1, batch, -1))
                memory = torch.cat([*tokens, memory], dim=0)
                memory_pos = torch.cat([*positions, memory_pos], dim=0)
            fused = self.memory_attention(
                curr=current_vision_feats, curr_pos=current_vision_pos_embeds,
                memory=memory, memory_pos=memory_pos, num_obj_ptr_tokens=0)
            return fused.permute(1, 2, 0).view(batch, channels, height, width)

    def _offer(bank, output_dict, frame_idx, maskmem_features, maskmem_pos_enc):
        info = output_dict.get(INFO_KEY, {}).get(frame_idx, {})
        embedding = info.pop("embedding", None)
        if embedding is None:
            raise RuntimeError(
                f"confidence bank: no image embedding recorded for frame {frame_idx}")
        bank.add(BankEntry(
            memory=maskmem_features.detach().to(torch.bfloat16),
            pos=maskmem_pos_enc[-1].detach(),
            confidence=float(info["bank_confidence"]),
            embedding=embedding,
            frame=int(frame_idx),
        ))

    BenchVideoPredictor.__module__ = __name__
    return BenchVideoPredictor


def build_predictor(
    config: str,
    image_size: int,
    device: Any,
    state_dict: Mapping[str, Any] | None,
    *,
    where: str = "checkpoint",
    init_seed: int = 0,
    fill_hole_area: int = 0,
) -> Any:
    """Build a ``BenchVideoPredictor`` from a ``sam2`` config.

    The hydra overrides are those of :func:`sam2.build_sam.build_sam2_video_predictor`
    (post-processing on) plus ``image_size``. Without ``state_dict`` the
    weights are SAM 2's random initialisation under ``torch.manual_seed(init_seed)``
    (the global RNG state is restored afterwards).
    """
    model = _instantiate(config, image_size, init_seed)
    if state_dict is not None:
        checkpoints.load_strict(model, state_dict, where)
    model.fill_hole_area = int(fill_hole_area)
    return model.to(device).eval()


def _overrides(image_size: int) -> list[str]:
    return [
        "++model._target_=adapters.sam2_video.BenchVideoPredictor",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
        "++model.binarize_mask_from_pts_for_mem_enc=true",
        f"++model.image_size={int(image_size)}",
    ]


def _compose(config: str, image_size: int) -> Any:
    import sam2  # noqa: F401 - initialises hydra's config search path
    from hydra import compose
    from omegaconf import OmegaConf

    cfg = compose(config_name=CONFIGS[config], overrides=_overrides(image_size))
    OmegaConf.resolve(cfg)
    return cfg


def _instantiate(config: str, image_size: int, init_seed: int) -> Any:
    import torch
    from hydra.utils import instantiate

    cfg = _compose(config, image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return instantiate(cfg.model, _recursive_=True)


_EXPECTED: dict[str, dict[str, tuple[int, ...]]] = {}


def expected_shapes(config: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of ``config``'s state dict (memoised per process).

    They do not depend on the image size. The model is built on the CPU once
    (sam2's constructors call ``.item()``, so the meta device cannot be used).
    """
    if config not in _EXPECTED:
        model = _instantiate(config, 256, 0)
        _EXPECTED[config] = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return _EXPECTED[config]


def check_config(name: str, where: str) -> str:
    """``name`` if it is a known config, else a ConfigError with the nearest one."""
    if name not in CONFIGS:
        hint = get_close_matches(name, list(CONFIGS), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{where}.config: unknown SAM 2 config {name!r}{suggestion}; "
                          f"known: {', '.join(CONFIGS)}")
    return name


# Built models, shared by every adapter instance of the process (sam2 and
# medsam2 with the same weights share one): (config, weights, size, device, holes) -> model.
_MODELS: dict[tuple[Any, ...], Any] = {}
# Config matched to a checkpoint: (sha256, adapter, requested config) -> (config, message).
_CONFIG_MATCH: dict[tuple[str, str, str], tuple[str, str]] = {}


@dataclass
class LoadedModel:
    """A built predictor and what identifies its weights."""

    predictor: Any
    config: str
    weights_digest: str
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    message: str = ""


# ---------------------------------------------------------------------------- adapter


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
    settings_schema: ClassVar[dict[str, type | tuple[type, ...]]] = SETTINGS_SCHEMA
    settings_defaults: ClassVar[dict[str, Any]] = DEFAULT_SETTINGS
    allow_auto_config: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"[models.{self.name}]"
        self._check_options(where)
        self._loaded: LoadedModel | None = None
        self.last_bank: Any = None

    # -- settings

    def _check_options(self, where: str) -> None:
        opts = self.options
        if not (self.allow_auto_config and opts["config"] == "auto"):
            check_config(opts["config"], where)
        if opts["image_size"] < 64 or opts["image_size"] % 16:
            raise ConfigError(f"{where}.image_size: expected a multiple of 16, at least 64, "
                              f"got {opts['image_size']}")
        if opts["preprocessing"] not in PREPROCESSING:
            raise ConfigError(f"{where}.preprocessing: expected one of {PREPROCESSING}, "
                              f"got {opts['preprocessing']!r}")
        if opts["device"] not in DEVICE_CHOICES:
            raise ConfigError(f"{where}.device: expected one of {DEVICE_CHOICES}, "
                              f"got {opts['device']!r}")
        if opts["fill_hole_area"] < 0 or opts["cache_mb"] < 0:
            raise ConfigError(f"{where}: fill_hole_area and cache_mb must not be negative")

    def _published(self) -> str:
        return PUBLISHED[self.options["config"]]

    def unavailable(self) -> str | None:
        return checkpoints.why_unavailable(self.name, self.options, ("torch", "sam2"),
                                           self._published())

    # -- model

    def _device(self) -> Any:
        try:
            return select_device(self.options["device"])
        except ValueError as err:
            raise ConfigError(f"[models.{self.name}].{err}") from None

    def _select_config(self, state: Mapping[str, Any] | None, where: str) -> tuple[str, str]:
        """Config to build and a message about it (``medsam2`` matches checkpoints)."""
        return self.options["config"], ""

    def load(self) -> LoadedModel:
        """Build (or reuse) the model for these settings; raises clear errors."""
        if self._loaded is not None:
            return self._loaded
        require_torch(self.name)
        opts = self.options
        device = self._device()
        size, holes = opts["image_size"], opts["fill_hole_area"]
        if opts["random_weights"]:
            config, message = self._select_config(None, "random weights")
            key = (config, f"random:{opts['init_seed']}", size, str(device), holes)
            if key not in _MODELS:
                predictor = build_predictor(config, size, device, None,
                                            init_seed=opts["init_seed"], fill_hole_area=holes)
                digest = state_dict_digest(predictor.state_dict())
                _MODELS[key] = LoadedModel(predictor, config, digest)
            self._loaded = LoadedModel(_MODELS[key].predictor, config,
                                       _MODELS[key].weights_digest, message=message)
            return self._loaded
        path = checkpoints.resolve_checkpoint(self.name, opts, self._published())
        sha = cached_sha256_file(path)
        state: Mapping[str, Any] | None = None
        match_key = (sha, self.name, opts["config"])
        if match_key not in _CONFIG_MATCH:
            state = checkpoints.load_state_dict(path)
            _CONFIG_MATCH[match_key] = self._select_config(state, str(path))
        config, message = _CONFIG_MATCH[match_key]
        key = (config, sha, size, str(device), holes)
        if key not in _MODELS:
            if state is None:
                state = checkpoints.load_state_dict(path)
            predictor = build_predictor(config, size, device, state, where=str(path),
                                        fill_hole_area=holes)
            _MODELS[key] = LoadedModel(predictor, config, sha, str(path), sha)
        self._loaded = LoadedModel(_MODELS[key].predictor, config, sha, str(path), sha, message)
        return self._loaded

    def fingerprint(self) -> dict[str, Any]:
        loaded = self.load()
        import sam2
        import torch

        opts = self.options
        record = super().fingerprint()
        record.update({
            "config": loaded.config,
            "config_match": loaded.message,
            "image_size": opts["image_size"],
            "preprocessing": opts["preprocessing"],
            "memory_policy": self.memory_policy(),
            "checkpoint": loaded.checkpoint,
            "checkpoint_sha256": loaded.checkpoint_sha256,
            "weights_digest": loaded.weights_digest,
            "meaningless": bool(opts["random_weights"]),
            "device": str(self._device()),
            "autocast": "bf16" if self._device().type == "cuda" else "none",
            "versions": {"torch": torch.__version__,
                         "sam2": getattr(sam2, "__version__", _dist_version("sam2"))},
        })
        if opts["random_weights"] and opts["checkpoint"]:
            record["note"] = "random_weights: the checkpoint setting was ignored"
        return record

    def memory_policy(self) -> str:
        return "fifo"

    # -- prediction

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        torch = require_torch(self.name)
        loaded = self.load()
        predictor = loaded.predictor
        shapes = [frame_shape(frame, i) for i, frame in enumerate(flow.frames)]
        grouped = group_prompts(prompts, shapes, flow.id)
        if not grouped:
            return Prediction(masks={}, scores={})
        inputs = FlowInputs(flow, self.options, predictor, loaded.weights_digest,
                            self._cache())
        masks: dict[str, list[np.ndarray]] = {}
        scores: dict[str, list[float | None]] = {}
        with torch.inference_mode(), autocast_for(predictor.device):
            for target, frame_prompts in grouped.items():
                masks[target], scores[target] = self._track(
                    predictor, inputs, shapes, target, frame_prompts)
        return Prediction(masks=masks, scores=scores)

    def _cache(self) -> EmbeddingCache:
        if self.options["cache_mb"] > 0:
            return shared_embedding_cache(self.options["cache_mb"])
        return EmbeddingCache(0)

    def _bank(self, flow: FlowFrames, target: str) -> Any:
        """The memory bank of one target's run, or None for SAM 2's FIFO memory."""
        return None

    def _track(
        self,
        predictor: Any,
        inputs: FlowInputs,
        shapes: Sequence[tuple[int, int]],
        target: str,
        frame_prompts: Mapping[int, FramePrompt],
    ) -> tuple[list[np.ndarray], list[float | None]]:
        import torch.nn.functional as F

        # SAM 2 resizes its low-resolution logits (image_size / 4) to the video size in one
        # bilinear step. With the "video" at that low resolution, propagation hands them over
        # unresized and each frame is resized to its own shape with the same operation.
        low = predictor.image_size // 4
        video_hw = (low, low)
        state = new_inference_state(predictor, inputs, video_hw)
        obj_idx = predictor._obj_id_to_idx(state, 1)
        output_dict = state["output_dict_per_obj"][obj_idx]
        bank = self._bank(inputs.flow, target)
        if bank is not None:
            output_dict[BANK_KEY] = bank
            output_dict[WITH_PROMPTS_KEY] = bool(self.options.get("bank_with_prompts", False))
        for frame_idx in sorted(frame_prompts):
            add_prompt(predictor, state, frame_idx, frame_prompts[frame_idx], shapes[frame_idx])
        logits: dict[int, Any] = {}
        for reverse in (False, True):
            for frame_idx, _, video_masks in predictor.propagate_in_video(state, reverse=reverse):
                logits[frame_idx] = video_masks[0:1].float()
        masks = []
        for frame_idx, shape in enumerate(shapes):
            frame_logits = logits[frame_idx]
            if tuple(frame_logits.shape[-2:]) != tuple(shape):
                frame_logits = F.interpolate(frame_logits, size=tuple(shape), mode="bilinear",
                                             align_corners=False)
            masks.append((frame_logits[0, 0] > 0).cpu().numpy())
        info = output_dict.get(INFO_KEY, {})
        scores = [info.get(i, {}).get("iou") for i in range(len(shapes))]
        self.last_bank = bank
        return masks, scores


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def bank_seed(seed: int, flow_id: str, target: str) -> int:
    """Seed of one target's bank draws in one flow (independent of other flows and targets)."""
    return zlib.crc32(f"{seed}|{flow_id}|{target}".encode())


# ------------------------------------------------------------------- inference state


class FlowInputs:
    """A flow's model inputs and their encoder features, computed on demand.

    Frames are preprocessed lazily; features come from the embedding cache
    (keyed by the preprocessed input, the weights and the compute settings)
    or from the encoder.
    """

    def __init__(self, flow: FlowFrames, options: Mapping[str, Any], predictor: Any,
                 weights_digest: str, cache: EmbeddingCache) -> None:
        self.flow = flow
        self.image_size = int(options["image_size"])
        self.profile = profile_for(options["preprocessing"], flow.kind)
        self.predictor = predictor
        self.weights_digest = weights_digest
        self.cache = cache
        self.cache_dir = Path(options["cache_dir"]).expanduser() if options["cache_dir"] else None
        self._windows = unit_windows(flow.frames, flow.kind)
        self._keys: dict[int, str] = {}
        device = predictor.device
        self.compute = f"{device.type}|{'bf16' if device.type == 'cuda' else 'fp32'}"
        self.encoded = 0

    def __len__(self) -> int:
        return len(self._windows)

    def image(self, index: int) -> Any:
        """The ``(3, S, S)`` model input of frame ``index`` on the model's device."""
        unit = to_unit(self.flow.frames[index], self._windows[index])
        return model_input(unit, self.image_size, self.profile).to(self.predictor.device)

    def key(self, index: int, image: Any) -> str:
        if index not in self._keys:
            self._keys[index] = embedding_key(image, self.weights_digest, self.image_size,
                                              self.compute)
        return self._keys[index]

    def features(self, index: int) -> tuple[Any, dict[str, list[Any]]]:
        """``(image (1, 3, S, S), backbone_out)`` as ``SAM2Base.forward_image`` gives them."""
        image = self.image(index).float().unsqueeze(0)
        key = self.key(index, image[0])
        fpn = self.cache.get(key, self.cache_dir, self.predictor.device)
        if fpn is None:
            fpn = list(self.predictor.forward_image(image)["backbone_fpn"])
            self.encoded += 1
            self.cache.put(key, fpn, self.cache_dir)
        encode = self.predictor.image_encoder.neck.position_encoding
        pos = [encode(level).to(level.dtype) for level in fpn]
        return image, {"backbone_fpn": list(fpn), "vision_pos_enc": pos}


def new_inference_state(predictor: Any, inputs: FlowInputs, video_hw: tuple[int, int]) -> dict:
    """An inference state as ``SAM2VideoPredictor.init_state`` builds it, from memory.

    ``images`` is the lazy :class:`FlowInputs`; features come through the
    provider (last frame memoised in ``cached_features``, as SAM 2 does).
    """
    device = predictor.device
    state: dict[str, Any] = {
        "images": inputs,
        "num_frames": len(inputs),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": int(video_hw[0]),
        "video_width": int(video_hw[1]),
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }

    def provider(frame_idx: int) -> tuple[Any, dict[str, list[Any]]]:
        memo = state["cached_features"]
        if frame_idx not in memo:
            state["cached_features"] = memo = {frame_idx: inputs.features(frame_idx)}
        return memo[frame_idx]

    state[PROVIDER_KEY] = provider
    return state


def add_prompt(predictor: Any, state: dict, frame_idx: int, prompt: FramePrompt,
               shape: tuple[int, int]) -> None:
    """Add one frame's prompts for object 1, in the frame's own coordinates."""
    import torch

    if prompt.mask is not None:
        predictor.add_new_mask(state, frame_idx, 1, torch.from_numpy(prompt.mask))
        return
    # SAM 2 divides pixel coordinates by the video size; do it by this frame's size
    # (same arithmetic), so that frames of mixed shapes get their own scale.
    scale = torch.tensor([shape[1], shape[0]])
    points = labels = box = None
    if prompt.points:
        points = torch.tensor(prompt.points, dtype=torch.float32) / scale
        labels = torch.tensor(prompt.labels, dtype=torch.int32)
    if prompt.box is not None:
        box = torch.tensor(prompt.box, dtype=torch.float32).reshape(2, 2) / scale
    predictor.add_new_points_or_box(state, frame_idx, 1, points=points, labels=labels, box=box,
                                    normalize_coords=False)
