"""Abdominal CT volumes (BTCV-like): body, spine, bowel and five labelled organs, in HU."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from bench.readers.demo.draw import (
    Masks,
    random_harmonics,
    smooth_noise,
    star_distance,
)

# Hounsfield units of the rendered tissues (portal-venous contrast phase).
_HU = {"air": -1000.0, "fat": -100.0, "mesentery": -90.0, "muscle": 50.0, "bowel": 25.0,
       "liver": 110.0, "spleen": 120.0, "kidney": 170.0, "medulla": 120.0, "aorta": 200.0,
       "ivc": 140.0, "bone": 450.0, "cortex": 800.0, "canal": 20.0, "gas": -900.0}

_CT_LABELS = {"liver": 1, "spleen": 2, "kidney_left": 3, "kidney_right": 4, "aorta": 5}

# An organ: distance(z, yy, xx) in mm (negative inside) for one slice at height
# z, or None where the organ does not reach that slice.
SliceDistance = Callable[[float, np.ndarray, np.ndarray], "np.ndarray | None"]


def ct_volume(rng: np.random.Generator, slices: int, size: int,
              spacing: tuple[float, float, float]) -> tuple[np.ndarray, Masks]:
    """Render one abdominal CT volume in HU.

    Parameters
    ----------
    rng : numpy.random.Generator
        The volume's random stream.
    slices, size : int
        Volume shape ``(slices, size, size)``.
    spacing : (float, float, float)
        ``(slice, row, col)`` spacing in mm. Anatomy is defined in mm around
        the volume centre, so a thicker slab shows more of it and the organs
        keep their physical size whatever the grid.

    Returns
    -------
    volume : ndarray of float32, shape (slices, size, size)
        Slice 0 is the most inferior; rows run anterior to posterior, columns
        from the patient's right to left (radiological view).
    masks : dict of str to ndarray of bool
        ``liver``, ``spleen``, ``kidney_left``, ``kidney_right``, ``aorta``;
        mutually exclusive, as in a label map.
    """
    dz, dy, dx = spacing
    z = (np.arange(slices) - (slices - 1) / 2) * dz  # mm, increasing towards the head
    y = (np.arange(size) - (size - 1) / 2) * dy  # mm, increasing posteriorly
    x = (np.arange(size) - (size - 1) / 2) * dx  # mm, increasing to the patient's left
    yy, xx = np.meshgrid(y, x, indexing="ij")
    scale = rng.uniform(0.9, 1.1)  # body habitus
    shift_z = rng.uniform(-35, -5)  # where the slab sits along the body

    # Slice-independent anatomy: body outline, fat, muscle wall, spine.
    base = np.full(yy.shape, _HU["air"])
    body = star_distance(yy, xx, 5.0, 0.0, 120 * scale, 165 * scale, 0.0,
                          [(2, 0.03, 0.0), (3, 0.02, rng.uniform(0, 2 * np.pi))]) < 0
    base[body] = _HU["fat"]
    wall_d = star_distance(yy, xx, 5.0, 0.0, 120 * scale - 20, 165 * scale - 22, 0.0,
                            [(2, 0.03, 0.0)])
    base[(wall_d < 0) & (wall_d > -10)] = _HU["muscle"]
    cavity = wall_d <= -10
    # Spine and back muscles: painted over the mesentery, never covered by an organ.
    spine = np.full(yy.shape, np.nan)
    for side in (-1, 1):
        spine[(star_distance(yy, xx, 80 * scale, side * 35.0, 25.0, 22.0) < 0) & body] = (
            _HU["muscle"])
    vert_y = 55 * scale
    vert_d = np.hypot(yy - vert_y, xx)
    spine[vert_d < 20] = _HU["cortex"]
    spine[vert_d < 17] = _HU["bone"]
    spine[np.hypot(yy - vert_y - 25, xx) < 9] = _HU["canal"]
    spine[(np.abs(xx) < 6) & (yy > vert_y + 32) & (yy < vert_y + 45)] = _HU["cortex"]
    posterior = ~np.isnan(spine) | (vert_d < 22) | ((yy > vert_y) & (np.abs(xx) < 25))
    free = cavity & ~posterior

    # Mesentery (a smooth mix of fat and soft tissue) and gas-filled bowel loops.
    mix = smooth_noise(rng, (slices, size, size), (10 / dz, 7.5 / dy, 7.5 / dx))
    loops = [(rng.uniform(z[0], z[-1]), rng.uniform(-80, -20) * scale,
              rng.uniform(-90, 90) * scale) for _ in range(int(rng.integers(5, 9)))]
    organs = _ct_organs(rng, scale, shift_z)
    medulla_px = max(1, round(8 / min(dy, dx)))

    hu = np.empty((slices, size, size))
    labels = np.zeros((slices, size, size), dtype=np.uint8)
    for k, zk in enumerate(z):
        sl, lab = base.copy(), labels[k]
        sl[cavity] = np.where(mix[k][cavity] > -0.2, _HU["bowel"], _HU["mesentery"])
        for bz, by, bx in loops:
            d = np.sqrt(((zk - bz) / 40) ** 2 + ((yy - by) / 14) ** 2 + ((xx - bx) / 14) ** 2)
            sl[(d < 1) & cavity] = _HU["bowel"]
            sl[(d < 0.6) & cavity] = _HU["gas"]
        sl = np.where(np.isnan(spine), sl, spine)
        for name, (distance, value) in organs.items():
            d = distance(zk, yy, xx)
            if d is None:
                continue
            region = (d < 0) & free
            lab[region] = _CT_LABELS.get(name, 0)
            sl[region] = value
        kidneys = (lab == _CT_LABELS["kidney_left"]) | (lab == _CT_LABELS["kidney_right"])
        sl[ndi.binary_erosion(kidneys, iterations=medulla_px)] = _HU["medulla"]
        hu[k] = sl

    # Parenchymal texture, scanner blur and noise.
    hu += 8 * smooth_noise(rng, hu.shape, (0.5, 1.5, 1.5)) * body
    hu = ndi.gaussian_filter(hu, (0.3, 0.7, 0.7))
    hu += rng.normal(0, 12.0, hu.shape)
    volume = np.clip(hu, -1024, 3071).astype(np.float32)
    masks = {name: labels == value for name, value in _CT_LABELS.items()}
    return volume, masks


def _ct_organs(rng: np.random.Generator, scale: float,
               shift_z: float) -> dict[str, tuple[SliceDistance, float]]:
    """Organ distance functions (mm, negative inside) and HU, in painting order.

    Later entries overwrite earlier ones where they overlap, so labels stay
    mutually exclusive. All random draws happen here, before any slice is
    drawn, so the anatomy does not depend on the number of slices.
    """

    def solid(cy: float, cx: float, ry: float, rx: float, zc: float, hz: float,
              angle: float = 0.0, tilt: tuple[float, float] = (0.0, 0.0),
              wobble: float = 0.06) -> SliceDistance:
        """An ellipsoid-like organ: wavy elliptic slices shrinking towards its ends."""
        harm = random_harmonics(rng, range(2, 5), wobble)
        drift = [rng.uniform(-0.01, 0.01) for _ in harm]  # outline phase change per mm
        cy, cx = cy * scale + rng.uniform(-5, 5), cx * scale + rng.uniform(-5, 5)
        ry, rx = ry * scale, rx * scale
        zc = zc + shift_z + rng.uniform(-8, 8)
        hz = hz * rng.uniform(0.9, 1.1)

        def distance(z: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray | None:
            reach = 1 - ((z - zc) / hz) ** 2
            if reach <= 0.02:
                return None
            profile = reach ** 0.35
            wave = [(k, a, ph + dr * z) for (k, a, ph), dr in zip(harm, drift, strict=True)]
            return star_distance(yy, xx, cy + tilt[0] * (z - zc), cx + tilt[1] * (z - zc),
                                  ry * profile, rx * profile, angle, wave)

        return distance

    def union(*parts: SliceDistance) -> SliceDistance:
        def distance(z: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray | None:
            found = [d for d in (p(z, yy, xx) for p in parts) if d is not None]
            return np.minimum.reduce(found) if found else None

        return distance

    def minus(keep: SliceDistance, cut: SliceDistance) -> SliceDistance:
        def distance(z: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray | None:
            d, c = keep(z, yy, xx), cut(z, yy, xx)
            return d if d is None or c is None else np.maximum(d, -c)

        return distance

    liver = union(
        solid(-5, -65, 70, 62, zc=70, hz=90, tilt=(0.0, 0.1)),  # right lobe, upper abdomen
        solid(-45, 5, 30, 55, zc=95, hz=50, angle=0.2),  # left lobe, crossing the midline
    )
    # The spleen's and kidneys' medial sides are cut by a second solid: a
    # concave visceral surface and the renal hilum.
    spleen = minus(solid(40, 85, 55, 26, zc=55, hz=50, angle=-0.8),
                   solid(40, 55, 40, 22, zc=55, hz=80, angle=-0.8, wobble=0.0))
    kidney_left = minus(solid(45, 70, 26, 32, zc=10, hz=55, angle=0.5),
                        solid(35, 45, 12, 10, zc=10, hz=35, wobble=0.0))
    kidney_right = minus(solid(45, -70, 26, 32, zc=-5, hz=55, angle=-0.5),
                         solid(35, -45, 12, 10, zc=-5, hz=35, wobble=0.0))
    aorta_end = -55 + shift_z + rng.uniform(-10, 10)  # bifurcation into the iliac arteries
    aorta_x = 14 * scale + rng.uniform(-4, 4)

    def aorta(z: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray | None:
        if z <= aorta_end:
            return None
        return np.hypot(yy - (25 * scale + 0.05 * z), xx - aorta_x) - 11

    def iliacs(z: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray | None:
        if z > aorta_end:
            return None
        spread = (aorta_end - z) * 0.5
        left = np.hypot(yy - 25 * scale, xx - aorta_x - 8 - spread) - 7
        right = np.hypot(yy - 25 * scale, xx - aorta_x + 8 + spread) - 7
        return np.minimum(left, right)

    def ivc(z: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return np.hypot((yy - 20 * scale) / 9, (xx + 25 * scale) / 13) * 10 - 10

    return {
        "ivc": (ivc, _HU["ivc"]),
        "iliacs": (iliacs, _HU["aorta"]),
        "liver": (liver, _HU["liver"]),
        "spleen": (spleen, _HU["spleen"]),
        "kidney_left": (kidney_left, _HU["kidney"]),
        "kidney_right": (kidney_right, _HU["kidney"]),
        "aorta": (aorta, _HU["aorta"]),
    }


__all__ = ["ct_volume"]
