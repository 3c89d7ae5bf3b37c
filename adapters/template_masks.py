"""Classical template masks from box and click prompts (the registration baseline's first step).

:func:`box_to_mask`: Otsu threshold inside the box, the class that is not the
ring around the box, largest component, holes filled (inscribed ellipse if
that fails). :func:`points_to_mask`: flood fill from each positive click with
a tolerance of 3 local standard deviations, its edge moved to half contrast
against the surroundings, bounded to 40% of the frame (a small disc if it
leaks); negative clicks remove what they grow. Frames are grey, in [0, 1]
(:func:`bench.adapters.registration.to_grey`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.segmentation import flood

# Box -> mask: width (px) of the ring just outside the box that shows the background.
BOX_RING = 3
# Box -> mask: below this fraction of the box, the Otsu object is not trusted.
BOX_MIN_FRACTION = 0.1
# Point -> mask: a grown region may cover at most this fraction of the frame.
POINT_MAX_FRACTION = 0.4
# Point -> mask: radius of the fallback disc and of the local statistics window,
# as a fraction of the frame's short side.
POINT_RADIUS_FRACTION = 0.04
# Point -> mask: tolerance = this many local standard deviations, within bounds.
POINT_TOL_STDS = 3.0
POINT_TOL_BOUNDS = (0.05, 0.35)


def inscribed_ellipse(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """The ellipse inscribed in the inclusive box ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = box
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    ay, ax = (y1 - y0 + 1) / 2, (x1 - x0 + 1) / 2
    return ((rows - cy) / ay) ** 2 + ((cols - cx) / ax) ** 2 <= 1.0


