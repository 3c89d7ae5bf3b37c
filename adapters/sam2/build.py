"""SAM 2 configs and building a predictor from a config and a checkpoint.

The configs are those of the ``sam2`` package (SAM 2.0 and 2.1; tiny, small,
base+, large). A predictor is built by hydra from the config with the
overrides of :func:`sam2.build_sam.build_sam2_video_predictor` (post-processing
on) plus ``image_size``, as the class named by ``predictor`` (the harness's
subclass of SAM 2's video predictor, :mod:`bench.adapters.sam2.predictor`, or an
adapter's own subclass of it). Weights are loaded with a strict key check
(:mod:`bench.adapters.checkpoints`). Built models and the state-dict shapes of each
config are memoised in :data:`bench.adapters.process_cache.PROCESS_CACHE`.

Nothing here imports torch, sam2 or hydra at module level.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.adapters import checkpoints
from bench.adapters.process_cache import PROCESS_CACHE

from bench.errors import unknown_name

CONFIGS: dict[str, str] = {
    "sam2_hiera_t": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_s": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_b+": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_l": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
    # MedSAM2 (Ma et al. 2025): SAM 2.1 tiny at 512 px, see CONFIG_OVERRIDES.
    "sam2.1_hiera_t512": "configs/sam2.1/sam2.1_hiera_t.yaml",
}
"""SAM 2.0 and 2.1 configs of the ``sam2`` package (tiny, small, base+, large)."""

CONFIG_OVERRIDES: dict[str, tuple[str, ...]] = {
    # Ma et al.'s sam2.1_hiera_t512.yaml differs from the stock tiny config in image_size
    # (an option here) and these two keys; they only size RoPE's initial table.
    "sam2.1_hiera_t512": (
        "++model.memory_attention.layer.self_attention.feat_sizes=[32,32]",
        "++model.memory_attention.layer.cross_attention.feat_sizes=[32,32]",
    ),
}
"""Hydra overrides a config name adds to its yaml file."""

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
    "sam2.1_hiera_t512": "https://huggingface.co/wanglab/MedSAM2 (MedSAM2_latest.pt)",
}

BENCH_PREDICTOR = "bench.adapters.sam2.predictor.BenchVideoPredictor"
"""Dotted path of the predictor class hydra builds by default."""


@dataclass
class LoadedModel:
    """A built predictor and what identifies its weights."""

    predictor: Any
    config: str
    weights_digest: str
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    message: str = ""


def check_config(name: str, where: str) -> str:
    """``name`` if it is a known config, else a ConfigError with the nearest one."""
    if name not in CONFIGS:
        raise unknown_name("SAM 2 config", name, CONFIGS, where=f"{where}.config")
    return name


def build_predictor(
    config: str,
    image_size: int,
    device: Any,
    state_dict: Mapping[str, Any] | None,
    *,
    predictor: str = BENCH_PREDICTOR,
    where: str = "checkpoint",
    init_seed: int = 0,
    fill_hole_area: int = 0,
) -> Any:
    """Build a video predictor of class ``predictor`` from a ``sam2`` config.

    Without ``state_dict`` the weights are SAM 2's random initialisation under
    ``torch.manual_seed(init_seed)`` (the global RNG state is restored
    afterwards).
    """
    model = instantiate(config, image_size, init_seed, predictor)
    if state_dict is not None:
        checkpoints.load_strict(model, state_dict, where)
    model.fill_hole_area = int(fill_hole_area)
    return model.to(device).eval()


#: What each ``compile`` setting compiles: (attribute, torch.compile's ``dynamic``).
#: ``vos`` is sam2 1.1.0's ``SAM2VideoPredictorVOS._compile_all_components`` plus its
#: ``compile_image_encoder``: the number of memories varies, so memory attention is dynamic.
COMPILED: dict[str, tuple[tuple[str, bool], ...]] = {
    "off": (),
    "encoder": (("image_encoder", False),),
    "vos": (("image_encoder", False), ("memory_encoder", False), ("memory_attention", True),
            ("sam_prompt_encoder", False), ("sam_mask_decoder", False)),
}


def compile_components(model: Any, which: str) -> Any:
    """``torch.compile`` the ``forward`` of ``model``'s components named by ``which``
    (:data:`COMPILED`), as sam2's VOS predictor does (``max-autotune``, full graph).

    Each compiled forward's outputs are cloned, as ``SAM2VideoPredictorVOS``
    clones them: with CUDA graphs a compiled call reuses its output buffers, and
    the harness keeps features (the embedding cache) and memories across calls.
    Compilation happens on the first call of each component.
    """
    if not COMPILED[which]:
        return model
    import torch

    for name, dynamic in COMPILED[which]:
        module = getattr(model, name)
        compiled = torch.compile(module.forward, mode="max-autotune", fullgraph=True,
                                 dynamic=dynamic)
        module.forward = functools.partial(_cloned, compiled)
    return model


def _cloned(function: Any, *args: Any, **kwargs: Any) -> Any:
    return _clone_tree(function(*args, **kwargs))


def _clone_tree(value: Any) -> Any:
    if hasattr(value, "clone") and hasattr(value, "dtype"):
        return value.clone()
    if isinstance(value, dict):
        return {key: _clone_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clone_tree(item) for item in value)
    return value


def instantiate(config: str, image_size: int, init_seed: int,
                predictor: str = BENCH_PREDICTOR) -> Any:
    """The model of ``config`` with random weights seeded by ``init_seed``, on the CPU."""
    import torch
    from hydra.utils import instantiate as hydra_instantiate

    cfg = _compose(config, image_size, predictor)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return hydra_instantiate(cfg.model, _recursive_=True)


def _overrides(image_size: int, predictor: str) -> list[str]:
    return [
        f"++model._target_={predictor}",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
        "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
        "++model.binarize_mask_from_pts_for_mem_enc=true",
        f"++model.image_size={int(image_size)}",
    ]


def _compose(config: str, image_size: int, predictor: str) -> Any:
    import sam2  # noqa: F401 - initialises hydra's config search path
    from hydra import compose
    from omegaconf import OmegaConf

    overrides = _overrides(image_size, predictor) + list(CONFIG_OVERRIDES.get(config, ()))
    cfg = compose(config_name=CONFIGS[config], overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def expected_shapes(config: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of ``config``'s state dict (memoised per process).

    They do not depend on the image size. The model is built on the CPU once
    (sam2's constructors call ``.item()``, so the meta device cannot be used).
    """
    def shapes() -> dict[str, tuple[int, ...]]:
        model = instantiate(config, 256, 0)
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    return PROCESS_CACHE.state_shapes.get(config, shapes)
