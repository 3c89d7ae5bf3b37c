"""Normalised surface Dice with surfel areas, as DeepMind's surface-distance package.

:func:`nsd_deepmind` gives the value of ``surface_distance``'s
``compute_surface_dice_at_tolerance(compute_surface_distances(gt, pred, spacing), tol)``
(google-deepmind/surface-distance, ``surface_distance/metrics.py`` and
``lookup_tables.py``, commit 1f805cea446805e559badc80dd27f34175e4173d; PyPI
``surface-distance`` 0.1 computes the same), written independently:

- Surface elements live on the grid of voxel *corners*. Each corner gets the
  code of the 2x2 (2D) or 2x2x2 (3D) block of voxels around it, one bit per
  voxel (DeepMind's bit order: the voxel at offset (-1, -1, -1) is the high bit,
  the one at (0, 0, 0) the low bit). A corner whose block is neither all
  background nor all foreground is a surface element ("surfel").
- A surfel's weight is the length (2D) or area (3D), in mm, of the
  marching-squares / marching-cubes surface inside its block, with vertices
  at edge midpoints; the tables are derived here from that definition (see
  :func:`contour_length_table` and :func:`surface_area_table`).
- The distance of a surfel to the other mask's surface is the exact Euclidean
  distance (physical spacing) to the nearest surfel corner of the other mask;
  a surfel overlaps when that distance is <= the tolerance. The score is
  ``(overlapping weight of both surfaces) / (total weight of both surfaces)``.

How it differs from the package without changing the value:

- No sorting (the package sorts every surfel by distance; the score does not
  need it), no dense distance or area maps, corner codes from shifted slices.
- Domain: the union bounding box of both masks, as the package. Every surfel of
  either mask lies on the corners of that box (box + one corner layer) and a
  distance between two surfels depends only on their positions, so no margin
  for the tolerance is needed.
- "Within the tolerance": the package measures the distance to the surfel that
  scipy's feature transform picks as nearest. Here, when the tolerance ball
  is small, each surfel probes the other mask's surfels at the integer offsets
  whose length, computed with scipy's arithmetic, is <= the tolerance
  (:func:`_ball`, nearest first, stopping at the first hit). The answers agree
  unless offsets of (nearly) equal length fall on both sides of the tolerance
  by rounding; then, and for large balls, the feature transform on the
  package's domain is used, as the package does (:func:`_within`).

Empty masks (DeepMind's behaviour, which is also this harness's default
policy): both empty -> NaN; exactly one empty -> 0.0. :mod:`bench.metrics`
applies the configured empty-mask policy before calling this module.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from bench.metric_inputs import as_mask, as_spacing, as_tolerance

__all__ = [
    "contour_length_table",
    "nsd_deepmind",
    "surface_area_table",
    "surface_dice",
]


# --------------------------------------------------------------------------- lookup tables
#
# Corner n of the 2x2(x2) block sits at offset (i, j[, k]) with n = 2i + j (2D) or
# n = 4i + 2j + k (3D), and carries bit (2**ndim - 1 - n) of the code, so the code
# reads the block in raster order, most significant bit first.


def _corners(ndim: int) -> list[tuple[int, ...]]:
    return list(itertools.product((0, 1), repeat=ndim))


def _is_set(code: int, corner: int, ndim: int) -> bool:
    return bool(code >> (2**ndim - 1 - corner) & 1)


def _midpoint(edge: tuple[int, int], corners: list[tuple[int, ...]]) -> np.ndarray:
    return (np.asarray(corners[edge[0]], float) + np.asarray(corners[edge[1]], float)) / 2


def _face_segments(code: int, cycle: list[int], ndim: int) -> list[tuple[tuple[int, int], ...]]:
    """Marching-squares segments on one square face, as pairs of cut edges.

    ``cycle`` lists the face's four corners in order around it. A face with two
    diagonal foreground corners (the ambiguous case) gets one segment cutting off
    each foreground corner, the choice of DeepMind's tables (and of Lorensen and
    Cline's base cases, which have at most four foreground corners).
    """
    sides = [tuple(sorted((cycle[t], cycle[(t + 1) % 4]))) for t in range(4)]
    inside = [_is_set(code, c, ndim) for c in cycle]
    cut = [t for t in range(4) if inside[t] != inside[(t + 1) % 4]]
    if len(cut) == 2:
        return [(sides[cut[0]], sides[cut[1]])]
    if len(cut) == 4:  # side t-1 and side t meet at corner t
        return [(sides[t - 1], sides[t]) for t in range(4) if inside[t]]
    return []


@functools.cache
def contour_length_table(spacing: tuple[float, float]) -> np.ndarray:
    """Contour length in mm for each of the 16 codes of a 2x2 block.

    Marching squares with vertices at edge midpoints: one segment per face when
    two corners differ from the other two along an edge pair, two segments when
    two diagonal corners are set. Lengths use the physical ``spacing``.

    Parameters
    ----------
    spacing : tuple of 2 floats
        Spacing per axis in array order (mm).

    Returns
    -------
    ndarray of float64, shape (16,)
    """
    corners = _corners(2)
    cycle = [corners.index(c) for c in ((0, 0), (0, 1), (1, 1), (1, 0))]
    sp = np.asarray(spacing, float)
    table = np.zeros(16)
    for code in range(16):
        for a, b in _face_segments(code, cycle, 2):
            step = (_midpoint(a, corners) - _midpoint(b, corners)) * sp
            table[code] += float(np.linalg.norm(step))
    return table


def _face_cycles() -> list[list[int]]:
    """The six faces of the unit cube, each as its four corner indices in cyclic order."""
    corners = _corners(3)
    faces = []
    for axis in range(3):
        u, v = (a for a in range(3) if a != axis)
        for level in (0, 1):
            cycle = []
            for pu, pv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                point = [0, 0, 0]
                point[axis], point[u], point[v] = level, pu, pv
                cycle.append(corners.index(tuple(point)))
            faces.append(cycle)
    return faces


def _polygons(code: int) -> list[list[tuple[int, int]]]:
    """Closed marching-cubes polygons of one cube, as cycles of cut edges."""
    neighbours: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for cycle in _face_cycles():
        for a, b in _face_segments(code, cycle, 3):
            neighbours.setdefault(a, []).append(b)
            neighbours.setdefault(b, []).append(a)
    polygons, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        loop, current = [start], start
        seen.add(start)
        while True:  # every cut edge lies on two faces: exactly two neighbours
            nxt = [e for e in neighbours[current] if e not in seen]
            if not nxt:
                break
            current = nxt[0]
            seen.add(current)
            loop.append(current)
        polygons.append(loop)
    return polygons


def _max_area_triangles(points: list[np.ndarray]) -> list[np.ndarray]:
    """Area vectors of the triangulation of a polygon with the largest total area.

    A polygon of a marching cube is not always planar (five or six vertices),
    so its area depends on the triangulation; DeepMind's table matches, for
    every code, the triangulation of largest total area at unit spacing.
    Interval dynamic programming over the polygon's vertices.
    """
    n = len(points)

    def vec(a: int, b: int, c: int) -> np.ndarray:
        return 0.5 * np.cross(points[b] - points[a], points[c] - points[a])

    best: dict[tuple[int, int], tuple[float, list[np.ndarray]]] = {}
    for length in range(2, n):
        for i in range(n - length):
            j = i + length
            options = []
            for m in range(i + 1, j):
                left = best.get((i, m), (0.0, []))
                right = best.get((m, j), (0.0, []))
                tri = vec(i, m, j)
                total = left[0] + right[0] + float(np.linalg.norm(tri))
                options.append((total, [*left[1], *right[1], tri]))
            best[(i, j)] = max(options, key=lambda o: o[0])
    return best[(0, n - 1)][1]


@functools.cache
def _unit_normals_3d() -> np.ndarray:
    """Area vectors of the surfel triangles per code at unit spacing, shape (256, K, 3).

    Codes with more than four set corners use the triangles of their complement
    (the convention of DeepMind's table); unused rows are zero.
    """
    corners = _corners(3)
    per_code = []
    for code in range(256):
        base = code if code.bit_count() <= 4 else 255 - code
        triangles = []
        for loop in _polygons(base):
            triangles += _max_area_triangles([_midpoint(e, corners) for e in loop])
        per_code.append(triangles)
    width = max(len(t) for t in per_code)
    table = np.zeros((256, width, 3))
    for code, triangles in enumerate(per_code):
        if triangles:
            table[code, : len(triangles)] = triangles
    table.setflags(write=False)
    return table


@functools.cache
def surface_area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    """Surfel area in mm^2 for each of the 256 codes of a 2x2x2 block.

    The marching-cubes triangles of a code (vertices at edge midpoints) are
    stretched by ``spacing``: a triangle's area vector ``(n0, n1, n2)`` at unit
    spacing becomes ``(n0 s1 s2, n1 s0 s2, n2 s0 s1)``.

    Parameters
    ----------
    spacing : tuple of 3 floats
        Spacing per axis in array order (mm).

    Returns
    -------
    ndarray of float64, shape (256,)
    """
    s0, s1, s2 = (float(s) for s in spacing)
    scaled = _unit_normals_3d() * np.array([s1 * s2, s0 * s2, s0 * s1])
    table = np.linalg.norm(scaled, axis=-1).sum(axis=-1)
    table.setflags(write=False)
    return table


# --------------------------------------------------------------------------- surfels


def _union_box(pred: np.ndarray, ref: np.ndarray) -> tuple[slice, ...]:
    """Tight bounding box of ``pred | ref`` (both non-empty).

    One pass over the whole array for the first axis; the other axes are
    projected from the slab between its first and last set planes only.
    """
    union = pred | ref
    planes = np.flatnonzero(union.reshape(union.shape[0], -1).any(axis=1))
    first = slice(int(planes[0]), int(planes[-1]) + 1)
    footprint = union[first].any(axis=0)
    box = [first]
    for axis in range(footprint.ndim):
        others = tuple(a for a in range(footprint.ndim) if a != axis)
        nz = np.flatnonzero(footprint.any(axis=others))
        box.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(box)


def _corner_codes(mask: np.ndarray) -> np.ndarray:
    """Code of every corner of ``mask`` (shape + 1 per axis), outside = background.

    Built axis by axis: along each axis the code of the lower neighbour moves up
    by the bits the remaining axes contribute (1, 2 or 4 bits).
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    code = padded
    bits = 1
    for axis in reversed(range(mask.ndim)):
        low = code[(slice(None),) * axis + (slice(None, -1),)]
        high = code[(slice(None),) * axis + (slice(1, None),)]
        code = (low << bits) | high
        bits *= 2
    return code


def _surfels(mask: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Surfel map (bool, corner grid) and the weight of each surfel in raster order."""
    code = _corner_codes(mask)
    full = 2 ** (2**mask.ndim) - 1
    surface = (code != 0) & (code != full)
    return surface, table[code[surface]]


def _distances_to(target: np.ndarray, at: np.ndarray, sp: tuple[float, ...]) -> np.ndarray:
    """Distance from each ``at`` point (raster order) to the nearest ``target`` point.

    scipy's exact feature transform on the whole corner grid (the package's
    domain), turned into distances only at ``at`` with the arithmetic of
    ``distance_transform_edt`` (integer offset to float64, times spacing,
    squared, summed in axis order, square root): the same floats as the
    package's dense distance map at those points.
    """
    nearest = ndi.distance_transform_edt(
        ~target, sampling=sp, return_distances=False, return_indices=True
    )
    idx = np.nonzero(at)
    offsets = (nearest[(slice(None), *idx)] - np.asarray(idx, dtype=nearest.dtype)).astype(
        np.float64
    )
    for axis, s in enumerate(sp):
        offsets[axis] *= s
    np.multiply(offsets, offsets, out=offsets)
    return np.sqrt(np.add.reduce(offsets, axis=0))


def _float_distances(offsets: np.ndarray, sp: tuple[float, ...]) -> np.ndarray:
    """Lengths of integer ``offsets`` (ndim, M) in mm, with scipy's EDT arithmetic."""
    scaled = offsets.astype(np.float64)
    for axis, s in enumerate(sp):
        scaled[axis] *= s
    np.multiply(scaled, scaled, out=scaled)
    return np.sqrt(np.add.reduce(scaled, axis=0))


#: Above this many offsets, :func:`_ball` gives up (the distance transform is used).
_MAX_BALL_CANDIDATES = 2_000_000
#: Offsets whose length is within this relative distance of the tolerance are "at" it.
_AT_TOLERANCE = 1e-9


@functools.cache
def _ball(sp: tuple[float, ...], tol: float) -> np.ndarray | None:
    """Integer offsets of length <= ``tol`` (ndim, M), nearest first; None if unsafe.

    "A surfel is within the tolerance" is then "some surfel of the other mask sits
    at one of these offsets". The package decides it from the distance to the
    surfel that scipy's feature transform picks as nearest, which is a nearest
    one up to rounding; the two decisions agree unless offsets of (nearly) the
    length fall on both sides of the tolerance (at spacing (0.8, 0.8, 2.5), the
    offsets (0, 0, 8) and (7, 24, 0) are both 20 mm, but the second rounds to
    20.000000000000004). Then, or when the ball is huge, this returns None and
    the caller uses the distance transform, as the package does.
    """
    reach = [math.floor(tol / s) + 1 for s in sp]  # one layer beyond, for the check
    if math.prod(2 * r + 1 for r in reach) > _MAX_BALL_CANDIDATES:
        return None
    grids = np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij")
    offsets = np.stack([g.ravel() for g in grids])
    length = _float_distances(offsets, sp)
    near = np.abs(length - tol) <= _AT_TOLERANCE * tol
    if near.any() and len(set((length[near] <= tol).tolist())) > 1:
        return None
    inside = length <= tol
    order = np.argsort(length[inside], kind="stable")
    ball = offsets[:, inside][:, order]
    ball.setflags(write=False)
    return ball


def _within_ball(target: np.ndarray, at: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """For each ``at`` point (raster order): is a ``target`` point at one of ``ball``'s offsets?

    ``target`` is padded by the ball's reach so that every probe stays inside;
    the offsets are tried nearest first and only on the points still undecided.
    """
    reach = np.abs(ball).max(axis=1)
    padded = np.pad(target, [(int(r), int(r)) for r in reach])
    flat = padded.ravel()
    strides = np.array([s // padded.itemsize for s in padded.strides])
    idx = np.nonzero(at)
    linear = sum((i + int(r)) * int(st) for i, r, st in zip(idx, reach, strides, strict=True))
    deltas = strides @ ball
    found = np.zeros(linear.size, bool)
    pending = np.arange(linear.size)
    for delta in deltas:
        hit = flat[linear[pending] + delta]
        found[pending[hit]] = True
        pending = pending[~hit]
        if not pending.size:
            break
    return found


#: Use the offset ball when (offsets x surfels) <= this x (corner-grid size): a probe
#: costs a few nanoseconds, the feature transform about a hundred per grid point.
_BALL_COST = 20


def _within(target: np.ndarray, at: np.ndarray, sp: tuple[float, ...], tol: float) -> np.ndarray:
    """Is each ``at`` surfel (raster order) within ``tol`` mm of a ``target`` surfel?"""
    ball = _ball(sp, tol)
    if ball is not None and ball.shape[1] * np.count_nonzero(at) <= _BALL_COST * at.size:
        return _within_ball(target, at, ball)
    return _distances_to(target, at, sp) <= tol


def surface_dice(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...], tolerance_mm: float
) -> float:
    """Surface Dice of two validated, non-empty boolean masks (no checks).

    The core of :func:`nsd_deepmind`, for callers that have validated the
    masks (boolean, same 2D/3D shape, both non-empty), the spacing (a tuple of
    positive floats, one per axis) and the tolerance.
    """
    sp = tuple(float(s) for s in spacing)
    tol = float(tolerance_mm)
    box = _union_box(pred, ref)
    table = contour_length_table(sp) if pred.ndim == 2 else surface_area_table(sp)
    surf_p, area_p = _surfels(pred[box], table)
    surf_r, area_r = _surfels(ref[box], table)
    overlap = area_p[_within(surf_r, surf_p, sp, tol)].sum()
    overlap += area_r[_within(surf_p, surf_r, sp, tol)].sum()
    return float(overlap / (area_p.sum() + area_r.sum()))


def nsd_deepmind(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing: Sequence[float] | None,
    tolerance_mm: float,
) -> float:
    """Normalised surface Dice at a tolerance, DeepMind's surfel definition.

    Equal to ``compute_surface_dice_at_tolerance(compute_surface_distances(
    reference, prediction, spacing), tolerance_mm)`` of DeepMind's
    surface-distance package (the score is symmetric in the two masks).

    Parameters
    ----------
    prediction, reference : ndarray of bool
        Masks of the same 2D or 3D shape (0/1 integers or floats accepted).
    spacing : sequence of float or None
        Spacing per axis in array order (mm), one positive number per axis;
        None means 1.0 per axis (pixel units, as in :mod:`bench.metrics`).
    tolerance_mm : float
        Tolerance, >= 0, in the units of ``spacing``.

    Returns
    -------
    float
        In [0, 1]; NaN when both masks are empty, 0.0 when exactly one is.
        (:mod:`bench.metrics` applies the harness's empty-mask policy instead.)

    Raises
    ------
    ValueError
        A mask that is not 2D/3D boolean, different shapes, a spacing of the
        wrong length or not positive, or a negative or non-finite tolerance.
    """
    pred = as_mask(prediction, "prediction")
    ref = as_mask(reference, "reference")
    if pred.shape != ref.shape:
        raise ValueError(f"prediction and reference: shape mismatch {pred.shape} vs {ref.shape}")
    sp = as_spacing(spacing, pred.ndim)
    tol = as_tolerance(tolerance_mm)
    has_p, has_r = bool(pred.any()), bool(ref.any())
    if not (has_p or has_r):
        return math.nan
    if not (has_p and has_r):
        return 0.0
    return surface_dice(pred, ref, sp, tol)
