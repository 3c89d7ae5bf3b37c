"""Tests for bench.surface_dice (``nsd_deepmind``).

The expectation is an independent port, kept here, of DeepMind's
surface-distance code (google-deepmind/surface-distance, commit
1f805cea446805e559badc80dd27f34175e4173d: ``compute_surface_distances`` and
``compute_surface_dice_at_tolerance`` in ``surface_distance/metrics.py``, the
tables of ``lookup_tables.py``). The port follows the package step by step
(bounding-box crop padded on the high side, neighbour codes by correlation with
the package's kernels, dense distance maps, dense area maps, sorting); its
lookup tables are derived here from their definition, by a route different from
the production code's: a case analysis in 2D, and in 3D the corner components'
cut edges walked face by face with a brute-force search over all triangulations.
When the PyPI package ``surface-distance`` is installed, the tests also compare
with it directly (optional: ``pip install -e '.[bench-reference]'``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from bench import metrics, surface_dice
from bench.surface_dice import nsd_deepmind

TOL = 1e-6


# --------------------------------------------------------------------------- port: tables


def _port_contour_lengths(spacing) -> np.ndarray:
    """2D table by cases: code bits are (top-left, top-right, bottom-left, bottom-right)."""
    dy, dx = spacing
    half_diagonal = 0.5 * math.hypot(dy, dx)
    table = np.zeros(16)
    for code in range(16):
        tl, tr, bl, br = (code >> 3) & 1, (code >> 2) & 1, (code >> 1) & 1, code & 1
        n = tl + tr + bl + br
        if n in (1, 3):
            table[code] = half_diagonal  # one corner cut off
        elif n == 2 and tl == tr:
            table[code] = dx  # top pair vs bottom pair: a line across, along axis 1
        elif n == 2 and tl == bl:
            table[code] = dy  # left pair vs right pair: along axis 0
        elif n == 2:
            table[code] = 2 * half_diagonal  # diagonal pair: two corners cut off
    return table


_CUBE = list(itertools.product((0, 1), repeat=3))  # corner n = 4i + 2j + k, bit 7 - n


def _cube_faces() -> list[frozenset[int]]:
    return [frozenset(n for n, c in enumerate(_CUBE) if c[axis] == side)
            for axis in range(3) for side in (0, 1)]


def _components(corners: set[int]) -> list[set[int]]:
    """Groups of set corners joined by cube edges."""
    groups: list[set[int]] = []
    for n in sorted(corners):
        touching = [g for g in groups
                    if any(sum(a != b for a, b in zip(_CUBE[n], _CUBE[m], strict=True)) == 1
                           for m in g)]
        merged = {n}.union(*touching)
        groups = [g for g in groups if g not in touching] + [merged]
    return groups


def _loop(component: set[int]) -> list[tuple[int, int]]:
    """The component's cut edges in order: neighbours share a face of the cube."""
    cut = [(a, b) for a in component for b in range(8)
           if b not in component and sum(x != y for x, y in zip(_CUBE[a], _CUBE[b],
                                                                 strict=True)) == 1]
    faces = _cube_faces()
    loop = [cut[0]]
    while len(loop) < len(cut):
        last = loop[-1]
        nxt = [e for e in cut if e not in loop
               and any(set(e) | set(last) <= f for f in faces)]
        loop.append(nxt[0])
    return loop


def _triangulations(n: int):
    """Every triangulation of a convex n-gon's index cycle 0..n-1."""
    if n < 3:
        yield []
        return

    def split(vs):
        if len(vs) < 3:
            yield []
            return
        for m in range(1, len(vs) - 1):
            for left in split(vs[: m + 1]):
                for right in split(vs[m:]):
                    yield [*left, *right, (vs[0], vs[m], vs[-1])]

    yield from split(list(range(n)))


