"""Built-in synthetic demo data: download-free stand-ins for the paper's datasets.

The ``demo`` reader turns a dataset card into a stream of synthetic flows
generated in code. Cards select a generator and its size in their
``options`` table, e.g.::

    reader = "demo"
    options = { generator = "fundus", flows = 3, frames = 8, size = 192, seed = 0 }

Generators
----------
``fundus`` (image flow, RGB uint8)
    Retinal photograph: orange-red background with vignetting inside a
    circular field of view, vessels radiating from a bright optic disc with a
    brighter cup. Targets ``disc`` and ``cup`` (the cup lies strictly inside
    the disc, as in REFUGE where the disc label includes the cup).
``dermoscopy`` (image flow, RGB uint8)
    Skin-tone background with texture and hairs, one brown lesion with a
    non-convex boundary. Target ``lesion``. With ``aspect_jitter`` > 0 the
    image widths vary within a flow (ISIC images come in many shapes).
``ultrasound`` (image flow, grey uint8)
    Curvilinear-probe sector with layered tissue and Rayleigh speckle, one
    hypoechoic nodule with an echogenic rim and posterior enhancement.
    Target ``nodule``.
``cells`` (image flow, RGB uint8)
    Stained blood smear crop around one white blood cell, red cells around it.
    Targets follow the WBC dataset's mask (0 background, 128 cytoplasm,
    255 nucleus): ``cytoplasm`` is the cytoplasm only (the cell minus its
    nucleus, a ring), ``nucleus`` the multi-lobed nucleus.
``ct`` (volume, float32 in Hounsfield units)
    Contrast-enhanced abdominal CT: body with fat and muscle walls, spine,
    bowel, and the targets ``liver``, ``spleen``, ``kidney_left``,
    ``kidney_right`` and ``aorta``. Anatomy is defined in millimetres, so each
    organ covers only part of the slab and has slices where it is absent.
    Intensities are generated in HU; the card option ``window`` (the demo
    card uses the soft-tissue window [-160, 240]) clips and scales them to
    [0, 1] as the file readers do for a windowed CT card. Image
    orientation is radiological: anterior at the top, the patient's right on
    the image's left.

Conventions
-----------
- Determinism: every random number comes from a NumPy generator seeded by
  ``(generator, seed, flow, role, index)``, so a frame never depends on the
  iteration order, on ``limit`` or on other frames.
- 2D images are grouped by synthetic patient (``images_per_patient`` images
  share one patient's anatomy and colours) so that confidence intervals can
  resample patients; each image is its own case.
- Spacing: 2D flows have ``spacing=None`` (pixel units), as the real 2D
  datasets they stand in for (REFUGE, ISIC, WBC, TNMIX slices) do not carry a
  physical pixel size. Volumes carry ``(slice, row, col)`` spacing in mm,
  anisotropic, default ``(5.0, 3.0, 3.0)``.
- ``meta`` records the generator's parameters and :data:`DEMO_VERSION`, which
  is bumped whenever the generated data change.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from bench.errors import ConfigError
from bench.readers import register_reader
from bench.readers.cards import Card
from bench.readers.core import window_intensities
from bench.types import Flow
from bench.validate import check_table

DEMO_VERSION = 1
"""Version of the generated data; bump it whenever any generator's output changes."""

_OPTION_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "generator": str,
    "flows": int,
    "frames": int,
    "size": int,
    "seed": int,
    "images_per_patient": int,
    "aspect_jitter": (float, int),
    "spacing": list,
    "window": list,
}

Masks = dict[str, np.ndarray]


