"""bench.toml validation: unknown keys, wrong types and unknown names are one clear line."""

import shutil
from pathlib import Path
from typing import get_args

import pytest

from bench import resources
from bench.cli import main
from bench.config import (
    BenchToml,
    Defaults,
    EmptyChoice,
    MetricName,
    Suite,
    load_config,
    parse_bench_toml,
    search_config,
    settings_reference,
)
from bench.errors import ConfigError
from bench.metrics import METRIC_NAMES, EmptyPolicy
from bench.prompts import PROTOCOLS
from bench.settings import read_toml

ROOT = Path(__file__).resolve().parents[1]
SUITE = '[suites.x]\nprotocol = "one-prompt"\ndatasets = ["demo-fundus"]\nmodels = ["empty"]\n'


def _project_copy(tmp_path: Path, text: str) -> Path:
    shutil.copytree(ROOT / "datasets", tmp_path / "datasets")
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def _refused(tmp_path: Path, text: str) -> str:
    """The one-line message load_config gives for a bench.toml holding ``text``."""
    with pytest.raises(ConfigError) as caught:
        load_config(_project_copy(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_project_config_loads_and_names_real_cards():
    config = load_config(ROOT / "bench.toml")
    assert "one-prompt" in config.suites
    suite = config.suites["one-prompt"]
    assert suite.name == "one-prompt"
    assert len(suite.datasets) == 10
    for name in (*suite.datasets, *suite.demo):
        assert name in config.cards
    assert all(config.cards[name].synthetic for name in suite.demo)
    assert config.defaults == Defaults(seed=0, out="runs", metrics=("dice", "iou", "hd95"),
                                       empty_policy="exclude", nsd_tolerance_mm=2.0)
    official = config.suites["official-code"]
    assert official.metrics == ("dice", "iou", "dice_official", "iou_official")
    assert official.empty_policy == "one"
    assert config.suites["interactive"].protocol_params == {"max_clicks": 20}


@pytest.mark.parametrize(("text", "expected"), [
    ("[defualts]\n", "bench.toml: unknown key 'defualts' (did you mean 'defaults'?)"),
    ("[defaults]\nsed = 1\n",
     "bench.toml: [defaults]: unknown key 'sed' (did you mean 'seed'?)"),
    (SUITE + 'protocl = "one-prompt"\n',
     "bench.toml: [suites.x]: unknown key 'protocl' (did you mean 'protocol'?)"),
    (SUITE + '[suites.x.protocol_params]\ntemplat = "first"\n',
     "bench.toml: [suites.x.protocol_params]: unknown key 'templat' (did you mean 'template'?)"),
    ('[datasets]\nkits32 = ""\n',
     "bench.toml: [datasets]: unknown dataset 'kits32' (did you mean 'kits23'?)"),
])
def test_an_unknown_key_in_each_table_names_the_nearest(tmp_path, text, expected):
    assert _refused(tmp_path, text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ('[defaults]\nseed = "zero"\n',
     "bench.toml: [defaults].seed: expected a valid integer (got 'zero')"),
    ("[defaults]\nnsd_tolerance_mm = true\n",
     "bench.toml: [defaults].nsd_tolerance_mm: expected a valid number (got True)"),
    ("[defaults]\nnsd_tolerance_mm = -1.0\n",
     "bench.toml: [defaults].nsd_tolerance_mm: expected a value >= 0.0 (got -1.0)"),
    ("[defaults]\nseed = -3\n", "bench.toml: [defaults].seed: expected a value >= 0 (got -3)"),
    ("[datasets]\nwbc = 3\n", "bench.toml.datasets.wbc: expected a valid string (got 3)"),
    ('[models]\nsam = "vit_b"\n',
     "bench.toml.models.sam: expected a valid dictionary (got 'vit_b')"),
    ('suites = 1\n', "bench.toml.suites: expected a valid dictionary (got 1)"),
    ('[suites]\nx = "one-prompt"\n', "bench.toml.suites.x: expected a valid dictionary or "
     "instance of Suite (got 'one-prompt')"),
    (SUITE.replace('datasets = ["demo-fundus"]', 'datasets = "demo-fundus"'),
     "bench.toml: [suites.x].datasets: expected a valid tuple (got 'demo-fundus')"),
    (SUITE.replace('datasets = ["demo-fundus"]', "datasets = []"),
     "bench.toml: [suites.x].datasets: expected at least 1 item (got ())"),
    (SUITE.replace('models = ["empty"]', 'models = ["empty", "empty"]'),
     "bench.toml: [suites.x].models: 'empty' is listed twice (got ['empty', 'empty'])"),
    (SUITE.replace('models = ["empty"]\n', ""), "bench.toml: [suites.x]: missing required key "
     "'models'"),
    (SUITE + "seeds = [0, 1.5]\n",
     "bench.toml: [suites.x].seeds.1: expected a valid integer (got 1.5)"),
    (SUITE + 'empty_policy = "zero"\n',
     "bench.toml: [suites.x].empty_policy: expected 'exclude' or 'one' (got 'zero')"),
])
def test_a_wrong_value_names_the_key(tmp_path, text, expected):
    assert _refused(tmp_path, text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    (SUITE.replace('"one-prompt"', '"one_prompt"'),
     # every registered protocol, in registry order (new protocols keep this test valid)
     "bench.toml: [suites.x].protocol: expected "
     + ", ".join(f"'{name}'" for name in list(PROTOCOLS)[:-1])
     + f" or '{list(PROTOCOLS)[-1]}' (got 'one_prompt') (did you mean 'one-prompt'?)"),
    (SUITE + 'metrics = ["dice", "hd59"]\n',
     "bench.toml: [suites.x].metrics.1: expected 'dice', 'iou', 'hd95', 'hd95_max', 'assd', "
     "'nsd', 'nsd_deepmind', 'dice_official' or 'iou_official' "
     "(got 'hd59') (did you mean 'hd95'?)"),
    ('[defaults]\nmetrics = ["dise"]\n',
     "bench.toml: [defaults].metrics.0: expected 'dice', 'iou', 'hd95', 'hd95_max', 'assd', "
     "'nsd', 'nsd_deepmind', 'dice_official' or 'iou_official' "
     "(got 'dise') (did you mean 'dice'?)"),
    (SUITE.replace('["demo-fundus"]', '["demo-fundas"]'),
     "bench.toml: [suites.x].datasets: unknown dataset 'demo-fundas' (did you mean "
     "'demo-fundus'?)"),
    (SUITE + 'demo = ["kits23"]\n', "bench.toml: [suites.x].demo: 'kits23' is not a built-in "
     "demo dataset (demo stand-ins are generated, no root)"),
])
def test_an_unknown_name_is_refused_with_the_nearest(tmp_path, text, expected):
    assert _refused(tmp_path, text) == expected


