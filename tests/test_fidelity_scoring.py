"""Issue 12 items 1-3: what each protocol scores, and the official metrics from logits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, register

from bench.aggregate import per_case, summarise
from bench.config import load_config
from bench.metrics import EmptyPolicy, dice, iou
from bench.official_metrics import official_image_scores, official_volume_scores
from bench.plan import make_plan
from bench.prompts import make_prompts, scoring_scope
from bench.prompts.protocols import PROTOCOLS
from bench.runner import execute
from bench.scoring import score_flow
from bench.types import Flow, Prediction, Prompt

ROOT = Path(__file__).resolve().parents[1]
POLICY = EmptyPolicy()


def _official_by_hand(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """The official code's smoothed Dice and IoU of two 1024 x 1024 boolean masks."""
    inter, a, b = int((pred & ref).sum()), int(pred.sum()), int(ref.sum())
    return (2 * inter + 1e-4) / (a + b + 1e-4), (inter + 1e-6) / (a + b - inter + 1e-6)


def _pil_resize(array: np.ndarray, resample: int) -> np.ndarray:
    """``array`` to 1024 x 1024 with PIL (an implementation independent of bench's)."""
    from PIL import Image

    image = Image.fromarray(array) if array.dtype == bool else Image.fromarray(
        array.astype(np.float32), mode="F")
    return np.asarray(image.resize((1024, 1024), resample))


def _image_flow(n: int = 4) -> Flow:
    # target a: a 2x2 square on every image; target b: a 3x3 square from image 2 on.
    a = [np.zeros((6, 6), bool) for _ in range(n)]
    b = [np.zeros((6, 6), bool) for _ in range(n)]
    for i in range(n):
        a[i][1:3, 1:3] = True
        if i >= 2:
            b[i][2:5, 2:5] = True
    frames = [np.zeros((6, 6), np.float32) for _ in range(n)]
    return Flow("f", "demo", "image-flow", frames, {"a": a, "b": b})


def _score(flow, prediction, protocol, prompts, metrics=("dice",), **kwargs):
    scope = scoring_scope(flow, protocol, prompts, {})
    return pd.DataFrame(score_flow(flow, prediction, scope=scope, metrics=metrics,
                                   policy=kwargs.pop("policy", POLICY), nsd_tolerance_mm=2.0,
                                   **kwargs))


# ------------------------------------------------------------------ item 1: given frames


def test_one_prompt_template_is_given_per_target():
    flow = _image_flow()
    prompts = make_prompts(flow, "one-prompt", seed=0, prompt_kind="box", params={})
    assert [(p.target, p.frame) for p in prompts] == [("a", 0), ("b", 2)]
    scope = scoring_scope(flow, "one-prompt", prompts, {})
    assert scope.given == {"a": frozenset({0}), "b": frozenset({2})}
    # full-frame prediction: Dice = 2|G| / (|G| + 36), both-empty excluded (b on 0, 1)
    full = Prediction({t: [np.ones((6, 6), bool)] * 4 for t in "ab"})
    table = _score(flow, full, "one-prompt", prompts)
    got = {(r.target, r.case): r.value for r in table.itertuples()}
    assert set(got) == {("a", "f/0001"), ("a", "f/0002"), ("a", "f/0003"),
                        ("b", "f/0000"), ("b", "f/0001"), ("b", "f/0003")}
    assert got[("a", "f/0001")] == pytest.approx(8 / 40)
    assert got[("b", "f/0003")] == pytest.approx(18 / 45)
    assert got[("b", "f/0000")] == 0.0  # frame 0 is a's template, still scored for b


