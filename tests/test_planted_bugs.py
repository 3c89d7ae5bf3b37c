"""Issue 20: one test per one-line bug that the suite let through, from independent expectations.

Each test names the bug it catches:

- MedSAM-2's click/box scale built with the frame's height and width swapped
  (``adapters/medsam2/adapter.py``): a non-square frame and a known click, the
  coordinates SAM 2's prompt encoder receives intercepted and checked against
  ``(x * S / W, y * S / H)`` computed by hand.
- the plan's empty-mask policy replaced by the default one (``bench/units.py``):
  ``empty_policy`` set in a ``bench.toml`` changes ``n`` and the mean of a run,
  to values counted by hand.
- the bootstrap resampling cases instead of patients (``bench/aggregate.py``):
  images clustered by patient; the interval of :func:`bench.aggregate.summarise`
  against the exact patient-bootstrap distribution enumerated here.
- the volume metric's logits resized with nearest instead of bilinear
  (``bench/official_metrics.py``): a 1 x 2 logit grid whose bilinear upsampling
  is written out by hand and crosses the thresholds differently.

Siblings: the SAM 2 video-predictor path's click scale (``fifo`` / ``confidence``
memory) and ``nsd_tolerance_mm`` set in a ``bench.toml`` (hand-counted NSD of a
disc shifted 3 px).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, register

from bench.settings import Settings
from bench.types import Prediction

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------- MedSAM-2 click scaling

SIZE = 256  # model input size of the random-weight test model
HEIGHT, WIDTH = 48, 80  # non-square: a swapped scale moves the click
CLICK = (20.0, 30.0)  # (x, y) = (column, row) in frame pixels
BOX = (8.0, 6.0, 60.0, 42.0)  # x0, y0, x1, y1


def _medsam2(memory: str, **extra):
    from bench.adapters.medsam2.adapter import MedSAM2Adapter

    settings = {"random_weights": True, "image_size": SIZE, "device": "cpu",
                "config": "sam2_hiera_t", "preprocessing": "sam2", "cache_mb": 0,
                "fill_hole_area": 0, "memory": memory, **extra}
    return MedSAM2Adapter(settings=settings)


def _flow(n: int = 2):
    from bench.types import FlowFrames

    rng = np.random.default_rng(0)
    frames = list(rng.integers(0, 255, (n, HEIGHT, WIDTH, 3), dtype=np.uint8))
    return FlowFrames("f", "synthetic", "image-flow", frames)


def _prompt_encoder_inputs(adapter, flow, prompts):
    """Run ``predict``; the (points, labels) and boxes the prompt encoder received, and the
    prediction."""
    torch = pytest.importorskip("torch")
    seen: list[tuple[object, object]] = []

    def hook(module, args, kwargs):
        points = kwargs.get("points")
        boxes = kwargs.get("boxes")
        seen.append((None if points is None else (points[0].detach().clone(),
                                                  points[1].detach().clone()),
                     None if boxes is None else boxes.detach().clone()))

    model = adapter.load().predictor
    handle = model.sam_prompt_encoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            prediction = adapter.predict(flow, prompts)
    finally:
        handle.remove()
    return seen, prediction


def _expected(x: float, y: float) -> tuple[float, float]:
    # SAM 2 takes (x, y) in the square S x S input: x scales with the width, y with the height.
    return x * SIZE / WIDTH, y * SIZE / HEIGHT


def test_official_loop_scales_a_click_by_width_and_height_on_a_non_square_frame():
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from bench.types import Prompt

    prompt = Prompt("t", 0, "point", points=(CLICK,), labels=(1,))
    seen, prediction = _prompt_encoder_inputs(_medsam2("official"), _flow(), [prompt])
    # Masks come back at the frame's own (H, W), not transposed.
    assert [m.shape for m in prediction.masks["t"]] == [(HEIGHT, WIDTH)] * 2
    clicked = [points for points, _ in seen if points is not None]
    assert len(clicked) == 1  # frame 0 only; frame 1 is decoded without a prompt
    coords, labels = clicked[0]
    assert coords.shape == (1, 1, 2) and labels.tolist() == [[1]]
    assert coords[0, 0].tolist() == pytest.approx(_expected(*CLICK))  # (64, 160)


def test_official_loop_scales_a_box_and_the_official_click_order_on_a_non_square_frame():
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from bench.types import Prompt

    prompts = [Prompt("t", 0, "box", box=BOX)]
    seen, _ = _prompt_encoder_inputs(_medsam2("official"), _flow(), prompts)
    boxes = [box for _, box in seen if box is not None]
    x0, y0 = _expected(*BOX[:2])
    x1, y1 = _expected(*BOX[2:])
    assert len(boxes) == 1 and boxes[0].reshape(-1).tolist() == pytest.approx([x0, y0, x1, y1])
    # click_order = "official": the scaled click fed as (row, col), i.e. (y', x').
    click = Prompt("t", 0, "point", points=(CLICK,), labels=(1,))
    seen, _ = _prompt_encoder_inputs(_medsam2("official", click_order="official"), _flow(),
                                     [click])
    coords = [points[0] for points, _ in seen if points is not None][0]
    x, y = _expected(*CLICK)
    assert coords[0, 0].tolist() == pytest.approx([y, x])


@pytest.mark.parametrize("memory", ["fifo", "confidence"])
def test_video_predictor_path_scales_a_click_by_width_and_height(memory):
    # Sibling path: fifo / confidence memory go through SAM 2's video predictor
    # (adapters/sam2/session.py divides by the frame's width and height).
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from bench.types import Prompt

    prompt = Prompt("t", 0, "point", points=(CLICK,), labels=(1,))
    seen, prediction = _prompt_encoder_inputs(_medsam2(memory), _flow(), [prompt])
    assert [m.shape for m in prediction.masks["t"]] == [(HEIGHT, WIDTH)] * 2
    clicks = [(c, lab) for (c, lab), _ in ((p, b) for p, b in seen if p is not None)
              if (lab >= 0).any()]
    assert clicks, "the click never reached the prompt encoder"
    coords, labels = clicks[0]
    assert labels[0, 0].item() == 1
    assert coords[0, 0].tolist() == pytest.approx(_expected(*CLICK), abs=1e-3)


# ----------------------------------------------------------------- empty-mask policy


def _project(tmp_path, defaults: str, suite: str, *, models: str = '["empty"]',
             metrics: str = '["dice", "iou", "hd95"]', discs: tuple[int, ...] = (0, 3)):
    """A fundus-style project of 4 images (40 x 60); the images ``discs`` (default: 000, the
    template, and 003) hold the disc, rows 10-24 x columns 20-39; the others have an empty
    reference."""
    from PIL import Image

    data = tmp_path / "data" / "sample_dataset"
    (data / "origin1").mkdir(parents=True)
    (data / "groundtruth1").mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        image = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
        mask = np.zeros((40, 60), dtype=np.uint8)
        if index in discs:
            mask[10:25, 20:40] = 255
        Image.fromarray(image).save(data / "origin1" / f"image_{index:03d}.jpg")
        Image.fromarray(mask).save(data / "groundtruth1" / f"image_{index:03d}.jpg", quality=100)
    config = tmp_path / "bench.toml"
    config.write_text(
        f"[defaults]\n{defaults}\n"
        '[datasets]\nfundus-optic-disc = "data"\n'
        f'[suites.t]\nprotocol = "one-prompt"\ndatasets = ["fundus-optic-disc"]\n'
        f'models = {models}\nmetrics = {metrics}\n{suite}\n')
    return config


# (defaults line, suite line, policy that must apply)
POLICIES = [
    ('empty_policy = "one"', "", "one"),
    ("", 'empty_policy = "one"', "one"),
    ('empty_policy = "one"', 'empty_policy = "exclude"', "exclude"),
    ("", "", "exclude"),
]


@pytest.mark.parametrize(("defaults", "suite", "policy"), POLICIES)
def test_empty_policy_in_bench_toml_changes_the_numbers_of_a_run(tmp_path, defaults, suite,
                                                                 policy):
    from bench.cli import main

    config = _project(tmp_path, defaults, suite)
    out = tmp_path / "run"
    assert main(["--config", str(config), "run", "--suite", "t", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["empty_policy"]["both_empty"] == policy
    rows = {r["metric"]: r for r in summary["aggregates"] if r["model"] == "empty"}
    # The `empty` model predicts nothing. Scored: 001, 002 (both empty) and 003 (the disc
    # missed: Dice 0, IoU 0, HD95 = the image diagonal, sqrt(40^2 + 60^2) px).
    diagonal = float(np.hypot(40, 60))
    if policy == "one":  # both-empty scores 1 (distances 0): 3 cases in the means
        expected = {"dice": (3, 2 / 3), "iou": (3, 2 / 3), "hd95": (3, diagonal / 3)}
        excluded = 0
    else:  # both-empty cases drop out: only 003
        expected = {"dice": (1, 0.0), "iou": (1, 0.0), "hd95": (1, diagonal)}
        excluded = 2
    for metric, (n, mean) in expected.items():
        row = rows[metric]
        assert (row["n"], row["n_excluded"], row["n_penalised"]) == (n, excluded, 1), metric
        assert row["mean"] == pytest.approx(mean), metric
    table = pd.read_csv(out / "metrics.csv", dtype={"case": str})
    both = table[(table["status"] == "both_empty") & (table["metric"] == "dice")]
    assert sorted(both["case"]) == ["001", "002"]


# ----------------------------------------------------------------- sibling: NSD tolerance


@register
@dataclass
class _ShiftedDisc(Adapter):
    """Test adapter: the fundus project's disc moved 3 columns right on every image."""

    name = "test-shifted-disc"
    hidden = True

    def predict(self, flow, prompts):
        masks = []
        for frame in flow.frames:
            mask = np.zeros(np.shape(frame)[:2], dtype=bool)
            mask[10:25, 23:43] = True
            masks.append(mask)
        return Prediction(masks={prompt.target: masks for prompt in prompts})