# ---------------------------------------------------------------------------
# Options and the reader
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoOptions:
    """Validated ``options`` of a demo card.

    Attributes
    ----------
    generator : str
        One of :data:`GENERATORS`.
    flows : int
        Number of flows (volumes for ``ct``).
    frames : int
        Images per flow, or slices per volume.
    size : int
        Image height in pixels (and width, unless ``aspect_jitter``).
    seed : int
        Base seed of all random streams.
    images_per_patient : int
        Consecutive images of a flow that share one synthetic patient.
    aspect_jitter : float
        Image width = height * U(1, 1 + aspect_jitter), rounded to 8 px.
    spacing : tuple of float
        Volume spacing ``(slice, row, col)`` in mm (``ct`` only).
    window : tuple of float or None
        Intensity window ``(low, high)`` in HU (``ct`` only): frames are clipped
        and scaled to [0, 1] exactly as the file readers do for a card with a
        ``window``; None keeps Hounsfield units.
    """

    generator: str
    flows: int = 3
    frames: int = 8
    size: int = 128
    seed: int = 0
    images_per_patient: int = 2
    aspect_jitter: float = 0.0
    spacing: tuple[float, float, float] = (5.0, 3.0, 3.0)
    window: tuple[float, float] | None = None


@dataclass(frozen=True)
class DemoGenerator:
    """A generator's fixed description: flow kind, targets and prompt kind."""

    kind: str
    targets: tuple[str, ...]
    one_prompt_kind: str


GENERATORS: dict[str, DemoGenerator] = {
    "fundus": DemoGenerator("image-flow", ("disc", "cup"), "box"),
    "dermoscopy": DemoGenerator("image-flow", ("lesion",), "box"),
    "ultrasound": DemoGenerator("image-flow", ("nodule",), "point"),
    "cells": DemoGenerator("image-flow", ("cytoplasm", "nucleus"), "point"),
    "ct": DemoGenerator("volume", ("liver", "spleen", "kidney_left", "kidney_right", "aorta"),
                        "box"),
}


def demo_options(card: Card) -> DemoOptions:
    """Validate a demo card's ``options`` against its generator.

    Raises
    ------
    ConfigError
        One line naming the card and option: unknown option, wrong type,
        out-of-range value, or a card whose ``kind``/``targets`` disagree with
        the generator.
    """
    where = f"{card.path or card.name}.options"
    opts = dict(card.options)
    check_table(opts, _OPTION_SCHEMA, where, required=("generator",))
    name = opts["generator"]
    if name not in GENERATORS:
        raise ConfigError(
            f"{where}.generator: unknown generator {name!r}; known: {', '.join(GENERATORS)}"
        )
    gen = GENERATORS[name]
    if card.kind != gen.kind:
        raise ConfigError(f"{where}.generator: {name!r} makes {gen.kind!r} flows, card kind is "
                          f"{card.kind!r}")
    if tuple(card.targets) != gen.targets:
        raise ConfigError(f"{where}.generator: {name!r} makes targets {list(gen.targets)}, card "
                          f"lists {list(card.targets)}")
    minimum = {"flows": 1, "frames": 8 if gen.kind == "volume" else 1, "size": 64,
               "images_per_patient": 1}
    for key, low in minimum.items():
        if key in opts and opts[key] < low:
            raise ConfigError(f"{where}.{key}: must be at least {low}, got {opts[key]}")
    if "seed" in opts and opts["seed"] < 0:
        raise ConfigError(f"{where}.seed: must be non-negative, got {opts['seed']}")
    if "aspect_jitter" in opts:
        if not 0 <= opts["aspect_jitter"] <= 1:
            raise ConfigError(f"{where}.aspect_jitter: must be in [0, 1], got "
                              f"{opts['aspect_jitter']}")
        opts["aspect_jitter"] = float(opts["aspect_jitter"])
    if "spacing" in opts:
        spacing = opts["spacing"]
        if gen.kind != "volume":
            raise ConfigError(f"{where}.spacing: only volume generators take a spacing")
        if (len(spacing) != 3 or any(isinstance(s, bool) or not isinstance(s, (int, float))
                                     or s <= 0 for s in spacing)):
            raise ConfigError(f"{where}.spacing: expected 3 positive numbers (slice, row, col) "
                              f"in mm, got {spacing!r}")
        opts["spacing"] = tuple(float(s) for s in spacing)
    if "window" in opts:
        window = opts["window"]
        if gen.kind != "volume":
            raise ConfigError(f"{where}.window: only volume generators take a window")
        if (len(window) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                    for v in window) or window[1] <= window[0]):
            raise ConfigError(f"{where}.window: expected [low, high] in HU with low < high, "
                              f"got {window!r}")
        opts["window"] = (float(window[0]), float(window[1]))
    return DemoOptions(**opts)


