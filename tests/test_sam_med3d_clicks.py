"""Protocol ``sam-med3d-clicks`` (issue 18 item 4) against a port of SAM-Med3D's click rule.

The port restates uni-medical/SAM-Med3D ``utils/infer_utils.py`` ``random_sample_next_click``
(method "random", commit f3de1fa) and ``sam_model_infer``'s loop, on arrays in TorchIO's
(x, y, z) axis order: error = missed | extra voxels of the previous prediction, listed with
``argwhere``, one picked by ``randint(len)``; positive when missed; no error -> a target voxel,
positive. Its draws are replayed from the same keyed streams as the harness's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, register

from bench.config import load_config
from bench.plan import make_plan
from bench.prompts import get_protocol, make_prompts
from bench.prompts.sam_med3d import click_sessions, draw_click, sessions
from bench.prompts.streams import KeyedStream, keyed_stream
from bench.runner import execute
from bench.types import Flow, Prediction

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = "sam-med3d-clicks"


def upstream_click(previous_xyz: np.ndarray, truth_xyz: np.ndarray, randint) -> tuple:
    """Port of the upstream rule: ((x, y, z), positive) on (x, y, z)-ordered arrays."""
    predicted, truth = previous_xyz > 0, truth_xyz > 0
    assert truth.any()
    missed = truth & ~predicted
    wrong = missed | (predicted & ~truth)
    if not wrong.any():
        voxels = np.argwhere(truth)
        return tuple(int(v) for v in voxels[randint(len(voxels))]), True
    voxels = np.argwhere(wrong)
    voxel = tuple(int(v) for v in voxels[randint(len(voxels))])
    return voxel, bool(missed[voxel])


def xyz(volume: np.ndarray) -> np.ndarray:
    """A (z, y, x) volume as TorchIO holds it, (x, y, z)."""
    return np.transpose(volume, (2, 1, 0))


def _pair(rng, shape, kind):
    truth = rng.random(shape) < rng.uniform(0.05, 0.4)
    truth[rng.integers(shape[0]), rng.integers(shape[1]), rng.integers(shape[2])] = True
    if kind == "empty":
        return np.zeros(shape, bool), truth
    if kind == "perfect":
        return truth.copy(), truth
    if kind == "full":
        return np.ones(shape, bool), truth
    return rng.random(shape) < 0.3, truth


@pytest.mark.parametrize("case", range(24))
def test_one_click_equals_the_upstream_port_given_the_same_draws(case):
    rng = np.random.default_rng(100 + case)
    shape = (int(rng.integers(1, 6)), int(rng.integers(3, 9)), int(rng.integers(4, 13)))
    previous, truth = _pair(rng, shape, ("empty", "perfect", "full", "random")[case % 4])
    key = f"case-{case}"
    x, y, z, positive = draw_click(previous, truth, KeyedStream(key))
    replay = KeyedStream(key)
    voxel, port_positive = upstream_click(xyz(previous), xyz(truth), replay.integer)
    assert (x, y, z) == voxel and positive == port_positive
    if case % 4 in (0, 1):  # empty prediction, or no error: a target voxel, positive
        assert truth[z, y, x] and positive


def test_hand_computed_order_is_x_then_y_then_z():
    # Two error voxels: (z=1, y=0, x=0) and (z=0, y=0, x=1). Upstream's (x, y, z) order lists
    # x = 0 first, so draw 0 picks (x=0, z=1), although (z=0, ...) comes first in C order.
    truth = np.zeros((2, 1, 2), bool)
    truth[1, 0, 0] = truth[0, 0, 1] = True

    class First:
        def integer(self, n):
            return 0

    assert draw_click(np.zeros_like(truth), truth, First()) == (0, 0, 1, True)


def _volume(name: str = "v") -> Flow:
    liver = np.zeros((5, 9, 12), bool)
    liver[1:4, 2:7, 3:10] = True
    cyst = np.zeros_like(liver)
    cyst[2, 0:2, 0:2] = True  # tiny, touches the border
    absent = np.zeros_like(liver)
    return Flow(name, "demo", "volume", np.zeros((5, 9, 12), np.float32),
                {"liver": liver, "cyst": cyst, "absent": absent}, spacing=(3.0, 0.8, 0.6))


def scripted(clicks_zyx, shape):
    """A test model: the 3x3x3 cubes of the positive clicks minus those of the negative ones
    (independent of the clicks' order)."""
    cubes = {True: np.zeros(shape, bool), False: np.zeros(shape, bool)}
    for (z, y, x), positive in clicks_zyx:
        cubes[bool(positive)][max(z - 1, 0):z + 2, max(y - 1, 0):y + 2,
                              max(x - 1, 0):x + 2] = True
    return cubes[True] & ~cubes[False]


def _port_session(flow, target, seed, num_clicks):
    """The upstream loop with the port, draws replayed from the keyed streams."""
    truth = np.asarray(flow.masks[target], bool)
    previous = np.zeros_like(truth)
    clicks = []
    for number in range(1, num_clicks + 1):
        stream = keyed_stream(seed, flow.dataset, flow.id, target, None, PROTOCOL,
                              f"click-{number}")
        (x, y, z), positive = upstream_click(xyz(previous), xyz(truth), stream.integer)
        clicks.append(((z, y, x), positive))
        previous = scripted(clicks, truth.shape)
    return clicks


@pytest.mark.parametrize("seed", [0, 5])
def test_sessions_equal_the_upstream_loop_click_by_click(seed):
    flow = _volume()
    prompts = make_prompts(flow, PROTOCOL, seed=seed)
    assert sorted(p.target for p in prompts) == ["cyst", "liver"]  # absent: no session
    seen = []

    def predict(given, previous, frames):
        clicks = [((p.frame, y, x), bool(label)) for p in given
                  for (x, y), label in zip(p.points, p.labels, strict=True)]
        seen.append((given[0].target, clicks))
        return scripted(clicks, flow.masks[given[0].target].shape)

    def keyer(target, frame, purpose):
        return keyed_stream(seed, flow.dataset, flow.id, target, frame, PROTOCOL, purpose)

    prediction, rows = click_sessions(flow, prompts, predict, 4, keyer)
    for target in ("cyst", "liver"):
        expected = _port_session(flow, target, seed, 4)
        calls = [clicks for t, clicks in seen if t == target]
        # every call holds all clicks so far; sort within a frame-grouped call for order
        assert [sorted(c) for c in calls] == [sorted(expected[:k]) for k in range(1, 5)]
        truth = flow.masks[target]
        final = scripted(expected, truth.shape)
        assert np.array_equal(np.stack(prediction.masks[target]), final)
        dice = [r["value"] for r in rows if r["target"] == target]
        want = [2 * (scripted(expected[:k], truth.shape) & truth).sum()
                / (scripted(expected[:k], truth.shape).sum() + truth.sum()) for k in range(1, 5)]
        assert np.allclose(dice, want)
    # the first click is the ledger's, a uniform target voxel, positive
    first = next(p for p in prompts if p.target == "liver")
    assert first.kind == "point-random" and first.labels == (1,)
    x, y = first.points[0]
    assert flow.masks["liver"][first.frame][y, x]


def test_image_flows_get_one_session_per_image():
    shapes = [(6, 9), (8, 5)]
    masks = [np.zeros(s, bool) for s in shapes]
    masks[1][2:5, 1:4] = True
    flow = Flow("f", "demo", "image-flow", [np.zeros(s + (3,), np.uint8) for s in shapes],
                {"lesion": masks})
    assert sessions(flow) == [("lesion", [1])]
    (prompt,) = make_prompts(flow, PROTOCOL, seed=1)
    stream = keyed_stream(1, "demo", "f", "lesion", 1, PROTOCOL, "click-1")
    (x, y, z), _ = upstream_click(np.zeros((5, 8, 1)), xyz(masks[1][None]), stream.integer)
    assert (prompt.frame, prompt.points) == (1, ((x, y),)) and z == 0


def test_card_names_what_is_not_reproduced():
    text = get_protocol(PROTOCOL).card({"num_clicks": 5})
    assert "5 click(s)" in text and "1.5 mm" in text and "128^3" in text
    assert get_protocol(PROTOCOL).defaults == {"num_clicks": 1}


@register
@dataclass
class _Cubes(Adapter):
    """Test adapter: the scripted cube model on volumes."""

    name = "test-sam-med3d-cubes"
    hidden = True

    def predict(self, flow, prompts):
        shape = np.shape(flow.frames)
        masks = {}
        for prompt in prompts:
            clicks = [((prompt.frame, y, x), bool(label))
                      for (x, y), label in zip(prompt.points, prompt.labels, strict=True)]
            masks.setdefault(prompt.target, []).extend(clicks)
        masks = {target: scripted(clicks, shape) for target, clicks in masks.items()}
        return Prediction(masks=masks)


@pytest.mark.slow
def test_run_records_dice_per_click_on_the_demo_volume(tmp_path):
    shutil.copytree(ROOT / "datasets", tmp_path / "datasets")
    (tmp_path / "bench.toml").write_text(
        f'[suites.s]\nprotocol = "{PROTOCOL}"\ndatasets = ["demo-ct"]\n'
        'models = ["empty", "full-frame", "test-sam-med3d-cubes"]\n'
        '[suites.s.protocol_params]\nnum_clicks = 3\n')
    plan = make_plan(load_config(tmp_path / "bench.toml"), "s", limit=1)
    outcome = execute(plan, tmp_path / "run")
    assert outcome.units_failed == 0
    table = pd.read_csv(tmp_path / "run" / "metrics.csv", dtype={"case": str})
    clicks = table[table["click"].notna()]
    assert set(clicks["metric"]) == {"dice"}
    for (model, target), session in clicks.groupby(["model", "target"]):
        assert session["click"].sort_values().tolist() == [1, 2, 3]
        final = table[(table["model"] == model) & (table["target"] == target)
                      & table["click"].isna() & (table["metric"] == "dice")]
        assert np.isclose(final["value"].item(), session.sort_values("click")["value"].iloc[-1])
    assert (clicks[clicks["model"] == "empty"]["value"] == 0).all()


def test_a_model_gets_only_the_clicks_it_accepts():
    from types import SimpleNamespace

    from bench.prompts.sam_med3d import click_prompts, given_clicks

    clicks = [(1, 2, 0, True), (3, 4, 1, False), (5, 6, 0, True)]  # (x, y, slice, positive)
    every = given_clicks("t", [7, 8], clicks, SimpleNamespace())
    assert every == click_prompts("t", [7, 8], clicks)
    assert [(p.frame, p.points, p.labels) for p in every] == [(7, ((1, 2), (5, 6)), (1, 1)),
                                                              (8, ((3, 4),), (0,))]
    positive = given_clicks("t", [7, 8], clicks, SimpleNamespace(negative_clicks=False))
    assert [(p.frame, p.labels) for p in positive] == [(7, (1, 1))]
    # the latest click in time, (5, 6) on frame 7, not the last of the frame-sorted prompts
    latest = given_clicks("t", [7, 8], clicks, SimpleNamespace(several_clicks=False))
    assert [(p.frame, p.points) for p in latest] == [(7, ((5, 6),))]
    negative_last = clicks[:2]
    assert [(p.frame, p.points) for p in given_clicks(
        "t", [7, 8], negative_last, SimpleNamespace(several_clicks=False,
                                                    negative_clicks=False))] == [(7, ((1, 2),))]


def test_image_flow_sessions_use_predict_click_and_the_upstream_rule():
    from types import SimpleNamespace

    from bench.prompts.sam_med3d import adapter_sessions

    shapes = [(6, 9), (8, 5)]
    masks = [np.zeros(s, bool) for s in shapes]
    masks[0][1:4, 2:7] = True
    masks[1][2:5, 1:4] = True
    flow = Flow("f", "demo", "image-flow", [np.zeros(s + (3,), np.uint8) for s in shapes],
                {"lesion": masks}, case_ids=["a", "b"], patient_ids=["a", "b"])
    calls = []

    def predict_click(view, prompt, previous):
        calls.append((prompt.frame, prompt.points, prompt.labels, previous is None))
        clicks = [((0, y, x), bool(label)) for (x, y), label in
                  zip(prompt.points, prompt.labels, strict=True)]
        return scripted(clicks, (1, *shapes[prompt.frame]))[0]

    adapter = SimpleNamespace(capabilities=SimpleNamespace(), predict_click=predict_click)
    prompts = make_prompts(flow, PROTOCOL, seed=2)

    def keyer(target, frame, purpose):
        return keyed_stream(2, "demo", "f", target, frame, PROTOCOL, purpose)

    _, rows = adapter_sessions(flow, flow, adapter, prompts, 3, keyer)
    assert [(r["case"], r["click"]) for r in rows] == [("a", 1), ("a", 2), ("a", 3),
                                                        ("b", 1), ("b", 2), ("b", 3)]
    for frame in (0, 1):
        truth = masks[frame][None]
        previous, expected = np.zeros_like(truth), []
        for number in range(1, 4):
            stream = keyed_stream(2, "demo", "f", "lesion", frame, PROTOCOL, f"click-{number}")
            (x, y, _), positive = upstream_click(xyz(previous), xyz(truth), stream.integer)
            expected.append(((x, y), int(positive)))
            previous = scripted([((0, cy, cx), lab) for (cx, cy), lab in expected], truth.shape)
        session = [c for c in calls if c[0] == frame]
        assert [c[3] for c in session] == [True, False, False]  # previous mask after click 1
        last = session[-1]
        assert list(zip(last[1], last[2], strict=True)) == expected
