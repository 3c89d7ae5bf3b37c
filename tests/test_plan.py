"""Plans: which datasets a suite runs, demo stand-ins, and the checks made before any work."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters.base import missing_modules
from PIL import Image

from bench.cli import main
from bench.config import load_config
from bench.errors import ConfigError
from bench.plan import make_plan, parse_roots
from bench.prompts.protocols import InteractiveParams, OnePromptParams
from bench.rundir import unit_key

ROOT = Path(__file__).resolve().parents[1]
NO_SAM = missing_modules(("torch", "segment_anything"))
NO_SAM2 = missing_modules(("torch", "sam2"))


def _config(tmp_path: Path, text: str = ""):
    shutil.copytree(ROOT / "datasets", tmp_path / "datasets")
    base = (ROOT / "bench.toml").read_text()
    (tmp_path / "bench.toml").write_text(base.replace('wbc = ""', text or 'wbc = ""'))
    return load_config(tmp_path / "bench.toml")


def test_unconfigured_suite_runs_its_demo_stand_ins(tmp_path):
    config = _config(tmp_path)
    plan = make_plan(config, "one-prompt")
    assert plan.demo
    assert [d.name for d in plan.datasets] == list(config.suites["one-prompt"].demo)
    assert set(plan.unconfigured) == set(config.suites["one-prompt"].datasets)


def test_the_demo_suite_is_marked_synthetic(tmp_path):
    plan = make_plan(_config(tmp_path), "demo")
    assert plan.demo and plan.unconfigured == ()


def test_a_configured_dataset_runs_alone_and_the_rest_are_listed(tmp_path):
    (tmp_path / "wbc").mkdir()
    config = _config(tmp_path, 'wbc = "wbc"')
    plan = make_plan(config, "one-prompt")
    assert not plan.demo
    assert [d.name for d in plan.datasets] == ["wbc"]
    assert plan.datasets[0].root == (tmp_path / "wbc").resolve()
    assert "wbc" not in plan.unconfigured and len(plan.unconfigured) == 9


def test_choosing_an_unconfigured_dataset_says_how_to_configure_it(tmp_path):
    with pytest.raises(ConfigError, match=r'kits23 = "/path/to/kits23"'):
        make_plan(_config(tmp_path), "one-prompt", datasets=["kits23"])


def test_the_plan_carries_typed_protocol_parameters(tmp_path):
    config = _config(tmp_path)
    plan = make_plan(config, "demo")
    assert plan.params == OnePromptParams(template="first")
    # Only what the suite set identifies units: the same keys as before the typed settings.
    assert plan.protocol_params == {"template": "first"}
    assert unit_key("demo-cells", "cells-f0", "full-frame", plan.protocol, plan.protocol_params,
                    0) == "88a29e8d34a2c690d08a"
    record = json.loads(json.dumps(plan.identity()))
    assert record["protocol_params"] == {"template": "first"} and "params" not in record
    assert record["metrics"] == ["dice", "iou", "hd95"] and record["seeds"] == [0]
    assert record["models"] == ["registration", "full-frame"]
    assert record["datasets"][0] == {"name": "demo-cells", "root": None}
    interactive = make_plan(config, "interactive", protocol_params={"noc_thresholds": [0.5]},
                            datasets=["demo-fundus"])
    assert interactive.params == InteractiveParams(max_clicks=20, noc_thresholds=(0.5,))
    assert interactive.protocol_params == {"max_clicks": 20, "noc_thresholds": [0.5]}


@pytest.mark.parametrize(("choices", "expected"), [
    ({"suite_name": "demoo"}, "--suite: unknown suite 'demoo' (did you mean 'demo'?)"),
    ({"datasets": ["demo-fundas"]},
     "--datasets: unknown dataset 'demo-fundas' (did you mean 'demo-fundus'?)"),
    ({"datasets": ["demo-fundus", "demo-fundus"]}, "--datasets: 'demo-fundus' is listed twice"),
    ({"models": ["registraton"]},
     "--models: unknown model 'registraton' (did you mean 'registration'?)"),
    ({"models": ["full-frame", "full-frame"]}, "--models: 'full-frame' is listed twice"),
    ({"checkpoints": {"sam-2": "x.pth"}},
     "--checkpoint: unknown model 'sam-2' (did you mean 'sam2'?)"),
    ({"limit": -1}, "--limit: expected a non-negative integer, got -1"),
    ({"seeds": [0, -2]}, "--seed/--seeds: expected non-negative integers, got -2"),
    ({"seeds": [1, 1]}, "--seed/--seeds: 1 is listed twice"),
    ({"protocol_params": {"templat": "first"}},
     "[suites.demo.protocol_params]: unknown key 'templat' (did you mean 'template'?)"),
])
def test_what_the_user_typed_is_checked_before_any_work(tmp_path, choices, expected):
    config = _config(tmp_path)
    choices = {"suite_name": "demo", **choices}
    with pytest.raises(ConfigError) as caught:
        make_plan(config, **choices)
    assert str(caught.value) == expected


def test_model_tables_and_suite_models_must_name_adapters(tmp_path):
    config = _config(tmp_path)
    text = (tmp_path / "bench.toml").read_text()
    (tmp_path / "bench.toml").write_text(text.replace("[models.full-frame]", "[models.ful-frame]"))
    with pytest.raises(ConfigError, match=r"^bench.toml: \[models\]: unknown model 'ful-frame' "
                       r"\(did you mean 'full-frame'\?\)$"):
        make_plan(load_config(tmp_path / "bench.toml"), "demo")
    (tmp_path / "bench.toml").write_text(text + '[suites.t]\nprotocol = "one-prompt"\n'
                                         'datasets = ["demo-fundus"]\nmodels = ["emtpy"]\n')
    with pytest.raises(ConfigError, match=r"^bench.toml: \[suites.t\].models: unknown model "
                       r"'emtpy' \(did you mean 'empty'\?\)$"):
        make_plan(load_config(tmp_path / "bench.toml"), "t")
    assert config.suites["demo"].models == ("registration", "full-frame")


def test_bench_run_refuses_a_bad_name_in_one_line_and_writes_nothing(tmp_path, capsys):
    _config(tmp_path)
    out = tmp_path / "out"
    for argv, needle in ((["--suite", "demoo"], "unknown suite 'demoo'"),
                         (["--suite", "demo", "--limit", "-1"], "--limit: expected"),
                         (["--suite", "demo", "--datasets", "demo-fundas"],
                          "did you mean 'demo-fundus'?")):
        code = main(["--config", str(tmp_path / "bench.toml"), "run", *argv, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
        assert not out.exists()


def test_unknown_model_names_the_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown model 'registraton' \(did you mean "
                                          r"'registration'\?\)"):
        make_plan(_config(tmp_path), "one-prompt", models=["registraton"])


def _suite_with(tmp_path, models):
    _config(tmp_path)
    text = (tmp_path / "bench.toml").read_text() + (
        '\n[suites.t]\nprotocol = "one-prompt"\ndatasets = ["demo-fundus"]\n'
        f"models = {models!r}\n".replace("'", '"'))
    (tmp_path / "bench.toml").write_text(text)
    return load_config(tmp_path / "bench.toml")


@pytest.mark.skipif(bool(NO_SAM), reason=f"needs the [sam] extra (missing {NO_SAM})")
def test_suite_models_without_weights_are_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSAM2_BENCH_CHECKPOINT_SAM", raising=False)
    config = _suite_with(tmp_path, ["sam", "full-frame"])
    plan = make_plan(config, "t")
    assert plan.models == ("full-frame",)
    reason = plan.skipped_models["sam"]
    assert "checkpoint" in reason and "--checkpoint sam=PATH" in reason
    # Asked for by name, the same model is one clear error instead.
    with pytest.raises(ConfigError, match="model 'sam' cannot run: .*no checkpoint"):
        make_plan(config, "t", models=["sam"])
    # With random weights it runs (smoke tests), and says nothing is skipped.
    smoke = make_plan(config, "t", random_weights=True)
    assert smoke.models == ("sam", "full-frame") and not smoke.skipped_models
    assert smoke.model_settings["sam"]["random_weights"] is True


def test_checkpoint_paths_in_bench_toml_are_relative_to_it(tmp_path):
    _config(tmp_path)
    text = (tmp_path / "bench.toml").read_text()
    start = text.index("[models.sam]")
    head, tail = text[:start], text[start:].replace('checkpoint = ""',
                                                    'checkpoint = "weights/sam.pth"', 1)
    (tmp_path / "bench.toml").write_text(head + tail)
    config = load_config(tmp_path / "bench.toml")
    assert config.models["sam"]["checkpoint"] == str((tmp_path / "weights" / "sam.pth").resolve())
    assert config.settings.models["sam"]["checkpoint"] == "weights/sam.pth"


def test_official_code_suite_keeps_its_own_metric_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSAM2_BENCH_CHECKPOINT_MEDSAM2", raising=False)
    plan = make_plan(_config(tmp_path), "official-code")
    assert plan.protocol == "official-code"
    assert plan.empty_policy == "one"
    assert plan.metrics == ("dice", "iou", "dice_official", "iou_official")
    assert plan.models == ("registration",) and set(plan.skipped_models) == {"medsam2"}


@pytest.mark.skipif(bool(NO_SAM2), reason=f"needs the [sam] extra (missing {NO_SAM2})")
def test_medsam2_without_a_checkpoint_names_the_published_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSAM2_BENCH_CHECKPOINT_MEDSAM2", raising=False)
    plan = make_plan(_config(tmp_path), "official-code")
    assert "jiayuanz3/MedSAM2_pretrain" in plan.skipped_models["medsam2"]


# --root NAME=PATH (issue 13): a dataset's folder without editing bench.toml.

def _isic_like(folder: Path, radii=(6, 9, 12), shape=(40, 56)) -> dict[str, int]:
    """Images and 0/255 disc masks in the ISIC layout; returns case id -> mask pixels."""
    folder.mkdir(parents=True)
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    areas = {}
    for index, radius in enumerate(radii):
        case = f"ISIC_{index + 1:07d}"
        disc = (rows - shape[0] // 2) ** 2 + (cols - shape[1] // 2) ** 2 <= radius ** 2
        image = np.stack([np.where(disc, 200, 60)] * 3, axis=-1).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{case}.jpg")
        Image.fromarray(disc.astype(np.uint8) * 255).save(folder / f"{case}_segmentation.png")
        areas[case] = int(disc.sum())
    return areas


def test_root_runs_a_suite_dataset_or_one_outside_the_suite(tmp_path):
    (tmp_path / "wbc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    config = _config(tmp_path, 'wbc = "wbc"')
    plan = make_plan(config, "one-prompt", roots={"wbc": tmp_path / "elsewhere"})
    assert [(d.name, d.root) for d in plan.datasets] == [("wbc", tmp_path / "elsewhere")]
    assert not plan.demo and plan.extra_datasets == ()
    # A dataset that is not in the suite's list runs when asked for, and the plan says so.
    outside = make_plan(config, "one-prompt", datasets=["isic", "wbc"],
                        roots={"isic": tmp_path / "elsewhere"})
    assert [(d.name, d.root) for d in outside.datasets] == [
        ("isic", tmp_path / "elsewhere"), ("wbc", (tmp_path / "wbc").resolve())]
    assert outside.extra_datasets == ("isic",)
    assert outside.identity()["extra_datasets"] == ("isic",)
    # The suite's own demo stand-ins are not "outside" it.
    assert make_plan(config, "one-prompt", datasets=["demo-cells"]).extra_datasets == ()


@pytest.mark.parametrize(("roots", "datasets", "expected"), [
    ({"isci": "data"}, ["isic"], "--root: unknown dataset 'isci' (did you mean 'isic'?)"),
    ({"isic": "missing"}, ["isic"], "--root isic={tmp}/missing: no such folder"),
    ({"isic": "file.txt"}, ["isic"], "--root isic={tmp}/file.txt: no such folder"),
    ({"isic": "data"}, None, "--root isic=...: dataset 'isic' is not part of this run of suite "
     "'one-prompt'; add --datasets isic to run it"),
    ({"demo-cells": "data"}, None,
     "--root demo-cells=...: 'demo-cells' is generated demo data and reads no folder"),
])
def test_a_bad_root_is_refused_in_one_line(tmp_path, roots, datasets, expected):
    config = _config(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "file.txt").write_text("")
    roots = {name: tmp_path / path for name, path in roots.items()}
    with pytest.raises(ConfigError) as caught:
        make_plan(config, "one-prompt", datasets=datasets, roots=roots)
    assert str(caught.value) == expected.format(tmp=tmp_path)


@pytest.mark.parametrize(("items", "expected"), [
    (["isic"], "--root: expected NAME=PATH, got 'isic'"),
    (["=x"], "--root: expected NAME=PATH, got '=x'"),
    (["isic=a", "isic=b"], "--root: dataset 'isic' is given twice"),
])
def test_root_options_are_name_equals_path_once_each(items, expected):
    with pytest.raises(ConfigError) as caught:
        parse_roots(items)
    assert str(caught.value) == expected
    assert parse_roots(["isic = a/b", "wbc=c"]) == {"isic": Path("a/b"), "wbc": Path("c")}


def test_without_a_bench_toml_a_missing_root_asks_for_root_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config()
    if not config.builtin:
        pytest.skip("a bench.toml above the test folder is found first")
    with pytest.raises(ConfigError) as caught:
        make_plan(config, "one-prompt", datasets=["kits23"])
    assert str(caught.value) == "dataset(s) kits23 have no root: pass --root kits23=PATH"


def test_bench_run_with_root_scores_the_given_folder(tmp_path, capsys):
    _config(tmp_path)
    areas = _isic_like(tmp_path / "my isic" / "train")
    out = tmp_path / "out"
    code = main(["--config", str(tmp_path / "bench.toml"), "run", "--suite", "one-prompt",
                 "--datasets", "isic", "--root", f"isic={tmp_path / 'my isic'}",
                 "--models", "full-frame", "--no-cache", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    metrics = pd.read_csv(out / "metrics.csv")
    dice = metrics[metrics["metric"] == "dice"].set_index("case")["value"]
    # full-frame predicts every pixel: Dice = 2|M| / (|M| + H W).
    pixels = 40 * 56
    template = sorted(areas)[0]  # the one-prompt template is given, not scored
    expected = {case: 2 * area / (area + pixels) for case, area in areas.items()
                if case != template}
    assert dice.to_dict() == pytest.approx(expected, abs=1e-9)
    plan = json.loads((out / "config.json").read_text())["plan"]
    assert plan["extra_datasets"] == ["isic"]
    assert plan["datasets"] == [{"name": "isic", "root": str((tmp_path / "my isic").resolve())}]
    assert "Dataset `isic` is not part of the suite's published list." in \
        (out / "report.md").read_text()


@pytest.mark.parametrize(("root", "needle"), [
    ("isci={data}", "--root: unknown dataset 'isci' (did you mean 'isic'?)"),
    ("isic={data}/nowhere", "/nowhere: no such folder"),
    ("isic", "--root: expected NAME=PATH, got 'isic'"),
])
def test_bench_run_refuses_a_bad_root_in_one_line_and_writes_nothing(tmp_path, capsys, root,
                                                                     needle):
    _config(tmp_path)
    (tmp_path / "data").mkdir()
    out = tmp_path / "out"
    code = main(["--config", str(tmp_path / "bench.toml"), "run", "--suite", "one-prompt",
                 "--datasets", "isic", "--root", root.format(data=tmp_path / "data"),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
