"""Tests for bench.metrics against medpy, an independent KD-tree implementation
and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from medpy.metric import binary as medpy_binary
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from bench import metrics

# medpy's private helper (module-level name, not mangled): directed distances.
_medpy_surface_distances = getattr(medpy_binary, "__surface_distances")

SPACINGS = (0.5, 0.7, 0.8, 1.0, 1.3, 2.5, 3.0)
HYP = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- helpers


def _random_mask(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "blob":
        field = ndi.gaussian_filter(rng.random(shape), sigma=rng.uniform(0.8, 2.5))
        mask = field > np.quantile(field, rng.uniform(0.4, 0.95))
    elif kind == "sparse":
        mask = rng.random(shape) < rng.uniform(0.002, 0.05)
    else:  # axis-aligned box
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [int(rng.integers(a, n)) + 1 for a, n in zip(lo, shape, strict=True)]
        mask = np.zeros(shape, bool)
        mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    if not mask.any():
        mask[tuple(int(rng.integers(0, n)) for n in shape)] = True
    return mask


@st.composite
def mask_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    ndim = draw(st.sampled_from([2, 3]))
    hi = 24 if ndim == 2 else 16
    shape = tuple(draw(st.integers(1 if ndim == 3 else 2, hi)) for _ in range(ndim))
    spacing = tuple(draw(st.sampled_from(SPACINGS)) for _ in range(ndim))
    seed = draw(st.integers(0, 2**32 - 1))
    kinds = st.sampled_from(["blob", "sparse", "box"])
    rng = np.random.default_rng(seed)
    pred = _random_mask(rng, shape, draw(kinds))
    ref = _random_mask(rng, shape, draw(kinds))
    return pred, ref, spacing


def _kdtree_directed(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Independent directed surface distances: erosion surfaces + KD-tree in mm."""
    footprint = ndi.generate_binary_structure(a.ndim, 1)
    sa = np.argwhere(a & ~ndi.binary_erosion(a, footprint)) * np.asarray(spacing)
    sb = np.argwhere(b & ~ndi.binary_erosion(b, footprint)) * np.asarray(spacing)
    return cKDTree(sb).query(sa)[0], cKDTree(sa).query(sb)[0]


def _ref_hd95_max(a, b, spacing) -> float:
    d_ab, d_ba = _kdtree_directed(a, b, spacing)
    return max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))


def _ref_nsd(a, b, spacing, tol) -> float:
    d_ab, d_ba = _kdtree_directed(a, b, spacing)
    return (np.sum(d_ab <= tol) + np.sum(d_ba <= tol)) / (d_ab.size + d_ba.size)


# --------------------------------------------------------------------------- property tests


@HYP
@given(mask_pairs())
def test_hd95_and_assd_equal_medpy_on_full_array(case):
    pred, ref, spacing = case
    assert metrics.hd95(pred, ref, spacing) == pytest.approx(
        medpy_binary.hd95(pred, ref, voxelspacing=spacing), rel=0, abs=1e-9
    )
    assert metrics.assd(pred, ref, spacing) == pytest.approx(
        medpy_binary.assd(pred, ref, voxelspacing=spacing), rel=0, abs=1e-9
    )


@HYP
@given(mask_pairs())
def test_surface_distances_equal_medpy_in_order(case):
    pred, ref, spacing = case
    d_pr, d_rp = metrics.surface_distances(pred, ref, spacing)
    np.testing.assert_allclose(d_pr, _medpy_surface_distances(pred, ref, spacing), atol=1e-9)
    np.testing.assert_allclose(d_rp, _medpy_surface_distances(ref, pred, spacing), atol=1e-9)


@HYP
@given(mask_pairs(), st.floats(0.0, 8.0))
def test_hd95_max_and_nsd_equal_kdtree_reference(case, tol):
    pred, ref, spacing = case
    assert metrics.hd95_max(pred, ref, spacing) == pytest.approx(
        _ref_hd95_max(pred, ref, spacing), rel=1e-9, abs=1e-9
    )
    # The KD-tree computes i*s - j*s where the EDT computes (i-j)*s: bracket the
    # tolerance so that a distance equal to it up to rounding cannot flip a count.
    got = metrics.nsd(pred, ref, tol, spacing)
    assert (
        _ref_nsd(pred, ref, spacing, tol - 1e-9) <= got <= _ref_nsd(pred, ref, spacing, tol + 1e-9)
    )


