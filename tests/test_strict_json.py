"""Every JSON file a run writes is strict JSON (NaN and infinities as null), read back as NaN."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, register

from bench.atomic import read_json, write_json
from bench.check import load_reference
from bench.config import load_config
from bench.plan import make_plan
from bench.report import write_report
from bench.rundir import RunDir
from bench.runner import execute

ROOT = Path(__file__).resolve().parents[1]


def _refuse(token):
    raise ValueError(f"non-strict JSON token {token}")


def strict_loads(text):
    """json.loads that refuses NaN, Infinity and -Infinity (Python's json accepts them)."""
    return json.loads(text, parse_constant=_refuse)


@register
@dataclass
class _AlwaysFails(Adapter):
    """Test adapter: every unit fails, so its every score (and mean) is NaN."""

    name = "test-strict-json-fails"
    hidden = True

    def predict(self, flow, prompts):
        raise RuntimeError("simulated failure")


def test_write_json_turns_every_non_finite_number_into_null(tmp_path):
    data = {"nan": float("nan"), "inf": float("inf"), "neg": -math.inf,
            "np32": np.float32("nan"), "np64": np.float64(1.5), "int": np.int64(3),
            "array": np.array([[1.0, np.nan], [np.inf, 2.0]]),
            "nested": [{"tuple": (np.nan, 0.25)}], "path": tmp_path, "none": None}
    path = tmp_path / "out.json"
    write_json(path, data)
    assert strict_loads(path.read_text()) == {
        "nan": None, "inf": None, "neg": None, "np32": None, "np64": 1.5, "int": 3,
        "array": [[1.0, None], [None, 2.0]], "nested": [{"tuple": [None, 0.25]}],
        "path": str(tmp_path), "none": None}
    assert data["nan"] != data["nan"]  # the caller's data is left as it was


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory):
    """A demo run (one seed) where one model scores nothing: NaN means, NaN seed spread."""
    out = tmp_path_factory.mktemp("strict") / "run"
    plan = make_plan(load_config(ROOT / "bench.toml"), "demo",
                     models=["test-strict-json-fails", "full-frame"],
                     datasets=["demo-fundus"], limit=6)
    execute(plan, out)
    write_report(out, "md")
    return out


def test_every_json_file_of_a_run_is_strict(nan_run):
    files = sorted(nan_run.rglob("*.json"))
    assert {"config.json", "manifest.json", "summary.json"} <= {f.name for f in files}
    assert any(f.parent.name == "units" for f in files)
    for path in files:
        strict_loads(path.read_text())  # raises on NaN / Infinity
    for line in (nan_run / "prompts.jsonl").read_text().splitlines():
        strict_loads(line)
    summary = strict_loads((nan_run / "summary.json").read_text())
    failed = [a for a in summary["aggregates"] if a["model"] == "test-strict-json-fails"]
    assert failed and all(a["mean"] is None and a["n"] == 0 for a in failed)
    assert all(a["seed_std"] is None for a in summary["aggregates"])  # one seed


def test_readers_turn_null_back_into_nan(nan_run, tmp_path):
    table = pd.read_csv(nan_run / "metrics.csv")
    full = table[(table["model"] == "full-frame") & (table["status"] == "ok")]
    expected = full.groupby(["target", "metric"])["value"].mean()

    reference = load_reference(nan_run / "summary.json")
    assert reference["mean"].dtype == float
    failed = reference[reference["model"] == "test-strict-json-fails"]
    assert len(failed) > 0 and failed["mean"].isna().all()
    got = reference[reference["model"] == "full-frame"].set_index(["target", "metric"])["mean"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)

    # Unit files: the failed unit's null scores come back as NaN floats.
    rundir = RunDir(nan_run)
    values = [row["value"] for path in rundir.unit_paths()
              for row in rundir.read_unit(path).rows if row["status"] == "error"]
    assert values and all(isinstance(v, float) and math.isnan(v) for v in values)
    assert any(row["value"] is None
               for path in rundir.unit_paths() for row in read_json(path)["rows"])
    rundir.check_metrics()  # metrics.csv rebuilt from the read-back units is the one written

    # A summary whose every mean is null: the column is still a float column of NaN.
    summary = read_json(nan_run / "summary.json")
    summary["aggregates"] = [a for a in summary["aggregates"]
                             if a["model"] == "test-strict-json-fails"]
    write_json(tmp_path / "summary.json", summary)
    only_failed = load_reference(tmp_path / "summary.json")
    assert only_failed["mean"].dtype == float and only_failed["mean"].isna().all()