@pytest.mark.parametrize(("protocol", "params", "expected"), [
    ("paper-random", "p = 1.5", ".p: expected a value <= 1.0 (got 1.5)"),
    ("paper-random", "p = 0.0", ".p: expected a value > 0.0 (got 0.0)"),
    ("official-code", "prompt_freq = 0", ".prompt_freq: expected a value >= 1 (got 0)"),
    ("official-code", 'prompt = "boxes"',
     ".prompt: expected 'box' or 'click' (got 'boxes') (did you mean 'box'?)"),
    ("one-prompt", 'template = "last"',
     ".template: expected 'first', 'middle' or 'random', or a valid integer (got 'last')"),
    ("one-prompt", "template = -1",
     ".template: expected 'first', 'middle' or 'random', or a value >= 0 (got -1)"),
    ("interactive", "noc_thresholds = [0.85, 90]",
     ".noc_thresholds.1: expected a value <= 1.0 (got 90)"),
])
def test_protocol_parameters_out_of_range_are_refused_on_load(tmp_path, protocol, params,
                                                              expected):
    text = SUITE.replace("one-prompt", protocol) + f"[suites.x.protocol_params]\n{params}\n"
    assert _refused(tmp_path, text) == f"bench.toml: [suites.x.protocol_params]{expected}"


def test_invalid_toml_and_a_folder_are_one_line(tmp_path):
    assert "invalid TOML" in _refused(tmp_path, "[defaults\n")
    with pytest.raises(ConfigError, match="is a folder, not a TOML file"):
        load_config(tmp_path)


def test_dataset_root_resolves_relative_to_the_config(tmp_path):
    path = _project_copy(tmp_path, '[datasets]\nwbc = "data/wbc"\nbtcv = ""\n')
    config = load_config(path)
    assert config.root("wbc") == (tmp_path / "data" / "wbc").resolve()
    assert config.root("btcv") is None
    assert config.settings.datasets == {"wbc": "data/wbc", "btcv": ""}