def _port_normals() -> list[list[np.ndarray]]:
    """Per code, area vectors of the surfel triangles at unit spacing.

    Marching cubes with vertices at edge midpoints, set corners of a face's
    diagonal kept apart, codes with more than four set corners taking the
    triangles of their complement; each polygon takes its triangulation of
    largest area.
    """
    table = []
    for code in range(256):
        base = code if bin(code).count("1") <= 4 else 255 - code
        corners = {n for n in range(8) if base >> (7 - n) & 1}
        triangles: list[np.ndarray] = []
        for group in _components(corners):
            pts = [(np.array(_CUBE[a]) + np.array(_CUBE[b])) / 2 for a, b in _loop(group)]
            best, best_area = [], -1.0
            for tri in _triangulations(len(pts)):
                vecs = [0.5 * np.cross(pts[b] - pts[a], pts[c] - pts[a]) for a, b, c in tri]
                area = sum(float(np.linalg.norm(v)) for v in vecs)
                if area > best_area + 1e-12:
                    best, best_area = vecs, area
            triangles += best
        table.append(triangles)
    return table


_NORMALS = _port_normals()


def _port_surface_areas(spacing) -> np.ndarray:
    s0, s1, s2 = spacing
    scale = np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.array([sum(float(np.linalg.norm(v * scale)) for v in tris) for tris in _NORMALS])


# --------------------------------------------------------------------------- port: metric

_KERNEL_2D = np.array([[8, 4], [2, 1]])
_KERNEL_3D = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]])


def _port_surface_distances(mask_gt, mask_pred, spacing, crop: bool = True) -> dict:
    """DeepMind's compute_surface_distances, step by step (``crop=False``: whole array)."""
    ndim = mask_gt.ndim
    if ndim == 2:
        table, kernel, full = _port_contour_lengths(spacing), _KERNEL_2D, 0b1111
    else:
        table, kernel, full = _port_surface_areas(spacing), _KERNEL_3D, 0b11111111
    union = mask_gt | mask_pred
    if not union.any():
        empty = np.array([])
        return {"gt_to_pred": empty, "pred_to_gt": empty, "areas_gt": empty, "areas_pred": empty}
    if crop:
        lo = [int(np.flatnonzero(np.amax(union, axis=tuple(a for a in range(ndim) if a != ax)))[0])
              for ax in range(ndim)]
        hi = [int(np.flatnonzero(np.amax(union, axis=tuple(a for a in range(ndim) if a != ax)))[-1])
              for ax in range(ndim)]
    else:
        lo, hi = [0] * ndim, [n - 1 for n in union.shape]
    window = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))

    def cropped(mask):
        # one zero layer on the high side only; the correlation's cval=0 covers the low side
        out = np.zeros([b - a + 2 for a, b in zip(lo, hi, strict=True)], np.uint8)
        out[(slice(0, -1),) * ndim] = mask[window]
        return out

    code_gt = ndi.correlate(cropped(mask_gt), kernel, mode="constant", cval=0)
    code_pred = ndi.correlate(cropped(mask_pred), kernel, mode="constant", cval=0)
    border_gt = (code_gt != 0) & (code_gt != full)
    border_pred = (code_pred != 0) & (code_pred != full)
    dist_gt = (ndi.distance_transform_edt(~border_gt, sampling=spacing) if border_gt.any()
               else np.full(border_gt.shape, np.inf))
    dist_pred = (ndi.distance_transform_edt(~border_pred, sampling=spacing)
                 if border_pred.any() else np.full(border_pred.shape, np.inf))
    area_gt, area_pred = table[code_gt], table[code_pred]
    out = {"gt_to_pred": dist_pred[border_gt], "pred_to_gt": dist_gt[border_pred],
           "areas_gt": area_gt[border_gt], "areas_pred": area_pred[border_pred]}
    for d, a in (("gt_to_pred", "areas_gt"), ("pred_to_gt", "areas_pred")):
        order = np.lexsort((out[a], out[d]))  # the package sorts (distance, area) pairs
        out[d], out[a] = out[d][order], out[a][order]
    return out


