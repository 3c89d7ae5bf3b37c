"""The run directory: layout, the ledger parser, the unit index, records and resume checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report_support import CARDS, make_run

from bench.errors import DataError, RunError
from bench.prompts import ledger
from bench.rundir import (
    TIDY_COLUMNS,
    UNIT_COLUMNS,
    RunDir,
    UnitRecord,
    UnitRef,
    card_record,
    unit_key,
)
from bench.types import Prompt


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    return RunDir(make_run(tmp_path_factory.mktemp("rundir") / "run", models=("good", "poor"),
                           seeds=(0, 1)))


def test_layout_names_every_file_of_a_run(tmp_path):
    rundir = RunDir(tmp_path)
    assert rundir.config_path == tmp_path / "config.json"
    assert rundir.manifest_path == tmp_path / "manifest.json"
    assert rundir.ledger_path == tmp_path / "prompts.jsonl"
    assert rundir.metrics_path == tmp_path / "metrics.csv"
    assert rundir.unit_table_path == tmp_path / "units.csv"
    assert rundir.summary_path == tmp_path / "summary.json"
    assert rundir.figures_dir == tmp_path / "figures"
    assert rundir.unit_path("abc") == tmp_path / "units" / "abc.json"
    assert rundir.log_path("abc") == tmp_path / "logs" / "abc.txt"
    assert [rundir.report_path(f).name for f in ("md", "html", "tex")] == [
        "report.md", "report.html", "report.tex"]
    # Model and dataset names are made file-safe; the seed has its own folder.
    assert rundir.prediction_folder("sam 2/x", 3, "demo:ct") == \
        tmp_path / "predictions" / "sam_2_x" / "seed3" / "demo_ct"


def test_unit_key_is_the_sha256_of_the_canonical_identity():
    identity = json.dumps(["d", "f0", "m", "one-prompt", {"b": 1, "a": [2]}, 0], sort_keys=True)
    expected = hashlib.sha256(identity.encode()).hexdigest()[:20]
    assert unit_key("d", "f0", "m", "one-prompt", {"a": [2], "b": 1}, 0) == expected
    # Any part of the identity changes the key.
    assert unit_key("d", "f0", "m", "one-prompt", {"a": [2], "b": 1}, 1) != expected
    assert unit_key("d", "f1", "m", "one-prompt", {"a": [2], "b": 1}, 0) != expected


def test_expected_units_list_datasets_flows_seeds_models_in_run_order(run):
    units = run.expected_units()
    plan = run.read_plan()
    # fake-cells: 3 flows, fake-ct: 2 flows; 2 seeds; 2 models.
    assert len(units) == (3 + 2) * 2 * 2
    assert units[:4] == [
        UnitRef(unit_key("fake-cells", "flow0", m, "one-prompt", plan["protocol_params"], s),
                "fake-cells", "flow0", m, s)
        for s in (0, 1) for m in ("good", "poor")]
    assert len({u.key for u in units}) == len(units)


def test_expected_units_skip_refused_datasets_and_need_every_dataset(run, tmp_path):
    manifest = run.read_manifest()
    copy = RunDir(tmp_path)
    copy.write_config(run.read_config())
    manifest["datasets"]["fake-ct"]["refused"] = True
    copy.write_manifest(manifest)
    assert {u.dataset for u in copy.expected_units()} == {"fake-cells"}
    del manifest["datasets"]["fake-ct"]
    copy.write_manifest(manifest)
    with pytest.raises(DataError, match="no entry for dataset 'fake-ct' of the plan"):
        copy.expected_units()


def test_the_ledger_parser_round_trips_and_names_the_bad_line(tmp_path):
    prompts = [Prompt("liver", 2, "box", box=(1, 2, 5, 6)),
               Prompt("cell", 0, "point", points=((3, 4), (7, 1)), labels=(1, 0))]
    rows = ledger.prompt_rows(prompts, dataset="d", case="f0", protocol="one-prompt", seed=0)
    rundir = RunDir(tmp_path)
    rundir.keep_ledger(rows)
    again = rundir.read_ledger()
    assert again == sorted(rows, key=ledger.sort_key)
    assert again[0]["points"] == [[3, 4], [7, 1]] and again[1]["box"] == [1, 2, 5, 6]
    # Keeping the same rows again (a resume) changes nothing; other rows are refused.
    before = rundir.ledger_path.read_bytes()
    rundir.keep_ledger(list(reversed(rows)))
    assert rundir.ledger_path.read_bytes() == before
    with pytest.raises(RunError, match="differs from the prompts derived now"):
        rundir.keep_ledger(rows[:1])
    lines = before.decode().splitlines(keepends=True)
    changed = json.loads(lines[1])
    changed["frame"] = 9
    rundir.ledger_path.write_text(lines[0] + json.dumps(changed) + "\n")
    with pytest.raises(DataError, match=r"prompts.jsonl:2: hash mismatch"):
        rundir.read_ledger()


def test_unit_records_round_trip_and_are_checked(tmp_path):
    rundir = RunDir(tmp_path)
    rows = [{"dataset": "d", "flow": "f", "case": "c", "patient": "p", "target": "t",
             "model": "m", "protocol": "one-prompt", "seed": 0, "metric": "dice",
             "value": 0.5, "status": "ok", "message": ""}]
    unit = UnitRecord(key="k1", dataset="d", flow="f", model="m", protocol="one-prompt", seed=0,
                      status="ok", rows=rows, seconds=1.5, worker="host:1")
    rundir.write_unit(unit)
    assert rundir.unit_keys() == {"k1"}
    assert rundir.read_unit(rundir.unit_path("k1")) == unit
    # Timings do not belong to the result; the rows do.
    slower = UnitRecord(**{**unit.to_json(), "seconds": 9.0, "attempts": 2})
    assert slower.result() == unit.result()
    changed = UnitRecord(**{**unit.to_json(), "rows": [{**rows[0], "value": 0.6}]})
    assert changed.result() != unit.result()
    bad = rundir.unit_path("k2")
    bad.write_text(json.dumps({**unit.to_json(), "colour": "red"}))
    with pytest.raises(DataError, match="k2.json: not a unit record: unknown field"):
        rundir.read_unit(bad)
    # A partial write left by a killed run is never taken for a unit.
    (tmp_path / "units" / ".partial-1234abcd-k3.json").write_text("{")
    assert rundir.unit_keys() == {"k1", "k2"}


def test_tables_are_collected_from_the_unit_records(tmp_path):
    rundir = RunDir(tmp_path)
    for key, (model, value) in {"k1": ("b", 0.25), "k2": ("a", 0.75)}.items():
        rows = [{"dataset": "d", "flow": "f", "case": "c", "patient": "p", "target": "t",
                 "model": model, "protocol": "one-prompt", "seed": 0, "metric": "dice",
                 "value": value, "status": "ok", "message": ""}]
        rundir.write_unit(UnitRecord(key=key, dataset="d", flow="f", model=model,
                                     protocol="one-prompt", seed=0, status="ok", rows=rows,
                                     seconds=2.0))
    table = rundir.write_metrics()
    assert list(table.columns) == [*TIDY_COLUMNS, "random_weights"]
    assert table["model"].tolist() == ["a", "b"] and table["value"].tolist() == [0.75, 0.25]
    assert rundir.read_metrics()["value"].tolist() == [0.75, 0.25]
    units = pd.read_csv(rundir.write_unit_table())
    assert list(units.columns) == UNIT_COLUMNS and units["key"].tolist() == ["k2", "k1"]


def test_cards_are_recorded_and_rebuilt_from_the_run(run):
    assert run.read_cards() == CARDS
    assert card_record(CARDS["fake-ct"])["targets"] == ["liver", "spleen"]
    assert "expected_cases" not in card_record(CARDS["fake-ct"])  # unset: left out


def test_read_flow_rereads_by_id_and_checks_the_frames(run):
    flow = run.read_flow("fake-ct", "vol1")
    assert flow.id == "vol1" and flow.kind == "volume"
    assert np.asarray(flow.frames).shape == (6, 40, 40)
    with pytest.raises(DataError, match="flow 'vol7' is not part of dataset 'fake-ct'"):
        run.read_flow("fake-ct", "vol7")
    with pytest.raises(DataError, match="dataset 'other' is not part of this run"):
        run.read_flow("other", "vol1")


def test_read_flow_refuses_frames_that_changed(run, tmp_path):
    copy = RunDir(tmp_path)
    copy.write_config(run.read_config())
    manifest = run.read_manifest()
    manifest["datasets"]["fake-ct"]["flows"][1]["frames_sha256"] = "0" * 64
    copy.write_manifest(manifest)
    with pytest.raises(DataError, match="fake-ct/vol1: its frames differ"):
        copy.read_flow("fake-ct", "vol1")


def test_read_flow_refuses_a_manifest_of_another_digest_version(run, tmp_path):
    # A run written before the digests changed: "did the data change?" would mislead.
    copy = RunDir(tmp_path)
    copy.write_config(run.read_config())
    manifest = run.read_manifest()
    del manifest["digest_version"]
    copy.write_manifest(manifest)
    with pytest.raises(DataError, match=r"manifest.json: written by another version of "
                                        r"medsam2-bench \(frame digests v1, this one v2\)"):
        copy.read_flow("fake-ct", "vol1")


def _fixed(limit=None, shard=None, cards=None):
    return {"plan": {"suite": "s", "limit": limit}, "shard": shard,
            "cards": cards if cards is not None else {"d": {"name": "d"}}}


def test_begin_records_a_run_and_checks_a_resume(tmp_path):
    rundir = RunDir(tmp_path / "run")
    rundir.begin(_fixed(), {"argv": ["run"]}, resume=False)
    config = rundir.read_config()
    assert config["plan"] == {"suite": "s", "limit": None} and config["argv"] == ["run"]
    assert {"provenance", "started", "cards", "shard"} <= set(config)
    with pytest.raises(RunError, match="is not empty: pass --resume"):
        rundir.begin(_fixed(), {}, resume=False)
    with pytest.raises(RunError, match="the plan differs in limit"):
        rundir.begin(_fixed(limit=2), {}, resume=True)
    with pytest.raises(RunError, match="it holds shard none \\(all units\\), not 0/2"):
        rundir.begin(_fixed(shard="0/2"), {}, resume=True)
    with pytest.raises(RunError, match="dataset card\\(s\\) of d differ"):
        rundir.begin(_fixed(cards={"d": {"name": "d", "title": "new"}}), {}, resume=True)
    (rundir.path / "units").mkdir()
    (rundir.path / "units" / ".partial-0000abcd-k.json").write_text("{")
    rundir.begin(_fixed(), {"argv": ["again"]}, resume=True)
    resumed = rundir.read_config()["resumed"]
    assert len(resumed) == 1 and resumed[0]["argv"] == ["again"]
    assert resumed[0]["partials_removed_on_resume"] == 1
    other = RunDir(tmp_path / "other")
    other.path.mkdir()
    (other.path / "x").write_text("")
    with pytest.raises(RunError, match="has no config.json: not a run directory"):
        other.begin(_fixed(), {}, resume=True)


def test_missing_or_damaged_files_are_data_errors(tmp_path):
    rundir = RunDir(tmp_path)
    with pytest.raises(DataError, match="config.json: not found: is .* a run directory"):
        rundir.read_config()
    with pytest.raises(DataError, match="metrics.csv: no metrics table"):
        rundir.read_metrics()
    rundir.manifest_path.write_text("{")
    with pytest.raises(DataError, match="manifest.json: invalid JSON"):
        rundir.read_manifest()
    assert rundir.read_unit_table() is None
    assert Path(str(rundir)) == tmp_path
