"""Per-frame promptable baselines: SAM and MedSAM (the ``segment-anything`` package).

Both segment each prompted frame on its own, with no memory of other frames:
a frame without a prompt for a target gets an empty mask (and no score), so
under a one-prompt protocol they segment the template frame only. Reports
print the adapters' descriptions, which say so.

``sam``
    The Segment Anything model (Kirillov et al. 2023), ViT-B, ViT-L or ViT-H,
    driven through the package's own ``SamPredictor``: the frame (as 8-bit
    RGB) is resized so that its longest side is the model's input size,
    normalised by SAM's pixel mean and standard deviation and padded; masks
    are upsampled back to the frame and thresholded at logit 0. Prompts:
    clicks (all clicks of a target on a frame together), a box (may come with
    clicks), or a mask. SAM takes a mask as low-resolution logits: the mask is
    brought to the decoder's grid (input size / 4) with SAM's resize-longest-
    side geometry, mapped to ``logit(1 - 1e-3)`` inside and its negative
    outside (and in the padding). With ``mask_prompt = "logits+box"`` (the
    default, as micro-sam segments from masks) the mask's tight box is given
    too; ``"logits"`` gives the mask alone. ``multimask = "auto"`` asks for
    SAM's three candidate masks when the prompt is a single click (SAM's
    recommendation for an ambiguous prompt) and one mask otherwise; with
    several candidates the one with the highest IoU-head score is kept.
``medsam``
    MedSAM (Ma et al. 2024): the SAM ViT-B architecture with MedSAM's
    weights, box prompts only, with MedSAM's own pre- and post-processing
    (``MedSAM_Inference.py`` of bowang-lab/MedSAM): the 8-bit RGB frame is
    resized to a square ``image_size`` (1024) with a bicubic, anti-aliased
    resize and truncated to 8 bits, min-max normalised to [0, 1] (no mean/std
    normalisation, no padding) and encoded; the box is scaled by
    ``image_size / W`` and ``image_size / H``; the decoder gives one mask,
    whose low-resolution logits go through a sigmoid, are resized bilinearly
    to the frame and thresholded at 0.5.

Frames
    8-bit frames are used as they are. Other frames are first brought to
    [0, 1] as for the SAM 2 adapters (:func:`bench.adapters.sam2.preprocess.unit_range`:
    one robust window over a whole volume, per frame for image flows), then
    to 8 bits. Grey frames are repeated to three channels.

Weights
    From the ``checkpoint`` setting, ``--checkpoint NAME=PATH`` or the
    environment (see :mod:`bench.adapters.checkpoints`), read with
    ``weights_only=True`` and a strict key check. ``random_weights`` builds
    the architecture with random weights (seeded by ``init_seed``) for smoke
    tests; the fingerprint then says ``meaningless``. ``image_size`` other
    than 1024 is for such tests (the published weights fit 1024 only; the key
    check says so).

Scores
    The IoU-head prediction of the kept mask, per prompted frame.

Logits (for the official metrics, :mod:`bench.official_metrics`)
    ``sam``: the kept mask's logits at the frame's own shape (SAM's
    ``return_logits``: upsampled and unpadded, before the threshold at 0);
    ``medsam``: the decoder's low-resolution logits as they are (its square
    resize needs no unpadding). A frame without a prompt gets one constant
    logit of :data:`ABSENT_LOGIT` (a 1 x 1 array, below every official
    threshold), as its mask is empty.

The architecture and its weights are in :mod:`bench.adapters.sam.build`; frame and
prompt conversions in :mod:`bench.adapters.sam.inputs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from bench.adapters import checkpoints
from bench.adapters.base import Adapter, Capabilities, Number, register
from bench.adapters.process_cache import EmbeddingCache, shared_embedding_cache
from bench.adapters.reference import frame_sizes
from bench.adapters.sam.build import (
    PUBLISHED,
    LoadedSam,
    Variant,
    load_model,
    require_segment_anything,
)
from bench.adapters.sam.inputs import frames_uint8, mask_box, mask_logits, medsam_box, medsam_input
from bench.adapters.sam2.prompts import group_prompts
from bench.adapters.torch_utils import (
    Device,
    autocast_for,
    embedding_key,
    package_version,
    select_device,
)
from pydantic import Field

from bench.progress import frames_done
from bench.settings import Settings
from bench.types import FlowFrames, Prediction, Prompt


class FrameSamOptions(Settings):
    """Settings shared by ``[models.sam]`` and ``[models.medsam]``."""

    variant: Variant = "vit_b"
    image_size: Annotated[int, Field(ge=64, multiple_of=64)] = 1024
    checkpoint: str = ""
    device: Device = "auto"
    random_weights: bool = False
    init_seed: int = 0
    cache_mb: Annotated[Number, Field(ge=0)] = 512
    cache_dir: str = ""


class SamOptions(FrameSamOptions):
    """``[models.sam]``: the shared settings, the multimask rule and how masks are prompted."""

    multimask: Literal["auto", "always", "never"] = "auto"
    mask_prompt: Literal["logits+box", "logits"] = "logits+box"


class MedSamOptions(FrameSamOptions):
    """``[models.medsam]``: the shared settings; MedSAM is a ViT-B model."""

    variant: Literal["vit_b"] = "vit_b"


class _FrameSam(Adapter):
    """Shared machinery of the per-frame SAM-family adapters."""

    Options: ClassVar[type[Settings]] = FrameSamOptions

    def __post_init__(self) -> None:
        super().__post_init__()
        self._loaded: LoadedSam | None = None

    def unavailable(self) -> str | None:
        return checkpoints.why_unavailable(self.name, self.options.checkpoint,
                                           self.options.random_weights,
                                           ("torch", "segment_anything"),
                                           PUBLISHED[f"{self.name}:{self.options.variant}"])

    def load(self) -> LoadedSam:
        if self._loaded is None:
            self._loaded = load_model(self.name, self.options,
                                      select_device(self.options.device))
        return self._loaded

    def fingerprint(self) -> dict[str, Any]:
        import torch

        loaded = self.load()
        device = select_device(self.options.device)
        record = super().fingerprint()
        record.update({
            "variant": self.options.variant,
            "image_size": self.options.image_size,
            "checkpoint": loaded.checkpoint,
            "checkpoint_sha256": loaded.checkpoint_sha256,
            "weights_digest": loaded.weights_digest,
            "meaningless": bool(self.options.random_weights),
            "device": str(device),
            "autocast": "bf16 (image encoder)" if device.type == "cuda" else "none",
            "versions": {"torch": torch.__version__,
                         "segment-anything": package_version("segment-anything")},
        })
        return record

    def _cache(self) -> EmbeddingCache:
        if self.options.cache_mb > 0:
            return shared_embedding_cache(self.options.cache_mb)
        return EmbeddingCache(0)

    def _cache_dir(self) -> Path | None:
        folder = self.options.cache_dir
        return Path(folder).expanduser() if folder else None

    def _encode(self, model: Any, image: Any, weights: str) -> Any:
        """Image embedding of a model input ``(1, 3, S, S)``, through the embedding cache."""
        import torch

        device = next(model.parameters()).device
        compute = f"{self.name}|{device.type}|{'bf16' if device.type == 'cuda' else 'fp32'}"
        key = embedding_key(image[0], weights, int(self.options.image_size), compute)
        cache, folder = self._cache(), self._cache_dir()
        cached = cache.get(key, folder, device)
        if cached is not None:
            return cached[0]
        with torch.inference_mode(), autocast_for(device):
            features = self._encoder_forward(model, image)
        features = features.float()
        cache.put(key, [features], folder)
        return features

    def _encoder_forward(self, model: Any, image: Any) -> Any:
        raise NotImplementedError

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        require_segment_anything(self.name)
        shapes = frame_sizes(flow.frames)
        grouped = group_prompts(prompts, shapes, flow.id)
        for target, by_frame in grouped.items():
            for index, entry in by_frame.items():
                self._check_prompt(entry, f"flow {flow.id}: target {target!r} frame {index}")
        masks = {t: [np.zeros(s, dtype=bool) for s in shapes] for t in grouped}
        scores: dict[str, list[float | None]] = {t: [None] * len(shapes) for t in grouped}
        absent = np.full((1, 1), ABSENT_LOGIT, dtype=np.float32)
        logits = {t: [absent] * len(shapes) for t in grouped}
        wanted = sorted({i for by_frame in grouped.values() for i, e in by_frame.items()
                         if not _absent(e)})
        if not wanted:
            return Prediction(masks=masks, scores=scores, logits=logits)
        loaded = self.load()
        images = frames_uint8(flow.frames, flow.kind)
        for done, index in enumerate(wanted, 1):
            frame = self._frame(loaded, images[index])
            for target, by_frame in grouped.items():
                entry = by_frame.get(index)
                if entry is None or _absent(entry):
                    continue
                (masks[target][index], scores[target][index],
                 logits[target][index]) = self._segment(frame, entry)
            frames_done(done, len(wanted))
        return Prediction(masks=masks, scores=scores, logits=logits)

    def _check_prompt(self, entry: Any, where: str) -> None:
        """Refuse prompts the model cannot take."""

    def _frame(self, loaded: LoadedSam, image: np.ndarray) -> Any:
        raise NotImplementedError

    def _segment(self, frame: Any, entry: Any) -> tuple[np.ndarray, float, np.ndarray]:
        """The mask, its IoU-head score and its logits (see the module docstring)."""
        raise NotImplementedError


#: The logit of a frame the model did not segment (no prompt): below every official
#: threshold (0.1 ... 0.9 on raw logits, 0.5 in 2D), as the frame's empty mask.
ABSENT_LOGIT = -1.0e4


def _absent(entry: Any) -> bool:
    """An ``empty-mask`` prompt: the target is declared absent from the frame."""
    return entry.mask is not None and not entry.mask.any() and not entry.points \
        and entry.box is None


@register
@dataclass
class SamAdapter(_FrameSam):
    """SAM (ViT-B/L/H) per frame, through ``segment_anything.SamPredictor``."""

    name = "sam"
    description = (
        "SAM (segment-anything), per frame: each prompted frame is segmented on its own from "
        "its prompts (clicks, box, or mask given as low-resolution logits plus its box); "
        "frames without a prompt get an EMPTY prediction, so under a one-prompt protocol "
        "only the template frame is segmented. Score: SAM's IoU-head prediction."
    )
    capabilities = Capabilities(
        prompt_kinds=frozenset({"point", "point-random", "box", "box-jitter", "mask",
                                "empty-mask"}),
        needs_weights=True,
        devices=frozenset({"cpu", "cuda", "mps"}),
    )
    Options: ClassVar[type[Settings]] = SamOptions

    def fingerprint(self) -> dict[str, Any]:
        record = super().fingerprint()
        record["preprocessing"] = ("segment_anything.SamPredictor: resize longest side, "
                                   "pixel mean/std, pad")
        return record

    def _encoder_forward(self, model: Any, image: Any) -> Any:
        return model.image_encoder(model.preprocess(image))

    def _frame(self, loaded: LoadedSam, image: np.ndarray) -> Any:
        import torch
        from segment_anything import SamPredictor

        predictor = SamPredictor(loaded.model)
        resized = predictor.transform.apply_image(image)
        tensor = torch.as_tensor(resized, device=predictor.device)
        tensor = tensor.permute(2, 0, 1).contiguous()[None]
        features = self._encode(loaded.model, tensor.float(), loaded.weights_digest)
        # What SamPredictor.set_torch_image stores, with the features from the cache.
        predictor.reset_image()
        predictor.original_size = image.shape[:2]
        predictor.input_size = tuple(tensor.shape[-2:])
        predictor.features = features
        predictor.is_image_set = True
        return predictor

    def _segment(self, frame: Any, entry: Any) -> tuple[np.ndarray, float, np.ndarray]:
        predictor = frame
        size = int(self.options.image_size)
        points = labels = box = mask_input = None
        if entry.points:
            points = np.asarray(entry.points, dtype=np.float64)
            labels = np.asarray(entry.labels, dtype=np.int64)
        if entry.box is not None:
            box = np.asarray(entry.box, dtype=np.float64)
        if entry.mask is not None:
            mask_input = mask_logits(entry.mask, size)
            if self.options.mask_prompt == "logits+box":
                box = np.asarray(mask_box(entry.mask), dtype=np.float64)
        multimask = self.options.multimask
        several = multimask == "always" or (
            multimask == "auto" and points is not None and len(points) == 1
            and box is None and mask_input is None)
        # return_logits: the same masks before SamPredictor's threshold at mask_threshold.
        logits, quality, _ = predictor.predict(point_coords=points, point_labels=labels,
                                               box=box, mask_input=mask_input,
                                               multimask_output=several, return_logits=True)
        best = int(np.argmax(quality))
        kept = np.asarray(logits[best], dtype=np.float32)
        return kept > predictor.model.mask_threshold, float(quality[best]), kept


@register
@dataclass
class MedSamAdapter(_FrameSam):
    """MedSAM per frame: SAM ViT-B with MedSAM weights, box prompts, MedSAM's preprocessing."""

    name = "medsam"
    description = (
        "MedSAM (SAM ViT-B with MedSAM weights), per frame, box prompts only, with MedSAM's "
        "own preprocessing (square resize to 1024, min-max to [0, 1]) and post-processing "
        "(sigmoid > 0.5); frames without a prompt get an EMPTY prediction, so under a "
        "one-prompt protocol only the template frame is segmented. Score: the IoU-head "
        "prediction."
    )
    capabilities = Capabilities(
        prompt_kinds=frozenset({"box", "box-jitter", "empty-mask"}),
        needs_weights=True,
        devices=frozenset({"cpu", "cuda", "mps"}),
    )

    Options: ClassVar[type[Settings]] = MedSamOptions

    def fingerprint(self) -> dict[str, Any]:
        record = super().fingerprint()
        record["preprocessing"] = ("MedSAM_Inference.py: bicubic square resize, uint8, "
                                   "min-max to [0, 1]; sigmoid > 0.5 after bilinear upsampling")
        return record

    def _check_prompt(self, entry: Any, where: str) -> None:
        if entry.points or (entry.mask is not None and entry.mask.any()):
            kind = "point" if entry.points else "mask"
            raise ValueError(f"{where}: medsam takes box prompts only (MedSAM was trained "
                             f"with boxes), got a {kind} prompt")

    def _encoder_forward(self, model: Any, image: Any) -> Any:
        return model.image_encoder(image)

    def _frame(self, loaded: LoadedSam, image: np.ndarray) -> Any:
        import torch

        model = loaded.model
        device = next(model.parameters()).device
        tensor = torch.from_numpy(medsam_input(image, int(self.options.image_size)))
        features = self._encode(model, tensor[None].to(device), loaded.weights_digest)
        return model, features, image.shape[:2]

    def _segment(self, frame: Any, entry: Any) -> tuple[np.ndarray, float, np.ndarray]:
        import torch
        import torch.nn.functional as F

        model, features, shape = frame
        device = features.device
        box = medsam_box(entry.box, shape, int(self.options.image_size))
        with torch.inference_mode():
            boxes = torch.as_tensor(box, dtype=torch.float, device=device)[None, None, :]
            sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
            logits, quality = model.mask_decoder(
                image_embeddings=features, image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                multimask_output=False)
            prob = F.interpolate(torch.sigmoid(logits), size=shape, mode="bilinear",
                                 align_corners=False)
        mask = prob[0, 0].cpu().numpy() > 0.5
        return mask, float(quality[0, 0].cpu()), logits[0, 0].float().cpu().numpy()