@HYP
@given(mask_pairs())
def test_dice_iou_equal_medpy_and_formula(case):
    pred, ref, _ = case
    inter = np.sum(pred & ref)
    assert metrics.dice(pred, ref) == pytest.approx(medpy_binary.dc(pred, ref), abs=1e-12)
    assert metrics.iou(pred, ref) == pytest.approx(medpy_binary.jc(pred, ref), abs=1e-12)
    assert metrics.iou(pred, ref) == pytest.approx(inter / np.sum(pred | ref), abs=1e-12)


@HYP
@given(mask_pairs())
def test_score_case_matches_individual_functions(case):
    pred, ref, spacing = case
    names = tuple(metrics.METRICS)
    out = metrics.score_case(pred, ref, spacing, metrics=names, nsd_tolerance_mm=1.5)
    assert set(out) == set(names)
    assert all(status == "ok" for _, status in out.values())
    assert out["dice"][0] == metrics.dice(pred, ref)
    assert out["iou"][0] == metrics.iou(pred, ref)
    assert out["hd95"][0] == metrics.hd95(pred, ref, spacing)
    assert out["hd95_max"][0] == metrics.hd95_max(pred, ref, spacing)
    assert out["assd"][0] == metrics.assd(pred, ref, spacing)
    assert out["nsd"][0] == metrics.nsd(pred, ref, 1.5, spacing)


# --------------------------------------------------------------------------- hand-computed cases


def test_both_empty_default_policy_is_nan_and_counted():
    z = np.zeros((6, 7), bool)
    out = metrics.score_case(z, z, metrics=tuple(metrics.METRICS))
    for name, (value, status) in out.items():
        assert math.isnan(value), name
        assert status == "both_empty"
    assert math.isnan(metrics.dice(z, z))
    assert math.isnan(metrics.hd95(z, z))


def test_both_empty_policy_one_scores_perfect():
    z = np.zeros((4, 5, 6), bool)
    policy = metrics.EmptyPolicy(both_empty="one")
    out = metrics.score_case(z, z, metrics=tuple(metrics.METRICS), policy=policy)
    assert {k: v for k, v in out.items()} == {
        "dice": (1.0, "both_empty"),
        "iou": (1.0, "both_empty"),
        "hd95": (0.0, "both_empty"),
        "hd95_max": (0.0, "both_empty"),
        "assd": (0.0, "both_empty"),
        "nsd": (1.0, "both_empty"),
        "nsd_deepmind": (1.0, "both_empty"),
    }
    assert metrics.dice(z, z, policy=policy) == 1.0


@pytest.mark.parametrize("empty_side", ["pred", "ref"])
def test_one_empty_is_penalised_with_diagonal(empty_side):
    full = np.zeros((10, 20), bool)
    full[3:5, 4:9] = True
    empty = np.zeros_like(full)
    pred, ref = (empty, full) if empty_side == "pred" else (full, empty)
    diag = math.sqrt(20.0**2 + 20.0**2)  # shape (10, 20) * spacing (2, 1)
    out = metrics.score_case(pred, ref, (2.0, 1.0), metrics=tuple(metrics.METRICS))
    assert out == {
        "dice": (0.0, "penalised"),
        "iou": (0.0, "penalised"),
        "hd95": (pytest.approx(diag), "penalised"),
        "hd95_max": (pytest.approx(diag), "penalised"),
        "assd": (pytest.approx(diag), "penalised"),
        "nsd": (0.0, "penalised"),
        "nsd_deepmind": (0.0, "penalised"),
    }
    assert metrics.hd95(pred, ref, (2.0, 1.0)) == pytest.approx(diag)
    assert metrics.image_diagonal((10, 20), (2.0, 1.0)) == pytest.approx(diag)


