"""Shards by unit key, and merging shard runs back into the unsharded run."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.config import load_config
from bench.errors import ConfigError, DataError, RunError
from bench.plan import make_plan
from bench.runner import execute
from bench.shard import in_shard, merge_runs, parse_shard

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench.toml"
# The demo suite without its CT volume (the slow one), one flow per dataset.
DATASETS = ["demo-cells", "demo-dermoscopy", "demo-fundus", "demo-ultrasound"]


def _plan():
    plan = make_plan(load_config(CONFIG), "demo", models=["full-frame", "registration"],
                     datasets=DATASETS, limit=2)
    # Registration at 64 px keeps the test fast; the code paths are the same.
    registration = {**plan.model_settings["registration"], "size": 64}
    return dataclasses.replace(plan, model_settings={**plan.model_settings,
                                                     "registration": registration})


def _keys(run_dir: Path) -> set[str]:
    return {path.stem for path in (run_dir / "units").glob("*.json")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("shards")
    plan = _plan()
    whole = execute(plan, base / "whole")
    shards = [execute(plan, base / f"shard{i}", shard=f"{i}/3") for i in range(3)]
    return base, whole, shards


def test_parse_shard_reads_i_of_n():
    assert parse_shard("0/3") == (0, 3)
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "-1/3", "1", "a/b", "0/0", "1/2/3"):
        with pytest.raises(ConfigError, match="--shard: expected I/N"):
            parse_shard(bad)


def test_a_key_belongs_to_the_shard_of_its_value_mod_n():
    keys = ["0" * 19 + digit for digit in "0123456789abcdef"]
    for key in keys:
        owners = [i for i in range(3) if in_shard(key, (i, 3))]
        assert owners == [int(key[-1], 16) % 3]
        assert in_shard(key, None)
    assert in_shard("0000000000000000000b", (2, 3))  # 11 % 3 == 2
    assert not in_shard("0000000000000000000b", (1, 3))


def test_shards_split_the_units_and_share_ledger_and_manifest(runs):
    base, whole, shards = runs
    parts = [_keys(base / f"shard{i}") for i in range(3)]
    assert set().union(*parts) == _keys(base / "whole")
    assert sum(len(p) for p in parts) == whole.units_total == 8
    for i, (part, outcome) in enumerate(zip(parts, shards, strict=True)):
        assert part == {k for k in _keys(base / "whole") if int(k, 16) % 3 == i}
        assert outcome.units_total == len(part) and outcome.units_all == 8
        assert outcome.shard == (i, 3)
        for name in ("prompts.jsonl", "manifest.json"):
            assert (base / f"shard{i}" / name).read_bytes() == (base / "whole" / name).read_bytes()
        assert json.loads((base / f"shard{i}" / "config.json").read_text())["shard"] == f"{i}/3"


def test_merged_shards_equal_the_unsharded_run_byte_for_byte(runs, tmp_path):
    base, _, _ = runs
    outcome = merge_runs(tmp_path / "merged", [base / f"shard{i}" for i in range(3)])
    assert (outcome.units_expected, outcome.units_merged) == (8, 8)
    assert outcome.missing == [] and outcome.duplicated == []
    whole, merged = base / "whole", tmp_path / "merged"
    for name in ("metrics.csv", "prompts.jsonl", "manifest.json"):
        assert (merged / name).read_bytes() == (whole / name).read_bytes(), name
    files = sorted(p.relative_to(whole) for p in (whole / "predictions").rglob("*.png"))
    assert files and files == sorted(p.relative_to(merged)
                                     for p in (merged / "predictions").rglob("*.png"))
    assert all((whole / f).read_bytes() == (merged / f).read_bytes() for f in files)
    config = json.loads((merged / "config.json").read_text())
    assert [entry["shard"] for entry in config["merged"]["from"]] == ["0/3", "1/3", "2/3"]
    assert (merged / "units.csv").read_text().count("\n") == 9


def test_merge_reports_missing_and_duplicated_units(runs, tmp_path, capsys):
    base, _, _ = runs
    shard0, shard1 = base / "shard0", base / "shard1"
    code = main(["--config", str(CONFIG), "merge", str(tmp_path / "merged"), str(shard0),
                 str(shard1), str(shard1)])
    assert code == 1
    captured = capsys.readouterr()
    missing = _keys(base / "shard2")
    reported = [line for line in captured.err.splitlines() if line.startswith("missing: ")]
    assert len(reported) == len(missing) and all(key in captured.err for key in missing)
    duplicated = [line for line in captured.out.splitlines() if line.startswith("duplicated ")]
    assert len(duplicated) == len(_keys(shard1))
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert set(config["merged"]["missing"]) == missing
    assert set(config["merged"]["duplicated"]) == _keys(shard1)
    assert (tmp_path / "merged" / "report.md").exists()


def test_merge_refuses_runs_that_are_not_shards_of_one_run(runs, tmp_path):
    base, _, _ = runs
    shard0, shard1 = base / "shard0", base / "shard1"

    other = tmp_path / "other"
    shutil.copytree(shard1, other)
    config = json.loads((other / "config.json").read_text())
    config["plan"]["limit"] = 3
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="plan differs in limit"):
        merge_runs(tmp_path / "a", [shard0, other])

    ledger = tmp_path / "ledger"
    shutil.copytree(shard1, ledger)
    lines = (ledger / "prompts.jsonl").read_text().splitlines(keepends=True)
    (ledger / "prompts.jsonl").write_text("".join(lines[1:]))
    with pytest.raises(DataError, match="prompts.jsonl: differs from"):
        merge_runs(tmp_path / "b", [shard0, ledger])

    tampered = tmp_path / "tampered"
    shutil.copytree(shard0, tampered)
    unit_path = next((tampered / "units").glob("*.json"))
    unit = json.loads(unit_path.read_text())
    unit["rows"][0]["value"] = 0.123
    unit_path.write_text(json.dumps(unit))
    with pytest.raises(DataError, match=f"unit {unit_path.stem} has different results"):
        merge_runs(tmp_path / "c", [shard0, tampered])

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ConfigError, match="is not empty"):
        merge_runs(tmp_path / "full", [shard0])


def test_a_shard_resumes_only_as_the_same_shard(runs):
    base, _, _ = runs
    with pytest.raises(RunError, match="it holds shard 0/3, not 1/3"):
        execute(_plan(), base / "shard0", resume=True, shard="1/3")
    outcome = execute(_plan(), base / "shard0", resume=True, shard=(0, 3))
    assert outcome.units_run == 0 and outcome.units_reused == outcome.units_total
