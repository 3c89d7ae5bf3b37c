"""bench.official_metrics against hand-computed cases, torch's interpolate and PIL's resize."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bench.official_metrics import (
    THRESHOLDS_3D,
    official_image_scores,
    official_overlap,
    official_volume_scores,
    resize_bilinear,
    resize_nearest,
    resize_nearest_pil,
)


def test_overlap_hand_cases():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert official_overlap(a, b) == (1.0, 1.0)  # empty/empty = 1
    b[0, 0] = True
    d, j = official_overlap(a, b)  # one false negative pixel on an otherwise empty pair
    assert d == pytest.approx(1e-4 / (1 + 1e-4)) and j == pytest.approx(1e-6 / (1 + 1e-6))
    a[0, :2] = True  # |A| = 2, |B| = 1, |A∩B| = 1, |A∪B| = 2
    d, j = official_overlap(a, b)
    assert d == pytest.approx((2 + 1e-4) / (3 + 1e-4))
    assert j == pytest.approx((1 + 1e-6) / (2 + 1e-6))


def test_thresholds_are_the_official_five():
    assert THRESHOLDS_3D == (0.1, 0.3, 0.5, 0.7, 0.9)


@pytest.mark.parametrize(("shape", "size"), [((256, 256), (1024, 1024)), ((5, 7), (13, 11)),
                                             ((64, 48), (1024, 1024)), ((300, 200), (64, 96))])
def test_resizing_matches_torch(shape, size):
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    rng = np.random.default_rng(1)
    a = rng.normal(size=shape).astype(np.float32)
    t = torch.from_numpy(a)[None, None]
    nearest = f.interpolate(t, size=size)[0, 0].numpy()
    bilinear = f.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
    assert np.array_equal(resize_nearest(a, size), nearest)
    # Upsampling (the metric's use: low-res logits to 1024) agrees to float32 rounding;
    # torch's CPU kernel differs by ~3e-5 when downsampling (its own weight arithmetic).
    upsampling = size[0] >= shape[0] and size[1] >= shape[1]
    assert np.abs(resize_bilinear(a, size) - bilinear).max() < (1e-6 if upsampling else 1e-4)


@pytest.mark.parametrize(("shape", "size"), [((512, 512), (1024, 1024)), ((7, 5), (16, 16)),
                                             ((37, 29), (1024, 1024))])
def test_reference_resizing_matches_pil_nearest(shape, size):
    rng = np.random.default_rng(2)
    mask = rng.random(shape) > 0.5
    pil = np.asarray(Image.fromarray(mask).resize((size[1], size[0]), Image.NEAREST))
    assert np.array_equal(resize_nearest_pil(mask, size), pil)


def test_image_score_thresholds_logits_at_half():
    ref = np.zeros((4, 4), bool)
    ref[:2, :2] = True
    logits = np.full((2, 2), -1.0)
    logits[0, 0] = 0.6  # > 0.5: the top-left quarter, exactly the reference
    assert official_image_scores(logits, ref, size=8) == pytest.approx((1.0, 1.0))
    logits[0, 0] = 0.5  # not > 0.5: empty prediction against a 16-pixel reference
    d, _ = official_image_scores(logits, ref, size=8)
    assert d == pytest.approx(1e-4 / (16 + 1e-4))


def test_volume_score_averages_thresholds_then_slices():
    ref = [np.ones((2, 2), bool), np.zeros((2, 2), bool)]
    # slice 0: logit 0.4 everywhere: passes 0.1 and 0.3 (Dice 1), fails 0.5-0.9 (Dice ~0)
    # slice 1: empty reference, logit 0.2: a false positive at 0.1 only (Dice ~0), else 1
    logits = [np.full((2, 2), 0.4), np.full((2, 2), 0.2)]
    d, j = official_volume_scores(logits, ref, size=2)
    small = 1e-4 / (4 + 1e-4)
    slice0 = (2 + 3 * small) / 5
    slice1 = (small + 4) / 5
    assert d == pytest.approx((slice0 + slice1) / 2)
    small_iou = 1e-6 / (4 + 1e-6)
    assert j == pytest.approx(((2 + 3 * small_iou) / 5 + (small_iou + 4) / 5) / 2)
    with pytest.raises(ValueError, match="no slices"):
        official_volume_scores([], [])
    with pytest.raises(ValueError, match="2 logit slices for 1"):
        official_volume_scores(logits, ref[:1])
    with pytest.raises(ValueError, match="NaN"):
        official_image_scores(np.full((2, 2), np.nan), ref[0])