def test_single_voxels_at_known_offset():
    pred = np.zeros((10, 10, 10), bool)
    ref = np.zeros_like(pred)
    pred[2, 3, 4] = True
    ref[5, 7, 4] = True
    spacing = (2.0, 0.5, 3.0)
    expected = math.sqrt((3 * 2.0) ** 2 + (4 * 0.5) ** 2)  # sqrt(40)
    assert metrics.hd95(pred, ref, spacing) == pytest.approx(expected, abs=1e-12)
    assert metrics.hd95_max(pred, ref, spacing) == pytest.approx(expected, abs=1e-12)
    assert metrics.assd(pred, ref, spacing) == pytest.approx(expected, abs=1e-12)
    assert metrics.dice(pred, ref) == 0.0
    assert metrics.nsd(pred, ref, 6.3, spacing) == 0.0
    assert metrics.nsd(pred, ref, 6.4, spacing) == 1.0


def test_masks_touching_the_array_border():
    # ref fills the 5x5 array: its surface is the 16-voxel ring (outside counts as 0).
    # pred is columns 0-1: all 10 voxels are surface.
    ref = np.ones((5, 5), bool)
    pred = np.zeros_like(ref)
    pred[:, :2] = True
    # pred->ref: 7 zeros, 3 ones. ref->pred: 7 zeros, 2 ones, 2 twos, 5 threes.
    # Pooled (26 sorted): position 0.95 * 25 = 23.75 lies among the threes.
    assert metrics.hd95(pred, ref) == 3.0
    assert metrics.hd95_max(pred, ref) == 3.0  # directed: 1.0 and 3.0
    assert metrics.assd(pred, ref) == pytest.approx(24 / 26)
    assert metrics.dice(pred, ref) == pytest.approx(20 / 35)
    assert metrics.iou(pred, ref) == pytest.approx(10 / 25)
    assert metrics.nsd(pred, ref, 1.0) == pytest.approx((10 + 9) / 26)
    assert metrics.hd95(pred, ref) == medpy_binary.hd95(pred, ref)


def test_one_voxel_lines_show_pooled_vs_max_definition():
    pred = np.zeros((10, 10), bool)
    ref = np.zeros_like(pred)
    pred[1, :] = True  # row 1
    ref[:, 4] = True  # column 4
    # pred->ref: |c - 4| = 4,3,2,1,0,1,2,3,4,5; ref->pred: |r - 1| = 1,0,1,...,8.
    # Pooled sorted (20): 0,0,1,1,1,1,2,2,2,3,3,3,4,4,4,5,5,6,7,8 -> 0.95*19 = 18.05 -> 7.05.
    # Directed: 0.95*9 = 8.55 -> 4.55 and 7.55, max 7.55.
    assert metrics.hd95(pred, ref) == pytest.approx(7.05)
    assert metrics.hd95_max(pred, ref) == pytest.approx(7.55)
    assert metrics.assd(pred, ref) == pytest.approx((25 + 37) / 20)
    assert metrics.dice(pred, ref) == pytest.approx(2 / 20)


def test_parallel_planes_with_anisotropic_spacing():
    pred = np.zeros((10, 6, 7), bool)
    ref = np.zeros_like(pred)
    pred[2] = True
    ref[5] = True
    spacing = (2.0, 0.7, 1.3)
    for fn in (metrics.hd95, metrics.hd95_max, metrics.assd):
        assert fn(pred, ref, spacing) == pytest.approx(6.0, abs=1e-12)
    assert metrics.nsd(pred, ref, 6.0, spacing) == 1.0
    assert metrics.nsd(pred, ref, 5.9, spacing) == 0.0
    assert metrics.dice(pred, ref) == 0.0


@pytest.mark.parametrize("shape", [(12, 9), (7, 8, 9)])
def test_identical_masks(shape):
    mask = np.zeros(shape, bool)
    mask[(slice(1, 5),) * len(shape)] = True
    out = metrics.score_case(mask, mask, metrics=tuple(metrics.METRICS))
    assert out == {
        "dice": (1.0, "ok"),
        "iou": (1.0, "ok"),
        "hd95": (0.0, "ok"),
        "hd95_max": (0.0, "ok"),
        "assd": (0.0, "ok"),
        "nsd": (1.0, "ok"),
        "nsd_deepmind": (1.0, "ok"),
    }