def test_score_prompted_keeps_the_template_rows_apart_from_the_aggregates():
    flow = _image_flow()
    prompts = make_prompts(flow, "one-prompt", seed=0, prompt_kind="mask", params={})
    full = Prediction({t: [np.ones((6, 6), bool)] * 4 for t in "ab"})
    table = _score(flow, full, "one-prompt", prompts, score_prompted=True)
    prompted = table[table["status"] == "prompted"]
    assert sorted(zip(prompted["target"], prompted["case"], strict=True)) == [
        ("a", "f/0000"), ("b", "f/0002")]
    assert prompted.set_index("target")["value"].to_dict() == pytest.approx(
        {"a": 8 / 40, "b": 18 / 45})
    assert (prompted["message"].str.contains("given")).all()
    for column, value in (("dataset", "demo"), ("model", "m"), ("protocol", "one-prompt"),
                          ("seed", 0), ("flow", "f")):
        table[column] = value
    summary = summarise(table, n_resamples=10).set_index("target")
    assert summary.loc["a", "n"] == 3 and summary.loc["a", "mean"] == pytest.approx(8 / 40)
    # without the flag the same scored rows, and no prompted rows
    plain = _score(flow, full, "one-prompt", prompts)
    assert "prompted" not in set(plain["status"])
    assert len(plain) == len(table) - 2


def test_paper_random_scores_points_but_not_masks():
    flow = _image_flow()
    point = [Prompt("a", 1, "point", points=((1, 1),), labels=(1,))]
    mask = [Prompt("a", 1, "mask", mask=flow.masks["a"][1])]
    full = Prediction({"a": [np.ones((6, 6), bool)] * 4})
    with_point = _score(flow, full, "paper-random", point)
    with_mask = _score(flow, full, "paper-random", mask)
    assert "f/0001" in set(with_point[with_point["target"] == "a"]["case"])
    assert "f/0001" not in set(with_mask[with_mask["target"] == "a"]["case"])
    assert len(with_point) == len(with_mask) + 1


def test_a_mask_prompted_slice_is_masked_out_of_the_volume():
    ref = np.zeros((3, 4, 4), bool)
    ref[:, 1:3, 1:3] = True  # 4 voxels per slice
    pred = np.zeros((3, 4, 4), bool)
    pred[0, 1:3, 1:3] = True  # slice 0 right (it was given), slices 1-2 missed
    pred[1, 1, 1] = True
    flow = Flow("v", "demo", "volume", np.zeros((3, 4, 4), np.float32), {"t": ref})
    prompts = [Prompt("t", 0, "mask", mask=ref[0])]
    table = _score(flow, Prediction({"t": list(pred)}), "paper-random", prompts,
                   metrics=("dice", "iou"), score_prompted=True)
    scored = table[table["status"] != "prompted"].set_index("metric")["value"]
    # slices 1-2 only: |P| = 1, |R| = 8, |P∩R| = 1
    assert scored["dice"] == pytest.approx(2 / 9) and scored["iou"] == pytest.approx(1 / 8)
    kept = table[table["status"] == "prompted"].set_index("metric")["value"]
    assert kept["dice"] == pytest.approx(dice(pred, ref))  # the whole volume, slice 0 in


# ------------------------------------------------------------------ item 2: official targets


def _ct_volume() -> Flow:
    # 16 slices; liver on 0-15 (slab 0-15, window 0-3), spleen only on 10-12.
    liver = np.zeros((16, 8, 8), bool)
    liver[:, 2:6, 2:6] = True
    spleen = np.zeros((16, 8, 8), bool)
    spleen[10:13, 1:3, 1:3] = True
    return Flow("ct", "demo", "volume", np.zeros((16, 8, 8), np.float32),
                {"liver": liver, "spleen": spleen})


@pytest.mark.parametrize("fill", [False, True])
def test_official_code_does_not_score_a_target_absent_from_the_window(fill):
    flow = _ct_volume()
    prompts = make_prompts(flow, "official-code", seed=0, params={})
    assert {p.target for p in prompts} == {"liver"}
    masks = {t: list(np.full((16, 8, 8), fill)) for t in ("liver", "spleen")}
    table = _score(flow, Prediction(masks), "official-code", prompts,
                   policy=EmptyPolicy(both_empty="one"))
    assert set(table["target"]) == {"liver"}  # the empty floor no longer scores spleen 1.0
    expected = 2 * 64 / (64 + 256) if fill else 0.0  # window 0-3: 4 x 16 voxels of liver
    assert table["value"].item() == pytest.approx(expected)