class _ShiftOptions(Settings):
    """``[models.test-shift-option]``: how far right the disc is moved."""

    shift: int = 0


@register
@dataclass
class _ShiftOption(Adapter):
    """Test adapter: the fundus project's disc moved ``shift`` columns right."""

    name = "test-shift-option"
    hidden = True
    Options: ClassVar[type[Settings]] = _ShiftOptions

    def predict(self, flow, prompts):
        shift = self.options.shift
        masks = []
        for frame in flow.frames:
            mask = np.zeros(np.shape(frame)[:2], dtype=bool)
            mask[10:25, 20 + shift:40 + shift] = True
            masks.append(mask)
        return Prediction(masks={prompt.target: masks for prompt in prompts})


@pytest.mark.parametrize("executor", ["local", "processes"])
@pytest.mark.parametrize(("shift", "expected"), [(0, 1.0), (5, 15 / 25)])
def test_a_model_option_in_bench_toml_reaches_the_predicting_adapter(tmp_path, shift, expected,
                                                                     executor):
    # Worker processes build their own adapters from the plan's [models.NAME] tables: the
    # option must change the scores, not only the fingerprint in config.json. IoU of a
    # 15 x 20 disc and the same disc moved 5 columns: 15 x 15 / (15 x 25).
    from bench.cli import main

    config = _project(tmp_path, "", "", models='["test-shift-option"]', metrics='["iou"]',
                      discs=(0, 1, 2, 3))
    config.write_text(config.read_text() + f"[models.test-shift-option]\nshift = {shift}\n")
    out = tmp_path / "run"
    assert main(["--config", str(config), "run", "--suite", "t", "--out", str(out),
                 "--executor", executor, "--workers", "1", "--no-cache"]) == 0
    recorded = json.loads((out / "config.json").read_text())["adapters"]["test-shift-option"]
    assert json.dumps(recorded).count(f'"shift": {shift}') == 1
    table = pd.read_csv(out / "metrics.csv", dtype={"case": str})
    assert table["value"].to_numpy() == pytest.approx([expected] * 3)