def expected_case_count(options: DemoOptions) -> int:
    """Number of scoring cases the options generate (a volume is one case)."""
    if GENERATORS[options.generator].kind == "volume":
        return options.flows
    return options.flows * options.frames


@register_reader("demo")
def read_demo(card: Card, root: Path | None = None, limit: int | None = None,
              errors: list | None = None) -> Iterator[Flow]:
    """Stream the synthetic flows a demo card describes; ``root`` is ignored.

    Parameters
    ----------
    card : Card
        A card with ``reader = "demo"`` and an ``options`` table (see
        :class:`DemoOptions`).
    root : Path or None
        Ignored: demo data need no files.
    limit : int or None
        Yield at most this many flows. Flow ``k`` is identical whatever the
        limit.

    Yields
    ------
    Flow
        ``synthetic=True`` flows, generated one at a time.
    """
    options = demo_options(card)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be non-negative or None, got {limit}")
    count = options.flows if limit is None else min(limit, options.flows)
    for index in range(count):
        yield generate_flow(options, index, dataset=card.name)


def generate_flow(options: DemoOptions, index: int, dataset: str = "demo") -> Flow:
    """Generate flow number ``index`` of a demo dataset.

    Parameters
    ----------
    options : DemoOptions
        Generator and sizes.
    index : int
        Flow index, 0-based; below ``options.flows`` in a card's stream, but
        any non-negative index gives a valid, distinct flow.
    dataset : str
        Dataset name stored in the flow.

    Returns
    -------
    Flow
    """
    if index < 0:
        raise ValueError(f"flow index must be non-negative, got {index}")
    gen = GENERATORS[options.generator]
    meta: dict[str, Any] = {
        "generator": options.generator,
        "demo_version": DEMO_VERSION,
        "seed": options.seed,
        "flow_index": index,
        "size": options.size,
        "frames": options.frames,
    }
    if gen.kind == "volume":
        return _volume_flow(options, index, dataset, meta)
    return _image_flow(options, index, dataset, meta)


def _image_flow(options: DemoOptions, index: int, dataset: str, meta: dict[str, Any]) -> Flow:
    name = options.generator
    make_patient, make_image = _IMAGE_GENERATORS[name]
    flow_id = f"{name}-f{index}"
    frames: list[np.ndarray] = []
    masks: dict[str, list[np.ndarray]] = {t: [] for t in GENERATORS[name].targets}
    patient_ids: list[str] = []
    for i in range(options.frames):
        p = i // options.images_per_patient
        patient = make_patient(_rng(name, options.seed, index, 0, p), options.size)
        rng = _rng(name, options.seed, index, 1, i)
        width = options.size
        if options.aspect_jitter > 0:
            width = 8 * round(options.size * rng.uniform(1, 1 + options.aspect_jitter) / 8)
        image, frame_masks = make_image(patient, rng, (options.size, width))
        frames.append(image)
        for target in masks:
            masks[target].append(frame_masks[target])
        patient_ids.append(f"{flow_id}-p{p:02d}")
    meta.update(images_per_patient=options.images_per_patient,
                aspect_jitter=options.aspect_jitter)
    return Flow(
        id=flow_id,
        dataset=dataset,
        kind="image-flow",
        frames=frames,
        masks=masks,
        spacing=None,
        case_ids=[f"{flow_id}/img{i:02d}" for i in range(options.frames)],
        patient_ids=patient_ids,
        meta=meta,
        synthetic=True,
    )