def test_official_code_short_slab_is_recorded_as_not_scored():
    ref = np.zeros((10, 4, 4), bool)
    ref[5:8, 1:3, 1:3] = True  # slab of 3 slices: floor(3/4) = 0
    flow = Flow("v", "demo", "volume", np.zeros((10, 4, 4), np.float32), {"t": ref})
    table = _score(flow, Prediction({}), "official-code", [])
    assert list(table["status"]) == ["not_scored"] and table["value"].isna().all()
    assert "shorter than 4 slices" in table["message"].item()


# ------------------------------------------------------------------ item 3: official metrics


def test_official_metrics_come_from_logits_or_are_not_available():
    flow = _image_flow(2)
    rng = np.random.default_rng(0)
    logits = {"a": [rng.normal(size=(4, 4)) for _ in range(2)]}
    masks = {"a": [np.ones((6, 6), bool)] * 2}
    prompts = [Prompt("a", 0, "point", points=((1, 1),), labels=(1,))]
    names = ("dice", "dice_official", "iou_official")
    with_logits = _score(flow, Prediction(masks, logits=logits), "official-code", prompts,
                         metrics=names, model="m")
    got = with_logits.set_index(["target", "case", "metric"])["value"]
    from PIL import Image

    for i in range(2):
        ref = flow.masks["a"][i]
        # Independently: 4 -> 1024 nearest repeats each logit 256 x 256 times; the 6 x 6
        # reference goes through PIL's nearest; the threshold is logit > 0.5.
        pred = np.repeat(np.repeat(logits["a"][i], 256, axis=0), 256, axis=1) > 0.5
        d, j = _official_by_hand(pred, _pil_resize(ref, Image.NEAREST))
        assert got[("a", f"f/000{i}", "dice_official")] == pytest.approx(d)
        assert got[("a", f"f/000{i}", "iou_official")] == pytest.approx(j)
        assert got[("a", f"f/000{i}", "dice")] == pytest.approx(dice(masks["a"][i], ref))
    without = _score(flow, Prediction(masks), "official-code", prompts, metrics=names,
                     model="registration")
    official = without[without["metric"] != "dice"]
    assert (official["status"] == "unavailable").all() and official["value"].isna().all()
    assert (official["message"] == "not available: registration does not expose logits").all()
    assert (without[without["metric"] == "dice"]["status"] != "unavailable").all()


def test_official_volume_metric_per_target_over_the_window():
    flow = _ct_volume()
    prompts = make_prompts(flow, "official-code", seed=0, params={})
    logits = {"liver": [np.where(m, 0.6, -5.0) for m in flow.masks["liver"]]}
    table = _score(flow, Prediction({"liver": list(flow.masks["liver"])}, logits=logits),
                   "official-code", prompts, metrics=("dice_official",))
    # logit 0.6 passes thresholds 0.1, 0.3, 0.5 (Dice ~1) but not 0.7, 0.9 (Dice ~0).
    # Independently: the four window slices are equal; the logits go to 1024 with PIL's
    # bilinear (torch's align_corners=False rule when upsampling), the reference with PIL's
    # nearest; Dice per threshold, averaged.
    from PIL import Image

    up = _pil_resize(logits["liver"][0], Image.BILINEAR)
    ref = _pil_resize(flow.masks["liver"][0], Image.NEAREST)
    expected = float(np.mean([_official_by_hand(up > th, ref)[0]
                              for th in (0.1, 0.3, 0.5, 0.7, 0.9)]))
    assert table["value"].item() == pytest.approx(expected, abs=1e-6)
    # without resizing (size 8 = the slices' own size) the hand value is exact: 3 of 5
    # thresholds give Dice 1, two give (0 + 1e-4) / (16 + 1e-4)
    at_size = official_volume_scores(logits["liver"][:4], list(flow.masks["liver"][:4]),
                                     size=8)[0]
    assert at_size == pytest.approx((3 + 2 * 1e-4 / (16 + 1e-4)) / 5, abs=1e-12)
    # bilinear upsampling to 1024 softens the square's edge: a little lower
    assert 0.4 < expected < at_size


