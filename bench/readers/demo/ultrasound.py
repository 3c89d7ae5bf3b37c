"""B-mode ultrasound (TDSC-ABUS / TNMIX-like): one hypoechoic nodule in a probe sector."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from bench.readers.demo.draw import (
    Masks,
    pixel_grid,
    random_harmonics,
    smooth_noise,
    soft_alpha,
    star_distance,
    to_uint8,
)


def ultrasound_patient(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """One synthetic nodule and tissue: size, outline, echogenicity."""
    return {
        "radius": rng.uniform(0.1, 0.16),
        "aspect": rng.uniform(0.6, 1.1),  # height / width: mostly wider than tall
        "harmonics": random_harmonics(rng, range(2, 6), 0.08),
        "inside": rng.uniform(0.12, 0.25),
        "rim": rng.uniform(0.8, 1.1),
        "fat_depth": rng.uniform(0.12, 0.2),
        "muscle_depth": rng.uniform(0.8, 0.9),
    }


def ultrasound_image(patient: dict[str, Any], rng: np.random.Generator,
                     shape: tuple[int, int]) -> tuple[np.ndarray, Masks]:
    """Render one B-mode image (grey uint8); mask ``nodule``."""
    h, w = shape
    s = min(h, w)
    yy, xx = pixel_grid(shape)
    # Curvilinear probe: a sector of an annulus centred above the image.
    apex_y, r0, r1, half_angle = -0.3 * s, 0.33 * s, 1.28 * s, np.deg2rad(34)
    radial = np.hypot(yy - apex_y, xx - w / 2)
    beam = np.arctan2(xx - w / 2, yy - apex_y)
    sector = (radial >= r0) & (radial <= r1) & (np.abs(beam) <= half_angle)
    depth = (radial - r0) / (r1 - r0)  # 0 at the probe, 1 at the bottom

    # Tissue layers with wavy boundaries: skin, fat, gland, muscle.
    wave = 0.02 * smooth_noise(rng, (1, w), s / 8)[0]
    fat_end = patient["fat_depth"] + wave
    muscle_start = patient["muscle_depth"] + wave
    echo = np.where(depth < 0.03, 1.2, np.where(depth < fat_end, 0.22,
                                                 np.where(depth < muscle_start, 0.7, 0.45)))
    echo = echo * (1 + 0.12 * smooth_noise(rng, shape, s / 20))
    echo *= 1 + 0.2 * np.sin(2 * np.pi * depth * 25) * (depth >= muscle_start)  # muscle fibres

    cx = w / 2 + rng.uniform(-0.12, 0.12) * s
    cy = rng.uniform(0.42, 0.55) * s
    r = patient["radius"] * s * rng.uniform(0.85, 1.15)
    dist = star_distance(yy, xx, cy, cx, r * patient["aspect"], r, rng.uniform(-0.3, 0.3),
                          patient["harmonics"])
    nodule = (dist < 0) & sector
    inside = soft_alpha(dist, 0.8)
    rim = np.exp(-((dist / rng.uniform(1.0, 1.6)) ** 2))  # a thin capsule on the border
    # Posterior acoustic enhancement: a brighter column below the nodule.
    column = np.exp(-(((xx - cx) / r) ** 4)) * np.clip((yy - cy) / r, 0, 3) / 3
    echo = echo * (1 + 0.35 * column * (dist >= 0))
    interior = patient["inside"] * (1 + 0.3 * smooth_noise(rng, shape, 2))
    echo = echo * (1 - inside) + interior * inside
    echo = echo + patient["rim"] * rim
    echo *= np.exp(-1.0 * depth)  # attenuation not fully compensated by the gain

    # Rayleigh speckle: magnitude of correlated complex Gaussian noise.
    re = ndi.gaussian_filter(rng.standard_normal(shape), (0.8, 1.6))
    im = ndi.gaussian_filter(rng.standard_normal(shape), (0.8, 1.6))
    speckle = np.hypot(re, im)
    speckle /= speckle.mean()
    envelope = np.clip(echo, 0, None) * speckle
    # Log compression to display grey levels.
    grey = np.log1p(3 * envelope) / np.log1p(3 * 2.5) * 235 * rng.uniform(0.85, 1.05)
    grey = np.where(sector, grey, 0.0)
    return to_uint8(grey), {"nodule": nodule}


__all__ = ["ultrasound_image", "ultrasound_patient"]