def _volume_flow(options: DemoOptions, index: int, dataset: str, meta: dict[str, Any]) -> Flow:
    flow_id = f"{options.generator}-v{index}"
    rng = _rng(options.generator, options.seed, index, 2, 0)
    volume, masks = ct_volume(rng, options.frames, options.size, options.spacing)
    intensity = "HU"
    if options.window is not None:
        # The same windowing as the file readers, so adapters see CT alike.
        volume, _ = window_intensities(volume, list(options.window), None, dataset)
        intensity = f"HU window [{options.window[0]:g}, {options.window[1]:g}] scaled to [0, 1]"
    meta.update(spacing_mm=options.spacing, intensity=intensity, window=options.window,
                orientation="slice 0 inferior; rows anterior to posterior; "
                            "columns patient right to left")
    return Flow(
        id=flow_id,
        dataset=dataset,
        kind="volume",
        frames=volume,
        masks=masks,
        spacing=options.spacing,
        case_ids=[flow_id],
        patient_ids=[flow_id],
        meta=meta,
        synthetic=True,
    )


# ---------------------------------------------------------------------------
# Shared drawing helpers
# ---------------------------------------------------------------------------


def _rng(generator: str, *key: int) -> np.random.Generator:
    """A random stream keyed by the generator's name and non-negative integers."""
    return np.random.default_rng(np.random.SeedSequence([zlib.crc32(generator.encode()), *key]))


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return yy.astype(np.float64), xx.astype(np.float64)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    noise = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return noise / max(float(noise.std()), 1e-12)


def _harmonics(rng: np.random.Generator, orders: range, strength: float,
               decay: float = 1.0) -> list[tuple[int, float, float]]:
    """Random Fourier terms ``(order, amplitude, phase)`` for a wavy outline."""
    return [(k, strength * rng.uniform(0.3, 1.0) / k**decay, rng.uniform(0, 2 * np.pi))
            for k in orders]