@register
@dataclass
class _KnownLogits(Adapter):
    """Test adapter: empty masks, low-res logits +2 on the square [1:5, 1:5] of 8x8, else -2."""

    name = "test-known-logits"
    hidden = True

    def predict(self, flow, prompts):
        masks, logits = {}, {}
        for target in {p.target for p in prompts}:
            lg = np.full((8, 8), -2.0)
            lg[1:5, 1:5] = 2.0
            logits[target] = [lg] * len(flow.frames)
            masks[target] = [np.zeros(np.shape(f)[:2], bool) for f in flow.frames]
        return Prediction(masks=masks, logits=logits)


def test_a_run_reports_official_metrics_beside_the_paper_metrics(tmp_path):
    config = load_config(ROOT / "bench.toml")
    assert {"dice_official", "iou_official"} <= set(config.suites["official-code"].metrics)
    plan = make_plan(config, "official-code", models=["test-known-logits", "full-frame"],
                     datasets=["demo-fundus"], limit=1)
    execute(plan, tmp_path / "run")
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    ours = table[(table["model"] == "test-known-logits") & (table["metric"] == "dice_official")]
    assert len(ours) and (ours["status"] == "ok").all()
    first = ours.iloc[0]
    from bench.readers import load_card, read_flows

    flow = next(read_flows(load_card(ROOT / "datasets" / "demo-fundus.toml"), None, 1))
    index = flow.case_ids.index(first["case"])
    # Independently: logit 2 on [1:5, 1:5] of 8 x 8, nearest to 1024 (x 128): rows and
    # columns 128-639 predicted; the reference through PIL's nearest.
    from PIL import Image

    pred = np.zeros((1024, 1024), bool)
    pred[128:640, 128:640] = True
    ref = _pil_resize(np.asarray(flow.masks[first["target"]][index], dtype=bool), Image.NEAREST)
    assert first["value"] == pytest.approx(_official_by_hand(pred, ref)[0])
    floor = table[(table["model"] == "full-frame") & (table["metric"] == "dice_official")]
    assert (floor["status"] == "unavailable").all()
    from bench.report import write_report

    write_report(tmp_path / "run")
    text = (tmp_path / "run" / "report.md").read_text()
    assert "dice_official" in text and "not available" in text


def test_cards_state_the_scoring_rules():
    assert "template image is given" in PROTOCOLS["one-prompt"].card({}, "box")
    for name in ("paper-random", "every-frame"):
        card = PROTOCOLS[name].card({}, "mask")
        assert "not scored for that target" in card and "--score-prompted" in card
    assert "dice_official" in PROTOCOLS["official-code"].card()


def test_iou_matches_the_mask_metric_away_from_the_smoothing():
    ref = np.zeros((8, 8), bool)
    ref[2:6, 2:6] = True
    lg = np.where(ref, 1.0, -1.0)
    lg[2, 2] = -1.0
    d, j = official_image_scores(lg, ref, size=8)
    assert d == pytest.approx(dice(lg > 0.5, ref), abs=1e-5)
    assert j == pytest.approx(iou(lg > 0.5, ref), abs=1e-5)


def test_official_code_floors_on_demo_ct_score_no_absent_organ(tmp_path):
    from bench.prompts import official_targets
    from bench.readers import load_card, read_flows

    config = load_config(ROOT / "bench.toml")
    plan = make_plan(config, "official-code", models=["empty", "full-frame"],
                     datasets=["demo-ct"])
    execute(plan, tmp_path / "run")
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    for flow in read_flows(load_card(ROOT / "datasets" / "demo-ct.toml"), None):
        scored = set(table[table["flow"] == flow.id]["target"])
        assert scored == set(official_targets(flow))
    dice_rows = table[table["metric"] == "dice"]
    # the empty floor predicts nothing: every scored organ is present in the window -> 0
    assert (dice_rows[dice_rows["model"] == "empty"]["value"] == 0).all()
    assert (dice_rows[dice_rows["model"] == "full-frame"]["value"] < 0.5).all()