def test_a_typed_config_round_trips():
    settings = load_config(ROOT / "bench.toml").settings
    again = parse_bench_toml(settings.model_dump(), "again")
    assert again == settings
    assert {name: suite.name for name, suite in again.suites.items()} == \
        {name: name for name in settings.suites}
    # The dump holds every value as written in the file (arrays as tuples).
    table, dump = read_toml(ROOT / "bench.toml"), settings.model_dump()
    for name in ("defaults", *(f"suites.{s}" for s in table["suites"])):
        written, dumped = table, dump
        for part in name.split("."):
            written, dumped = written[part], dumped[part]
        for key, value in written.items():
            got = dumped[key]
            assert (list(got) if isinstance(got, tuple) else got) == value, (name, key)
    assert dump["models"] == table["models"]
    # A model built in code validates like one read from a file.
    suite = Suite(protocol="paper-random", datasets=("btcv",), models=("sam2",),
                  protocol_params={"p": 0.5})
    again = parse_bench_toml({"suites": {"s": suite.model_dump()}}, "t").suites["s"]
    assert again.model_dump() == suite.model_dump() and again.name == "s"


def test_the_settings_choices_match_what_scoring_accepts():
    assert set(get_args(MetricName)) == set(METRIC_NAMES)
    for choice in get_args(EmptyChoice):
        assert EmptyPolicy(both_empty=choice).both_empty == choice
    with pytest.raises(ValueError):
        EmptyPolicy(both_empty="zero")


def test_the_settings_reference_lists_every_key_once():
    rows = settings_reference()
    assert all(set(row) == {"table", "key", "type", "default", "description"} for row in rows)
    keys = [(row["table"], row["key"]) for row in rows]
    assert len(keys) == len(set(keys))
    tables = {row["table"] for row in rows}
    assert {"defaults", "datasets", "models", "suites.NAME"} <= tables
    expected = {("defaults", key) for key in Defaults.model_fields}
    expected |= {("suites.NAME", key) for key in Suite.model_fields
                 if key not in ("protocol_params", "model_settings")}
    expected |= {("datasets", "NAME"), ("models", "NAME"), ("suites.NAME.protocol_params", "NAME"),
                 ("suites.NAME.model_settings", "NAME")}
    for name, spec in PROTOCOLS.items():
        table = f"suites.NAME.protocol_params (protocol = {name!r})"
        expected |= {(table, key) for key in spec.params.model_fields}
    assert expected <= set(keys)
    assert all(row["description"] for row in rows)
    seed = next(row for row in rows if (row["table"], row["key"]) == ("defaults", "seed"))
    assert (seed["type"], seed["default"]) == ("integer >= 0", "0")
    p = next(row for row in rows if row["key"] == "p")
    assert p["type"] == "number > 0 and <= 1 or none" and p["default"] == "None"
    protocol = next(row for row in rows if row["key"] == "protocol")
    assert protocol["default"] == "required"
    assert protocol["type"] == " | ".join(repr(name) for name in PROTOCOLS)
    assert set(BenchToml.model_fields) == {"defaults", "datasets", "models", "suites"}


# Where configuration and cards come from (issue 13: install anywhere).

def _no_config_above(folder: Path) -> None:
    if search_config(folder) is not None:
        pytest.skip(f"a bench.toml above {folder} would be found first")


def _card(folder: Path, name: str, title: str) -> Path:
    """A copy of the built-in ISIC card named ``name``, with its own title."""
    folder.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "datasets" / "isic.toml").read_text()
    text = text.replace('name = "isic"', f'name = "{name}"').replace(
        'title = "ISIC skin lesion segmentation (2016-2018 task 1 layouts)"', f'title = "{title}"')
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_without_a_bench_toml_the_built_in_default_resolves_against_the_working_folder(
        tmp_path, monkeypatch):
    _no_config_above(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.builtin and config.path == resources.builtin_config()
    assert config.folder == tmp_path
    assert set(config.cards) == {p.stem for p in (ROOT / "datasets").glob("*.toml")}
    assert config.notices == ()
    # In a source checkout the default is the repository's own file; named with
    # --config, its paths are relative to the repository as before.
    assert resources.source_checkout() == ROOT and config.path == ROOT / "bench.toml"
    named = load_config(ROOT / "bench.toml")
    assert not named.builtin and named.folder == ROOT


def test_the_config_search_order_is_option_working_folder_parents_built_in(tmp_path,
                                                                           monkeypatch):
    _no_config_above(tmp_path)
    for folder, seed in ((tmp_path, 1), (tmp_path / "other", 2)):
        folder.mkdir(exist_ok=True)
        (folder / "bench.toml").write_text(f"[defaults]\nseed = {seed}\n")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "sub" / "deeper")
    found = load_config()
    assert (found.path, found.defaults.seed, found.builtin) == (tmp_path / "bench.toml", 1, False)
    assert found.folder == tmp_path
    option = load_config(tmp_path / "other" / "bench.toml")
    assert option.defaults.seed == 2 and option.folder == tmp_path / "other"
    monkeypatch.chdir(tmp_path / "other")
    assert load_config().defaults.seed == 2
    # A file without cards of its own still sees the built-in ones.
    assert "demo-fundus" in found.cards and found.cards["demo-fundus"].path == \
        resources.builtin_cards() / "demo-fundus.toml"


