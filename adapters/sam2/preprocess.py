"""Frames of any dtype to SAM 2's model input, by preprocessing profile.

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
The per-frame SAM adapters use :func:`unit_range` too, before going to 8 bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
from bench.adapters.reference import frame_shape

Preprocessing = Literal["sam2", "official-2d", "official-3d", "official"]
PREPROCESSING: tuple[str, ...] = get_args(Preprocessing)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Robust range of frames that are not uint8 and not already in [0, 1].
UNIT_PERCENTILES = (0.5, 99.5)
# Percentiles of a large volume are taken on a strided subsample of this many values.
PERCENTILE_SAMPLE = 4_000_000


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
