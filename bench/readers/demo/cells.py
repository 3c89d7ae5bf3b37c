"""Blood smear crops (WBC-like): a white blood cell, its cytoplasm ring and nucleus."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from bench.readers.demo.draw import (
    Masks,
    blend,
    pixel_grid,
    random_harmonics,
    smooth_noise,
    soft_alpha,
    star_distance,
    to_uint8,
)


def cells_patient(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """One smear: stain colours and cell type shared by its images."""
    return {
        "background": np.array([rng.uniform(240, 252), rng.uniform(225, 245),
                                rng.uniform(160, 215)]),
        "cytoplasm": np.array([rng.uniform(190, 225), rng.uniform(150, 185),
                               rng.uniform(130, 200)]),
        "nucleus": np.array([rng.uniform(80, 140), rng.uniform(25, 70), rng.uniform(90, 130)]),
        "lobes": int(rng.integers(1, 5)),  # 1: mononuclear; 2-4: segmented neutrophil
    }


def cells_image(patient: dict[str, Any], rng: np.random.Generator,
                shape: tuple[int, int]) -> tuple[np.ndarray, Masks]:
    """Render one smear crop; masks ``cytoplasm`` (cell minus nucleus) and ``nucleus``."""
    h, w = shape
    s = min(h, w)
    yy, xx = pixel_grid(shape)
    image = patient["background"] * (1 + 0.02 * smooth_noise(rng, shape, s / 15))[..., None]
    image = image * np.ones((h, w, 3))

    cy = h / 2 + rng.uniform(-0.06, 0.06) * s
    cx = w / 2 + rng.uniform(-0.06, 0.06) * s
    rc = rng.uniform(0.25, 0.34) * s
    cell_d = star_distance(yy, xx, cy, cx, rc * rng.uniform(0.9, 1.05), rc, rng.uniform(0, np.pi),
                            random_harmonics(rng, range(2, 6), 0.04))

    # Red cells: pale discs with a paler centre, placed around the white cell.
    for _ in range(int(rng.integers(3, 8))):
        for _attempt in range(10):
            ry, rx = rng.uniform(-0.2, 1.2) * h, rng.uniform(-0.2, 1.2) * w
            if math.hypot(ry - cy, rx - cx) > rc + 0.08 * s:
                break
        rr = rng.uniform(0.13, 0.17) * s
        d = star_distance(yy, xx, ry, rx, rr, rr * rng.uniform(0.85, 1.0), rng.uniform(0, np.pi))
        red = np.array([235.0, 170.0, 165.0]) * rng.uniform(0.95, 1.02)
        pale = 1 - 0.7 * np.exp(-((np.hypot(yy - ry, xx - rx) / (0.45 * rr)) ** 2))
        image = blend(image, red, 0.6 * soft_alpha(d, 1.0) * pale)

    nucleus_d = _nucleus_distance(rng, yy, xx, cy, cx, rc, patient["lobes"])
    cell = cell_d < 0
    nucleus = (nucleus_d < 0) & ndi.binary_erosion(cell, iterations=3)
    granules = 1 + 0.05 * smooth_noise(rng, shape, 1.0)
    image = blend(image, patient["cytoplasm"] * granules[..., None], 0.95 * soft_alpha(cell_d, 1.0))
    chromatin = 1 + 0.15 * smooth_noise(rng, shape, 1.5)
    nucleus_alpha = soft_alpha(np.maximum(nucleus_d, cell_d + 3), 1.0)
    image = blend(image, patient["nucleus"] * chromatin[..., None], 0.95 * nucleus_alpha)
    image += rng.normal(0, 3.0, image.shape)
    return to_uint8(image), {"cytoplasm": cell & ~nucleus, "nucleus": nucleus}


def _nucleus_distance(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cy: float,
                      cx: float, rc: float, lobes: int) -> np.ndarray:
    """Signed distance of a nucleus: one kidney-like blob or lobes on an arc."""
    if lobes == 1:
        r = rc * rng.uniform(0.55, 0.7)
        return star_distance(yy, xx, cy + rng.uniform(-0.1, 0.1) * rc,
                              cx + rng.uniform(-0.1, 0.1) * rc, r * rng.uniform(0.75, 0.95), r,
                              rng.uniform(0, np.pi), random_harmonics(rng, range(2, 4), 0.12))
    # Segmented nucleus: lobes along an arc, joined by thin strands.
    start = rng.uniform(0, 2 * np.pi)
    span = rng.uniform(0.9, 1.4) * np.pi * (lobes - 1) / 3
    arc_r = rc * rng.uniform(0.35, 0.5)
    angles = start + np.linspace(0, span, lobes)
    centres = [(cy + arc_r * np.sin(a), cx + arc_r * np.cos(a)) for a in angles]
    lobe_r = rc * rng.uniform(0.32, 0.42)
    dist = np.full(yy.shape, np.inf)
    for (ly, lx), a in zip(centres, angles, strict=True):
        d = star_distance(yy, xx, ly, lx, lobe_r * rng.uniform(0.65, 0.85), lobe_r, a,
                           random_harmonics(rng, range(2, 4), 0.08))
        dist = np.minimum(dist, d)
    for (ay, ax), (by, bx) in zip(centres[:-1], centres[1:], strict=True):
        # Distance to the segment between neighbouring lobe centres, minus its half-width.
        vy, vx = by - ay, bx - ax
        t = np.clip(((yy - ay) * vy + (xx - ax) * vx) / (vy * vy + vx * vx), 0, 1)
        seg = np.hypot(yy - (ay + t * vy), xx - (ax + t * vx)) - 0.07 * rc
        dist = np.minimum(dist, seg)
    return dist


__all__ = ["cells_image", "cells_patient"]
