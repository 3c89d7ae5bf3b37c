"""Prompt kinds: how a prompt is derived from one frame's ground-truth mask.

Coordinates are ``(x, y) = (column, row)`` in the frame's own pixels; boxes are
inclusive ``(x0, y0, x1, y1)``.

Boundary convention (``point`` and the interactive clicker): the distance of a
pixel is its Euclidean distance to the nearest pixel *outside* the region,
where everything beyond the image border counts as outside. This is computed
by padding the mask with one ring of background before the distance transform
(as RITM's clicker does). A mask touching the image edge is thus treated as
ending there, and its point lands in the middle of the visible part rather
than on the border; a mask covering the whole frame gets the frame's centre.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from bench.prompts.streams import KeyedStream
from bench.types import PROMPT_KINDS, Prompt

DEFAULT_MAX_JITTER = 20


def _mask2d(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name}: expected a 2D mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def present_frames(masks: Sequence[np.ndarray]) -> list[int]:
    """Indices of the frames whose mask has at least one pixel."""
    if isinstance(masks, np.ndarray) and masks.ndim >= 2:
        return [int(i) for i in np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))]
    return [i for i, mask in enumerate(masks) if np.any(mask)]


def padded_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each region pixel to the nearest outside pixel.

    Outside includes everything beyond the image border (see the module
    docstring). Pixels outside the region get 0.
    """
    mask = _mask2d(mask)
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def deepest_point(mask: np.ndarray) -> tuple[int, int]:
    """The ``point`` prompt: the region pixel farthest from its boundary.

    Ties are broken in raster order (smallest row, then smallest column).

    Raises
    ------
    ValueError
        If the mask is empty.
    """
    dist = padded_distance(mask)
    index = int(np.argmax(dist))  # argmax returns the first maximum in C (raster) order
    if dist.size == 0 or dist.flat[index] == 0:
        raise ValueError("point prompt: the mask is empty")
    y, x = divmod(index, dist.shape[1])
    return int(x), int(y)


def random_point(mask: np.ndarray, stream: KeyedStream) -> tuple[int, int]:
    """The ``point-random`` prompt: a pixel drawn uniformly from the region."""
    flat = np.flatnonzero(_mask2d(mask))
    if flat.size == 0:
        raise ValueError("point-random prompt: the mask is empty")
    y, x = divmod(int(flat[stream.integer(flat.size)]), np.shape(mask)[1])
    return int(x), int(y)


def random_pixel(shape: tuple[int, ...], stream: KeyedStream) -> tuple[int, int]:
    """A pixel drawn uniformly from a whole ``(H, W)`` frame."""
    height, width = int(shape[0]), int(shape[1])
    y, x = divmod(stream.integer(height * width), width)
    return int(x), int(y)


def tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The ``box`` prompt: the tight inclusive box ``(x0, y0, x1, y1)``."""
    mask = _mask2d(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("box prompt: the mask is empty")
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def jitter_box(
    box: tuple[int, int, int, int],
    shape: tuple[int, ...],
    stream: KeyedStream,
    max_jitter: int = DEFAULT_MAX_JITTER,
) -> tuple[int, int, int, int]:
    """The ``box-jitter`` prompt: each side moved outward, clipped to the image.

    The four offsets (x0, y0, x1, y1 in that order) are independent uniform
    integers in ``[0, max_jitter]``.
    """
    if isinstance(max_jitter, bool) or not isinstance(max_jitter, (int, np.integer)) \
            or max_jitter < 0:
        raise ValueError(f"max_jitter: expected a non-negative integer, got {max_jitter!r}")
    height, width = int(shape[0]), int(shape[1])
    dx0, dy0, dx1, dy1 = (stream.integer(int(max_jitter) + 1) for _ in range(4))
    x0, y0, x1, y1 = box
    return max(0, x0 - dx0), max(0, y0 - dy0), min(width - 1, x1 + dx1), min(height - 1, y1 + dy1)


def mask_sha256(mask: np.ndarray) -> str:
    """sha256 of a boolean mask: ``b"HxW;"`` followed by its packed bits (raster order)."""
    mask = _mask2d(mask)
    header = f"{mask.shape[0]}x{mask.shape[1]};".encode("ascii")
    return hashlib.sha256(header + np.packbits(mask, axis=None).tobytes()).hexdigest()


def prompt_from_mask(
    mask: np.ndarray,
    kind: str,
    *,
    target: str,
    frame: int,
    stream: KeyedStream | None = None,
    max_jitter: int = DEFAULT_MAX_JITTER,
) -> Prompt:
    """Derive one prompt of ``kind`` from the frame's ground-truth ``mask``.

    Parameters
    ----------
    mask : ndarray
        The target's ground-truth mask on this frame (2D, non-empty).
    kind : str
        One of :data:`bench.types.PROMPT_KINDS`.
    target, frame
        Recorded in the prompt.
    stream : KeyedStream, optional
        Required for ``point-random`` and ``box-jitter``.
    max_jitter : int
        Jitter range of ``box-jitter`` in pixels.
    """
    mask = _mask2d(mask, f"target {target!r} frame {frame}")
    if kind not in PROMPT_KINDS:
        raise ValueError(f"prompt kind: unknown {kind!r}; known: {', '.join(PROMPT_KINDS)}")
    if not mask.any():
        raise ValueError(f"{kind} prompt: target {target!r} is absent from frame {frame}")
    if kind in ("point-random", "box-jitter") and stream is None:
        raise ValueError(f"{kind} prompt needs a keyed stream")
    frame = int(frame)
    if kind == "point":
        return Prompt(target, frame, kind, points=(deepest_point(mask),), labels=(1,))
    if kind == "point-random":
        return Prompt(target, frame, kind, points=(random_point(mask, stream),), labels=(1,))
    if kind == "box":
        return Prompt(target, frame, kind, box=tight_box(mask))
    if kind == "box-jitter":
        box = jitter_box(tight_box(mask), mask.shape, stream, max_jitter)
        return Prompt(target, frame, kind, box=box)
    return Prompt(target, frame, kind, mask=mask.copy())


def empty_mask_prompt(shape: tuple[int, ...], *, target: str, frame: int) -> Prompt:
    """The official-code profile's all-zero mask prompt for an absent target."""
    mask = np.zeros((int(shape[0]), int(shape[1])), dtype=bool)
    return Prompt(target, int(frame), "empty-mask", mask=mask)