def _clip_box(box: Sequence[int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box {tuple(box)}: expected x0 <= x1 and y0 <= y1")
    height, width = shape
    if x1 < 0 or y1 < 0 or x0 >= width or y0 >= height:
        raise ValueError(f"box {tuple(box)}: outside the {width}x{height} frame")
    return max(x0, 0), max(y0, 0), min(x1, width - 1), min(y1, height - 1)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndi.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def box_to_mask(grey: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """Classical box -> mask: Otsu inside the box, object class = not the surroundings.

    The (Gaussian-smoothed, sigma 1) pixels inside the box are split in two by
    Otsu's threshold. The background class is the one that dominates a
    ``BOX_RING``-pixel ring just outside the box (a tight or jittered box has
    background all around; where the box touches the image edge and no ring
    exists, the box's own border is used). The largest connected component of
    the other class, holes filled, is the mask. If the box has no contrast or
    the component covers less than ``BOX_MIN_FRACTION`` of the box, the
    ellipse inscribed in the box is returned instead.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        Normalised grey frame (see :func:`to_grey`).
    box : (x0, y0, x1, y1)
        Inclusive pixel box; clipped to the frame.

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    shape = grey.shape
    x0, y0, x1, y1 = _clip_box(box, shape)
    fallback = inscribed_ellipse(shape, (x0, y0, x1, y1))
    smooth = ndi.gaussian_filter(grey.astype(np.float32), 1.0)
    crop = smooth[y0 : y1 + 1, x0 : x1 + 1]
    if crop.size < 9 or float(np.ptp(crop)) < 1e-3:
        return fallback
    threshold = threshold_otsu(crop)

    outer = np.zeros(shape, dtype=bool)
    top, left = max(y0 - BOX_RING, 0), max(x0 - BOX_RING, 0)
    outer[top : y1 + BOX_RING + 1, left : x1 + BOX_RING + 1] = True
    outer[y0 : y1 + 1, x0 : x1 + 1] = False
    if outer.any():
        surround = smooth[outer]
    else:
        surround = np.concatenate([crop[0], crop[-1], crop[1:-1, 0], crop[1:-1, -1]])
    background_is_bright = float(np.mean(surround > threshold)) >= 0.5

    inside = crop <= threshold if background_is_bright else crop > threshold
    inside = ndi.binary_fill_holes(_largest_component(inside))
    if inside.sum() < BOX_MIN_FRACTION * crop.size:
        return fallback
    mask = np.zeros(shape, dtype=bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = inside
    return mask


def _disc(shape: tuple[int, int], row: int, col: int, radius: float) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius**2


def grow_from_point(smooth: np.ndarray, row: int, col: int) -> np.ndarray:
    """Region growing from one click on a smoothed grey frame.

    1. Flood fill (4-connected, :func:`skimage.segmentation.flood`) from the
       click with tolerance ``POINT_TOL_STDS`` standard deviations of the
       intensities in a window around the click (window radius
       ``POINT_RADIUS_FRACTION`` of the short side), bounded to
       ``POINT_TOL_BOUNDS``. A region covering more than
       ``POINT_MAX_FRACTION`` of the frame has leaked: the tolerance is halved
       (up to four times).
    2. Boundary refinement: with the median intensity inside the region and
       in a shell around it, the pixels closer to the inside median than to the
       shell median, connected to the click, form the refined region (the
       boundary moves to half contrast, where the first pass stops short on a
       blurred edge). It is kept only if it stays within the area bound.
    3. If no region stays within the bound, or it is smaller than a quarter
       of the fallback disc, the disc of radius ``POINT_RADIUS_FRACTION`` of the
       short side centred on the click is returned. Holes are filled.
    """
    shape = smooth.shape
    max_area = POINT_MAX_FRACTION * smooth.size
    radius = max(2.0, POINT_RADIUS_FRACTION * min(shape))
    disc = _disc(shape, row, col, radius)
    r = int(np.ceil(radius))
    window = smooth[max(row - r, 0) : row + r + 1, max(col - r, 0) : col + r + 1]
    tolerance = float(np.clip(POINT_TOL_STDS * window.std(), *POINT_TOL_BOUNDS))
    region = None
    for _ in range(5):
        grown = flood(smooth, (row, col), tolerance=tolerance)
        if grown.sum() <= max_area:
            region = grown
            break
        tolerance /= 2
    if region is None or region.sum() < disc.sum() / 4:
        return disc

    outside = ndi.binary_dilation(region, iterations=r + 1)
    shell = outside & ~ndi.binary_dilation(region, iterations=1)
    if shell.any():
        inside_level = float(np.median(smooth[region]))
        outside_level = float(np.median(smooth[shell]))
        if abs(inside_level - outside_level) > tolerance:
            closer = np.abs(smooth - inside_level) < np.abs(smooth - outside_level)
            labels, _ = ndi.label(closer)
            refined = labels == labels[row, col] if closer[row, col] else None
            if refined is not None and refined.sum() <= max_area:
                region = refined
    return ndi.binary_fill_holes(region)


def points_to_mask(
    grey: np.ndarray, points: Sequence[tuple[int, int]], labels: Sequence[int]
) -> np.ndarray:
    """Classical clicks -> mask: grow from positive clicks, remove what negative clicks grow.

    Each click grows a region (:func:`grow_from_point`, on the frame smoothed
    by a Gaussian of sigma 1). The mask is the union of the positive regions
    minus the union of the negative regions.

    Parameters
    ----------
    grey : ndarray, shape (H, W)
        Normalised grey frame.
    points : sequence of (x, y)
        Clicks in pixels (column, row).
    labels : sequence of int
        1 positive, 0 negative; one per point.
    """
    if len(points) != len(labels):
        raise ValueError(f"points_to_mask: {len(points)} points but {len(labels)} labels")
    shape = grey.shape
    smooth = ndi.gaussian_filter(grey.astype(np.float32), 1.0)
    positive = np.zeros(shape, dtype=bool)
    negative = np.zeros(shape, dtype=bool)
    for (x, y), label in zip(points, labels, strict=True):
        col, row = int(round(x)), int(round(y))
        if not (0 <= row < shape[0] and 0 <= col < shape[1]):
            raise ValueError(f"point ({x}, {y}) is outside the {shape[1]}x{shape[0]} frame")
        if label not in (0, 1):
            raise ValueError(f"point ({x}, {y}): label must be 0 or 1, got {label!r}")
        region = grow_from_point(smooth, row, col)
        if label == 1:
            positive |= region
        else:
            negative |= region
    return positive & ~negative
