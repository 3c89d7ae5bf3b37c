"""Weight-free baselines: the random walker (bench.adapters.random_walker) and the oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import create, registered
from bench.adapters.random_walker import (
    RandomWalkerOptions,
    box_core,
    box_region,
    seeds_from_mask,
    seeds_from_prompts,
)
from scipy import ndimage as ndi

from bench.config import load_config
from bench.errors import ConfigError
from bench.plan import make_plan
from bench.runner import execute
from bench.types import Flow, FlowFrames, Prompt

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = RandomWalkerOptions(margin=0.03, point_radius=0.02, box_core=0.5)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def disc(shape: tuple[int, int], row: float, col: float, radius: float) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius**2


def noisy(mask: np.ndarray, seed: int = 0, contrast: float = 0.6) -> np.ndarray:
    """A bright object on a dark background with mild smooth noise."""
    noise = ndi.gaussian_filter(np.random.default_rng(seed).random(mask.shape), 1.0)
    return 0.2 + contrast * mask + 0.1 * noise


@pytest.fixture(scope="module")
def walker():
    return create("random-walker")


# ------------------------------------------------------------------------------ seeds


def test_box_seeds_by_hand():
    shape = (20, 30)
    box = (5, 4, 14, 11)  # x0, y0, x1, y1 inclusive: rows 4..11, cols 5..14
    inside = box_region(shape, box, (1.0, 1.0))
    expected = np.zeros(shape, dtype=bool)
    expected[4:12, 5:15] = True
    assert np.array_equal(inside, expected)
    # Core: ellipse at the centre (7.5, 9.5) with half-axes 0.5 * (4, 5) = (2, 2.5).
    core = box_core(shape, box, (1.0, 1.0), 0.5)
    rows, cols = np.ogrid[:20, :30]
    hand = ((rows - 7.5) / 2.0) ** 2 + ((cols - 9.5) / 2.5) ** 2 <= 1
    hand[8, 10] = True  # the pixel nearest the centre (rounded half to even)
    assert np.array_equal(core, hand)
    # At half resolution the same box covers rows 2..5 and cols 2..7.
    half = box_region((10, 15), box, (0.5, 0.5))
    assert np.argwhere(half).min(axis=0).tolist() == [2, 2]
    assert np.argwhere(half).max(axis=0).tolist() == [5, 7]


def test_mask_seeds_compensate_the_ring_geometry():
    mask = disc((60, 60), 30, 30, 10)
    fg, bg = seeds_from_mask(mask, 3.0)
    inside = ndi.distance_transform_edt(mask)
    outside = ndi.distance_transform_edt(~mask)
    radius = np.sqrt(mask.sum() / np.pi)
    outer = 3.0 * radius / (radius - 3.0)  # ~4.28 px: the walker's 1/2 level stays at r
    assert 4.2 < outer < 4.4
    assert np.array_equal(fg, inside > 3.0)
    assert np.array_equal(bg, outside > outer)
    # A mask thinner than the margin keeps its deepest pixels as foreground.
    line = np.zeros((20, 20), dtype=bool)
    line[10, 3:17] = True
    fg, bg = seeds_from_mask(line, 3.0)
    assert np.array_equal(fg, line) and not (bg & line).any()


def test_click_seeds_use_the_border_as_background():
    fg, bg, absent = seeds_from_prompts(
        (50, 50), [Prompt("t", 0, "point", points=((20, 30),), labels=(1,))], (1.0, 1.0),
        SETTINGS)
    assert not absent
    assert np.array_equal(fg, disc((50, 50), 30, 20, 1.0))  # radius max(1, 0.02 * 50)
    ring = np.ones((50, 50), dtype=bool)
    ring[1:-1, 1:-1] = False
    assert np.array_equal(bg, ring)


# ----------------------------------------------------------------------- segmentation


def test_box_point_and_mask_prompts_segment_a_clear_object(walker):
    truth = disc((64, 72), 30, 36, 14)
    frame = noisy(truth)
    flow = FlowFrames("f", "synthetic", "image-flow", [frame])
    rows, cols = np.nonzero(truth)
    box = (cols.min(), rows.min(), cols.max(), rows.max())
    for prompt in (Prompt("t", 0, "box", box=box),
                   Prompt("t", 0, "point", points=((36, 30),), labels=(1,)),
                   Prompt("t", 0, "mask", mask=ndi.binary_erosion(truth, iterations=2))):
        pred = walker.predict(flow, [prompt])
        assert dice(pred.masks["t"][0], truth) > 0.95, prompt.kind


def test_volume_propagation_follows_a_drifting_object(walker):
    shape, n_slices = (64, 64), 16
    truth = np.stack([disc(shape, 22 + k, 32, 10) for k in range(n_slices)])
    volume = np.stack([noisy(t, seed=k) for k, t in enumerate(truth)])
    flow = FlowFrames("v", "synthetic", "volume", volume)
    pred = walker.predict(flow, [Prompt("t", 5, "mask", mask=truth[5])])
    masks = np.stack(pred.masks["t"])
    assert masks.shape == truth.shape
    assert min(dice(m, t) for m, t in zip(masks, truth, strict=True)) > 0.9
    # Copying the template to the last slice would score far lower: it followed.
    assert dice(truth[5], truth[-1]) < 0.6


def test_image_flow_seeds_each_image_from_the_nearest_prompted_one(walker):
    small = disc((48, 48), 24, 22, 11)
    large = disc((72, 60), 36, 27, 15)  # another size, object at a similar place
    frames = [noisy(small), noisy(large, seed=1), noisy(small, seed=2)]
    flow = FlowFrames("f", "synthetic", "image-flow", frames)
    pred = walker.predict(flow, [Prompt("t", 0, "box", box=(11, 13, 33, 35))])
    assert [m.shape for m in pred.masks["t"]] == [(48, 48), (72, 60), (48, 48)]
    assert dice(pred.masks["t"][1], large) > 0.9
    assert dice(pred.masks["t"][2], small) > 0.9
    again = walker.predict(flow, [Prompt("t", 0, "box", box=(11, 13, 33, 35))])
    assert all(np.array_equal(a, b) for a, b in
               zip(pred.masks["t"], again.masks["t"], strict=True))  # deterministic


def test_empty_mask_prompt_and_an_ended_target_stay_empty(walker):
    truth = disc((48, 48), 24, 24, 9)
    volume = np.stack([noisy(truth, seed=k) for k in range(6)])
    flow = FlowFrames("v", "synthetic", "volume", volume)
    pred = walker.predict(flow, [Prompt("t", 0, "mask", mask=truth),
                                 Prompt("t", 4, "empty-mask")])
    masks = pred.masks["t"]
    assert dice(masks[1], truth) > 0.9  # nearest prompt: slice 0
    assert not masks[3].any() and not masks[4].any() and not masks[5].any()  # nearest: 4


def test_bad_settings_and_prompts_are_refused(walker):
    with pytest.raises(ConfigError, match=r"\[models.random-walker\].margin"):
        create("random-walker", {"margin": 2.0})
    with pytest.raises(ConfigError, match="unknown key 'betta'.*'beta'"):
        create("random-walker", {"betta": 1.0})
    flow = FlowFrames("f", "synthetic", "image-flow", [np.zeros((8, 8))])
    with pytest.raises(ValueError, match="frame 3, but the flow has 1 frames"):
        walker.predict(flow, [Prompt("t", 3, "box", box=(1, 1, 4, 4))])


# ----------------------------------------------------------------------------- oracle


def test_oracle_is_a_hidden_self_test_that_needs_ground_truth():
    cls = registered()["oracle"]
    assert cls.hidden and cls.capabilities.sees_ground_truth
    config = load_config(ROOT / "bench.toml")
    assert all("oracle" not in suite.models for suite in config.suites.values())
    flow = Flow("f", "d", "image-flow", [np.zeros((4, 4))], {"t": [np.eye(4, dtype=bool)]})
    oracle = create("oracle")
    assert np.array_equal(oracle.predict(flow, [Prompt("t", 0, "box", box=(0, 0, 3, 3))])
                          .masks["t"][0], np.eye(4, dtype=bool))
    with pytest.raises(TypeError, match="without ground truth"):
        oracle.predict(flow.view(), [Prompt("t", 0, "box", box=(0, 0, 3, 3))])


def test_oracle_scores_dice_1_and_hd95_0_on_every_demo_case(tmp_path):
    plan = make_plan(load_config(ROOT / "bench.toml"), "demo", models=["oracle"], limit=2)
    outcome = execute(plan, tmp_path / "run")
    assert outcome.units_failed == 0 and outcome.read_failures == 0
    table = pd.read_csv(tmp_path / "run" / "metrics.csv", keep_default_na=False,
                        na_values=[""])
    assert set(table["dataset"]) == {d.name for d in plan.datasets}
    assert "error" not in set(table["status"])
    scored = table[table["status"] != "both_empty"]
    dice_values = scored[scored["metric"] == "dice"]["value"]
    hd95_values = scored[scored["metric"] == "hd95"]["value"]
    assert len(dice_values) > 0 and len(hd95_values) == len(dice_values)
    assert (dice_values == 1.0).all() and (hd95_values == 0.0).all()
