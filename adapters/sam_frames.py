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
    [0, 1] as for the SAM 2 adapters (:func:`adapters.sam2_video.unit_range`:
    one robust window over a whole volume, per frame for image flows), then
    to 8 bits. Grey frames are repeated to three channels.

Weights
    From the ``checkpoint`` setting, ``--checkpoint NAME=PATH`` or the
    environment (see :mod:`adapters.checkpoints`), read with
    ``weights_only=True`` and a strict key check. ``random_weights`` builds
    the architecture with random weights (seeded by ``init_seed``) for smoke
    tests; the fingerprint then says ``meaningless``. ``image_size`` other
    than 1024 is for such tests (the published weights fit 1024 only; the key
    check says so).

Scores
    The IoU-head prediction of the kept mask, per prompted frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    require_modules,
    select_device,
    shared_embedding_cache,
    state_dict_digest,
)
from bench.errors import ConfigError
from bench.types import FlowFrames, Prediction, Prompt

VARIANTS: dict[str, dict[str, Any]] = {
    # The encoder hyper-parameters of segment_anything.build_sam, per variant.
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn": (2, 5, 8, 11)},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn": (5, 11, 17, 23)},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn": (7, 15, 23, 31)},
}
PUBLISHED: dict[str, str] = {
    "sam:vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "sam:vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "sam:vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "medsam:vit_b": "https://github.com/bowang-lab/MedSAM (medsam_vit_b.pth, linked from its "
                    "README)",
}
# micro-sam's mask -> logits convention: logit(1 - eps) inside, logit(eps) outside.
MASK_LOGIT_EPS = 1e-3
MULTIMASK = ("auto", "always", "never")
MASK_PROMPT = ("logits+box", "logits")

BASE_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "variant": str,
    "image_size": int,
    "checkpoint": str,
    "device": str,
    "random_weights": bool,
    "init_seed": int,
    "cache_mb": (int, float),
    "cache_dir": str,
}
BASE_DEFAULTS: dict[str, Any] = {
    "variant": "vit_b",
    "image_size": 1024,
    "checkpoint": "",
    "device": "auto",
    "random_weights": False,
    "init_seed": 0,
    "cache_mb": 512,
    "cache_dir": "",
}


def require_segment_anything(model: str) -> Any:
    """Import torch for ``model`` (needs torch and segment_anything), or one clear ImportError."""
    return require_modules(model, ("torch", "segment_anything"))


# ----------------------------------------------------------------------------- model


