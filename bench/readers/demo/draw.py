"""Drawing helpers shared by the demo generators.

Every random number comes from a stream made by :func:`keyed_rng`, keyed by
the generator's name and non-negative integers, so that a frame never
depends on the iteration order or on other frames. Shapes are drawn from
signed distances (:func:`star_distance`, negative inside) turned into soft
opacities (:func:`soft_alpha`) and blended (:func:`blend`).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from scipy import ndimage as ndi

Masks = dict[str, np.ndarray]


def keyed_rng(generator: str, *key: int) -> np.random.Generator:
    """A random stream keyed by the generator's name and non-negative integers."""
    return np.random.default_rng(np.random.SeedSequence([zlib.crc32(generator.encode()), *key]))


def pixel_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return yy.astype(np.float64), xx.astype(np.float64)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    noise = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return noise / max(float(noise.std()), 1e-12)


def random_harmonics(rng: np.random.Generator, orders: range, strength: float,
               decay: float = 1.0) -> list[tuple[int, float, float]]:
    """Random Fourier terms ``(order, amplitude, phase)`` for a wavy outline."""
    return [(k, strength * rng.uniform(0.3, 1.0) / k**decay, rng.uniform(0, 2 * np.pi))
            for k in orders]


def star_distance(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
                   angle: float = 0.0, harmonics: list[tuple[int, float, float]] | None = None,
                   ) -> np.ndarray:
    """Radial distance to the outline of a star-shaped region (negative inside).

    The outline is an ellipse with semi-axes ``(ry, rx)`` rotated by ``angle``
    (radians), its radius modulated by ``1 + sum(a cos(k t + phase))``. The
    value is ``rho - R(t)``, the distance along the ray from the centre, in the
    units of the grid; the region is ``distance < 0``.
    """
    dy, dx = yy - cy, xx - cx
    rho = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    local = theta - angle
    radius = 1.0 / np.sqrt((np.cos(local) / rx) ** 2 + (np.sin(local) / ry) ** 2)
    if harmonics:
        radius = radius * (1 + sum(a * np.cos(k * theta + ph) for k, a, ph in harmonics))
    return rho - radius


def soft_alpha(distance: np.ndarray, width: float | np.ndarray) -> np.ndarray:
    """Opacity in [0, 1] from a signed distance: 0.5 on the outline, ``width`` px ramp."""
    return 1.0 / (1.0 + np.exp(np.clip(distance / np.maximum(width, 1e-3), -50, 50)))


def random_walk(rng: np.random.Generator, start: tuple[float, float], angle: float, length: float,
          curvature: float = 0.0, wiggle: float = 0.02, step: float = 0.5) -> np.ndarray:
    """Points ``(y, x)`` of a smooth random curve, ``step`` px apart."""
    n = max(int(length / step), 2)
    turns = curvature * step + ndi.gaussian_filter1d(rng.normal(0, wiggle, n), 6) * math.sqrt(step)
    angles = angle + np.cumsum(turns)
    ys = start[0] + np.cumsum(np.sin(angles) * step)
    xs = start[1] + np.cumsum(np.cos(angles) * step)
    return np.stack([ys, xs], axis=1)


def render_curves(shape: tuple[int, int],
                   curves: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Coverage in [0, 1] of curves given as ``(points, widths)`` (px).

    Each pixel takes the width of its nearest centreline pixel, so that a
    curve of varying width needs one distance transform for the whole image.
    """
    widths = np.zeros(shape)
    for points, width in curves:
        iy = np.round(points[:, 0]).astype(int)
        ix = np.round(points[:, 1]).astype(int)
        keep = (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
        np.maximum.at(widths, (iy[keep], ix[keep]), width[keep])
    centre = widths > 0
    if not centre.any():
        return np.zeros(shape)
    dist, (ny, nx) = ndi.distance_transform_edt(~centre, return_indices=True)
    half = widths[ny, nx] / 2
    return ndi.gaussian_filter(np.clip(half + 0.5 - dist, 0, 1), 0.5)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend ``colour`` (RGB triple or image) over an RGB ``image``."""
    return image * (1 - alpha[..., None]) + colour * alpha[..., None]


__all__ = ["Masks", "blend", "keyed_rng", "pixel_grid", "random_harmonics", "random_walk",
           "render_curves", "smooth_noise", "soft_alpha", "star_distance", "to_uint8"]