def test_zero_one_integer_and_float_masks_accepted():
    rng = np.random.default_rng(3)
    a = rng.random((9, 11)) > 0.5
    b = rng.random((9, 11)) > 0.5
    assert metrics.dice(a.astype(np.uint8), b.astype(np.float32)) == metrics.dice(a, b)
    assert metrics.hd95(a.astype(int), b.astype(float)) == metrics.hd95(a, b)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("pred", "ref", "message"),
    [
        (np.zeros((4, 4), bool), np.zeros((4, 5), bool), "shape mismatch"),
        (np.zeros(4, bool), np.zeros(4, bool), "ndim=1"),
        (np.zeros((2, 2, 2, 2), bool), np.zeros((2, 2, 2, 2), bool), "ndim=4"),
        (np.full((3, 3), 2), np.zeros((3, 3), bool), "pred: expected a boolean mask"),
        (np.zeros((3, 3)), np.full((3, 3), np.nan), "ref: mask contains NaN"),
        (np.zeros((3, 3)), np.full((3, 3), 0.5), "ref: expected a boolean mask"),
        (np.full((3, 3), "a"), np.zeros((3, 3), bool), "dtype"),
    ],
)
def test_bad_masks_raise(pred, ref, message):
    with pytest.raises(ValueError, match=message):
        metrics.dice(pred, ref)
    with pytest.raises(ValueError, match=message):
        metrics.score_case(pred, ref)


@pytest.mark.parametrize(
    ("spacing", "message"),
    [
        ((1.0,), "expected 2 values"),
        ((1.0, 0.0), "> 0"),
        ((1.0, -2.0), "> 0"),
        ((1.0, float("nan")), "> 0"),
        ("ab", "expected 2 numbers"),
    ],
)
def test_bad_spacing_raises(spacing, message):
    m = np.ones((3, 3), bool)
    with pytest.raises(ValueError, match=f"spacing: .*{message}"):
        metrics.hd95(m, m, spacing)


def test_bad_arguments_raise():
    m = np.ones((3, 3), bool)
    with pytest.raises(ValueError, match=r"metrics: unknown name\(s\) \['hd99'\]"):
        metrics.score_case(m, m, metrics=("dice", "hd99"))
    with pytest.raises(ValueError, match="metrics: expected a sequence"):
        metrics.score_case(m, m, metrics="dice")
    with pytest.raises(ValueError, match="tolerance_mm"):
        metrics.nsd(m, m, -1.0)
    with pytest.raises(ValueError, match="both_empty"):
        metrics.EmptyPolicy(both_empty="zero")
    with pytest.raises(ValueError, match="policy"):
        metrics.dice(m, m, policy="exclude")
    with pytest.raises(ValueError, match="non-empty"):
        metrics.surface_distances(m, np.zeros_like(m))


def test_registry_and_policy_metadata():
    assert set(metrics.METRIC_NAMES) == set(metrics.METRIC_DEFINITIONS)
    assert set(metrics.METRIC_NAMES) == set(metrics.METRICS) | set(metrics.OFFICIAL_METRICS)
    assert metrics.METRICS["hd95"] is metrics.hd95
    assert "pooled" in metrics.METRIC_DEFINITIONS["hd95"]
    assert metrics.DEFAULT_POLICY.both_empty == "exclude"
    assert metrics.DEFAULT_POLICY.name == "empty-v1-exclude"
    assert "image diagonal" in metrics.DEFAULT_POLICY.describe()


# --------------------------------------------------------------------------- exact equality
# hd95 and the other surface metrics take their distances from a KD-tree and prove each
# value from per-voxel bounds, falling back to scipy's EDT only when ties leave it open
# (bench.metrics._SurfacePair). These tests ask for medpy's values bit for bit.

# Spacings where tied offsets give different floats ((3*0.7)**2 + (4*0.7)**2 != (5*0.7)**2
# in float64), float32 header values, and dyadic ones where all arithmetic is exact.
TIE_SPACINGS = (0.7, 1.3, float(np.float32(0.7)), float(np.float32(0.976562)), 0.9765625, 2.5)


