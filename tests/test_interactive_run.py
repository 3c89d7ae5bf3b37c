"""The interactive protocol through the runner: clicks, Dice per click, NoC."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from bench.adapters import Adapter, register

from bench.config import load_config
from bench.plan import make_plan
from bench.prompts import noc
from bench.runner import execute
from bench.types import Prediction

ROOT = Path(__file__).resolve().parents[1]


def _discs(shape, points, labels, radius=4):
    rows, cols = np.indices(shape)
    mask = np.zeros(shape, dtype=bool)
    for (x, y), label in zip(points, labels, strict=True):
        disc = (rows - y) ** 2 + (cols - x) ** 2 <= radius ** 2
        mask = mask | disc if label else mask & ~disc
    return mask


@register
@dataclass
class _Discs(Adapter):
    """Test adapter: a disc of radius 4 per positive click, minus one per negative click."""

    name = "test-click-discs"
    hidden = True

    def predict(self, flow, prompts):
        masks = {}
        for prompt in prompts:
            frames = [np.zeros(np.shape(f)[:2], dtype=bool) for f in flow.frames]
            frames[prompt.frame] = _discs(frames[prompt.frame].shape, prompt.points,
                                          prompt.labels)
            masks[prompt.target] = frames
        return Prediction(masks=masks)


def test_interactive_sessions_record_dice_per_click_and_noc(tmp_path):
    shutil.copytree(ROOT / "datasets", tmp_path / "datasets")
    (tmp_path / "bench.toml").write_text(
        '[suites.i]\nprotocol = "interactive"\ndatasets = ["demo-fundus"]\n'
        'models = ["test-click-discs"]\n[suites.i.protocol_params]\nmax_clicks = 6\n')
    plan = make_plan(load_config(tmp_path / "bench.toml"), "i", limit=1)
    outcome = execute(plan, tmp_path / "run")
    assert outcome.units_failed == 0
    table = pd.read_csv(tmp_path / "run" / "metrics.csv", dtype={"case": str})
    clicks = table[table["click"].notna()]
    assert set(clicks["metric"]) == {"dice"}
    assert clicks["click"].max() <= 6
    for (case, target), session in clicks.groupby(["case", "target"]):
        dice = session.sort_values("click")["value"].tolist()
        assert session["click"].sort_values().tolist() == list(range(1, len(dice) + 1))
        final = table[(table["case"] == case) & (table["target"] == target)
                      & table["click"].isna()]
        # The case is scored on the session's last mask; NoC agrees with the per-click Dice.
        assert np.isclose(final[final["metric"] == "dice"]["value"].item(), dice[-1])
        for level, metric in ((0.85, "noc85"), (0.9, "noc90")):
            assert final[final["metric"] == metric]["value"].item() == noc(dice, level, 6)
    # The first click is the deepest ground-truth pixel, so click 1's Dice is that of
    # one disc there: recompute it for one case from the ground truth.
    from bench.prompts import deepest_point
    from bench.readers import load_card, read_flows

    flow = next(read_flows(load_card(tmp_path / "datasets" / "demo-fundus.toml"), None, 1))
    ref = flow.masks["disc"][0]
    x, y = deepest_point(ref)
    disc = _discs(ref.shape, [(x, y)], [1])
    expected = 2 * (disc & ref).sum() / (disc.sum() + ref.sum())
    first = clicks[(clicks["case"] == flow.case_ids[0]) & (clicks["target"] == "disc")
                   & (clicks["click"] == 1)]["value"].item()
    assert np.isclose(first, expected)