def _port_surface_dice(distances: dict, tolerance_mm: float) -> float:
    """DeepMind's compute_surface_dice_at_tolerance (0/0 -> NaN when both are empty)."""
    overlap = (distances["areas_gt"][distances["gt_to_pred"] <= tolerance_mm].sum()
               + distances["areas_pred"][distances["pred_to_gt"] <= tolerance_mm].sum())
    total = distances["areas_gt"].sum() + distances["areas_pred"].sum()
    return math.nan if total == 0 else float(overlap / total)


def _port(pred, ref, spacing, tol, crop: bool = True) -> float:
    return _port_surface_dice(_port_surface_distances(ref, pred, spacing, crop), tol)


# --------------------------------------------------------------------------- cases


def _blob(rng, shape, fraction):
    field = ndi.gaussian_filter(rng.random(shape), sigma=1.5)
    return field > np.quantile(field, 1 - fraction)


def _cases() -> list[tuple[str, np.ndarray, np.ndarray, tuple[float, ...], float]]:
    rng = np.random.default_rng(20261206)
    cases = []
    for i, (shape, spacing) in enumerate([((37, 23), (0.8, 1.3)), ((19, 41), (2.5, 0.7)),
                                          ((30, 30), (1.0, 1.0)), ((11, 64), (0.5, 3.0))]):
        cases.append((f"random-2d-{i}", _blob(rng, shape, 0.3), _blob(rng, shape, 0.35),
                      spacing, [0.0, 1.0, 2.0, 2.5][i]))
    for i, (shape, spacing) in enumerate([((18, 25, 13), (0.8, 0.8, 2.5)),
                                          ((9, 31, 22), (2.0, 0.7, 1.1)),
                                          ((20, 20, 20), (1.0, 1.0, 1.0)),
                                          ((26, 14, 7), (0.6, 1.7, 3.0)),
                                          ((15, 17, 19), (1.3, 0.9, 0.5))]):
        cases.append((f"random-3d-{i}", _blob(rng, shape, 0.25), _blob(rng, shape, 0.3),
                      spacing, [2.0, 1.0, 0.0, 3.0, 1.5][i]))
    # a prediction that is the reference shifted by one voxel along the coarse axis
    ref = _blob(rng, (24, 21, 11), 0.3)
    cases.append(("shifted-3d", np.roll(ref, 1, axis=2), ref, (0.9, 0.9, 2.5), 2.0))
    cases.append(("shifted-3d-tight", np.roll(ref, 1, axis=2), ref, (0.9, 0.9, 2.5), 2.4))
    # sparse speckle: isolated voxels everywhere (many ambiguous neighbour codes)
    cases.append(("sparse-3d", rng.random((12, 15, 9)) < 0.08, rng.random((12, 15, 9)) < 0.08,
                  (1.1, 0.6, 2.0), 1.5))
    cases.append(("sparse-2d", rng.random((33, 17)) < 0.1, rng.random((33, 17)) < 0.1,
                  (0.7, 1.9), 1.0))
    # touching the array border: full planes/rows on the border, and a full mask
    a = np.zeros((10, 14, 6), bool)
    a[0, :, :] = True
    a[:, -1, 2:] = True
    b = np.zeros_like(a)
    b[:2, 3:, :] = True
    cases.append(("border-3d", a, b, (1.2, 0.8, 2.5), 1.0))
    full = np.ones((8, 13), bool)
    part = np.zeros((8, 13), bool)
    part[:, :7] = True
    cases.append(("border-2d-full", full, part, (0.9, 1.4), 2.0))
    cases.append(("border-3d-full-vs-full", np.ones((4, 5, 3), bool), np.ones((4, 5, 3), bool),
                  (1.0, 2.0, 3.0), 0.0))
    # thin structures: one-voxel lines and sheets
    line = np.zeros((16, 9, 12), bool)
    line[2:14, 4, 6] = True
    sheet = np.zeros_like(line)
    sheet[3:13, 2:7, 7] = True
    cases.append(("thin-3d", line, sheet, (0.8, 0.8, 2.5), 2.0))
    # single voxels and disjoint objects far apart (no overlap at the tolerance)
    one = np.zeros((7, 9), bool)
    one[3, 4] = True
    far = np.zeros((7, 9), bool)
    far[0, 0] = True
    cases.append(("single-voxel-2d", one, one.copy(), (0.6, 1.7), 0.0))
    cases.append(("far-apart-2d", one, far, (1.0, 1.0), 1.0))
    # empty masks
    empty3 = np.zeros((6, 7, 5), bool)
    blob3 = _blob(rng, (6, 7, 5), 0.4)
    cases.append(("empty-both-3d", empty3, empty3.copy(), (1.0, 1.0, 2.0), 2.0))
    cases.append(("empty-pred-3d", empty3, blob3, (1.0, 1.0, 2.0), 2.0))
    cases.append(("empty-ref-2d", _blob(rng, (9, 12), 0.4), np.zeros((9, 12), bool),
                  (0.5, 0.5), 2.0))
    return cases


