"""Fundus photographs (REFUGE-like): optic disc and cup, vessels, macula."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

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


def fundus_patient(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """One synthetic eye: disc placement, cup-to-disc ratio, colours, vessels."""
    side = float(rng.choice([-1.0, 1.0]))  # disc right (+1) or left (-1) of centre
    return {
        "side": side,
        "disc_dx": side * rng.uniform(0.03, 0.10),
        "disc_dy": rng.uniform(-0.05, 0.05),
        "disc_radius": rng.uniform(0.085, 0.11),
        "disc_aspect": rng.uniform(1.0, 1.15),  # discs are slightly taller than wide
        "cup_ratio": rng.uniform(0.35, 0.65),
        "background": np.array([rng.uniform(185, 225), rng.uniform(60, 95),
                                rng.uniform(20, 40)]),
        "vessel_seed": int(rng.integers(2**31)),
    }


def fundus_image(patient: dict[str, Any], rng: np.random.Generator,
                 shape: tuple[int, int]) -> tuple[np.ndarray, Masks]:
    """Render one fundus photograph; masks ``disc`` (includes the cup) and ``cup``."""
    h, w = shape
    s = min(h, w)
    yy, xx = pixel_grid(shape)
    side = patient["side"]
    # Each acquisition frames the eye a little differently.
    cx = w / 2 + (patient["disc_dx"] + rng.uniform(-0.04, 0.04)) * s
    cy = h / 2 + (patient["disc_dy"] + rng.uniform(-0.04, 0.04)) * s
    rd = patient["disc_radius"] * s * rng.uniform(0.9, 1.1)
    disc_d = star_distance(yy, xx, cy, cx, rd * patient["disc_aspect"], rd,
                            rng.uniform(-0.3, 0.3), random_harmonics(rng, range(2, 5), 0.05))
    cup_r = rd * np.clip(patient["cup_ratio"] + rng.uniform(-0.05, 0.05), 0.25, 0.75)
    # The cup sits slightly temporal (towards the fovea) inside the disc.
    ccx = cx - side * rng.uniform(0.0, 0.15) * rd
    ccy = cy + rng.uniform(-0.1, 0.1) * rd
    cup_d = star_distance(yy, xx, ccy, ccx, cup_r * rng.uniform(1.0, 1.2), cup_r,
                           rng.uniform(-0.5, 0.5), random_harmonics(rng, range(2, 5), 0.08))
    disc = disc_d < 0
    cup = (cup_d < 0) & ndi.binary_erosion(disc, iterations=2)

    fov_r = 0.47 * s
    r_fov = np.hypot(yy - h / 2, xx - w / 2) / fov_r
    background = patient["background"] * rng.uniform(0.9, 1.1)
    texture = 1 + 0.04 * smooth_noise(rng, shape, s / 60)
    image = background * texture[..., None] * np.ones((h, w, 3))
    # Macula: a darker spot about two disc diameters temporal to the disc.
    fovea_d = np.hypot(yy - cy, xx - (cx - side * 4.5 * rd))
    image *= 1 - 0.35 * np.exp(-((fovea_d / (1.2 * rd)) ** 2))[..., None]
    disc_gain = rng.uniform(0.75, 1.0)
    disc_colour = np.array([245.0, 175.0, 95.0])
    image = blend(image, disc_colour, disc_gain * soft_alpha(disc_d, 1.0))
    image = blend(image, np.array([252.0, 235.0, 195.0]), disc_gain * soft_alpha(cup_d, 2.0))

    vessels = _fundus_vessels(np.random.default_rng(patient["vessel_seed"]), rng, shape,
                              (cy, cx), rd, side, s)
    # Vessels fade over the bright disc, where they run in front of the nerve head.
    vessels *= 1 - 0.4 * soft_alpha(disc_d, 1.0)
    image *= 1 - vessels[..., None] * np.array([0.35, 0.55, 0.45])

    tilt = rng.uniform(0, 2 * np.pi)
    illumination = 1 + 0.12 * ((xx - w / 2) * np.cos(tilt) + (yy - h / 2) * np.sin(tilt)) / s
    vignette = np.clip(1 - 0.55 * r_fov**2.5, 0, 1) * illumination
    image *= vignette[..., None]
    image *= soft_alpha((r_fov - 1) * fov_r, 0.8)[..., None]
    image += rng.normal(0, 3.0, image.shape)
    return to_uint8(image), {"disc": disc, "cup": cup}


def _fundus_vessels(layout: np.random.Generator, rng: np.random.Generator,
                    shape: tuple[int, int], centre: tuple[float, float], rd: float,
                    side: float, s: float) -> np.ndarray:
    """Vessel coverage: four arcades plus small vessels leaving the disc.

    ``layout`` (the patient's stream) fixes the vessel tree; ``rng`` adds a
    small per-image wiggle so two photographs of one eye are not identical.
    """
    curves = []
    turn = (np.pi / 2) / (0.4 * s)
    main = [  # (start angle, curvature): superior/inferior temporal, then nasal
        (-np.pi / 2 - side * 0.45, -side * turn),
        (np.pi / 2 + side * 0.45, side * turn),
        (-np.pi / 2 + side * 0.7, side * 0.3 * turn),
        (np.pi / 2 - side * 0.7, -side * 0.3 * turn),
    ]
    n_small = int(layout.integers(2, 5))
    main += [(layout.uniform(-np.pi, np.pi), layout.normal(0, 0.3 * turn))
             for _ in range(n_small)]
    for k, (angle, curvature) in enumerate(main):
        width0 = (0.018 if k < 4 else 0.01) * s
        length = (layout.uniform(0.55, 0.75) if k < 4 else layout.uniform(0.2, 0.4)) * s
        angle += rng.normal(0, 0.05)
        start = (centre[0] + 0.2 * rd * np.sin(angle), centre[1] + 0.2 * rd * np.cos(angle))
        points = random_walk(layout, start, angle, length, curvature, wiggle=0.03)
        widths = np.linspace(width0, 0.35 * width0, len(points))
        curves.append((points, widths))
        for _ in range(int(layout.integers(1, 3)) if k < 4 else 0):
            at = int(layout.integers(len(points) // 4, 3 * len(points) // 4))
            heading = np.arctan2(*(points[at] - points[at - 1]))
            branch = random_walk(layout, tuple(points[at]), heading + layout.choice([-1, 1]) * 0.6,
                           layout.uniform(0.15, 0.3) * s, 0.0, wiggle=0.04)
            curves.append((branch, np.linspace(0.6, 0.25, len(branch)) * widths[at]))
    return render_curves(shape, curves)


__all__ = ["fundus_image", "fundus_patient"]
