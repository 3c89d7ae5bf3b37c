"""``universeg``: UniverSeg (Butoi et al., ICCV 2023), an in-context segmentation model.

UniverSeg segments a query image from a *support set* of (image, mask) pairs
of the same task, with no prompt on the query. The network is
:mod:`bench.adapters.universeg_net` (about 1.18 M parameters).

Support set
    The adapter is in-context (``Capabilities.in_context``): it takes mask
    prompts only, and every mask prompt of a target is one member of that
    target's support set. Under ``one-prompt`` with ``k_shot`` set, the
    runner hands it the ledger's ``support`` rows as mask prompts (the
    template and k - 1 drawn frames, :mod:`bench.prompts.protocols`); with a
    mask template and no ``k_shot`` the template alone is the support set
    (k = 1). A point or box prompt is refused with one line: the model has
    no way to use it. Every other frame of the flow is a query; a support
    frame's prediction is its own mask (it is given, and not scored).
    Under ``alpnet-protocol`` the support slices come from another volume
    (``support-volume`` prompts, image and mask): each query slice is
    segmented from the one slice serving its part (1-shot).

Preprocessing (as the official README and example loaders)
    Grey levels (RGB frames: ITU-R 601 luma, as ``PIL.Image.convert("L")``),
    min-max scaled to [0, 1] per frame (a constant frame becomes 0), resized
    to 128 x 128 with PIL's bilinear filter (mode ``F``; PIL widens the
    filter when shrinking, as the official loaders' ``Image.resize(...,
    BILINEAR)`` does); support masks resized to 128 x 128 with PIL's
    nearest filter. Non-square frames are stretched, as the official loaders
    do.

Prediction
    ``sigmoid(logits)`` at 128 x 128 (averaged over the subsets when
    ensembling), resized back to the frame's shape with PIL's bilinear
    filter, then thresholded: foreground where the probability is
    **> 0.5** (:data:`THRESHOLD`).

Test-time ensembling (``ensemble``, ``ensemble_size``)
    With ``ensemble = K > 1``, K support subsets of ``ensemble_size``
    members are drawn without replacement from the support set (a seeded
    generator: the unit's seed, the flow and the target) and the
    probabilities averaged (the paper's support-set ensembling). The
    default ``ensemble = 1`` uses the whole support set once.

Weights
    The released ``universeg_v1_nf64_ss64_STA.pt`` (a bare state dict) from
    ``--checkpoint universeg=PATH``, ``[models.universeg].checkpoint`` or
    ``MEDSAM2_BENCH_CHECKPOINT_UNIVERSEG``, read with ``weights_only=True``
    and a strict key and shape check (:mod:`bench.adapters.checkpoints`);
    ``--random-weights`` builds random weights seeded by ``init_seed`` for
    smoke tests (the fingerprint says ``meaningless``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
from bench.adapters import checkpoints
from bench.adapters.base import Adapter, Capabilities, register
from bench.adapters.process_cache import PROCESS_CACHE, cached_sha256_file
from bench.adapters.reference import frame_sizes
from bench.adapters.torch_utils import (
    Device,
    package_version,
    require_modules,
    select_device,
    state_dict_digest,
)
from pydantic import Field

from bench.progress import frames_done
from bench.prompts.alpnet import KIND as SUPPORT_VOLUME
from bench.settings import Settings
from bench.types import FlowFrames, Prediction, Prompt

SIZE = 128
THRESHOLD = 0.5
PUBLISHED = ("https://github.com/JJGO/UniverSeg/releases/tag/weights "
             "(universeg_v1_nf64_ss64_STA.pt)")
# ITU-R 601-2 luma, the weights of PIL's convert("L").
LUMA = np.array([0.299, 0.587, 0.114])


class UniverSegOptions(Settings):
    """``[models.universeg]``."""

    checkpoint: str = ""
    random_weights: bool = False
    init_seed: int = 0
    device: Device = "auto"
    batch: Annotated[int, Field(ge=1)] = 8
    ensemble: Annotated[int, Field(ge=1)] = 1
    ensemble_size: Annotated[int, Field(ge=1)] = 8


def grey_unit(frame: np.ndarray) -> np.ndarray:
    """A frame as grey levels min-max scaled to [0, 1] (float64, the frame's shape).

    RGB(A) frames are converted with the luma weights of ``PIL convert("L")``;
    a constant frame becomes all zeros.
    """
    image = np.asarray(frame, dtype=np.float64)
    if image.ndim == 3:
        image = image[..., :3] @ LUMA
    if image.ndim != 2:
        raise ValueError(f"expected a 2D grey or (H, W, 3) frame, got shape {np.shape(frame)}")
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _pil_resize(array: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    from PIL import Image

    height, width = shape
    if nearest:
        image = Image.fromarray(np.asarray(array, dtype=np.uint8) * np.uint8(255))
        return np.asarray(image.resize((width, height), Image.NEAREST)) > 127
    image = Image.fromarray(np.asarray(array, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.float32)


def model_image(frame: np.ndarray) -> np.ndarray:
    """The model's input for a frame: grey, [0, 1], bilinear to 128 x 128 (float32)."""
    return _pil_resize(grey_unit(frame), (SIZE, SIZE))


def model_mask(mask: np.ndarray) -> np.ndarray:
    """A support mask at 128 x 128 (nearest), as float32 0/1."""
    return _pil_resize(np.asarray(mask, dtype=bool), (SIZE, SIZE), nearest=True) \
        .astype(np.float32)


def frame_mask(probability: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The prediction at the frame's shape: bilinear resize, then ``> THRESHOLD``."""
    return _pil_resize(probability, shape) > THRESHOLD


def support_subsets(size: int, ensemble: int, subset: int,
                    rng: np.random.Generator) -> list[np.ndarray]:
    """The support members of each ensemble member (indices into the support set).

    One subset, the whole set, when ``ensemble == 1`` or the set has at most
    ``subset`` members; else ``ensemble`` subsets of ``subset`` members drawn
    without replacement, each sorted.
    """
    if ensemble == 1 or size <= subset:
        return [np.arange(size)]
    return [np.sort(rng.choice(size, subset, replace=False)) for _ in range(ensemble)]


@dataclass
class LoadedUniverSeg:
    """The network on its device and what identifies its weights."""

    model: Any
    weights_digest: str
    checkpoint: str = ""
    checkpoint_sha256: str = ""


def load_universeg(options: UniverSegOptions, device: Any) -> LoadedUniverSeg:
    """The network of ``options`` (memoised per process): random or from the checkpoint.

    Raises
    ------
    CheckpointError
        No checkpoint, a file that is not a weights-only torch checkpoint, or
        one whose keys or shapes do not fit the UniverSeg v1 network.
    """
    torch = require_modules("universeg", ("torch",))
    from bench.adapters.universeg_net import UniverSegNet, init_weights

    if options.random_weights:
        def random() -> LoadedUniverSeg:
            model = UniverSegNet()
            init_weights(model, options.init_seed)
            return LoadedUniverSeg(model.eval().to(device), state_dict_digest(model.state_dict()))

        return PROCESS_CACHE.models.get(("universeg", f"random:{options.init_seed}",
                                         str(device)), random)
    path = checkpoints.resolve_checkpoint("universeg", options.checkpoint, PUBLISHED)
    sha = cached_sha256_file(path)

    def load() -> LoadedUniverSeg:
        state = checkpoints.load_state_dict(path)
        with torch.device("meta"):
            expected = UniverSegNet().state_dict()
        check = checkpoints.check_keys(expected, state)
        if not check.ok:
            raise checkpoints.CheckpointError(
                f"{path}: does not fit the universeg v1 model (UniverSeg, 4 blocks of 64 "
                f"channels): {check.summary()}")
        model = UniverSegNet()
        model.load_state_dict(state, strict=True)
        return LoadedUniverSeg(model.eval().to(device), sha, str(path), sha)

    return PROCESS_CACHE.models.get(("universeg", sha, str(device)), load)


@register
@dataclass
class UniverSegAdapter(Adapter):
    """UniverSeg: every frame segmented from the target's support set (mask prompts)."""

    name = "universeg"
    description = (
        "UniverSeg (Butoi et al. 2023), in-context: each frame is segmented from a support "
        "set of (image, mask) pairs, the target's mask prompts (one-prompt: the template, "
        "or k support frames with k_shot); 128 x 128 grey input in [0, 1], sigmoid > 0.5 "
        "after a bilinear resize back to the frame."
    )
    capabilities = Capabilities(prompt_kinds=frozenset({"mask", SUPPORT_VOLUME}),
                                needs_weights=True,
                                devices=frozenset({"cpu", "cuda"}), in_context=True)
    Options: ClassVar[type[Settings]] = UniverSegOptions

    def __post_init__(self) -> None:
        super().__post_init__()
        self._loaded: LoadedUniverSeg | None = None
        self._seed = 0

    def unavailable(self) -> str | None:
        reason = checkpoints.why_unavailable(self.name, self.options.checkpoint,
                                             self.options.random_weights, ("torch",), PUBLISHED)
        if reason is None and not self.options.random_weights:
            # The released file is 5 MB: read and check it now, so that a foreign or damaged
            # file stops the run before anything is written (the load is memoised).
            try:
                self.load()
            except checkpoints.CheckpointError as err:
                return str(err)
        return reason

    def load(self) -> LoadedUniverSeg:
        if self._loaded is None:
            self._loaded = load_universeg(self.options, select_device(self.options.device))
        return self._loaded

    def use_run_seed(self, seed: int) -> bool:
        self._seed = int(seed)
        return self.options.ensemble > 1

    def fingerprint(self) -> dict[str, Any]:
        import torch

        loaded = self.load()
        record = super().fingerprint()
        record.update({
            "checkpoint": loaded.checkpoint,
            "checkpoint_sha256": loaded.checkpoint_sha256,
            "weights_digest": loaded.weights_digest,
            "meaningless": bool(self.options.random_weights),
            "in_context": True,  # rows labelled universeg@kK under one-prompt k_shot
            "device": str(select_device(self.options.device)),
            "preprocessing": "grey, min-max [0, 1] per frame, PIL bilinear to 128 x 128; "
                             "masks PIL nearest; sigmoid, PIL bilinear back, > 0.5",
            "versions": {"torch": torch.__version__, "pillow": package_version("pillow")},
        })
        return record

    def predict(self, flow: FlowFrames, prompts: Sequence[Prompt]) -> Prediction:
        shapes = frame_sizes(flow.frames)
        if any(prompt.kind == SUPPORT_VOLUME for prompt in prompts):
            masks = self._from_support_volume(flow, prompts, shapes)
            return Prediction(masks=masks, scores={t: [None] * len(shapes) for t in masks})
        supports = self._supports(flow, prompts)
        masks = {}
        inputs: dict[int, np.ndarray] = {}
        for target, given in supports.items():
            queries = [i for i in range(len(shapes)) if i not in given]
            for index in [*given, *queries]:
                if index not in inputs:
                    inputs[index] = model_image(flow.frames[index])
            order = sorted(given)
            probability = self._probabilities(
                flow.id, target, [inputs[i] for i in order], [given[i] for i in order],
                {i: inputs[i] for i in queries})
            masks[target] = [
                np.asarray(given[i], dtype=bool) if i in given
                else frame_mask(probability[i], shapes[i]) for i in range(len(shapes))]
        return Prediction(masks=masks, scores={t: [None] * len(shapes) for t in masks})

    def _from_support_volume(self, flow: FlowFrames, prompts: Sequence[Prompt],
                             shapes: list[tuple[int, int]]) -> dict[str, list[np.ndarray]]:
        """alpnet-protocol: each query slice from the one support slice serving it (1-shot).

        Every prompt is a slice of another volume (image, mask) and the range
        of this flow's slices it serves; slices no prompt serves stay empty.
        """
        masks: dict[str, list[np.ndarray]] = {}
        inputs: dict[int, np.ndarray] = {}
        for prompt in prompts:
            if prompt.kind != SUPPORT_VOLUME or prompt.image is None or prompt.mask is None \
                    or prompt.z_range is None:
                raise ValueError(f"universeg: flow {flow.id!r} target {prompt.target!r}: a "
                                 f"{prompt.kind} prompt among {SUPPORT_VOLUME} prompts (an "
                                 "alpnet-protocol flow takes support slices only)")
            low, high = prompt.z_range
            queries = range(low, high + 1)
            for index in queries:
                if index not in inputs:
                    inputs[index] = model_image(flow.frames[index])
            probability = self._probabilities(
                flow.id, prompt.target, [model_image(prompt.image)], [prompt.mask],
                {i: inputs[i] for i in queries})
            target_masks = masks.setdefault(
                prompt.target, [np.zeros(shape, dtype=bool) for shape in shapes])
            for index in queries:
                target_masks[index] = frame_mask(probability[index], shapes[index])
        return masks

    def _supports(self, flow: FlowFrames, prompts: Sequence[Prompt]
                  ) -> dict[str, dict[int, np.ndarray]]:
        """Per target, the support frames and their masks; other prompt kinds refused."""
        supports: dict[str, dict[int, np.ndarray]] = {}
        for prompt in prompts:
            if prompt.kind != "mask" or prompt.mask is None:
                raise ValueError(
                    f"universeg: flow {flow.id!r} target {prompt.target!r} frame "
                    f"{prompt.frame}: a {prompt.kind} prompt, but UniverSeg segments from "
                    "support masks only (run one-prompt with k_shot set, or a mask prompt kind)")
            supports.setdefault(prompt.target, {})[int(prompt.frame)] = prompt.mask
        return supports

    def _probabilities(self, flow_id: str, target: str, support_images: list[np.ndarray],
                       support_masks: list[np.ndarray], query_inputs: dict[int, np.ndarray]
                       ) -> dict[int, np.ndarray]:
        """Sigmoid maps (128 x 128) of the query frames, averaged over the ensemble.

        ``support_images`` and ``query_inputs`` (frame -> image) are model inputs
        (:func:`model_image`); ``support_masks`` are at the support frames' shape.
        """
        import torch

        loaded = self.load()
        device = next(loaded.model.parameters()).device
        images = torch.from_numpy(np.stack(support_images))[:, None]
        labels = torch.from_numpy(np.stack([model_mask(m) for m in support_masks]))[:, None]
        queries = list(query_inputs)
        rng = np.random.default_rng([self._seed, *map(ord, f"{flow_id}\0{target}")])
        subsets = support_subsets(len(support_images), self.options.ensemble,
                                  self.options.ensemble_size, rng)
        result: dict[int, np.ndarray] = {}
        batch = int(self.options.batch)
        for start in range(0, len(queries), batch):
            chunk = queries[start:start + batch]
            query = torch.from_numpy(np.stack([query_inputs[i] for i in chunk]))[:, None]
            query = query.to(device)
            total = torch.zeros(len(chunk), SIZE, SIZE, device=device)
            for members in subsets:
                chosen = torch.from_numpy(members)
                s_img = images[chosen].to(device)[None].expand(len(chunk), -1, -1, -1, -1)
                s_lab = labels[chosen].to(device)[None].expand(len(chunk), -1, -1, -1, -1)
                with torch.inference_mode():
                    total += torch.sigmoid(loaded.model(query, s_img, s_lab))[:, 0]
            for index, probability in zip(chunk, (total / len(subsets)).cpu().numpy(),
                                          strict=True):
                result[index] = probability
            frames_done(min(start + batch, len(queries)), len(queries))
        return result
