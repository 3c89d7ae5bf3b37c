"""Prompt kinds, keyed streams and the interactive clicker (issue 3)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from bench.prompts.interactive import click_prompt, dice, next_click, noc, run_clicks
from bench.prompts.kinds import (
    deepest_point,
    jitter_box,
    mask_sha256,
    prompt_from_mask,
    random_point,
    tight_box,
)
from bench.prompts.streams import KeyedStream, keyed_stream, stream_key


@st.composite
def masks(draw, max_side=12):
    shape = draw(st.tuples(st.integers(1, max_side), st.integers(1, max_side)))
    mask = draw(arrays(bool, shape))
    if not mask.any():
        y = draw(st.integers(0, shape[0] - 1))
        x = draw(st.integers(0, shape[1] - 1))
        mask[y, x] = True
    return mask


def reference_depth(mask: np.ndarray) -> np.ndarray:
    """scipy EDT of the mask padded with one ring of background (our boundary convention)."""
    return ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]


def brute_force_depth(mask: np.ndarray) -> np.ndarray:
    """Distance from each mask pixel to the nearest pixel outside it, beyond the border included."""
    height, width = mask.shape
    padded = np.pad(mask, 1)
    by, bx = np.nonzero(~padded)
    out = np.zeros(mask.shape)
    for y, x in zip(*np.nonzero(mask), strict=True):
        out[y, x] = np.sqrt(((by - (y + 1)) ** 2 + (bx - (x + 1)) ** 2).min())
    return out


# ------------------------------------------------------------------ point


@settings(max_examples=150, deadline=None)
@given(masks())
def test_point_is_inside_at_the_distance_transform_maximum(mask):
    x, y = deepest_point(mask)
    assert mask[y, x]
    depth = reference_depth(mask)
    assert depth[y, x] == depth.max()
    ys, xs = np.nonzero(depth == depth.max())  # raster order
    assert (y, x) == (ys[0], xs[0])


@settings(max_examples=40, deadline=None)
@given(masks(max_side=8))
def test_boundary_convention_matches_brute_force(mask):
    np.testing.assert_allclose(reference_depth(mask), brute_force_depth(mask))
    x, y = deepest_point(mask)
    assert brute_force_depth(mask)[y, x] == pytest.approx(brute_force_depth(mask).max())


def test_point_ties_broken_in_raster_order():
    # Two 3x3 squares, both centres at depth 2: (x=6, y=1) comes first in raster order
    # although the other centre (x=1, y=4) has the smaller column.
    mask = np.zeros((6, 8), bool)
    mask[0:3, 5:8] = True
    mask[3:6, 0:3] = True
    assert deepest_point(mask) == (6, 1)
    # Same row: the smaller column wins.
    mask = np.zeros((3, 8), bool)
    mask[:, 5:8] = True
    mask[:, 0:3] = True
    assert deepest_point(mask) == (1, 1)


def test_point_on_mask_touching_the_image_edge():
    # Whole 4x6 frame: depth min(r+1, 4-r, c+1, 6-c) peaks at 2 on rows 1-2, columns 1-4.
    assert deepest_point(np.ones((4, 6), bool)) == (1, 1)
    # Rows 0-4 of column band 2-6 in a 5x9 frame, touching top and bottom: the centre.
    mask = np.zeros((5, 9), bool)
    mask[:, 2:7] = True
    assert deepest_point(mask) == (4, 2)


def test_point_on_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        deepest_point(np.zeros((3, 3), bool))


# ------------------------------------------------------------------ point-random


@settings(max_examples=60, deadline=None)
@given(masks(), st.integers(0, 2**31))
def test_random_point_is_inside(mask, seed):
    x, y = random_point(mask, KeyedStream(str(seed)))
    assert mask[y, x]


def test_random_point_is_uniform_over_the_target():
    mask = np.zeros((5, 5), bool)
    mask[1, 1] = mask[1, 3] = mask[3, 2] = mask[4, 4] = True
    counts: dict[tuple[int, int], int] = {}
    n = 2000
    for seed in range(n):
        point = random_point(mask, keyed_stream(seed, "d", "c", "t", 0, "p", "point-random"))
        counts[point] = counts.get(point, 0) + 1
    assert set(counts) == {(1, 1), (3, 1), (2, 3), (4, 4)}
    sigma = np.sqrt(n * 0.25 * 0.75)
    assert all(abs(c - n / 4) < 4 * sigma for c in counts.values())


# ------------------------------------------------------------------ box


@settings(max_examples=150, deadline=None)
@given(masks())
def test_box_contains_the_target_and_is_tight(mask):
    x0, y0, x1, y1 = tight_box(mask)
    ys, xs = np.nonzero(mask)
    assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1
    # Tight: every side touches the target.
    assert mask[:, x0].any() and mask[:, x1].any() and mask[y0, :].any() and mask[y1, :].any()


def test_box_hand_case():
    mask = np.zeros((10, 12), bool)
    mask[2, 7] = True          # top-right
    mask[5:8, 3] = True        # left column
    mask[8, 5] = True          # bottom
    assert tight_box(mask) == (3, 2, 7, 8)


@settings(max_examples=150, deadline=None)
@given(masks(), st.integers(0, 6), st.integers(0, 2**31))
def test_jittered_box_never_shrinks_stays_in_range_and_is_clipped(mask, max_jitter, seed):
    height, width = mask.shape
    x0, y0, x1, y1 = tight_box(mask)
    jx0, jy0, jx1, jy1 = jitter_box((x0, y0, x1, y1), mask.shape, KeyedStream(str(seed)),
                                    max_jitter)
    assert max(0, x0 - max_jitter) <= jx0 <= x0
    assert max(0, y0 - max_jitter) <= jy0 <= y0
    assert x1 <= jx1 <= min(width - 1, x1 + max_jitter)
    assert y1 <= jy1 <= min(height - 1, y1 + max_jitter)


def test_jitter_offsets_are_independent_uniform_integers():
    max_jitter, n = 3, 1200
    offsets = []
    for seed in range(n):
        box = jitter_box((50, 50, 60, 60), (200, 200), KeyedStream(f"jitter-{seed}"), max_jitter)
        offsets.append((50 - box[0], 50 - box[1], box[2] - 60, box[3] - 60))
    offsets = np.array(offsets)
    sigma = np.sqrt(n * 0.25 * 0.75)
    for side in range(4):
        counts = np.bincount(offsets[:, side], minlength=max_jitter + 1)
        assert len(counts) == max_jitter + 1  # never more than max_jitter
        assert np.all(np.abs(counts - n / 4) < 4 * sigma)
    # Independent sides: correlation between sides near 0.
    corr = np.corrcoef(offsets.T)
    assert np.all(np.abs(corr[~np.eye(4, dtype=bool)]) < 0.15)


def test_jitter_range_parameter_is_checked():
    with pytest.raises(ValueError, match="max_jitter"):
        jitter_box((1, 1, 2, 2), (5, 5), KeyedStream("k"), -1)


# ------------------------------------------------------------------ prompt_from_mask, mask hash


def test_prompt_from_mask_kinds():
    # Non-square frame, square off the diagonal: a swapped x / y shows.
    mask = np.zeros((7, 9), bool)
    mask[1:6, 3:8] = True  # rows 1-5, columns 3-7: centre (x=5, y=3)
    point = prompt_from_mask(mask, "point", target="t", frame=4)
    assert point.points == ((5, 3),) and point.labels == (1,) and point.frame == 4
    assert prompt_from_mask(mask, "box", target="t", frame=4).box == (3, 1, 7, 5)
    mask_prompt = prompt_from_mask(mask, "mask", target="t", frame=4)
    assert np.array_equal(mask_prompt.mask, mask) and mask_prompt.mask is not mask
    with pytest.raises(ValueError, match="absent"):
        prompt_from_mask(np.zeros((3, 3)), "box", target="t", frame=0)
    with pytest.raises(ValueError, match="unknown"):
        prompt_from_mask(mask, "scribble", target="t", frame=0)
    with pytest.raises(ValueError, match="stream"):
        prompt_from_mask(mask, "box-jitter", target="t", frame=0)


def test_mask_sha256_definition():
    mask = np.zeros((3, 5), bool)
    mask[0, 0] = mask[2, 4] = True
    # 15 bits in raster order: 1 then 13 zeros then 1, packed MSB first and zero padded.
    expected = hashlib.sha256(b"3x5;" + bytes([0b10000000, 0b00000010])).hexdigest()
    assert mask_sha256(mask) == expected
    assert mask_sha256(mask.T) != expected  # shape is part of the hash


# ------------------------------------------------------------------ keyed streams


def test_stream_is_seeded_from_the_sha256_of_its_key():
    key = stream_key(3, "kits23", "case_00001", "kidney", 12, "paper-random", "include")
    assert key == '[3,"kits23","case_00001","kidney",12,"paper-random","include"]'
    digest = hashlib.sha256(key.encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]
    reference = np.random.PCG64(np.random.SeedSequence(words))
    stream = keyed_stream(3, "kits23", "case_00001", "kidney", 12, "paper-random", "include")
    assert [stream.raw() for _ in range(3)] == [int(v) for v in reference.random_raw(3)]


def test_streams_differ_by_every_key_part_and_repeat_for_the_same_key():
    base = (0, "d", "c", "t", 1, "p", "u")
    first = keyed_stream(*base).raw()
    assert keyed_stream(*base).raw() == first
    for position, other in enumerate((1, "d2", "c2", "t2", 2, "p2", "u2")):
        key = list(base)
        key[position] = other
        assert keyed_stream(*key).raw() != first
    assert json.loads(stream_key(0, "d", "c", None, None, "p", "u"))[3:5] == [None, None]
    with pytest.raises(ValueError, match="seed"):
        stream_key("0", "d", "c", "t", 1, "p", "u")


def test_stream_integer_and_uniform():
    stream = KeyedStream("ints")
    values = [stream.integer(7) for _ in range(7000)]
    counts = np.bincount(values, minlength=7)
    assert len(counts) == 7
    sigma = np.sqrt(7000 * (1 / 7) * (6 / 7))
    assert np.all(np.abs(counts - 1000) < 4 * sigma)
    floats = [stream.uniform() for _ in range(2000)]
    assert 0 <= min(floats) and max(floats) < 1
    assert abs(np.mean(floats) - 0.5) < 4 * np.sqrt(1 / 12 / 2000)
    with pytest.raises(ValueError):
        stream.integer(0)


# ------------------------------------------------------------------ interactive clicker


def square(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return mask


def test_first_click_is_the_deepest_ground_truth_pixel():
    ref = square((7, 7), (1, 5), (1, 5))
    assert next_click(np.zeros_like(ref), ref) == (3, 3, True)


@settings(max_examples=60, deadline=None)
@given(masks())
def test_first_click_equals_point_prompt(mask):
    x, y, positive = next_click(np.zeros_like(mask), mask)
    assert (x, y) == deepest_point(mask) and positive


def test_click_in_a_known_false_negative_region():
    # Reference: rows 1-9, columns 1-9 of an 11x11 frame. Prediction: columns 1-4 only.
    # FN region rows 1-9, columns 5-9; depth min(c-4, 10-c, r, 10-r) peaks at 3 on
    # column 7, rows 3-7; raster order gives (x=7, y=3).
    ref = square((11, 11), (1, 9), (1, 9))
    pred = square((11, 11), (1, 9), (1, 4))
    assert next_click(pred, ref) == (7, 3, True)
    # A pixel already clicked is not clicked again: next on the same column.
    assert next_click(pred, ref, [(7, 3, True)]) == (7, 4, True)


def test_click_in_a_known_false_positive_region():
    # Reference: rows 2-4, columns 2-4. Prediction adds an FP block rows 6-10, columns 3-9
    # (touching the bottom edge) and misses the reference pixel (2, 2).
    # FP depth min(r-5, 11-r, c-2, 10-c) peaks at 3 on row 8, columns 5-7 -> (x=5, y=8).
    # FN is the single pixel at depth 1 < 3, so the click is negative.
    ref = square((11, 11), (2, 4), (2, 4))
    pred = ref | square((11, 11), (6, 10), (3, 9))
    pred[2, 2] = False
    assert next_click(pred, ref) == (5, 8, False)


def test_click_tie_goes_negative_and_perfect_prediction_gives_none():
    # FN block 3x3 (depth 2) and FP block 3x3 (depth 2): tie -> negative, as in RITM.
    ref = square((9, 9), (0, 2), (0, 2))
    pred = square((9, 9), (5, 7), (5, 7))
    assert next_click(pred, ref) == (6, 6, False)
    assert next_click(ref, ref) is None


@settings(max_examples=80, deadline=None)
@given(masks(max_side=10), st.data())
def test_click_follows_the_ritm_rule(ref, data):
    pred = data.draw(arrays(bool, ref.shape))
    click = next_click(pred, ref)
    fn_depth = reference_depth(ref & ~pred)
    fp_depth = reference_depth(~ref & pred)
    if fn_depth.max() == 0 and fp_depth.max() == 0:
        assert click is None
        return
    x, y, positive = click
    assert positive == (fn_depth.max() > fp_depth.max())
    depth = fn_depth if positive else fp_depth
    assert depth[y, x] == depth.max()
    assert (ref[y, x] and not pred[y, x]) if positive else (pred[y, x] and not ref[y, x])


def test_noc_and_dice():
    assert noc([0.5, 0.86, 0.95], 0.85) == 2
    assert noc([0.5, 0.86, 0.95], 0.90) == 3
    assert noc([0.1] * 20, 0.85) == 20
    assert noc([0.1] * 3, 0.85, max_clicks=20) == 20
    assert noc([0.1, 0.2, 0.99], 0.85, max_clicks=2) == 2  # reached only after the limit
    a = square((4, 4), (0, 1), (0, 1))      # 4 pixels
    b = square((4, 4), (0, 1), (0, 3))      # 8 pixels, 4 shared
    assert dice(a, b) == pytest.approx(2 * 4 / 12)
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0


def test_click_prompt_accumulates_clicks():
    prompt = click_prompt("t", 2, [(1, 2, True), (3, 4, False)])
    assert prompt.kind == "point" and prompt.points == ((1, 2), (3, 4))
    assert prompt.labels == (1, 0) and prompt.frame == 2


def test_run_clicks_with_a_hand_worked_model():
    # A toy model that paints a 3x3 square around each positive click and clears one around
    # each negative click, on top of nothing (it ignores the previous prediction).
    ref = square((9, 9), (1, 7), (1, 4))          # 7 rows x 4 columns
    seen = []

    def predict(prompt, previous):
        seen.append((prompt.points, prompt.labels, previous is None))
        out = np.zeros_like(ref)
        for (x, y), label in zip(prompt.points, prompt.labels, strict=True):
            out[max(0, y - 1):y + 2, max(0, x - 1):x + 2] = bool(label)
        return out

    trace = run_clicks(predict, ref, target="t", frame=0, max_clicks=20)
    # Click 1: deepest pixel of the 7x4 block: depth 2 on rows 2-6, columns 2-3 -> (2, 2).
    assert trace.clicks[0] == (2, 2, True)
    assert seen[0] == (((2, 2),), (1,), True) and seen[1][2] is False
    # After click 1 the prediction is rows 1-3, columns 1-3: 9 of 28 reference pixels.
    assert trace.dice[0] == pytest.approx(2 * 9 / (9 + 28))
    # Dice after each click is the Dice of the model's mask for the clicks so far.
    for k in range(len(trace.clicks)):
        replay = predict(click_prompt("t", 0, trace.clicks[:k + 1]), None)
        assert trace.dice[k] == pytest.approx(dice(replay, ref))
    assert len(trace.clicks) <= 20 and len(set((x, y) for x, y, _ in trace.clicks)) == \
        len(trace.clicks)
    assert trace.noc(0.85) == noc(trace.dice, 0.85)
