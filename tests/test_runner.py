"""End to end: the demo suite through the runner, resume and failure isolation."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, register

from bench.atomic import PARTIAL_MARK
from bench.config import load_config
from bench.plan import make_plan
from bench.report import write_report
from bench.runner import execute
from bench.types import Prediction

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench.toml"


@register
@dataclass
class _FailsOnSecondFlow(Adapter):
    """Test adapter: full-frame masks, except that it raises on flows whose id ends in 1."""

    name = "test-fails-on-flow-1"
    hidden = True

    def predict(self, flow, prompts):
        if flow.id.endswith("1"):
            raise RuntimeError("simulated adapter crash")
        full = [np.ones(np.shape(frame)[:2], dtype=bool) for frame in flow.frames]
        return Prediction(masks={prompt.target: full for prompt in prompts})


@register
@dataclass
class _NeedsCT(Adapter):
    """Test adapter: refuses (like medsam2-ma's ma-ct profile) unless the card says CT."""

    name = "test-needs-ct"
    hidden = True

    def predict(self, flow, prompts):
        if flow.modality != "CT (synthetic)":
            raise ValueError(f"modality {flow.modality!r} is not CT")
        empty = [np.zeros(np.shape(frame)[:2], dtype=bool) for frame in flow.frames]
        return Prediction(masks={prompt.target: empty for prompt in prompts})


def _run(tmp_path, models, datasets=("demo-fundus",), limit=12):  # two flows of 6 images
    config = load_config(CONFIG)
    plan = make_plan(config, "demo", models=models, datasets=list(datasets), limit=limit)
    outcome = execute(plan, tmp_path / "run")
    write_report(tmp_path / "run")
    return outcome, pd.read_csv(tmp_path / "run" / "metrics.csv", keep_default_na=False,
                                na_values=[""])


def test_one_failing_flow_is_recorded_and_the_rest_completes(tmp_path):
    outcome, table = _run(tmp_path, ["test-fails-on-flow-1", "full-frame"])
    assert outcome.units_failed == 1
    failed = table[table["status"] == "error"]
    assert set(failed["model"]) == {"test-fails-on-flow-1"}
    assert set(failed["flow"]) == {f for f in table["flow"].unique() if f.endswith("1")}
    assert failed["message"].str.contains("RuntimeError: simulated adapter crash").all()
    ok = table[(table["model"] == "test-fails-on-flow-1") & (table["status"] != "error")]
    assert len(ok) > 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(summary["failed_units"]) == 1
    assert (tmp_path / "run" / "logs").is_dir()
    assert "simulated adapter crash" in (tmp_path / "run" / "report.md").read_text()


def test_adapters_see_the_card_modality(tmp_path):
    # demo-ct's card says "CT (synthetic)", demo-fundus's "fundus photography (synthetic)".
    outcome, table = _run(tmp_path, ["test-needs-ct"], datasets=("demo-ct", "demo-fundus"),
                          limit=1)
    assert outcome.units_failed == 1
    failed = table[table["status"] == "error"]
    assert set(failed["dataset"]) == {"demo-fundus"}
    assert failed["message"].str.contains(
        "modality 'fundus photography \\(synthetic\\)' is not CT").all()
    assert (table[table["dataset"] == "demo-ct"]["status"] != "error").all()


def test_full_frame_scores_match_an_independent_count(tmp_path):
    # full-frame predicts every pixel: Dice = 2|G| / (|G| + N), IoU = |G| / N per image.
    from bench.readers import load_card, read_flows

    _, table = _run(tmp_path, ["full-frame"], limit=1)
    flow = next(read_flows(load_card(ROOT / "datasets" / "demo-fundus.toml"), None, 1))
    for target in flow.targets:
        # one-prompt: the template (first image containing the target) is given, not scored
        template = next(i for i, m in enumerate(flow.masks[target]) if np.any(m))
        assert table[(table["case"] == flow.case_ids[template])
                     & (table["target"] == target)].empty
        for index, (case, mask) in enumerate(zip(flow.case_ids, flow.masks[target],
                                                 strict=True)):
            if index == template:
                continue
            g, n = int(np.sum(mask)), int(np.size(mask))
            row = table[(table["case"] == case) & (table["target"] == target)]
            dice = row[row["metric"] == "dice"]["value"].item()
            iou = row[row["metric"] == "iou"]["value"].item()
            assert np.isclose(dice, 2 * g / (g + n)) and np.isclose(iou, g / n)


def test_rerun_into_a_finished_run_needs_resume(tmp_path):
    _run(tmp_path, ["full-frame"], limit=1)
    config = load_config(CONFIG)
    plan = make_plan(config, "demo", models=["full-frame"], datasets=["demo-fundus"], limit=1)
    with pytest.raises(RuntimeError, match="--resume"):
        execute(plan, tmp_path / "run")
    outcome = execute(plan, tmp_path / "run", resume=True)
    assert outcome.units_run == 0 and outcome.units_reused == outcome.units_total
    changed = make_plan(config, "demo", models=["full-frame"], datasets=["demo-fundus"], limit=2)
    with pytest.raises(RuntimeError, match="plan differs in limit"):
        execute(changed, tmp_path / "run", resume=True)


def _cli(out, *extra):
    return [sys.executable, "-m", "bench.cli", "--config", str(CONFIG), "run", "--suite", "demo",
            "--models", "registration", "--datasets", "demo-fundus,demo-ultrasound",
            "--limit", "12", "--no-cache", "--out", str(out), *extra]  # 2 flows of 6


def test_killed_run_resumes_to_the_same_table(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = subprocess.run(_cli(tmp_path / "full"), cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert full.returncode == 0, full.stdout + full.stderr

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(_cli(killed_dir), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(list((killed_dir / "units").glob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed_dir / "metrics.csv").exists(), "the run finished before it was killed"

    resumed = subprocess.run(_cli(killed_dir, "--resume"), cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "reused" in resumed.stdout
    assert not list(killed_dir.rglob(f"{PARTIAL_MARK}*"))
    a = (tmp_path / "full" / "metrics.csv").read_bytes()
    b = (killed_dir / "metrics.csv").read_bytes()
    assert a == b
    assert (tmp_path / "full" / "prompts.jsonl").read_bytes() == \
        (killed_dir / "prompts.jsonl").read_bytes()


def _broken_fundus_project(tmp_path):
    """A project folder whose suite runs the fundus card on 3 good cases and 1 truncated JPEG."""
    import shutil

    from skimage.io import imsave

    shutil.copytree(ROOT / "datasets", tmp_path / "datasets")
    data = tmp_path / "data" / "sample_dataset"
    (data / "origin1").mkdir(parents=True)
    (data / "groundtruth1").mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        image = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
        mask = np.zeros((40, 60), dtype=np.uint8)
        mask[10 + index:25, 20:40] = 255
        imsave(data / "origin1" / f"image_{index:03d}.jpg", image, check_contrast=False)
        imsave(data / "groundtruth1" / f"image_{index:03d}.jpg", mask, check_contrast=False)
    broken = data / "origin1" / "image_002.jpg"
    broken.write_bytes(broken.read_bytes()[:100])
    (tmp_path / "bench.toml").write_text(
        '[datasets]\nfundus-optic-disc = "data"\n'
        '[suites.t]\nprotocol = "one-prompt"\ndatasets = ["fundus-optic-disc"]\n'
        'models = ["full-frame"]\n')
    return tmp_path / "bench.toml", broken


def test_a_dataset_with_an_unreadable_case_is_refused_unless_skipping(tmp_path):
    config_path, broken = _broken_fundus_project(tmp_path)
    config = load_config(config_path)

    refused = execute(make_plan(config, "t"), tmp_path / "refused")
    manifest = json.loads((tmp_path / "refused" / "manifest.json").read_text())
    entry = manifest["datasets"]["fundus-optic-disc"]
    assert entry["refused"] and refused.units_total == 0 and refused.read_failures == 1
    assert str(broken) in entry["failures"][0]["error"]

    skipped = execute(make_plan(config, "t", skip_bad_cases=True), tmp_path / "skipped")
    assert skipped.read_failures == 1 and skipped.units_failed == 0
    table = pd.read_csv(tmp_path / "skipped" / "metrics.csv", dtype={"case": str})
    # "000" is the one-prompt template: given, not scored
    assert sorted(table["case"].unique()) == ["001", "003"]


def test_bench_prompts_lists_the_ledger_and_draws_a_frame(tmp_path, capsys):
    from bench.cli import main
    from bench.prompts import ledger

    _run(tmp_path, ["full-frame"], limit=1)
    run_dir = tmp_path / "run"
    rows = ledger.read_ledger(run_dir / "prompts.jsonl")
    assert main(["prompts", str(run_dir)]) == 0  # everything from the run directory
    assert f"{len(rows)} prompts" in capsys.readouterr().out
    flow = rows[0]["case"]
    png = tmp_path / "prompts.png"
    assert main(["prompts", str(run_dir), "--dataset", "demo-fundus",
                 "--flow", flow, "--draw", str(png)]) == 0
    from skimage.io import imread

    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 10


def test_a_failed_run_says_why_on_screen(tmp_path, capsys):
    from bench.cli import main

    code = main(["run", "--suite", "demo", "--datasets", "demo-fundus", "--limit", "12",
                 "--models", "test-fails-on-flow-1,full-frame", "--out", str(tmp_path / "run"),
                 "--no-cache"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert (f"1 unit(s) failed; reasons (tracebacks in {tmp_path / 'run'}/logs/): 1 x "
            "test-fails-on-flow-1 on demo-fundus: RuntimeError: simulated adapter crash") in err
