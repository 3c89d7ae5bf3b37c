"""Executors: the same tables whatever runs the units; dead workers are retried."""

import dataclasses
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, register

from bench.config import load_config
from bench.executors import (
    LocalExecutor,
    ProcessExecutor,
    RayExecutor,
    make_executor,
    module_paths,
    wants_gpu,
)
from bench.plan import make_plan
from bench.progress import DatasetReading, UnitFinished, UnitRetrying, UnitsPlanned
from bench.runner import execute
from bench.settings import Settings
from bench.types import Prediction

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench.toml"
HAS_RAY = importlib.util.find_spec("ray") is not None


class _DiesOnceOptions(Settings):
    marker_dir: str = ""
    always: bool = False


@register
@dataclass
class _DiesOnce(Adapter):
    """Test adapter: kills its worker process the first time it sees a flow, then
    predicts the whole frame (like full-frame). ``always`` kills it every time."""

    name = "test-dies-once"
    hidden = True
    Options = _DiesOnceOptions

    def predict(self, flow, prompts):
        marker = Path(self.settings["marker_dir"]) / f"{flow.dataset}-{flow.id}"
        if self.settings.get("always") or not marker.exists():
            marker.write_text("died here")
            os._exit(1)
        full = [np.ones(np.shape(frame)[:2], dtype=bool) for frame in flow.frames]
        return Prediction(masks={prompt.target: full for prompt in prompts})