@pytest.mark.parametrize(("template", "scored"), [("", ["001", "002", "003"]),
                                                  ("template = 2", ["000", "001", "003"])])
def test_protocol_params_in_bench_toml_choose_the_given_template(tmp_path, template, scored):
    # [suites.t.protocol_params] template = 2: image 002 is given (prompted, not scored);
    # by default the first image is.
    from bench.cli import main

    suite = f"[suites.t.protocol_params]\n{template}\n" if template else ""
    config = _project(tmp_path, "", suite, metrics='["dice"]', discs=(0, 1, 2, 3))
    out = tmp_path / "run"
    assert main(["--config", str(config), "run", "--suite", "t", "--out", str(out)]) == 0
    table = pd.read_csv(out / "metrics.csv", dtype={"case": str})
    assert sorted(table["case"]) == scored
    (given,) = {"000", "001", "002", "003"} - set(scored)
    ledger = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert [(row["frame"], row["box"]) for row in ledger] == [(int(given), [20, 10, 39, 24])]


# Surface voxels: 66 per 15 x 20 rectangle. Shifted by 3 columns, a voxel of one surface is
# within the tolerance of the other surface when (per mask, by symmetry the same for both):
#   tolerance 1.5: 18 + 18 of the top and bottom rows, 2 of the 13 inner left-column voxels
#                  (rows 11 and 23, 1 px from a row), none of the right column -> 38 of 66;
#   tolerance 3.5: every voxel (the largest surface distance is 3 px = 3 mm) -> 66 of 66;
#   the default 2.0 would give 19 + 19 + 4 = 42 of 66.
NSD_CASES = [("1.5", 76 / 132), ("3.5", 1.0)]