CASES = _cases()
IDS = [c[0] for c in CASES]


# --------------------------------------------------------------------------- tables


def test_port_tables_hand_values():
    """Table entries worked out by hand, so that the port itself is pinned."""
    s0, s1 = 0.8, 2.5
    t2 = _port_contour_lengths((s0, s1))
    assert t2[0b0001] == pytest.approx(0.5 * math.hypot(s0, s1))
    assert t2[0b0011] == pytest.approx(s1)  # bottom row set: the contour runs along axis 1
    assert t2[0b0101] == pytest.approx(s0)
    assert t2[0b0110] == pytest.approx(math.hypot(s0, s1))
    assert t2[0] == t2[15] == 0
    sp = (0.8, 1.3, 2.5)
    t3 = _port_surface_areas(sp)
    # a corner cut off: the triangle through three edge midpoints
    corner = 0.5 * np.linalg.norm(np.cross([-sp[0] / 2, sp[1] / 2, 0], [-sp[0] / 2, 0, sp[2] / 2]))
    assert t3[0b00000001] == pytest.approx(corner)
    # one side of the cube set (corners with i = 1): a plane across axis 0
    assert t3[0b00001111] == pytest.approx(sp[1] * sp[2])
    assert t3[0b00110011] == pytest.approx(sp[0] * sp[2])  # corners with j = 1
    assert t3[0b01010101] == pytest.approx(sp[0] * sp[1])  # corners with k = 1
    # an edge of the cube set: a rectangle cutting it off
    assert t3[0b00000011] == pytest.approx(sp[2] * math.hypot(sp[0], sp[1]) / 2)
    assert t3[0] == t3[255] == 0
    assert np.allclose(t3, t3[::-1])  # a code and its complement weigh the same


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.8, 2.5), (3.0, 0.1)])
def test_contour_length_table_equals_port(spacing):
    np.testing.assert_allclose(surface_dice.contour_length_table(spacing),
                               _port_contour_lengths(spacing), rtol=0, atol=1e-12)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.5), (0.1, 3.0, 10.0),
                                     (2.0, 0.7, 1.1)])
def test_surface_area_table_equals_port(spacing):
    np.testing.assert_allclose(surface_dice.surface_area_table(spacing),
                               _port_surface_areas(spacing), rtol=1e-12, atol=1e-12)


def test_single_voxel_surfaces_are_a_rhombus_and_an_octahedron():
    """The surfels of one voxel: a rhombus (2D) and an octahedron (3D) through face centres."""
    sp2 = (0.6, 1.7)
    one2 = np.zeros((3, 3), bool)
    one2[1, 1] = True
    surf, lengths = surface_dice._surfels(one2, surface_dice.contour_length_table(sp2))
    assert surf.sum() == 4
    assert lengths.sum() == pytest.approx(2 * math.hypot(*sp2))
    sp3 = (1.0, 1.0, 1.0)
    one3 = np.zeros((3, 3, 3), bool)
    one3[1, 1, 1] = True
    surf, areas = surface_dice._surfels(one3, surface_dice.surface_area_table(sp3))
    assert surf.sum() == 8
    assert areas.sum() == pytest.approx(math.sqrt(3))  # octahedron with edge sqrt(1/2)