def test_score_prompted_run_keeps_template_rows_in_their_own_report_table(tmp_path):
    config = load_config(ROOT / "bench.toml")
    plain = make_plan(config, "demo", models=["full-frame"], datasets=["demo-fundus"], limit=2)
    kept = make_plan(config, "demo", models=["full-frame"], datasets=["demo-fundus"], limit=2,
                     score_prompted=True)
    assert kept.identity()["score_prompted"] and not plain.identity()["score_prompted"]
    execute(plain, tmp_path / "plain")
    execute(kept, tmp_path / "kept")
    a = pd.read_csv(tmp_path / "plain" / "metrics.csv", keep_default_na=False, na_values=[""])
    b = pd.read_csv(tmp_path / "kept" / "metrics.csv", keep_default_na=False, na_values=[""])
    prompted = b[b["status"] == "prompted"]
    assert len(prompted) and "prompted" not in set(a["status"])
    columns = ["case", "target", "metric", "value", "status"]
    pd.testing.assert_frame_equal(b[b["status"] != "prompted"][columns].reset_index(drop=True),
                                  a[columns].reset_index(drop=True), check_dtype=False)
    assert summarise(a, n_resamples=50).equals(summarise(b, n_resamples=50))
    assert len(per_case(b)) == len(a)  # comparisons and checks never see the given frames
    from bench.report import write_report

    write_report(tmp_path / "kept")
    text = (tmp_path / "kept" / "report.md").read_text()
    assert "## Prompted frames (given, not predicted)" in text
    assert "template image is given" in text


def test_official_btcv_slab_is_the_any_label_slab(tmp_path):
    # The official slab is any nonzero label of the file; the harness's is the union of the
    # card's targets. official-btcv lists every BTCV label and refuses unknown values, so the
    # two agree: a label outside the card stops the read instead of shifting the slab.
    from PIL import Image

    from bench.errors import DataError
    from bench.prompts import labelled_slab
    from bench.readers import load_card, read_flows

    def write(folder, labels):
        for k, value in enumerate(labels):
            (folder / "Test/image/c1").mkdir(parents=True, exist_ok=True)
            (folder / "Test/mask/c1").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / f"Test/image/c1/{k}.jpg")
            mask = np.zeros((8, 8), np.int64)
            mask[2:4, 2:4] = value
            np.save(folder / f"Test/mask/c1/{k}.npy", mask)

    card = load_card(ROOT / "datasets" / "official-btcv.toml")
    write(tmp_path / "ok", [0, 13, 6, 6, 6, 0, 1, 0])
    flow = next(read_flows(card, tmp_path / "ok"))
    assert labelled_slab(flow) == (1, 7)  # any nonzero label: slices 1..6
    write(tmp_path / "bad", [0, 14, 6, 6, 6, 0, 0, 0])
    with pytest.raises(DataError, match="are not declared by the card"):
        next(read_flows(card, tmp_path / "bad"))


def test_logits_of_the_wrong_length_or_rank_are_refused():
    from bench.scoring import PredictionError, check_prediction

    flow = _image_flow(2)
    masks = {"a": [np.zeros((6, 6), bool)] * 2}
    check_prediction(flow, Prediction(masks, logits={"a": [np.zeros((4, 4))] * 2}), ["a"])
    with pytest.raises(PredictionError, match="1 logit arrays for 2 frames"):
        check_prediction(flow, Prediction(masks, logits={"a": [np.zeros((4, 4))]}), ["a"])
    with pytest.raises(PredictionError, match="logits must be 2D"):
        check_prediction(flow, Prediction(masks, logits={"a": [np.zeros((1, 4, 4))] * 2}),
                         ["a"])