@pytest.mark.parametrize(("tolerance", "expected"), NSD_CASES)
def test_nsd_tolerance_in_bench_toml_changes_the_nsd_of_a_run(tmp_path, tolerance, expected):
    from bench.cli import main
    from bench.readers import load_card, read_flows

    config = _project(tmp_path, f"nsd_tolerance_mm = {tolerance}", "",
                      models='["test-shifted-disc"]', metrics='["nsd"]', discs=(0, 1, 2, 3))
    # The references read back exactly as drawn (JPEG at quality 100, thresholded at 128).
    card = load_card(ROOT / "datasets" / "fundus-optic-disc.toml")
    disc = np.zeros((40, 60), bool)
    disc[10:25, 20:40] = True
    for flow in read_flows(card, tmp_path / "data", None):
        assert all(np.array_equal(m, disc) for m in flow.masks["optic disc"])
    out = tmp_path / "run"
    assert main(["--config", str(config), "run", "--suite", "t", "--out", str(out)]) == 0
    table = pd.read_csv(out / "metrics.csv", dtype={"case": str})
    table = table[table["metric"] == "nsd"]
    assert sorted(table["case"]) == ["001", "002", "003"]  # 000 is the given template
    assert table["value"].to_numpy() == pytest.approx([expected] * 3)


# ----------------------------------------------------------------- bootstrap unit

# Five patients with 1 to 9 images each; a patient's images are nearly equal (a patient
# effect), so the patients, not the 25 images, are the independent units.
PATIENT_VALUES = {"p1": 0.10, "p2": 0.35, "p3": 0.55, "p4": 0.80, "p5": 0.95}
PATIENT_SIZES = {"p1": 9, "p2": 1, "p3": 5, "p4": 3, "p5": 7}


def _clustered_table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for patient, size in PATIENT_SIZES.items():
        for k in range(size):
            value = PATIENT_VALUES[patient] + rng.normal(0.0, 0.005)
            rows.append({"dataset": "d", "flow": patient, "case": f"{patient}/{k}",
                         "patient": patient, "target": "t", "model": "m", "protocol": "p",
                         "seed": 0, "metric": "dice", "value": value, "status": "ok"})
    return pd.DataFrame(rows)


