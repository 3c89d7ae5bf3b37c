"""Plans: which datasets a suite runs, demo stand-ins, and option checks."""

import shutil
from pathlib import Path

import pytest

from bench.config import load_config
from bench.errors import ConfigError
from bench.plan import make_plan

ROOT = Path(__file__).resolve().parents[1]


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


def test_unknown_protocol_parameter_is_rejected_before_running(tmp_path):
    with pytest.raises(ConfigError, match="templat"):
        make_plan(_config(tmp_path), "one-prompt", protocol_params={"templat": "first"})


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


def test_official_code_suite_keeps_its_own_metric_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSAM2_BENCH_CHECKPOINT_MEDSAM2", raising=False)
    plan = make_plan(_config(tmp_path), "official-code")
    assert plan.protocol == "official-code"
    assert plan.empty_policy == "one" and plan.metrics == ("dice", "iou")
    assert "jiayuanz3/MedSAM2_pretrain" in plan.skipped_models["medsam2"]
    assert plan.models == ("registration",)