# --------------------------------------------------------------------------- values


def test_at_least_twenty_cases():
    assert len(CASES) >= 20
    assert {c[1].ndim for c in CASES} == {2, 3}


@pytest.mark.parametrize(("name", "pred", "ref", "spacing", "tol"), CASES, ids=IDS)
def test_equals_port_of_deepmind(name, pred, ref, spacing, tol):
    expected = _port(pred, ref, spacing, tol)
    got = nsd_deepmind(pred, ref, spacing, tol)
    if math.isnan(expected):
        assert math.isnan(got) and not pred.any() and not ref.any()
    else:
        assert abs(got - expected) <= TOL, (got, expected)


@pytest.mark.parametrize("path", ["distance-transform", "offset-ball"])
@pytest.mark.parametrize(("name", "pred", "ref", "spacing", "tol"), CASES, ids=IDS)
def test_both_ways_of_deciding_the_tolerance_equal_the_port(monkeypatch, path, name, pred, ref,
                                                            spacing, tol):
    """Surfels within the tolerance: the feature transform (the package's way) and the
    probe of a ball of offsets (the fast way) each give the port's value."""
    monkeypatch.setattr(surface_dice, "_BALL_COST", 0 if path == "distance-transform" else 1e18)
    expected = _port(pred, ref, spacing, tol)
    got = nsd_deepmind(pred, ref, spacing, tol)
    assert (math.isnan(got) and math.isnan(expected)) or abs(got - expected) <= TOL


def test_offset_ball_by_hand():
    """At (0.8, 0.8, 2.5) mm and 2 mm: no step along axis 2 (2.5 mm), and in-plane the
    21 lattice points with a**2 + b**2 <= 6 (0.64 * 6.25 = 4), the nearest first."""
    ball = surface_dice._ball((0.8, 0.8, 2.5), 2.0)
    assert ball.shape == (3, 21)
    assert not ball[2].any()
    assert {(int(a), int(b)) for a, b in ball[:2].T} == {
        (a, b) for a in range(-2, 3) for b in range(-2, 3) if a * a + b * b <= 6}
    assert tuple(ball[:, 0]) == (0, 0, 0)
    assert surface_dice._ball((1.0, 1.0), 0.0).tolist() == [[0], [0]]


def test_offset_ball_refused_where_rounding_straddles_the_tolerance():
    """(0, 0, 8) and (7, 24, 0) at (0.8, 0.8, 2.5) are both 20 mm exactly, but the second
    computes as 20.000000000000004: which one scipy picks decides the package's answer,
    so the distance transform is used (and gives the port's value)."""
    assert surface_dice._ball((0.8, 0.8, 2.5), 20.0) is None
    rng = np.random.default_rng(7)
    pred, ref = _blob(rng, (70, 60, 12), 0.3), _blob(rng, (70, 60, 12), 0.05)
    assert abs(nsd_deepmind(pred, ref, (0.8, 0.8, 2.5), 20.0)
               - _port(pred, ref, (0.8, 0.8, 2.5), 20.0)) <= TOL


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ndim=st.sampled_from([2, 3]), seed=st.integers(0, 2**32 - 1),
       tol=st.sampled_from([0.0, 0.7, 1.0, 1.4, 2.0, 2.5, 3.5]), data=st.data())
