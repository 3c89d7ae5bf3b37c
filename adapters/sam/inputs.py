"""Frames and prompts as SAM and MedSAM take them: 8-bit RGB, mask logits, scaled boxes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from bench.adapters.sam2.preprocess import unit_range

# micro-sam's mask -> logits convention: logit(1 - eps) inside, logit(eps) outside.
MASK_LOGIT_EPS = 1e-3


def frames_uint8(frames: Sequence[np.ndarray], kind: str) -> list[np.ndarray]:
    """Every frame as ``(H, W, 3)`` uint8 RGB.

    uint8 frames keep their values; others go through
    :func:`bench.adapters.sam2.preprocess.unit_range` and are rounded to 8 bits.
    """
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
