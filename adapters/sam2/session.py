"""One flow's SAM 2 inference state, built from frames in memory.

The state has the keys :meth:`SAM2VideoPredictor.init_state` fills, with
``images`` the lazy :class:`FlowInputs` instead of a JPEG folder. Frame
features come through a provider (``PROVIDER_KEY``) that reads the embedding
cache or runs the encoder; :class:`~bench.adapters.sam2.predictor.BenchVideoPredictor`
calls it. Prompts are added in each frame's own pixel scale, so image flows
of mixed shapes work (:func:`add_prompt`).

torch is imported inside the functions, so this module imports without it.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from bench.adapters.process_cache import EmbeddingCache
from bench.adapters.sam2.preprocess import model_input, profile_for, to_unit, unit_windows
from bench.adapters.sam2.prompts import FramePrompt
from bench.adapters.torch_utils import embedding_key

from bench.types import FlowFrames

# Keys the harness adds to SAM 2's inference state / per-object output dicts.
PROVIDER_KEY = "bench_feature_provider"
INFO_KEY = "bench_frame_info"


class FlowInputs:
    """A flow's model inputs and their encoder features, computed on demand.

    Frames are preprocessed lazily; features come from the embedding cache
    (keyed by the preprocessed input, the weights and the compute settings)
    or from the encoder.

    With ``encode_batch`` B > 1 a frame the encoder has to run on is encoded
    together with the next B - 1 frames in the direction the loop is going
    (one encoder call of exactly B images: the last frame is repeated at a
    flow's end, so every frame is encoded in a batch of the same size), and
    those are kept until the loop asks for them (at most B frames' features
    held). Float kernels can round differently with the batch size (on CPU
    at 512 px the features differ from one-by-one encoding by about 1e-6), so
    B is part of the embedding cache key and of the adapter's fingerprint.
    """

    def __init__(self, flow: FlowFrames, predictor: Any, weights_digest: str,
                 cache: EmbeddingCache, *, image_size: int, preprocessing: str,
                 cache_dir: str = "", encode_batch: int = 1) -> None:
        self.flow = flow
        self.image_size = int(image_size)
        self.profile = profile_for(preprocessing, flow.kind)
        self.predictor = predictor
        self.weights_digest = weights_digest
        self.cache = cache
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self._windows = unit_windows(flow.frames, flow.kind)
        self._keys: dict[int, str] = {}
        device = predictor.device
        self.compute = f"{device.type}|{'bf16' if device.type == 'cuda' else 'fp32'}"
        self.encode_batch = max(1, int(encode_batch))
        if self.encode_batch > 1:  # batched features may round differently: their own key
            self.compute += f"|batch{self.encode_batch}"
        self.encoded = 0
        self._ahead: dict[int, list[Any]] = {}  # encoded in a batch, not asked for yet
        self._last: int | None = None

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
        fpn, pos = self._ahead.pop(index, None), None
        if fpn is None:
            fpn = self.cache.get(key, self.cache_dir, self.predictor.device)
        if fpn is None and self.encode_batch > 1:
            fpn = self._encode_ahead(index, image)
        elif fpn is None:
            encoded = self.predictor.forward_image(image)
            # the encoder's own position encodings (the same values as recomputing them:
            # they depend on the shapes only), not computed and copied a second time
            fpn = list(encoded["backbone_fpn"])
            pos = [p.to(level.dtype) for p, level in
                   zip(encoded["vision_pos_enc"], fpn, strict=True)]
            self.encoded += 1
            self.cache.put(key, fpn, self.cache_dir)
        self._last = index
        if pos is None:  # the cache keeps no position encodings
            encode = self.predictor.image_encoder.neck.position_encoding
            pos = [encode(level).to(level.dtype) for level in fpn]
        return image, {"backbone_fpn": list(fpn), "vision_pos_enc": pos}


    def _encode_ahead(self, index: int, image: Any) -> list[Any]:
        """Encode frame ``index`` and the next frames in the loop's direction in one batch
        of ``encode_batch`` images; keep the others for later; return ``index``'s."""
        import torch

        step = -1 if self._last is not None and index < self._last else 1
        if any(i * step < index * step for i in self._ahead):
            self._ahead.clear()  # the loop turned round: those are behind it now
        wanted, images = [index], [image[0]]
        candidate = index + step
        while len(wanted) < self.encode_batch and 0 <= candidate < len(self):
            if candidate not in self._ahead:
                ahead = self.image(candidate).float()
                if not self._stored(self.key(candidate, ahead)):
                    wanted.append(candidate)
                    images.append(ahead)
            candidate += step
        images += [images[-1]] * (self.encode_batch - len(images))  # always B images
        levels = self.predictor.forward_image(torch.stack(images))["backbone_fpn"]
        for position, frame in enumerate(wanted):
            fpn = [level[position:position + 1].clone() for level in levels]
            self.encoded += 1
            self.cache.put(self.key(frame, images[position]), fpn, self.cache_dir)
            if frame != index:
                self._ahead[frame] = fpn
        return [level[0:1].clone() for level in levels]

    def _stored(self, key: str) -> bool:
        """Whether the embedding cache (memory or disk) holds ``key``."""
        return key in self.cache or (self.cache_dir is not None and
                                     (self.cache_dir / f"{key}.pt").is_file())


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
