"""The SAM ViT architecture (``segment-anything``) at any input size, and its weights.

:func:`build_sam` builds SAM ViT-B/L/H with random weights (at 1024 px the
package's own builder; other sizes scale the positional embeddings and the
prompt encoder's grids, for fast tests). :func:`load_model` gives the model of
an adapter's settings: random weights seeded by ``init_seed``, or a checkpoint
read with ``weights_only=True`` after a strict key check, memoised in
:data:`bench.adapters.process_cache.PROCESS_CACHE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bench.adapters import checkpoints
from bench.adapters.process_cache import PROCESS_CACHE, cached_sha256_file
from bench.adapters.torch_utils import require_modules, state_dict_digest

Variant = Literal["vit_b", "vit_l", "vit_h"]
"""The keys of :data:`VARIANTS` (a test checks), for the settings."""
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


def require_segment_anything(model: str) -> Any:
    """Import torch for ``model`` (needs torch and segment_anything), or one clear ImportError."""
    return require_modules(model, ("torch", "segment_anything"))


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


def load_model(name: str, options: Any, device: Any) -> LoadedSam:
    """Build the model of adapter ``name`` for its ``options`` (memoised per process).

    ``options`` has ``variant``, ``image_size``, ``random_weights``,
    ``init_seed`` and ``checkpoint`` (:class:`bench.adapters.sam.adapter.SamOptions`).
    ``sam`` and ``medsam`` share a model when variant, size and weights agree.
    """
    torch = require_segment_anything(name)
    variant, size = options.variant, int(options.image_size)
    if options.random_weights:
        def random() -> LoadedSam:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(options.init_seed))
                model = build_sam(variant, size)
            return LoadedSam(model.to(device), state_dict_digest(model.state_dict()))

        key = ("sam", variant, size, f"random:{options.init_seed}", str(device))
        return PROCESS_CACHE.models.get(key, random)
    path = checkpoints.resolve_checkpoint(name, options.checkpoint,
                                          PUBLISHED[f"{name}:{variant}"])
    sha = cached_sha256_file(path)

    def load() -> LoadedSam:
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
        return LoadedSam(model.to(device), sha, str(path), sha)

    return PROCESS_CACHE.models.get(("sam", variant, size, sha, str(device)), load)