def _star_distance(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
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


def _soft(distance: np.ndarray, width: float | np.ndarray) -> np.ndarray:
    """Opacity in [0, 1] from a signed distance: 0.5 on the outline, ``width`` px ramp."""
    return 1.0 / (1.0 + np.exp(np.clip(distance / np.maximum(width, 1e-3), -50, 50)))


def _walk(rng: np.random.Generator, start: tuple[float, float], angle: float, length: float,
          curvature: float = 0.0, wiggle: float = 0.02, step: float = 0.5) -> np.ndarray:
    """Points ``(y, x)`` of a smooth random curve, ``step`` px apart."""
    n = max(int(length / step), 2)
    turns = curvature * step + ndi.gaussian_filter1d(rng.normal(0, wiggle, n), 6) * math.sqrt(step)
    angles = angle + np.cumsum(turns)
    ys = start[0] + np.cumsum(np.sin(angles) * step)
    xs = start[1] + np.cumsum(np.cos(angles) * step)
    return np.stack([ys, xs], axis=1)


def _render_curves(shape: tuple[int, int],
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


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend ``colour`` (RGB triple or image) over an RGB ``image``."""
    return image * (1 - alpha[..., None]) + colour * alpha[..., None]


# ---------------------------------------------------------------------------
# Fundus (REFUGE-like): optic disc and cup
# ---------------------------------------------------------------------------


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
    yy, xx = _grid(shape)
    side = patient["side"]
    # Each acquisition frames the eye a little differently.
    cx = w / 2 + (patient["disc_dx"] + rng.uniform(-0.04, 0.04)) * s
    cy = h / 2 + (patient["disc_dy"] + rng.uniform(-0.04, 0.04)) * s
    rd = patient["disc_radius"] * s * rng.uniform(0.9, 1.1)
    disc_d = _star_distance(yy, xx, cy, cx, rd * patient["disc_aspect"], rd,
                            rng.uniform(-0.3, 0.3), _harmonics(rng, range(2, 5), 0.05))
    cup_r = rd * np.clip(patient["cup_ratio"] + rng.uniform(-0.05, 0.05), 0.25, 0.75)
    # The cup sits slightly temporal (towards the fovea) inside the disc.
    ccx = cx - side * rng.uniform(0.0, 0.15) * rd
    ccy = cy + rng.uniform(-0.1, 0.1) * rd
    cup_d = _star_distance(yy, xx, ccy, ccx, cup_r * rng.uniform(1.0, 1.2), cup_r,
                           rng.uniform(-0.5, 0.5), _harmonics(rng, range(2, 5), 0.08))
    disc = disc_d < 0
    cup = (cup_d < 0) & ndi.binary_erosion(disc, iterations=2)

    fov_r = 0.47 * s
    r_fov = np.hypot(yy - h / 2, xx - w / 2) / fov_r
    background = patient["background"] * rng.uniform(0.9, 1.1)
    texture = 1 + 0.04 * _smooth_noise(rng, shape, s / 60)
    image = background * texture[..., None] * np.ones((h, w, 3))
    # Macula: a darker spot about two disc diameters temporal to the disc.
    fovea_d = np.hypot(yy - cy, xx - (cx - side * 4.5 * rd))
    image *= 1 - 0.35 * np.exp(-((fovea_d / (1.2 * rd)) ** 2))[..., None]
    disc_gain = rng.uniform(0.75, 1.0)
    disc_colour = np.array([245.0, 175.0, 95.0])
    image = _blend(image, disc_colour, disc_gain * _soft(disc_d, 1.0))
    image = _blend(image, np.array([252.0, 235.0, 195.0]), disc_gain * _soft(cup_d, 2.0))

    vessels = _fundus_vessels(np.random.default_rng(patient["vessel_seed"]), rng, shape,
                              (cy, cx), rd, side, s)
    # Vessels fade over the bright disc, where they run in front of the nerve head.
    vessels *= 1 - 0.4 * _soft(disc_d, 1.0)
    image *= 1 - vessels[..., None] * np.array([0.35, 0.55, 0.45])

    tilt = rng.uniform(0, 2 * np.pi)
    illumination = 1 + 0.12 * ((xx - w / 2) * np.cos(tilt) + (yy - h / 2) * np.sin(tilt)) / s
    vignette = np.clip(1 - 0.55 * r_fov**2.5, 0, 1) * illumination
    image *= vignette[..., None]
    image *= _soft((r_fov - 1) * fov_r, 0.8)[..., None]
    image += rng.normal(0, 3.0, image.shape)
    return _to_uint8(image), {"disc": disc, "cup": cup}


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
        points = _walk(layout, start, angle, length, curvature, wiggle=0.03)
        widths = np.linspace(width0, 0.35 * width0, len(points))
        curves.append((points, widths))
        for _ in range(int(layout.integers(1, 3)) if k < 4 else 0):
            at = int(layout.integers(len(points) // 4, 3 * len(points) // 4))
            heading = np.arctan2(*(points[at] - points[at - 1]))
            branch = _walk(layout, tuple(points[at]), heading + layout.choice([-1, 1]) * 0.6,
                           layout.uniform(0.15, 0.3) * s, 0.0, wiggle=0.04)
            curves.append((branch, np.linspace(0.6, 0.25, len(branch)) * widths[at]))
    return _render_curves(shape, curves)


# ---------------------------------------------------------------------------
# Dermoscopy (ISIC-like): one pigmented lesion
# ---------------------------------------------------------------------------


def dermoscopy_patient(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """One synthetic lesion and skin: tones and outline, fixed across its images."""
    return {
        "skin": np.array([rng.uniform(200, 235), rng.uniform(150, 190), rng.uniform(130, 165)]),
        "lesion": rng.uniform(100, 180) * np.array([1.0, rng.uniform(0.6, 0.7),
                                                    rng.uniform(0.4, 0.5)]),
        "radius": rng.uniform(0.22, 0.32),
        "aspect": rng.uniform(0.75, 1.0),
        # Orders 3-7 with these amplitudes dent the outline: non-convex borders.
        "harmonics": _harmonics(rng, range(2, 8), 0.28, decay=0.8),
        "dark_centre": rng.uniform(0.15, 0.4),
    }


def dermoscopy_image(patient: dict[str, Any], rng: np.random.Generator,
                     shape: tuple[int, int]) -> tuple[np.ndarray, Masks]:
    """Render one dermoscopic image; mask ``lesion``."""
    h, w = shape
    s = min(h, w)
    yy, xx = _grid(shape)
    cy = h / 2 + rng.uniform(-0.08, 0.08) * s
    cx = w / 2 + rng.uniform(-0.08, 0.08) * s
    r = patient["radius"] * s * rng.uniform(0.85, 1.15)
    rotation = rng.uniform(-0.4, 0.4)
    harmonics = [(k, a, ph + k * rotation) for k, a, ph in patient["harmonics"]]
    dist = _star_distance(yy, xx, cy, cx, r * patient["aspect"], r, rotation, harmonics)
    lesion = dist < 0

    skin = patient["skin"] * rng.uniform(0.92, 1.05)
    image = skin * (1 + 0.025 * _smooth_noise(rng, shape, s / 30))[..., None] * np.ones((h, w, 3))
    image *= (1 + 0.03 * _smooth_noise(rng, shape, 1.0))[..., None]  # pores, fine texture
    # Pigment: darker towards the centre, blotchy network and dark globules.
    rho = np.clip(1 + dist / np.maximum(np.hypot(yy - cy, xx - cx) - dist, 1), 0, 1)
    shade = 1 - patient["dark_centre"] * (1 - rho)
    network = 1 - 0.18 * np.clip(_smooth_noise(rng, shape, 1.5), 0, None)
    blotches = 1 + 0.15 * _smooth_noise(rng, shape, s / 20)
    colour = patient["lesion"] * (shade * network * blotches)[..., None]
    # The border is sharp on one side and fades into the skin on the other.
    fade = np.clip(np.cos(np.arctan2(yy - cy, xx - cx) - rng.uniform(-np.pi, np.pi)), 0, None)
    edge = rng.uniform(1.0, 2.0) * (1 + rng.uniform(1.0, 3.0) * fade)
    image = _blend(image, colour, rng.uniform(0.7, 1.0) * _soft(dist, edge))

    hairs = []
    for _ in range(int(rng.integers(0, 7))):
        start = (rng.uniform(0, h), rng.uniform(0, w))
        points = _walk(rng, start, rng.uniform(-np.pi, np.pi), rng.uniform(0.4, 1.0) * s,
                       rng.normal(0, 0.004), wiggle=0.02)
        hairs.append((points, np.full(len(points), rng.uniform(1.0, 2.0))))
    image = _blend(image, np.array([45.0, 32.0, 25.0]), 0.9 * _render_curves(shape, hairs))
    if rng.random() < 0.5:  # dark corners of a round dermatoscope lens
        r_lens = np.hypot(yy - h / 2, xx - w / 2) / (0.5 * math.hypot(h, w))
        image *= _soft((r_lens - rng.uniform(0.85, 0.95)) * s, 3.0)[..., None]
    image += rng.normal(0, 2.5, image.shape)
    return _to_uint8(image), {"lesion": lesion}


# ---------------------------------------------------------------------------
# Ultrasound (TDSC-ABUS / TNMIX-like): one hypoechoic nodule
# ---------------------------------------------------------------------------


def ultrasound_patient(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """One synthetic nodule and tissue: size, outline, echogenicity."""
    return {
        "radius": rng.uniform(0.1, 0.16),
        "aspect": rng.uniform(0.6, 1.1),  # height / width: mostly wider than tall
        "harmonics": _harmonics(rng, range(2, 6), 0.08),
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
    yy, xx = _grid(shape)
    # Curvilinear probe: a sector of an annulus centred above the image.
    apex_y, r0, r1, half_angle = -0.3 * s, 0.33 * s, 1.28 * s, np.deg2rad(34)
    radial = np.hypot(yy - apex_y, xx - w / 2)
    beam = np.arctan2(xx - w / 2, yy - apex_y)
    sector = (radial >= r0) & (radial <= r1) & (np.abs(beam) <= half_angle)
    depth = (radial - r0) / (r1 - r0)  # 0 at the probe, 1 at the bottom

    # Tissue layers with wavy boundaries: skin, fat, gland, muscle.
    wave = 0.02 * _smooth_noise(rng, (1, w), s / 8)[0]
    fat_end = patient["fat_depth"] + wave
    muscle_start = patient["muscle_depth"] + wave
    echo = np.where(depth < 0.03, 1.2, np.where(depth < fat_end, 0.22,
                                                 np.where(depth < muscle_start, 0.7, 0.45)))
    echo = echo * (1 + 0.12 * _smooth_noise(rng, shape, s / 20))
    echo *= 1 + 0.2 * np.sin(2 * np.pi * depth * 25) * (depth >= muscle_start)  # muscle fibres

    cx = w / 2 + rng.uniform(-0.12, 0.12) * s
    cy = rng.uniform(0.42, 0.55) * s
    r = patient["radius"] * s * rng.uniform(0.85, 1.15)
    dist = _star_distance(yy, xx, cy, cx, r * patient["aspect"], r, rng.uniform(-0.3, 0.3),
                          patient["harmonics"])
    nodule = (dist < 0) & sector
    inside = _soft(dist, 0.8)
    rim = np.exp(-((dist / rng.uniform(1.0, 1.6)) ** 2))  # a thin capsule on the border
    # Posterior acoustic enhancement: a brighter column below the nodule.
    column = np.exp(-(((xx - cx) / r) ** 4)) * np.clip((yy - cy) / r, 0, 3) / 3
    echo = echo * (1 + 0.35 * column * (dist >= 0))
    interior = patient["inside"] * (1 + 0.3 * _smooth_noise(rng, shape, 2))
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
    return _to_uint8(grey), {"nodule": nodule}


# ---------------------------------------------------------------------------
# Cells (WBC-like): white blood cell, cytoplasm ring and nucleus
# ---------------------------------------------------------------------------


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
    yy, xx = _grid(shape)
    image = patient["background"] * (1 + 0.02 * _smooth_noise(rng, shape, s / 15))[..., None]
    image = image * np.ones((h, w, 3))

    cy = h / 2 + rng.uniform(-0.06, 0.06) * s
    cx = w / 2 + rng.uniform(-0.06, 0.06) * s
    rc = rng.uniform(0.25, 0.34) * s
    cell_d = _star_distance(yy, xx, cy, cx, rc * rng.uniform(0.9, 1.05), rc, rng.uniform(0, np.pi),
                            _harmonics(rng, range(2, 6), 0.04))

    # Red cells: pale discs with a paler centre, placed around the white cell.
    for _ in range(int(rng.integers(3, 8))):
        for _attempt in range(10):
            ry, rx = rng.uniform(-0.2, 1.2) * h, rng.uniform(-0.2, 1.2) * w
            if math.hypot(ry - cy, rx - cx) > rc + 0.08 * s:
                break
        rr = rng.uniform(0.13, 0.17) * s
        d = _star_distance(yy, xx, ry, rx, rr, rr * rng.uniform(0.85, 1.0), rng.uniform(0, np.pi))
        red = np.array([235.0, 170.0, 165.0]) * rng.uniform(0.95, 1.02)
        pale = 1 - 0.7 * np.exp(-((np.hypot(yy - ry, xx - rx) / (0.45 * rr)) ** 2))
        image = _blend(image, red, 0.6 * _soft(d, 1.0) * pale)

    nucleus_d = _nucleus_distance(rng, yy, xx, cy, cx, rc, patient["lobes"])
    cell = cell_d < 0
    nucleus = (nucleus_d < 0) & ndi.binary_erosion(cell, iterations=3)
    granules = 1 + 0.05 * _smooth_noise(rng, shape, 1.0)
    image = _blend(image, patient["cytoplasm"] * granules[..., None], 0.95 * _soft(cell_d, 1.0))
    chromatin = 1 + 0.15 * _smooth_noise(rng, shape, 1.5)
    nucleus_alpha = _soft(np.maximum(nucleus_d, cell_d + 3), 1.0)
    image = _blend(image, patient["nucleus"] * chromatin[..., None], 0.95 * nucleus_alpha)
    image += rng.normal(0, 3.0, image.shape)
    return _to_uint8(image), {"cytoplasm": cell & ~nucleus, "nucleus": nucleus}


def _nucleus_distance(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, cy: float,
                      cx: float, rc: float, lobes: int) -> np.ndarray:
    """Signed distance of a nucleus: one kidney-like blob or lobes on an arc."""
    if lobes == 1:
        r = rc * rng.uniform(0.55, 0.7)
        return _star_distance(yy, xx, cy + rng.uniform(-0.1, 0.1) * rc,
                              cx + rng.uniform(-0.1, 0.1) * rc, r * rng.uniform(0.75, 0.95), r,
                              rng.uniform(0, np.pi), _harmonics(rng, range(2, 4), 0.12))
    # Segmented nucleus: lobes along an arc, joined by thin strands.
    start = rng.uniform(0, 2 * np.pi)
    span = rng.uniform(0.9, 1.4) * np.pi * (lobes - 1) / 3
    arc_r = rc * rng.uniform(0.35, 0.5)
    angles = start + np.linspace(0, span, lobes)
    centres = [(cy + arc_r * np.sin(a), cx + arc_r * np.cos(a)) for a in angles]
    lobe_r = rc * rng.uniform(0.32, 0.42)
    dist = np.full(yy.shape, np.inf)
    for (ly, lx), a in zip(centres, angles, strict=True):
        d = _star_distance(yy, xx, ly, lx, lobe_r * rng.uniform(0.65, 0.85), lobe_r, a,
                           _harmonics(rng, range(2, 4), 0.08))
        dist = np.minimum(dist, d)
    for (ay, ax), (by, bx) in zip(centres[:-1], centres[1:], strict=True):
        # Distance to the segment between neighbouring lobe centres, minus its half-width.
        vy, vx = by - ay, bx - ax
        t = np.clip(((yy - ay) * vy + (xx - ax) * vx) / (vy * vy + vx * vx), 0, 1)
        seg = np.hypot(yy - (ay + t * vy), xx - (ax + t * vx)) - 0.07 * rc
        dist = np.minimum(dist, seg)
    return dist


# ---------------------------------------------------------------------------
# CT (BTCV-like): abdominal multi-organ volume
# ---------------------------------------------------------------------------

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
    body = _star_distance(yy, xx, 5.0, 0.0, 120 * scale, 165 * scale, 0.0,
                          [(2, 0.03, 0.0), (3, 0.02, rng.uniform(0, 2 * np.pi))]) < 0
    base[body] = _HU["fat"]
    wall_d = _star_distance(yy, xx, 5.0, 0.0, 120 * scale - 20, 165 * scale - 22, 0.0,
                            [(2, 0.03, 0.0)])
    base[(wall_d < 0) & (wall_d > -10)] = _HU["muscle"]
    cavity = wall_d <= -10
    # Spine and back muscles: painted over the mesentery, never covered by an organ.
    spine = np.full(yy.shape, np.nan)
    for side in (-1, 1):
        spine[(_star_distance(yy, xx, 80 * scale, side * 35.0, 25.0, 22.0) < 0) & body] = (
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
    mix = _smooth_noise(rng, (slices, size, size), (10 / dz, 7.5 / dy, 7.5 / dx))
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
    hu += 8 * _smooth_noise(rng, hu.shape, (0.5, 1.5, 1.5)) * body
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
        harm = _harmonics(rng, range(2, 5), wobble)
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
            return _star_distance(yy, xx, cy + tilt[0] * (z - zc), cx + tilt[1] * (z - zc),
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


_IMAGE_GENERATORS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[..., Any]]] = {
    "fundus": (fundus_patient, fundus_image),
    "dermoscopy": (dermoscopy_patient, dermoscopy_image),
    "ultrasound": (ultrasound_patient, ultrasound_image),
    "cells": (cells_patient, cells_image),
}

__all__ = [
    "DEMO_VERSION",
    "GENERATORS",
    "DemoGenerator",
    "DemoOptions",
    "ct_volume",
    "demo_options",
    "expected_case_count",
    "generate_flow",
    "read_demo",
]