def _demo_plan():
    """The demo suite (five datasets, one flow each), full-frame and registration.

    Registration works at 64 px instead of 128 to keep the tests fast: the
    code paths are the same.
    """
    plan = make_plan(load_config(CONFIG), "demo", models=["full-frame", "registration"], limit=1)
    registration = {**plan.model_settings["registration"], "size": 64}
    return dataclasses.replace(plan, model_settings={**plan.model_settings,
                                                     "registration": registration})


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The demo suite run in-process: the reference."""
    run_dir = tmp_path_factory.mktemp("local") / "run"
    events = []
    outcome = execute(_demo_plan(), run_dir, progress=events.append)
    return run_dir, outcome, events


def _same_run(a: Path, b: Path) -> None:
    for name in ("metrics.csv", "prompts.jsonl", "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert sorted(p.name for p in (a / "units").iterdir()) == \
        sorted(p.name for p in (b / "units").iterdir())
    for path in sorted((a / "predictions").rglob("*.*")):
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path


def test_local_run_records_timings_memory_and_progress(local_run):
    run_dir, outcome, events = local_run
    assert outcome.units_total == outcome.units_run == 10 and outcome.units_failed == 0
    units = pd.read_csv(run_dir / "units.csv")
    assert len(units) == 10
    assert (units["attempts"] == 1).all() and (units["restarts"] == 0).all()
    assert (units["cache"] == "off").all()
    assert (units["seconds"] > 0).all() and (units["peak_rss_mb"] > 10).all()
    assert (units["rss_growth_mb"] >= 0).all()
    assert units["gpu_peak_mb"].isna().all()
    # The tidy table keeps its columns (and the random-weights stamp); timings live in
    # units.csv only.
    assert list(pd.read_csv(run_dir / "metrics.csv").columns) == [
        "dataset", "flow", "case", "patient", "target", "model", "protocol", "seed", "metric",
        "value", "status", "message", "click", "random_weights"]
    finished = [e for e in events if isinstance(e, UnitFinished)]
    assert len(finished) == 10 and {e.status for e in finished} == {"ok"}
    planned = [e for e in events if isinstance(e, UnitsPlanned)]
    assert len(planned) == 1 and (planned[0].total, planned[0].reused) == (10, 0)
    assert [e.dataset for e in events if isinstance(e, DatasetReading)] == [
        d.name for d in _demo_plan().datasets]


def test_processes_give_the_local_table_byte_for_byte(local_run, tmp_path):
    reference, _, _ = local_run
    outcome = execute(_demo_plan(), tmp_path / "run", executor="processes", workers=2)
    assert outcome.units_run == 10 and outcome.units_failed == 0
    _same_run(reference, tmp_path / "run")
    workers = set(pd.read_csv(tmp_path / "run" / "units.csv")["worker"])
    assert len(workers) == 2 and os.getpid() not in {int(w.split(":")[1]) for w in workers}
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["execution"]["executor"] == "processes"
    assert config["execution"]["workers"] == 2


def _dies_once_plan(marker_dir: Path, always: bool = False, limit: int = 12):
    plan = make_plan(load_config(CONFIG), "demo", models=["test-dies-once", "full-frame"],
                     datasets=["demo-fundus"], limit=limit)
    settings = {**plan.model_settings,
                "test-dies-once": {"marker_dir": str(marker_dir), "always": always}}
    return dataclasses.replace(plan, model_settings=settings)


def _check_dies_once_run(run_dir: Path, outcome, events) -> None:
    units = pd.read_csv(run_dir / "units.csv")
    assert (units["status"] == "ok").all()
    dying = units[units["model"] == "test-dies-once"]
    assert len(dying) == 2 and (dying["attempts"] == 2).all()
    # Units stopped only because another unit's worker died used no retry.
    assert (units[units["model"] == "full-frame"]["attempts"] == 1).all()
    retried = [event for event in events if isinstance(event, UnitRetrying)]
    assert sorted(event.flow for event in retried) == ["fundus-f0", "fundus-f1"]
    assert {event.model for event in retried} == {"test-dies-once"}
    assert all(event.attempt == 2 for event in retried)
    assert outcome.units_retried == 2 and outcome.units_failed == 0
    # After its retry the adapter predicts the full frame: its scores are full-frame's.
    table = pd.read_csv(run_dir / "metrics.csv")
    keys = ["flow", "case", "target", "metric"]
    a = table[table["model"] == "test-dies-once"].set_index(keys)["value"].sort_index()
    b = table[table["model"] == "full-frame"].set_index(keys)["value"].sort_index()
    assert len(a) > 0 and a.equals(b)
    unit = json.loads(next((run_dir / "units").glob("*.json")).read_text())
    assert "attempts" in unit and "seconds" in unit and "peak_rss_mb" in unit


def test_a_worker_process_that_dies_is_retried_and_the_retry_recorded(tmp_path):
    events = []
    outcome = execute(_dies_once_plan(tmp_path), tmp_path / "run", executor="processes",
                      workers=2, progress=events.append)
    _check_dies_once_run(tmp_path / "run", outcome, events)


def test_a_unit_that_keeps_killing_its_worker_is_recorded_as_failed(tmp_path):
    outcome = execute(_dies_once_plan(tmp_path, always=True, limit=6), tmp_path / "run",
                      executor="processes", workers=1, retries=1)
    assert outcome.units_failed == 1 and outcome.units_retried == 1
    units = pd.read_csv(tmp_path / "run" / "units.csv", keep_default_na=False)
    failed = units[units["model"] == "test-dies-once"].iloc[0]
    assert failed["status"] == "error" and failed["attempts"] == 2
    assert failed["message"].startswith("WorkerDied: the worker process died")
    assert (units[units["model"] == "full-frame"]["status"] == "ok").all()
    table = pd.read_csv(tmp_path / "run" / "metrics.csv", keep_default_na=False)
    rows = table[table["model"] == "test-dies-once"]
    # One error row per case, target and metric of the flow: nothing dropped silently.
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    flow = manifest["datasets"]["demo-fundus"]["flows"][0]
    assert len(rows) == flow["cases"] * len(flow["targets"]) * 3
    assert (rows["status"] == "error").all() and (rows["value"] == "").all()


def test_executor_options_are_checked():
    assert isinstance(make_executor("local"), LocalExecutor)
    assert make_executor("processes", 3).workers == 3
    assert isinstance(make_executor("ray", 2, "auto"), RayExecutor)
    with pytest.raises(ValueError, match="--executor: unknown executor 'thread'"):
        make_executor("thread")
    with pytest.raises(ValueError, match="--workers: must be at least 1"):
        make_executor("processes", 0)
    with pytest.raises(ValueError, match="--workers: the local executor"):
        make_executor("local", 2)
    with pytest.raises(ValueError, match="--ray-address needs --executor ray"):
        make_executor("processes", 2, "auto")
    with pytest.raises(ValueError, match="--workers"):
        ProcessExecutor(0)


def test_gpu_units_ask_ray_for_a_gpu_only_when_they_run_on_cuda():
    def plan(device):
        return SimpleNamespace(model_settings={"sam2": {"device": device}, "full-frame": {}})

    assert wants_gpu("sam2", plan("cuda"), cluster_gpus=0)
    assert not wants_gpu("sam2", plan("cpu"), cluster_gpus=4)
    assert wants_gpu("sam2", plan("auto"), cluster_gpus=1)
    assert not wants_gpu("sam2", plan("auto"), cluster_gpus=0)
    assert not wants_gpu("full-frame", plan("cuda"), cluster_gpus=4)


def test_module_paths_let_a_fresh_process_import_test_adapters():
    here = str(Path(__file__).resolve().parent)
    assert module_paths([__name__]) == (here,)
    assert module_paths(["bench.readers.cards"]) == (str(ROOT),)


@pytest.fixture(scope="module")
def ray_session():
    if not HAS_RAY:
        pytest.skip("Ray is not installed (pip install 'medsam2-bench[ray]')")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_gives_the_local_table_byte_for_byte(ray_session, local_run, tmp_path):
    reference, _, _ = local_run
    outcome = execute(_demo_plan(), tmp_path / "run", executor="ray", workers=2)
    assert outcome.units_run == 10 and outcome.units_failed == 0
    _same_run(reference, tmp_path / "run")


def test_a_ray_worker_that_dies_is_retried(ray_session, tmp_path):
    events = []
    outcome = execute(_dies_once_plan(tmp_path), tmp_path / "run", executor="ray", workers=2,
                      progress=events.append)
    _check_dies_once_run(tmp_path / "run", outcome, events)