def _exact_patient_bootstrap(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Every equally likely draw of 5 patients with replacement: sorted means and their CDF."""
    sums = table.groupby("patient")["value"].sum()
    counts = table.groupby("patient")["value"].count()
    names = list(sums.index)
    means = np.array([sum(sums[names[i]] for i in draw) / sum(counts[names[i]] for i in draw)
                      for draw in itertools.product(range(len(names)), repeat=len(names))])
    means.sort()
    return means, np.arange(1, means.size + 1) / means.size


def test_summary_interval_resamples_patients_not_images():
    from bench.aggregate import summarise

    table = _clustered_table()
    row = summarise(table).iloc[0]
    assert row["n"] == 25 and row["n_patients"] == 5
    assert row["mean"] == pytest.approx(table["value"].mean())
    means, cdf = _exact_patient_bootstrap(table)

    def quantile(q: float) -> float:
        return float(means[np.searchsorted(cdf, q)])

    # 2000 resamples estimate the 2.5 % and 97.5 % points of the exact distribution;
    # they land between its 1 % and 5 % (95 % and 99 %) points.
    assert quantile(0.01) <= row["ci_low"] <= quantile(0.05)
    assert quantile(0.95) <= row["ci_high"] <= quantile(0.99)
    # Resampling the 25 images as if independent gives an interval about half as wide.
    image_sd = table["value"].std(ddof=0) / np.sqrt(25)
    assert row["ci_high"] - row["ci_low"] > 2 * 1.96 * image_sd * 1.5


# ----------------------------------------------------------------- official volume resize


def test_volume_metric_upsamples_logits_bilinearly_by_hand():
    from bench.official_metrics import official_volume_scores

    # One slice: logits [[0, 1]] (1 x 2) and reference [[False, True]], both to 4 x 4.
    # Bilinear, align_corners=False, column j samples source x = (j + 0.5) / 2 - 0.5,
    # clamped to [0, 1]: x = 0, 0.25, 0.75, 1 -> logits 0, 0.25, 0.75, 1.0 in every row.
    # (Nearest would give 0, 0, 1, 1.) The reference (PIL nearest) is columns 2 and 3.
    logits = np.array([[0.0, 1.0]])
    ref = np.array([[False, True]])
    # Per threshold, predicted columns (x 4 rows) against the 8 reference pixels:
    #   0.1 -> 1, 2, 3 (12 px, 8 shared); 0.3, 0.5, 0.7 -> 2, 3 (exact); 0.9 -> 3 (4 px).
    dice = [(16 + 1e-4) / (20 + 1e-4), 1.0, 1.0, 1.0, (8 + 1e-4) / (12 + 1e-4)]
    iou = [(8 + 1e-6) / (12 + 1e-6), 1.0, 1.0, 1.0, (4 + 1e-6) / (8 + 1e-6)]
    d, j = official_volume_scores([logits], [ref], size=4)
    assert d == pytest.approx(np.mean(dice), abs=1e-12)
    assert j == pytest.approx(np.mean(iou), abs=1e-12)
    assert d < 0.9  # nearest upsampling would score a perfect 1.0


def test_volume_metric_upsamples_a_non_square_grid_bilinearly_by_hand():
    from bench.official_metrics import official_volume_scores

    # Logits 2 x 1 (rows): [[0], [1]] to 4 x 4 -> rows 0, 0.25, 0.75, 1 in every column.
    # Threshold 0.1 takes rows 1-3 (12 px), 0.3-0.7 rows 2-3, 0.9 row 3; the reference
    # [[True], [False]] is rows 0-1: overlaps 4, 0, 0, 0, 0 pixels.
    logits = np.array([[0.0], [1.0]])
    ref = np.array([[True], [False]])
    d, _ = official_volume_scores([logits], [ref], size=4)
    dice = [(8 + 1e-4) / (20 + 1e-4), 1e-4 / (16 + 1e-4), 1e-4 / (16 + 1e-4),
            1e-4 / (16 + 1e-4), 1e-4 / (12 + 1e-4)]
    assert d == pytest.approx(np.mean(dice), abs=1e-12)