def test_random_pairs_equal_port(ndim, seed, tol, data):
    """Random shapes (1-wide included), densities and spacings, including 0.7 and 1.3
    whose products round, and tolerances that land on lattice distances."""
    rng = np.random.default_rng(seed)
    hi = 24 if ndim == 2 else 12
    shape = tuple(data.draw(st.integers(1, hi)) for _ in range(ndim))
    spacing = tuple(data.draw(st.sampled_from([0.5, 0.7, 1.0, 1.3, 2.5])) for _ in range(ndim))
    pred = rng.random(shape) < data.draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))
    ref = rng.random(shape) < data.draw(st.sampled_from([0.05, 0.3, 0.7, 1.0]))
    expected = _port(pred, ref, spacing, tol)
    got = nsd_deepmind(pred, ref, spacing, tol)
    assert (math.isnan(got) and math.isnan(expected)) or abs(got - expected) <= TOL


@pytest.mark.parametrize(("name", "pred", "ref", "spacing", "tol"),
                         [c for c in CASES if c[1].any() and c[2].any()],
                         ids=[c[0] for c in CASES if c[1].any() and c[2].any()])
def test_cropping_changes_nothing(name, pred, ref, spacing, tol):
    """The union-box crop gives the value of the whole array (port without the crop)."""
    assert abs(nsd_deepmind(pred, ref, spacing, tol) - _port(pred, ref, spacing, tol,
                                                             crop=False)) <= TOL


def test_symmetric_in_the_two_masks():
    _, pred, ref, spacing, tol = CASES[5]
    assert nsd_deepmind(pred, ref, spacing, tol) == pytest.approx(
        nsd_deepmind(ref, pred, spacing, tol), abs=1e-12)


def test_spacing_is_per_axis_in_array_order():
    """An anisotropic case differs from its axis-swapped spacing (catches a reversed axis)."""
    _, pred, ref, spacing, _ = CASES[4]  # random-3d-0, spacing (0.8, 0.8, 2.5)
    a = nsd_deepmind(pred, ref, spacing, 1.0)
    b = nsd_deepmind(pred, ref, spacing[::-1], 1.0)
    assert a == pytest.approx(_port(pred, ref, spacing, 1.0), abs=TOL)
    assert b == pytest.approx(_port(pred, ref, spacing[::-1], 1.0), abs=TOL)
    assert abs(a - b) > 1e-3


def test_hand_case_two_squares_one_row_apart():
    """Two 4x4 squares, the second one row lower; spacing (2, 1) mm, tolerance 1 mm.

    Each contour has 16 surfels on the corner grid: 4 corner cuts of length
    h = sqrt(2**2 + 1**2) / 2, 3 pieces along axis 1 on each row side (1 mm
    each) and 3 pieces along axis 0 on each column side (2 mm each): 4h + 18 mm.
    Seen from the other square, the side pieces and the corner cuts of the
    shared-side rows are at 0 mm; on the row side that is inside the other
    square, the two outer pieces are 1 mm from the other's sides and the middle
    one 2 mm; the far row side (2 corner cuts, 3 pieces) is 2 mm away. So 2h + 4
    mm of each contour is out of a 1 mm tolerance, nothing of a 2 mm one.
    """
    a = np.zeros((8, 8), bool)
    a[2:6, 2:6] = True
    b = np.roll(a, 1, axis=0)
    h = math.sqrt(5) / 2
    total = 4 * h + 18.0
    expected = (total - (2 * h + 4.0)) / total
    assert nsd_deepmind(a, b, (2.0, 1.0), 1.0) == pytest.approx(expected, abs=1e-12)
    assert nsd_deepmind(a, b, (2.0, 1.0), 2.0) == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------- bench.metrics


def test_registered_as_a_metric_with_a_definition():
    assert "nsd_deepmind" in metrics.METRICS
    assert "nsd_deepmind" in metrics.METRIC_NAMES
    assert "DeepMind" in metrics.METRIC_DEFINITIONS["nsd_deepmind"]