@st.composite
def tie_heavy_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Mask pairs on near-isotropic grids (many equidistant voxels), up to 40 x 40 / 20^3."""
    ndim = draw(st.sampled_from([2, 3]))
    hi = 40 if ndim == 2 else 20
    shape = tuple(draw(st.integers(1 if ndim == 3 else 2, hi)) for _ in range(ndim))
    base = draw(st.sampled_from(TIE_SPACINGS))
    # Mostly isotropic (ties), sometimes one anisotropic axis.
    spacing = [base] * ndim
    if draw(st.booleans()):
        spacing[draw(st.integers(0, ndim - 1))] = draw(st.sampled_from(SPACINGS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kinds = st.sampled_from(["blob", "sparse", "box"])
    pred = _random_mask(rng, shape, draw(kinds))
    ref = _random_mask(rng, shape, draw(kinds))
    return pred, ref, tuple(spacing)


def _assert_all_equal_medpy(pred, ref, spacing, tolerances=()):
    """Every surface metric equals its medpy-based value exactly (==, not approx)."""
    d_pr = _medpy_surface_distances(pred, ref, spacing)
    d_rp = _medpy_surface_distances(ref, pred, spacing)
    got_pr, got_rp = metrics.surface_distances(pred, ref, spacing)
    np.testing.assert_array_equal(got_pr, d_pr)
    np.testing.assert_array_equal(got_rp, d_rp)
    assert metrics.hd95(pred, ref, spacing) == medpy_binary.hd95(pred, ref, voxelspacing=spacing)
    assert metrics.assd(pred, ref, spacing) == medpy_binary.assd(pred, ref, voxelspacing=spacing)
    assert metrics.hd95_max(pred, ref, spacing) == max(
        np.percentile(d_pr, 95), np.percentile(d_rp, 95)
    )
    for tol in tolerances:
        within = np.count_nonzero(d_pr <= tol) + np.count_nonzero(d_rp <= tol)
        assert metrics.nsd(pred, ref, tol, spacing) == within / (d_pr.size + d_rp.size)
    # score_case shares one state across the metrics: same values.
    out = metrics.score_case(pred, ref, spacing, metrics=("hd95", "hd95_max", "assd"))
    assert out["hd95"][0] == metrics.hd95(pred, ref, spacing)
    assert out["hd95_max"][0] == metrics.hd95_max(pred, ref, spacing)
    assert out["assd"][0] == metrics.assd(pred, ref, spacing)


@settings(HYP, max_examples=300)  # ~3 s: cheap, and ties are where a bug would hide
@given(st.one_of(mask_pairs(), tie_heavy_pairs()), st.data())
def test_surface_metrics_identical_to_medpy(case, data):
    pred, ref, spacing = case
    d_all = np.concatenate(
        (_medpy_surface_distances(pred, ref, spacing), _medpy_surface_distances(ref, pred, spacing))
    )
    # Tolerances exactly at distances that occur: where a tie's last bit decides the count.
    tols = data.draw(st.lists(st.sampled_from(sorted(set(d_all.tolist()))), max_size=3))
    _assert_all_equal_medpy(pred, ref, spacing, tols)


def _ring(radius_sq: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """2D: pred = the centre voxel, ref = every voxel at squared offset ``radius_sq``."""
    c = size // 2
    pred = np.zeros((size, size + 3), bool)  # non-square: rows and columns differ
    pred[c, c] = True
    rr, cc = np.nonzero(np.ones_like(pred))
    ref = ((rr - c) ** 2 + (cc - c) ** 2 == radius_sq).reshape(pred.shape)
    return pred, ref


def test_tied_voxels_with_different_floats_give_medpys_value(monkeypatch):
    # 12 ref voxels at offset length 5: (±5, 0), (0, ±5) give 3.5 mm at spacing 0.7 but
    # (±3, ±4), (±4, ±3) give 3.4999999999999996. The centre's nearest voxel is a 12-way tie,
    # more than the first 8 neighbours looked at: which one scipy's EDT picks decides the
    # last bit of hd95_max (a single directed value).
    pred, ref = _ring(25, 13)
    spacing = (0.7, 0.7)
    assert len(np.argwhere(ref)) == 12
    pair = metrics._SurfacePair(pred, ref, spacing)
    lo, hi = pair.bounds(0)
    assert (lo.tolist(), hi.tolist()) == ([3.4999999999999996], [3.5])
    calls = []
    real = metrics._distances_at
    monkeypatch.setattr(
        metrics, "_distances_at", lambda *a: calls.append(1) or real(*a)
    )
    _assert_all_equal_medpy(pred, ref, spacing, tolerances=(3.4999999999999996, 3.5))
    assert calls, "the undecided tie must be settled by scipy's EDT, as medpy does"


def test_ties_larger_than_every_neighbour_count_fall_back_to_the_edt(monkeypatch):
    pred, ref = _ring(25, 13)
    monkeypatch.setattr(metrics, "_TIE_COUNTS", (2, 4))
    pair = metrics._SurfacePair(pred, ref, (0.7, 0.7))
    assert pair.bounds(0)[0].tolist() == [0.0] and pair.bounds(0)[1].tolist() == [math.inf]
    _assert_all_equal_medpy(pred, ref, (0.7, 0.7), tolerances=(3.5,))


def test_ties_with_equal_floats_need_no_edt(monkeypatch):
    # Spacing 0.8: (5*0.8)**2 == (3*0.8)**2 + (4*0.8)**2 in float64, so the 12-way tie is
    # settled without scipy's EDT; so is a blob pair at unit spacing (integer arithmetic).
    monkeypatch.setattr(metrics, "_distances_at", None)  # any call would raise
    pred, ref = _ring(25, 13)
    assert metrics.hd95_max(pred, ref, (0.8, 0.8)) == 4.0
    rng = np.random.default_rng(5)
    a, b = _random_mask(rng, (30, 20, 12), "blob"), _random_mask(rng, (30, 20, 12), "blob")
    assert metrics.hd95(a, b) == medpy_binary.hd95(a, b)
    assert metrics.assd(a, b) == medpy_binary.assd(a, b)


@pytest.mark.parametrize(
    "spacing", [(0.8, 0.8, 2.5), (0.7031249761581421, 0.7031249761581421, 3.0), (1.3, 1.3, 1.3)]
)
def test_organ_sized_blobs_identical_to_medpy(spacing):
    # Larger than the property tests: many surface voxels and ties. (With seed 13, treating
    # only bit-equal KD-tree distances as ties changes surface distances at two spacings.)
    rng = np.random.default_rng(13)
    shape = (70, 54, 26)
    field = ndi.gaussian_filter(rng.random(shape), sigma=3.0)
    ref = field > np.quantile(field, 0.7)
    moved = np.roll(ndi.gaussian_filter(rng.random(shape), sigma=3.0), (3, -2, 1), (0, 1, 2))
    pred = (field + 0.6 * (moved - moved.mean())) > np.quantile(field, 0.72)
    _assert_all_equal_medpy(pred, ref, spacing, tolerances=(1.0, 2.0, 2.5))


def test_masks_touching_several_borders_and_singleton_axes():
    # A box filling three faces of a (9, 1, 11) volume: the singleton axis makes every voxel
    # surface (outside counts as background); anisotropic spacing.
    pred = np.zeros((9, 1, 11), bool)
    ref = np.zeros_like(pred)
    pred[:5, :, 3:] = True
    ref[2:, :, :8] = True
    _assert_all_equal_medpy(pred, ref, (0.7, 2.0, 1.3), tolerances=(0.7, 1.3))
    # 3D, touching five faces, not a view of a C-contiguous array.
    rng = np.random.default_rng(2)
    a = _random_mask(rng, (8, 12, 10), "blob")
    a[0], a[:, -1], a[..., 0] = True, True, True
    b = np.roll(a, 2, axis=1)
    _assert_all_equal_medpy(a.transpose(2, 0, 1), b.transpose(2, 0, 1), (2.5, 0.8, 0.8))


def test_single_voxel_masks_at_a_tie():
    # One voxel each way: every direction has one value; ref at (3, 4) voxels from pred.
    pred = np.zeros((6, 9), bool)
    ref = np.zeros_like(pred)
    pred[0, 0] = True
    ref[3, 4] = True
    _assert_all_equal_medpy(pred, ref, (0.7, 0.7), tolerances=(3.5, 3.4999999999999996))
    assert metrics.hd95(pred, ref, (0.7, 0.7)) == 3.4999999999999996  # not 3.5
