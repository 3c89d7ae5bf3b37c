"""Support sets through the runner and the report: exclusion, ledgers, the k-curve.

A test adapter ``support-echo`` (in-context) records the prompts it is shown
and predicts the whole frame, as ``full-frame`` does, so that its scores must
equal full-frame's case by case: the check that every model is scored on the
same cases. The expected support frames are derived by hand from the ledger's
``support`` rows and the keyed draw that orders them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, Capabilities, register

from bench.config import load_config
from bench.frames import frame_shapes
from bench.plan import make_plan
from bench.prompts.ledger import read_ledger
from bench.prompts.streams import keyed_stream
from bench.report import write_report
from bench.report.kcurve import k_curve_data, k_curve_table
from bench.rundir import random_weight_models
from bench.runner import execute
from bench.types import Prediction

CONFIG = Path(__file__).resolve().parents[1] / "bench.toml"
SHOWN: list[tuple[str, int, str, int]] = []  # (flow, number of prompts, kinds, frames...) log


@register
@dataclass
class SupportEcho(Adapter):
    """In-context test model: the whole frame everywhere; logs what it is shown."""

    name = "support-echo"
    description = "test: in-context, whole frame"
    capabilities = Capabilities(prompt_kinds=frozenset({"mask"}), in_context=True)
    hidden = True

    def predict(self, flow, prompts):
        SHOWN.append((flow.id, tuple(sorted((p.target, p.frame, p.kind) for p in prompts))))
        shapes = [tuple(s[:2]) for s in frame_shapes(flow.frames)]
        return Prediction(masks={t: [np.ones(s, bool) for s in shapes]
                                 for t in {p.target for p in prompts}})


def _run(tmp_path: Path, name: str, models: list[str], k_shot=(1, 2)):
    config = load_config(CONFIG)
    plan = make_plan(config, "one-prompt", models=models, datasets=["demo-cells"], limit=8,
                     protocol_params={"k_shot": list(k_shot)})
    execute(plan, tmp_path / name)
    return tmp_path / name


def _support(rows, seed=0):
    """Per (flow, target): the support frames in the order of the k sets (template first)."""
    template = {(r["case"], r["target"]): r["frame"] for r in rows if r["kind"] != "support"}
    frames: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        if r["kind"] == "support":
            frames.setdefault((r["case"], r["target"]), []).append(r["frame"])
    ordered = {}
    for (flow, target), found in frames.items():
        draw = {f: keyed_stream(seed, "demo-cells", flow, target, f, "one-prompt",
                                "support").uniform() for f in found}
        ordered[(flow, target)] = sorted(found, key=lambda f: (f != template[(flow, target)],
                                                               draw[f], f))
    return ordered


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kshot")
    SHOWN.clear()
    first = _run(tmp, "a", ["support-echo", "full-frame"])
    shown = list(SHOWN)
    second = _run(tmp, "b", ["full-frame", "support-echo"])
    third = _run(tmp, "c", ["full-frame"])
    return first, second, shown, third


def test_ledgers_are_byte_identical_across_runs_and_model_sets(runs):
    first, second, _, third = runs
    data = (first / "prompts.jsonl").read_bytes()
    assert data == (second / "prompts.jsonl").read_bytes()
    assert b'"kind":"support"' in data


def test_a_run_without_in_context_models_drops_k_shot(runs):
    first, _, _, third = runs
    plan = json.loads((third / "config.json").read_text(encoding="utf-8"))["plan"]
    assert "k_shot" not in plan["protocol_params"]
    data = (third / "prompts.jsonl").read_bytes()
    assert b'"kind":"support"' not in data
    # the template rows are those of the run with support sets
    kept = [line for line in (first / "prompts.jsonl").read_bytes().splitlines(keepends=True)
            if b'"kind":"support"' not in line]
    assert b"".join(kept) == data


def test_in_context_model_is_shown_exactly_the_k_support_masks(runs):
    first, _, shown, _ = runs
    support = _support(read_ledger(first / "prompts.jsonl"))
    assert support and all(len(frames) >= 1 for frames in support.values())
    flows = sorted({flow for flow, _ in support})
    want = []
    for flow in flows:
        for k in (1, 2):
            want.append((flow, tuple(sorted((target, f, "mask")
                                            for (fl, target), frames in support.items()
                                            if fl == flow for f in frames[:k]))))
    assert shown == want


def test_support_frames_are_excluded_for_every_model_and_k(runs):
    first, _, _, _ = runs
    support = _support(read_ledger(first / "prompts.jsonl"))
    table = pd.read_csv(first / "metrics.csv", dtype={"case": str})
    dice = table[(table["metric"] == "dice") & (table["status"] != "error")]
    assert set(dice["model"]) == {"full-frame", "support-echo@k1", "support-echo@k2"}
    manifest = json.loads((first / "manifest.json").read_text(encoding="utf-8"))
    flows = {f["id"]: f for f in manifest["datasets"]["demo-cells"]["flows"]}
    left = []
    for (flow_id, target), frames in support.items():
        cases = flows[flow_id]["case_ids"]
        expected = sorted(set(cases) - {cases[f] for f in frames})
        left.append(len(expected))
        mine = dice[(dice["target"] == target) & (dice["flow"] == flow_id)]
        for model, rows in mine.groupby("model"):
            assert sorted(rows["case"]) == expected, (model, target)
    assert sum(left) >= 4  # cases are left to score
    # the same cases, the same whole-frame masks: the same values for every label
    wide = dice.pivot_table(index=["case", "target"], columns="model", values="value")
    assert np.allclose(wide["support-echo@k1"], wide["full-frame"])
    assert np.allclose(wide["support-echo@k2"], wide["full-frame"])


def test_report_draws_the_k_curve_with_one_prompt_models_flat(runs):
    first, _, _, _ = runs
    report = write_report(first, "md").read_text(encoding="utf-8")
    assert "## Dice versus support set size k" in report
    assert (first / "figures" / "dice_vs_k.png").stat().st_size > 1000
    assert "| full-frame (one prompt) |" in report
    assert "| support-echo |" in report
    assert "support prompt" not in report  # Figure 4 panels keep the card's prompt kind


def test_k_curve_data_by_hand():
    aggregates = pd.DataFrame([
        {"dataset": "d", "target": "t", "model": "u@k1", "protocol": "one-prompt",
         "metric": "dice", "mean": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 4},
        {"dataset": "d", "target": "t", "model": "u@k4", "protocol": "one-prompt",
         "metric": "dice", "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 4},
        {"dataset": "d", "target": "t", "model": "reg", "protocol": "one-prompt",
         "metric": "dice", "mean": 0.7, "ci_low": 0.6, "ci_high": 0.8, "n": 4},
        {"dataset": "d", "target": "t", "model": "reg", "protocol": "one-prompt",
         "metric": "iou", "mean": 0.6, "ci_low": 0.5, "ci_high": 0.7, "n": 4},
    ])
    data = k_curve_data(aggregates, (1, 4))
    got = sorted(zip(data["model"], data["k"], data["mean"], data["one_prompt"], strict=True))
    assert got == [("reg", 1, 0.7, True), ("reg", 4, 0.7, True),
                   ("u", 1, 0.2, False), ("u", 4, 0.5, False)]
    table = k_curve_table(data, stamped=["u"])
    assert table.loc[table["model"] == "u [RANDOM WEIGHTS]", "k = 4"].item() == \
        "0.500 [0.400, 0.600]"
    assert k_curve_data(aggregates[aggregates["model"] == "reg"], (1, 4)).empty


def test_random_weights_stamp_covers_the_k_labels():
    config = {"plan": {"protocol_params": {"k_shot": [1, 4]},
                       "model_settings": {"universeg": {"random_weights": True}, "reg": {}}},
              "adapters": {"universeg": {"meaningless": True, "in_context": True},
                           "reg": {}}}
    assert random_weight_models(config) == ["universeg", "universeg@k1", "universeg@k4"]


@pytest.mark.slow
def test_universeg_random_weights_end_to_end(tmp_path):
    pytest.importorskip("torch")
    config = load_config(CONFIG)
    plan = make_plan(config, "one-prompt", models=["universeg", "full-frame"],
                     datasets=["demo-cells"], limit=6, protocol_params={"k_shot": [1, 2]},
                     random_weights=True)
    run = tmp_path / "run"
    execute(plan, run)
    table = pd.read_csv(run / "metrics.csv", dtype={"case": str})
    dice = table[table["metric"] == "dice"]
    assert set(dice["model"]) == {"full-frame", "universeg@k1", "universeg@k2"}
    assert (dice["status"] != "error").all()
    stamped = dice.groupby("model")["random_weights"].agg(set).to_dict()
    assert stamped == {"full-frame": {False}, "universeg@k1": {True}, "universeg@k2": {True}}
    cases = {m: set(zip(g["case"], g["target"], strict=True)) for m, g in dice.groupby("model")}
    assert cases["universeg@k1"] == cases["universeg@k2"] == cases["full-frame"]
    report = write_report(run, "md").read_text(encoding="utf-8")
    assert "Meaningless results for universeg" in report
    assert "| universeg [RANDOM WEIGHTS] |" in report and "## Dice versus support set size k" \
        in report