def build_sam(variant: str, image_size: int = 1024) -> Any:
    """The SAM architecture of ``variant`` at input size ``image_size``, random weights.

    At 1024 this is :data:`segment_anything.sam_model_registry` ``[variant]``
    with no checkpoint; other sizes keep every hyper-parameter and scale the
    encoder's positional embeddings and the prompt encoder's grids (the
    image embedding is ``image_size / 16`` wide). Returns the model in eval
    mode, on the CPU.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    if image_size == 1024:
        from segment_anything import sam_model_registry

        return sam_model_registry[variant](checkpoint=None)

    from functools import partial

    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    spec = VARIANTS[variant]
    prompt_dim, patch = 256, 16
    grid = image_size // patch
    model = Sam(
        image_encoder=ImageEncoderViT(
            depth=spec["depth"], embed_dim=spec["embed_dim"], img_size=image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=spec["num_heads"],
            patch_size=patch, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=spec["global_attn"], window_size=14, out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=2048,
                                          num_heads=8),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    model.eval()
    return model


@dataclass
class LoadedSam:
    """A built SAM model and what identifies its weights."""

    model: Any
    weights_digest: str
    checkpoint: str = ""
    checkpoint_sha256: str = ""


_MODELS: dict[tuple, LoadedSam] = {}


def load_model(name: str, options: Mapping[str, Any], device: Any) -> LoadedSam:
    """Build the model of adapter ``name`` for ``options`` (memoised per process)."""
    torch = require_segment_anything(name)
    variant, size = options["variant"], int(options["image_size"])
    if options["random_weights"]:
        key: tuple = (variant, size, f"random:{options['init_seed']}", str(device))
        if key not in _MODELS:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(options["init_seed"]))
                model = build_sam(variant, size)
            _MODELS[key] = LoadedSam(model.to(device), state_dict_digest(model.state_dict()))
        return _MODELS[key]
    path = checkpoints.resolve_checkpoint(name, options, PUBLISHED[f"{name}:{variant}"])
    sha = cached_sha256_file(path)
    key = (variant, size, sha, str(device))
    if key not in _MODELS:
        state = checkpoints.load_state_dict(path)
        # Check the keys against the architecture built on the meta device (no memory,
        # no random init), so that a checkpoint that does not fit fails fast.
        with torch.device("meta"):
            expected = build_sam(variant, size).state_dict()
        check = checkpoints.check_keys(expected, state)
        if not check.ok:
            hint = ("; the published weights fit image_size = 1024 only"
                    if size != 1024 else "")
            raise checkpoints.CheckpointError(
                f"{path}: does not fit the {name} {variant} model at image_size {size}: "
                f"{check.summary()}{hint}")
        model = build_sam(variant, size)
        model.load_state_dict(state, strict=True)
        _MODELS[key] = LoadedSam(model.to(device), sha, str(path), sha)
    return _MODELS[key]


# ---------------------------------------------------------------------------- frames


def frames_uint8(frames: Sequence[np.ndarray], kind: str) -> list[np.ndarray]:
    """Every frame as ``(H, W, 3)`` uint8 RGB.

    uint8 frames keep their values; others go through
    :func:`adapters.sam2_video.unit_range` and are rounded to 8 bits.
    """
    from adapters.sam2_video import unit_range

    out = []
    for frame, unit in zip(frames, unit_range(frames, kind), strict=True):
        frame = np.asarray(frame)
        if frame.dtype == np.uint8:
            out.append(frame if frame.ndim == 3 else np.repeat(frame[..., None], 3, axis=2))
        else:
            out.append(np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8))
    return out


def mask_logits(mask: np.ndarray, image_size: int) -> np.ndarray:
    """A binary mask as SAM's low-resolution mask input ``(1, S/4, S/4)``.

    The mask is resized (area fraction >= 0.5) with SAM's resize-longest-side
    geometry onto the decoder's ``image_size / 4`` grid, padded at the bottom
    and right as SAM pads the image, and mapped to ``logit(1 - eps)`` inside
    and ``logit(eps)`` outside and in the padding (eps = 1e-3).
    """
    from segment_anything.utils.transforms import ResizeLongestSide
    from skimage.transform import resize

    mask = np.asarray(mask, dtype=bool)
    low = image_size // 4
    h, w = ResizeLongestSide.get_preprocess_shape(mask.shape[0], mask.shape[1], low)
    if (h, w) != mask.shape:
        shrink = mask.shape[0] > h or mask.shape[1] > w
        small = resize(mask.astype(np.float32), (h, w), order=1, anti_aliasing=shrink) >= 0.5
    else:
        small = mask
    inside = float(np.log((1 - MASK_LOGIT_EPS) / MASK_LOGIT_EPS))
    logits = np.full((1, low, low), -inside, dtype=np.float32)
    logits[0, :h, :w] = np.where(small, inside, -inside)
    return logits


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight inclusive box ``(x0, y0, x1, y1)`` of a non-empty mask."""
    rows = np.flatnonzero(np.any(mask, axis=1))
    cols = np.flatnonzero(np.any(mask, axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def medsam_input(image: np.ndarray, image_size: int) -> np.ndarray:
    """MedSAM's model input: ``(3, S, S)`` float32 from an ``(H, W, 3)`` uint8 frame.

    Bicubic anti-aliased resize to ``S x S`` (values clipped to the input's
    range), truncation to uint8, then min-max normalisation to [0, 1].
    """
    from skimage.transform import resize

    resized = resize(image, (image_size, image_size), order=3, preserve_range=True,
                     anti_aliasing=True).astype(np.uint8)
    low, high = resized.min(), resized.max()
    scaled = (resized - low) / np.clip(high - low, 1e-8, None)
    return np.ascontiguousarray(scaled.transpose(2, 0, 1), dtype=np.float32)


def medsam_box(box: Sequence[int], shape: tuple[int, int], image_size: int) -> np.ndarray:
    """A frame-pixel box ``(x0, y0, x1, y1)`` in MedSAM's ``S x S`` input coordinates."""
    height, width = shape
    return np.asarray(box, dtype=np.float64) / np.array([width, height, width, height]) \
        * image_size


# ---------------------------------------------------------------------------- adapters


class _FrameSam(Adapter):
    """Shared machinery of the per-frame SAM-family adapters."""

    settings_schema: ClassVar[dict[str, type | tuple[type, ...]]] = BASE_SCHEMA
    settings_defaults: ClassVar[dict[str, Any]] = BASE_DEFAULTS

    def __post_init__(self) -> None:
        super().__post_init__()
        where = self._where = f"[models.{self.name}]"
        opts = self.options
        if opts["variant"] not in VARIANTS:
            raise ConfigError(f"{where}.variant: expected one of {', '.join(VARIANTS)}, "
                              f"got {opts['variant']!r}")
        if opts["image_size"] < 64 or opts["image_size"] % 64:
            raise ConfigError(f"{where}.image_size: expected a multiple of 64, at least 64, "
                              f"got {opts['image_size']}")
        if opts["device"] not in DEVICE_CHOICES:
            raise ConfigError(f"{where}.device: expected one of {', '.join(DEVICE_CHOICES)}, "
                              f"got {opts['device']!r}")
        if opts["cache_mb"] < 0:
            raise ConfigError(f"{where}.cache_mb: must not be negative")
        self._check(opts, where)
        self._loaded: LoadedSam | None = None

    def _check(self, opts: dict[str, Any], where: str) -> None:
        """Adapter-specific settings checks."""

    def unavailable(self) -> str | None:
        return checkpoints.why_unavailable(self.name, self.options,
                                           ("torch", "segment_anything"),
                                           PUBLISHED[f"{self.name}:{self.options['variant']}"])

    def load(self) -> LoadedSam:
        if self._loaded is None:
            self._loaded = load_model(self.name, self.options,
                                      select_device(self.options["device"]))
        return self._loaded

    def fingerprint(self) -> dict[str, Any]:
        from importlib.metadata import version

        import torch

        loaded = self.load()
        device = select_device(self.options["device"])
        record = super().fingerprint()
        record.update({
            "variant": self.options["variant"],
            "image_size": self.options["image_size"],
            "checkpoint": loaded.checkpoint,
            "checkpoint_sha256": loaded.checkpoint_sha256,
            "weights_digest": loaded.weights_digest,
            "meaningless": bool(self.options["random_weights"]),
            "device": str(device),
            "autocast": "bf16 (image encoder)" if device.type == "cuda" else "none",
            "versions": {"torch": torch.__version__,
                         "segment-anything": version("segment-anything")},
        })
        return record

    def _cache(self) -> EmbeddingCache:
        if self.options["cache_mb"] > 0:
            return shared_embedding_cache(self.options["cache_mb"])
        return EmbeddingCache(0)

    def _cache_dir(self) -> Any:
        from pathlib import Path

        folder = self.options["cache_dir"]
        return Path(folder).expanduser() if folder else None

    def _encode(self, model: Any, image: Any, weights: str) -> Any:
        """Image embedding of a model input ``(1, 3, S, S)``, through the embedding cache."""
        import torch

        device = next(model.parameters()).device
        compute = f"{self.name}|{device.type}|{'bf16' if device.type == 'cuda' else 'fp32'}"
        key = embedding_key(image[0], weights, int(self.options["image_size"]), compute)
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
        from adapters.sam2_video import group_prompts

        require_segment_anything(self.name)
        shapes = [frame_shape(frame, i) for i, frame in enumerate(flow.frames)]
        grouped = group_prompts(prompts, shapes, flow.id)
        for target, by_frame in grouped.items():
            for index, entry in by_frame.items():
                self._check_prompt(entry, f"flow {flow.id}: target {target!r} frame {index}")
        masks = {t: [np.zeros(s, dtype=bool) for s in shapes] for t in grouped}
        scores: dict[str, list[float | None]] = {t: [None] * len(shapes) for t in grouped}
        wanted = sorted({i for by_frame in grouped.values() for i, e in by_frame.items()
                         if not _absent(e)})
        if not wanted:
            return Prediction(masks=masks, scores=scores)
        loaded = self.load()
        images = frames_uint8(flow.frames, flow.kind)
        for index in wanted:
            frame = self._frame(loaded, images[index])
            for target, by_frame in grouped.items():
                entry = by_frame.get(index)
                if entry is None or _absent(entry):
                    continue
                masks[target][index], scores[target][index] = self._segment(frame, entry)
        return Prediction(masks=masks, scores=scores)

    def _check_prompt(self, entry: Any, where: str) -> None:
        """Refuse prompts the model cannot take."""

    def _frame(self, loaded: LoadedSam, image: np.ndarray) -> Any:
        raise NotImplementedError

    def _segment(self, frame: Any, entry: Any) -> tuple[np.ndarray, float]:
        raise NotImplementedError


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
    settings_schema = {**BASE_SCHEMA, "multimask": str, "mask_prompt": str}
    settings_defaults = {**BASE_DEFAULTS, "multimask": "auto", "mask_prompt": "logits+box"}

    def _check(self, opts: dict[str, Any], where: str) -> None:
        if opts["multimask"] not in MULTIMASK:
            raise ConfigError(f"{where}.multimask: expected one of {', '.join(MULTIMASK)}, "
                              f"got {opts['multimask']!r}")
        if opts["mask_prompt"] not in MASK_PROMPT:
            raise ConfigError(f"{where}.mask_prompt: expected one of {', '.join(MASK_PROMPT)}, "
                              f"got {opts['mask_prompt']!r}")

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

    def _segment(self, frame: Any, entry: Any) -> tuple[np.ndarray, float]:
        predictor = frame
        size = int(self.options["image_size"])
        points = labels = box = mask_input = None
        if entry.points:
            points = np.asarray(entry.points, dtype=np.float64)
            labels = np.asarray(entry.labels, dtype=np.int64)
        if entry.box is not None:
            box = np.asarray(entry.box, dtype=np.float64)
        if entry.mask is not None:
            mask_input = mask_logits(entry.mask, size)
            if self.options["mask_prompt"] == "logits+box":
                box = np.asarray(mask_box(entry.mask), dtype=np.float64)
        multimask = self.options["multimask"]
        several = multimask == "always" or (
            multimask == "auto" and points is not None and len(points) == 1
            and box is None and mask_input is None)
        masks, quality, _ = predictor.predict(point_coords=points, point_labels=labels, box=box,
                                              mask_input=mask_input, multimask_output=several)
        best = int(np.argmax(quality))
        return np.asarray(masks[best], dtype=bool), float(quality[best])


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

    def _check(self, opts: dict[str, Any], where: str) -> None:
        if opts["variant"] != "vit_b":
            raise ConfigError(f"{where}.variant: MedSAM is a ViT-B model, got "
                              f"{opts['variant']!r}")

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
        tensor = torch.from_numpy(medsam_input(image, int(self.options["image_size"])))
        features = self._encode(model, tensor[None].to(device), loaded.weights_digest)
        return model, features, image.shape[:2]

    def _segment(self, frame: Any, entry: Any) -> tuple[np.ndarray, float]:
        import torch
        import torch.nn.functional as F

        model, features, shape = frame
        device = features.device
        box = medsam_box(entry.box, shape, int(self.options["image_size"]))
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
        return mask, float(quality[0, 0].cpu())
