"""Dermoscopic images (ISIC-like): one pigmented lesion on skin, with hairs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.readers.demo.draw import (
    Masks,
    blend,
    pixel_grid,
    random_harmonics,
    random_walk,
    render_curves,
    smooth_noise,
    soft_alpha,
    star_distance,
    to_uint8,
)


def dermoscopy_patient(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """One synthetic lesion and skin: tones and outline, fixed across its images."""
    return {
        "skin": np.array([rng.uniform(200, 235), rng.uniform(150, 190), rng.uniform(130, 165)]),
        "lesion": rng.uniform(100, 180) * np.array([1.0, rng.uniform(0.6, 0.7),
                                                    rng.uniform(0.4, 0.5)]),
        "radius": rng.uniform(0.22, 0.32),
        "aspect": rng.uniform(0.75, 1.0),
        # Orders 3-7 with these amplitudes dent the outline: non-convex borders.
        "harmonics": random_harmonics(rng, range(2, 8), 0.28, decay=0.8),
        "dark_centre": rng.uniform(0.15, 0.4),
    }


def dermoscopy_image(patient: dict[str, Any], rng: np.random.Generator,
                     shape: tuple[int, int]) -> tuple[np.ndarray, Masks]:
    """Render one dermoscopic image; mask ``lesion``."""
    h, w = shape
    s = min(h, w)
    yy, xx = pixel_grid(shape)
    cy = h / 2 + rng.uniform(-0.08, 0.08) * s
    cx = w / 2 + rng.uniform(-0.08, 0.08) * s
    r = patient["radius"] * s * rng.uniform(0.85, 1.15)
    rotation = rng.uniform(-0.4, 0.4)
    harmonics = [(k, a, ph + k * rotation) for k, a, ph in patient["harmonics"]]
    dist = star_distance(yy, xx, cy, cx, r * patient["aspect"], r, rotation, harmonics)
    lesion = dist < 0

    skin = patient["skin"] * rng.uniform(0.92, 1.05)
    image = skin * (1 + 0.025 * smooth_noise(rng, shape, s / 30))[..., None] * np.ones((h, w, 3))
    image *= (1 + 0.03 * smooth_noise(rng, shape, 1.0))[..., None]  # pores, fine texture
    # Pigment: darker towards the centre, blotchy network and dark globules.
    rho = np.clip(1 + dist / np.maximum(np.hypot(yy - cy, xx - cx) - dist, 1), 0, 1)
    shade = 1 - patient["dark_centre"] * (1 - rho)
    network = 1 - 0.18 * np.clip(smooth_noise(rng, shape, 1.5), 0, None)
    blotches = 1 + 0.15 * smooth_noise(rng, shape, s / 20)
    colour = patient["lesion"] * (shade * network * blotches)[..., None]
    # The border is sharp on one side and fades into the skin on the other.
    fade = np.clip(np.cos(np.arctan2(yy - cy, xx - cx) - rng.uniform(-np.pi, np.pi)), 0, None)
    edge = rng.uniform(1.0, 2.0) * (1 + rng.uniform(1.0, 3.0) * fade)
    image = blend(image, colour, rng.uniform(0.7, 1.0) * soft_alpha(dist, edge))

    hairs = []
    for _ in range(int(rng.integers(0, 7))):
        start = (rng.uniform(0, h), rng.uniform(0, w))
        points = random_walk(rng, start, rng.uniform(-np.pi, np.pi), rng.uniform(0.4, 1.0) * s,
                       rng.normal(0, 0.004), wiggle=0.02)
        hairs.append((points, np.full(len(points), rng.uniform(1.0, 2.0))))
    image = blend(image, np.array([45.0, 32.0, 25.0]), 0.9 * render_curves(shape, hairs))
    if rng.random() < 0.5:  # dark corners of a round dermatoscope lens
        r_lens = np.hypot(yy - h / 2, xx - w / 2) / (0.5 * math.hypot(h, w))
        image *= soft_alpha((r_lens - rng.uniform(0.85, 0.95)) * s, 3.0)[..., None]
    image += rng.normal(0, 2.5, image.shape)
    return to_uint8(image), {"lesion": lesion}


__all__ = ["dermoscopy_image", "dermoscopy_patient"]
