"""Protocol ``medsam-box`` (issue 18 item 3): MedSAM's box shift, against a port of its rule.

The port below restates bowang-lab/MedSAM ``train_one_gpu.py`` ``NpyDataset.__getitem__``
(commit d71e8a1): tight box from ``np.where``, then four ``random.randint(0, bbox_shift)``
draws taken for x_min, x_max, y_min, y_max in that order, mins clipped at 0, maxes at W and H.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.prompts import get_protocol, make_prompts, scored_frames
from bench.prompts.kinds import tight_box
from bench.prompts.medsam_box import DEFAULT_BBOX_SHIFT, medsam_box, shift_box, shift_draws
from bench.prompts.streams import KeyedStream, keyed_stream
from bench.types import Flow


class Draws:
    """Stands in for Python's ``random``: ``randint(a, b)`` hands out given integers."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = []

    def randint(self, low, high):
        value = self.values.pop(0)
        assert low <= value <= high, "a draw outside randint's inclusive range"
        self.calls.append((low, high))
        return value


def upstream_box(gt2d: np.ndarray, rng: Draws, bbox_shift: int = 20) -> list[int]:
    """Independent port of MedSAM's perturbed ground-truth box."""
    rows, cols = np.nonzero(gt2d > 0)
    left, right = cols.min(), cols.max()
    top, bottom = rows.min(), rows.max()
    height, width = gt2d.shape
    left = max(0, left - rng.randint(0, bbox_shift))
    right = min(width, right + rng.randint(0, bbox_shift))
    top = max(0, top - rng.randint(0, bbox_shift))
    bottom = min(height, bottom + rng.randint(0, bbox_shift))
    return [int(left), int(top), int(right), int(bottom)]


def test_hand_computed_box_clips_far_sides_at_width_and_height():
    # 7 rows x 10 columns; target columns 3..5, rows 2..4.
    mask = np.zeros((7, 10), bool)
    mask[2:5, 3:6] = True
    # draws in upstream order: x_min -1, x_max +9, y_min -2 (-> 0), y_max +9 (-> H = 7)
    assert shift_box(tight_box(mask), mask.shape, (1, 9, 2, 9)) == (2, 0, 10, 7)
    assert upstream_box(mask, Draws([1, 9, 2, 9])) == [2, 0, 10, 7]
    # no shift: the tight box itself
    assert shift_box(tight_box(mask), mask.shape, (0, 0, 0, 0)) == (3, 2, 5, 4)


@pytest.mark.parametrize("case", range(40))
def test_equal_to_upstream_port_given_the_same_draws(case):
    rng = np.random.default_rng(case)
    height, width = int(rng.integers(5, 40)), int(rng.integers(5, 60))  # non-square
    mask = rng.random((height, width)) < rng.uniform(0.01, 0.3)
    if not mask.any():
        mask[rng.integers(height), rng.integers(width)] = True
    if case % 4 == 0:  # touching the border
        mask[:, -1] = True
    shift = int(rng.integers(0, 25))
    draws = [int(v) for v in rng.integers(0, shift + 1, size=4)]
    port = upstream_box(mask, Draws(draws), shift)
    assert list(shift_box(tight_box(mask), mask.shape, draws)) == port


@pytest.mark.parametrize("shift", [0, 3, 20])
def test_stream_draws_are_taken_in_upstream_order(shift):
    mask = np.zeros((31, 17), bool)
    mask[10:14, 6:9] = True
    key = '[0,"d","c","t",4,"medsam-box","bbox_shift"]'
    ours = medsam_box(mask, KeyedStream(key), shift)
    # replay the same stream through the port: the same integers in the same order
    replay = KeyedStream(key)
    port = upstream_box(mask, Draws([replay.integer(shift + 1) for _ in range(4)]), shift)
    assert list(ours) == port


def test_draws_cover_zero_to_bbox_shift_inclusive():
    values = set()
    for i in range(200):
        values.update(shift_draws(KeyedStream(f"k{i}"), 2))
    assert values == {0, 1, 2}


def _volume() -> Flow:
    masks = np.zeros((6, 9, 14), bool)
    masks[1, 2:4, 3:7] = True
    masks[2, 1:5, 2:8] = True
    masks[4, 6:9, 10:14] = True  # touches the bottom and right edges
    other = np.zeros_like(masks)
    other[3, 0:2, 0:3] = True
    return Flow("v1", "demo", "volume", np.zeros((6, 9, 14), np.float32),
                {"liver": masks, "cyst": other}, spacing=(2.5, 0.8, 0.7))


def test_protocol_boxes_every_frame_containing_the_target_with_keyed_draws():
    flow = _volume()
    prompts = make_prompts(flow, "medsam-box", seed=3)
    assert [(p.target, p.frame) for p in prompts] == [("cyst", 3), ("liver", 1), ("liver", 2),
                                                       ("liver", 4)]
    for prompt in prompts:
        mask = flow.masks[prompt.target][prompt.frame]
        stream = keyed_stream(3, "demo", "v1", prompt.target, prompt.frame, "medsam-box",
                              "bbox_shift")
        draws = [stream.integer(DEFAULT_BBOX_SHIFT + 1) for _ in range(4)]
        assert prompt.kind == "box-jitter"
        assert list(prompt.box) == upstream_box(mask, Draws(draws))
    # the edge-touching target's far sides may reach W = 14 and H = 9 (upstream's bounds)
    edge = next(p for p in prompts if p.frame == 4)
    assert edge.box[2] == 14 and edge.box[3] == 9
    assert scored_frames(flow, "medsam-box") is None  # every frame scored


def test_bbox_shift_parameter_and_card():
    flow = _volume()
    tight = make_prompts(flow, "medsam-box", seed=0, params={"bbox_shift": 0})
    assert [p.box for p in tight] == [tight_box(flow.masks[p.target][p.frame]) for p in tight]
    spec = get_protocol("medsam-box")
    assert spec.defaults == {"bbox_shift": 20}
    text = spec.card({"bbox_shift": 7})
    assert "0..7 px" in text and "bowang-lab/MedSAM" in text and "d71e8a1" in text
