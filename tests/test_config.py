"""bench.toml validation: unknown keys and wrong types are one clear error."""

import shutil
from pathlib import Path

import pytest

from bench.config import load_config
from bench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _project_copy(tmp_path: Path, text: str) -> Path:
    shutil.copytree(ROOT / "datasets", tmp_path / "datasets")
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def test_the_project_config_loads_and_names_real_cards():
    config = load_config(ROOT / "bench.toml")
    assert "one-prompt" in config.suites
    suite = config.suites["one-prompt"]
    assert len(suite.datasets) == 10
    for name in (*suite.datasets, *suite.demo):
        assert name in config.cards
    assert all(config.cards[name].synthetic for name in suite.demo)


def test_unknown_key_names_the_nearest_valid_one(tmp_path):
    path = _project_copy(tmp_path, "[defaults]\nsed = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'sed' \(did you mean 'seed'\?\)"):
        load_config(path)


def test_wrong_type_names_the_key(tmp_path):
    path = _project_copy(tmp_path, '[defaults]\nseed = "zero"\n')
    with pytest.raises(ConfigError, match=r"\[defaults\]\.seed: expected an integer, got str"):
        load_config(path)


def test_boolean_is_not_a_number(tmp_path):
    path = _project_copy(tmp_path, "[defaults]\nnsd_tolerance_mm = true\n")
    with pytest.raises(ConfigError, match="nsd_tolerance_mm: expected an integer or a number"):
        load_config(path)


def test_unknown_dataset_in_suite(tmp_path):
    path = _project_copy(tmp_path, '[suites.x]\nprotocol = "one-prompt"\n'
                         'datasets = ["demo-fundas"]\nmodels = ["registration"]\n')
    with pytest.raises(ConfigError, match="unknown dataset 'demo-fundas' .*'demo-fundus'"):
        load_config(path)


def test_invalid_toml_is_one_line(tmp_path):
    path = _project_copy(tmp_path, "[defaults\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


def test_dataset_root_resolves_relative_to_the_config(tmp_path):
    path = _project_copy(tmp_path, '[datasets]\nwbc = "data/wbc"\nbtcv = ""\n')
    config = load_config(path)
    assert config.root("wbc") == (tmp_path / "data" / "wbc").resolve()
    assert config.root("btcv") is None