def test_score_case_uses_the_tolerance_and_empty_policy():
    _, pred, ref, spacing, _ = CASES[5]
    scored = metrics.score_case(pred, ref, spacing, metrics=("nsd", "nsd_deepmind"),
                                nsd_tolerance_mm=1.0)
    assert scored["nsd_deepmind"][1] == "ok"
    assert scored["nsd_deepmind"][0] == pytest.approx(_port(pred, ref, spacing, 1.0), abs=TOL)
    empty = np.zeros_like(pred)
    assert metrics.score_case(empty, ref, spacing, metrics=("nsd_deepmind",))[
        "nsd_deepmind"] == (0.0, "penalised")
    value, status = metrics.score_case(empty, empty, spacing, metrics=("nsd_deepmind",))[
        "nsd_deepmind"]
    assert math.isnan(value) and status == "both_empty"
    one = metrics.EmptyPolicy(both_empty="one")
    assert metrics.score_case(empty, empty, spacing, metrics=("nsd_deepmind",), policy=one)[
        "nsd_deepmind"] == (1.0, "both_empty")
    assert metrics.nsd_deepmind(pred, ref, 1.0, spacing) == pytest.approx(
        scored["nsd_deepmind"][0], abs=1e-12)


def test_unknown_spacing_means_pixel_units():
    _, pred, ref, _, _ = CASES[0]
    assert nsd_deepmind(pred, ref, None, 1.0) == nsd_deepmind(pred, ref, (1.0, 1.0), 1.0)


@pytest.mark.parametrize(("args", "message"), [
    ((np.zeros(5, bool), np.zeros(5, bool), (1.0,), 1.0), "2D or 3D"),
    ((np.zeros((3, 4), bool), np.zeros((4, 3), bool), (1.0, 1.0), 1.0), "shape mismatch"),
    ((np.zeros((3, 4), bool), np.zeros((3, 4), bool), (1.0, 1.0, 1.0), 1.0), "2 values"),
    ((np.zeros((3, 4), bool), np.zeros((3, 4), bool), (1.0, 0.0), 1.0), "> 0"),
    ((np.zeros((3, 4), bool), np.zeros((3, 4), bool), (1.0, 1.0), -1.0), ">= 0"),
    ((np.zeros((3, 4), bool), np.zeros((3, 4), bool), 2.0, (1.0, 1.0)), "spacing"),
    ((np.full((3, 4), 2), np.zeros((3, 4), bool), (1.0, 1.0), 1.0), "values 0/1"),
])
def test_bad_input_is_one_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        nsd_deepmind(*args)


# --------------------------------------------------------------------------- the package


def _package():
    return pytest.importorskip("surface_distance")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # its scipy.ndimage.filters imports
@pytest.mark.parametrize(("name", "pred", "ref", "spacing", "tol"),
                         [c for c in CASES if c[1].any() and c[2].any()],
                         ids=[c[0] for c in CASES if c[1].any() and c[2].any()])
def test_equals_deepmind_package(name, pred, ref, spacing, tol):
    """Against surface-distance itself (cases with two non-empty masks: its 0.1 release
    uses ``np.Inf``, gone in NumPy 2, when one mask is empty)."""
    sd = _package()
    expected = sd.compute_surface_dice_at_tolerance(
        sd.compute_surface_distances(ref, pred, spacing), tol)
    assert abs(nsd_deepmind(pred, ref, spacing, tol) - expected) <= TOL
    assert abs(_port(pred, ref, spacing, tol) - expected) <= TOL


@pytest.mark.parametrize("spacing", [(0.8, 0.8, 2.5), (0.1, 3.0, 10.0)])
def test_tables_equal_deepmind_package(spacing):
    _package()
    from surface_distance import lookup_tables

    np.testing.assert_allclose(
        surface_dice.surface_area_table(spacing),
        lookup_tables.create_table_neighbour_code_to_surface_area(spacing), atol=1e-12)
    np.testing.assert_allclose(
        surface_dice.contour_length_table(spacing[:2]),
        lookup_tables.create_table_neighbour_code_to_contour_length(spacing[:2]), atol=1e-12)