def test_the_card_search_order_is_option_folders_beside_the_file_built_in(tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text("")
    beside = _card(tmp_path / "datasets", "mine", "beside")
    first = _card(tmp_path / "first", "mine", "first")
    _card(tmp_path / "second", "mine", "second")
    _card(tmp_path / "second", "theirs", "second")
    cards = load_config(config).cards
    assert cards["mine"].title == "beside" and cards["mine"].path == beside
    loaded = load_config(config, cards=[tmp_path / "first", tmp_path / "second"])
    assert loaded.cards["mine"].title == "first" and loaded.cards["theirs"].title == "second"
    assert loaded.notices == (
        f"dataset card 'mine': using {first}, which shadows the card "
        f"{tmp_path / 'second' / 'mine.toml'}",
        f"dataset card 'mine': using {first}, which shadows the card {beside}")
    assert list(loaded.cards) == sorted(loaded.cards)


def test_cards_of_the_working_directory_come_after_option_folders_before_beside(
        tmp_path, monkeypatch):
    # ./cards is where `bench datasets new` writes when there is no bench.toml
    config = tmp_path / "project" / "bench.toml"
    config.parent.mkdir()
    config.write_text("")
    beside = _card(tmp_path / "project" / "datasets", "mine", "beside")
    here = _card(tmp_path / "work" / "cards", "mine", "here")
    _card(tmp_path / "work" / "cards", "only-here", "here")
    option = _card(tmp_path / "option", "mine", "option")
    monkeypatch.chdir(tmp_path / "work")
    loaded = load_config(config)
    assert loaded.cards["mine"].path == here and "only-here" in loaded.cards
    assert loaded.notices == (f"dataset card 'mine': using {here}, which shadows the card "
                              f"{beside}",)
    loaded = load_config(config, cards=[tmp_path / "option"])
    assert loaded.cards["mine"].path == option
    monkeypatch.chdir(tmp_path)
    assert load_config(config).cards["mine"].path == beside


def test_a_card_hiding_a_built_in_one_gives_one_notice_naming_both(tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text("")
    mine = _card(tmp_path / "cards", "isic", "my ISIC")
    loaded = load_config(config, cards=[tmp_path / "cards"])
    assert loaded.cards["isic"].title == "my ISIC"
    builtin = resources.builtin_cards() / "isic.toml"
    assert loaded.notices == (f"dataset card 'isic': using {mine}, which shadows the built-in "
                              f"card {builtin}",)
    # An unchanged copy of the built-in cards (a copied work folder) hides nothing.
    shutil.copytree(ROOT / "datasets", tmp_path / "datasets")
    assert load_config(config).notices == ()


def test_a_missing_cards_folder_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^--cards \S+nowhere: no such folder$"):
        load_config(ROOT / "bench.toml", cards=[tmp_path / "nowhere"])


def test_the_cli_prints_the_shadowing_notice_and_lists_the_user_card(tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text("")
    mine = _card(tmp_path / "cards", "isic", "my ISIC")
    _card(tmp_path / "cards", "my-lesions", "mine")
    code = main(["--config", str(config), "list", "datasets", "--cards", str(tmp_path / "cards")])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.splitlines() == [
        f"notice: dataset card 'isic': using {mine}, which shadows the built-in card "
        f"{resources.builtin_cards() / 'isic.toml'}"]
    assert "my-lesions" in captured.out and "demo-ct" in captured.out
