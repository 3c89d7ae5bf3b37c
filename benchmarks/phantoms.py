"""Synthetic BTCV-like volumes shared by the surface-metric benchmarks
(``hd95_speed.py``, ``nsd_speed.py``): organ-sized ellipsoids, and a 13-label map
with a perturbed copy. Imported as a sibling module (the scripts run from
``benchmarks/``)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

# BTCV's 13 organs: name, semi-axes in mm (row, col, slice), centre as a fraction of the
# field of view. Sizes are rough adult values; the point is a realistic spread from the
# liver down to the adrenal glands.
ORGANS: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("spleen", (55, 35, 50), (0.45, 0.75, 0.55)),
    ("right kidney", (30, 25, 50), (0.62, 0.32, 0.40)),
    ("left kidney", (30, 25, 50), (0.62, 0.68, 0.42)),
    ("gallbladder", (18, 15, 35), (0.42, 0.33, 0.45)),
    ("esophagus", (8, 8, 45), (0.58, 0.52, 0.80)),
    ("liver", (95, 80, 75), (0.40, 0.30, 0.62)),
    ("stomach", (55, 40, 45), (0.35, 0.66, 0.65)),
    ("aorta", (12, 12, 110), (0.60, 0.55, 0.50)),
    ("inferior vena cava", (12, 10, 95), (0.58, 0.44, 0.48)),
    ("portal/splenic veins", (30, 8, 12), (0.45, 0.50, 0.55)),
    ("pancreas", (18, 60, 14), (0.50, 0.55, 0.45)),
    ("right adrenal", (12, 6, 20), (0.56, 0.38, 0.62)),
    ("left adrenal", (12, 6, 20), (0.56, 0.62, 0.62)),
)


def ellipsoid(shape: tuple[int, ...], spacing: tuple[float, ...],
              centre_vox: tuple[float, ...], semi_axes_mm: tuple[float, ...],
              rng: np.random.Generator | None = None, wobble: float = 0.0) -> np.ndarray:
    """Boolean ellipsoid; with ``rng`` its boundary is moved by smooth noise.

    Built on the ellipsoid's own bounding box (plus room for the wobble) so
    the full-volume work is only the final paste.
    """
    half = [a / s * (1.0 + wobble) + 2 for a, s in zip(semi_axes_mm, spacing, strict=True)]
    lo = [max(int(c - h), 0) for c, h in zip(centre_vox, half, strict=True)]
    hi = [min(int(c + h) + 1, n) for c, h, n in zip(centre_vox, half, shape, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    grids = np.ogrid[box]
    r2 = sum(((g - c) * s / a) ** 2
             for g, c, s, a in zip(grids, centre_vox, spacing, semi_axes_mm, strict=True))
    if rng is not None and wobble > 0:
        noise = ndi.gaussian_filter(rng.standard_normal(r2.shape), sigma=4.0)
        r2 = r2 + wobble * noise / noise.std()
    out = np.zeros(shape, bool)
    out[box] = r2 <= 1.0
    return out


def organ_maps(shape: tuple[int, ...], spacing: tuple[float, ...],
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(pred_map, ref_map)``: the 13-label reference and a perturbed copy (each organ
    moved by up to 2 mm per axis, rescaled by 0.9-1.1, its boundary wobbled)."""
    ref_map = np.zeros(shape, np.uint8)
    pred_map = np.zeros(shape, np.uint8)
    # Paint the largest organs first so that small ones are not overwritten.
    order = sorted(range(len(ORGANS)), key=lambda i: -float(np.prod(ORGANS[i][1])))
    for index in order:
        label, (_, axes, frac) = index + 1, ORGANS[index]
        centre = tuple(f * n for f, n in zip(frac, shape, strict=True))
        ref_map[ellipsoid(shape, spacing, centre, axes)] = label
        jitter = tuple(rng.uniform(-2.0, 2.0) / s for s in spacing)
        scaled = tuple(a * rng.uniform(0.9, 1.1) for a in axes)
        moved = tuple(c + j for c, j in zip(centre, jitter, strict=True))
        pred_map[ellipsoid(shape, spacing, moved, scaled, rng, wobble=0.15)] = label
    return pred_map, ref_map
