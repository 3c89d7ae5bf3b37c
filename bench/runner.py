"""Run a plan: ledger first, then (flow, model, seed) units, then tables and report.

Layout of a run directory (DESIGN section 6)::

    config.json          plan, package versions, git hash, seeds, adapter fingerprints
    prompts.jsonl        the prompt ledger, written before any model runs
    manifest.json        flows read per dataset (and read failures)
    units/KEY.json       one file per completed unit: its tidy rows and timings
    predictions/...      masks (PNG per image, NIfTI per volume and target)
    logs/KEY.txt         traceback of a failed unit
    metrics.csv          tidy per-case table (all units)
    summary.json         aggregates with counts and confidence intervals
    report.md, figures/  the report

A unit is identified by a key derived from (dataset, flow, model, protocol,
parameters, seed), so results never depend on execution order; ``--resume``
skips the units whose file exists. Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from adapters import Adapter, create
from bench import io
from bench.metrics import EmptyPolicy
from bench.plan import DatasetRun, RunPlan
from bench.prompts import ledger, make_prompts, scored_frames
from bench.prompts.protocols import resolve_prompt_kind
from bench.readers import read_flows
from bench.scoring import check_prediction, failure_rows, score_flow
from bench.store import prediction_folder, write_prediction
from bench.types import Flow, Prompt

TIDY_COLUMNS = ["dataset", "flow", "case", "patient", "target", "model", "protocol", "seed",
                "metric", "value", "status", "message"]


class RunError(RuntimeError):
    """A run cannot start or continue (e.g. resuming with a different plan)."""


@dataclass
class RunOutcome:
    run_dir: Path
    units_total: int
    units_run: int
    units_reused: int
    units_failed: int
    cases_failed: int
    read_failures: int


def unit_key(dataset: str, flow: str, model: str, plan: RunPlan, seed: int) -> str:
    """Stable identifier of one (flow, model, protocol, seed) unit of work."""
    identity = json.dumps(
        [dataset, flow, model, plan.protocol, plan.protocol_params, seed], sort_keys=True
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:20]


def prompt_kind_for(plan: RunPlan, dataset: DatasetRun) -> str | None:
    """The prompt kind: the suite's override, else the protocol's rule for this card."""
    return resolve_prompt_kind(plan.protocol, plan.protocol_params, dataset.card.one_prompt_kind)


def execute(plan: RunPlan, run_dir: Path, *, resume: bool = False, progress: Any = None,
            record: dict[str, Any] | None = None) -> RunOutcome:
    """Run ``plan`` into ``run_dir``.

    Parameters
    ----------
    progress : callable or None
        ``progress(event, **info)`` callback for displays (see :mod:`bench.cli`).
    record : dict, optional
        Extra provenance to store in ``config.json`` (CLI arguments, versions).
    """
    run_dir = Path(run_dir)
    notify = progress or (lambda *args, **kwargs: None)
    _prepare_run_dir(plan, run_dir, resume, record or {})

    adapters = {name: create(name, plan.model_settings.get(name)) for name in plan.models}
    config = io.read_json(run_dir / "config.json")
    config["adapters"] = {name: adapter.fingerprint() for name, adapter in adapters.items()}
    io.write_json(run_dir / "config.json", config)

    manifest = _write_ledger(plan, run_dir, notify)
    rows_by_flow = ledger.group_rows(ledger.read_ledger(run_dir / "prompts.jsonl"))

    n_flows = sum(len(entry["flows"]) for entry in manifest["datasets"].values())
    outcome = RunOutcome(run_dir, n_flows * len(plan.seeds) * len(plan.models), 0, 0, 0, 0,
                         sum(len(e["failures"]) for e in manifest["datasets"].values()))
    notify("units", total=outcome.units_total)
    for dataset in plan.datasets:
        if manifest["datasets"][dataset.name]["refused"]:
            continue
        for flow, _ in _stream(dataset, plan.limit):
            if flow is None:
                continue
            for seed in plan.seeds:
                rows = rows_by_flow.get((dataset.name, flow.id, plan.protocol, seed), [])
                prompts = ledger.rows_to_prompts(rows, flow)
                for model, adapter in adapters.items():
                    key = unit_key(dataset.name, flow.id, model, plan, seed)
                    unit_path = run_dir / "units" / f"{key}.json"
                    if unit_path.exists():
                        outcome.units_reused += 1
                    else:
                        unit = _run_unit(plan, run_dir, dataset, flow, adapter, seed, prompts,
                                         key)
                        io.write_json(unit_path, unit)
                        outcome.units_run += 1
                        if unit["status"] == "error":
                            outcome.units_failed += 1
                    notify("advance", dataset=dataset.name, flow=flow.id, model=model)

    table = collect_metrics(run_dir)
    outcome.cases_failed = int(
        table.loc[table["status"] == "error", ["dataset", "case", "model", "seed"]]
        .drop_duplicates().shape[0]
    )
    _write_table(run_dir / "metrics.csv", table)
    return outcome


def _prepare_run_dir(plan: RunPlan, run_dir: Path, resume: bool, record: dict[str, Any]) -> None:
    config_path = run_dir / "config.json"
    if run_dir.exists() and any(run_dir.iterdir()):
        if not resume:
            raise RunError(
                f"{run_dir} is not empty: pass --resume to continue it, or another --out"
            )
        if not config_path.exists():
            raise RunError(f"{run_dir} has no config.json: not a run directory")
        stored = io.read_json(config_path)["plan"]
        current = json.loads(json.dumps(plan.identity()))
        changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        if changed:
            raise RunError(
                f"cannot resume {run_dir}: the plan differs in {', '.join(changed)}; "
                "start a new run with another --out"
            )
        removed = io.remove_partials(run_dir)
        if removed:
            record = {**record, "partials_removed_on_resume": removed}
        previous = io.read_json(config_path)
        previous.setdefault("resumed", []).append({"time": _now(), **record})
        io.write_json(config_path, previous)
        return
    io.write_json(config_path, {"plan": plan.identity(), "provenance": provenance(),
                                "started": _now(), **record})


def _write_ledger(plan: RunPlan, run_dir: Path, notify: Any) -> dict[str, Any]:
    """Derive every prompt of the run and write the ledger before any model runs."""
    rows: list[dict[str, Any]] = []
    manifest: dict[str, Any] = {"datasets": {}}
    for dataset in plan.datasets:
        entry: dict[str, Any] = {"root": str(dataset.root) if dataset.root else None,
                                 "synthetic": dataset.card.synthetic, "flows": [],
                                 "failures": [], "refused": False}
        notify("read", dataset=dataset.name)
        dataset_rows: list[dict[str, Any]] = []
        for flow, failure in _stream(dataset, plan.limit):
            if flow is None:
                entry["failures"].append(failure)
                continue
            entry["flows"].append({"id": flow.id, "frames": len(flow.frames),
                                   "cases": len(flow.case_ids), "targets": flow.targets,
                                   "spacing": list(flow.spacing) if flow.spacing else None})
            for seed in plan.seeds:
                prompts = make_prompts(flow, plan.protocol, seed=seed,
                                       prompt_kind=prompt_kind_for(plan, dataset),
                                       params=plan.protocol_params)
                dataset_rows.extend(ledger.prompt_rows(prompts, dataset=dataset.name,
                                                       case=flow.id, protocol=plan.protocol,
                                                       seed=seed))
        if entry["failures"] and not plan.skip_bad_cases:
            # A partial dataset would silently change n against published numbers:
            # refuse it (recorded and reported) unless the user accepts the gaps.
            entry["refused"] = True
            entry["flows"] = []
            notify("refused", dataset=dataset.name, failures=entry["failures"])
        else:
            rows.extend(dataset_rows)
        manifest["datasets"][dataset.name] = entry

    ledger_path = run_dir / "prompts.jsonl"
    if ledger_path.exists():
        # Resuming: the ledger must be the one the completed units used.
        if ledger.dumps_ledger(rows) != ledger_path.read_bytes():
            raise RunError(f"{ledger_path} differs from the prompts derived now; the data or "
                           "the protocol changed since the run started: start a new run")
    else:
        ledger.write_ledger(ledger_path, rows)
    io.write_json(run_dir / "manifest.json", manifest)
    return manifest


def _stream(dataset: DatasetRun, limit: int | None) -> Iterator[tuple[Flow | None, Any]]:
    """Flows of ``dataset``; each unreadable case also yields (None, failure record).

    Readers skip bad cases and collect their errors, so one bad file costs only
    its own case; an unexpected reader crash ends this dataset, recorded.
    """
    errors: list = []
    iterator = read_flows(dataset.card, dataset.root, limit, errors)
    while True:
        try:
            flow = next(iterator)
        except StopIteration:
            break
        except Exception as err:  # a reader bug must not end the whole run
            errors.append(err)
            break
        while errors:
            yield None, {"error": _one_line(errors.pop(0))}
        yield flow, None
    for err in errors:
        yield None, {"error": _one_line(err)}


def _run_unit(plan: RunPlan, run_dir: Path, dataset: DatasetRun, flow: Flow, adapter: Adapter,
              seed: int, prompts: list[Prompt], key: str) -> dict[str, Any]:
    unit: dict[str, Any] = {"key": key, "dataset": dataset.name, "flow": flow.id,
                            "model": adapter.name, "protocol": plan.protocol, "seed": seed}
    policy = EmptyPolicy(both_empty=plan.empty_policy)
    started = time.perf_counter()
    try:
        seen = flow if adapter.capabilities.sees_ground_truth else flow.view()
        prediction = adapter.predict(seen, prompts)
        check_prediction(flow, prediction, sorted({p.target for p in prompts}))
        rows = score_flow(flow, prediction,
                          scored_frames=scored_frames(flow, plan.protocol, plan.protocol_params),
                          metrics=plan.metrics, policy=policy,
                          nsd_tolerance_mm=plan.nsd_tolerance_mm)
        write_prediction(prediction_folder(run_dir, adapter.name, seed, dataset.name), flow,
                         prediction)
        unit.update(status="ok", message="", scores=prediction.scores)
    except Exception as err:  # recorded per unit; the run goes on
        message = _one_line(err)
        io.write_text(run_dir / "logs" / f"{key}.txt", traceback.format_exc())
        rows = failure_rows(flow, plan.metrics, message)
        unit.update(status="error", message=message, scores={})
    unit["seconds"] = round(time.perf_counter() - started, 4)
    for row in rows:
        row.update(dataset=dataset.name, flow=flow.id, model=adapter.name,
                   protocol=plan.protocol, seed=seed)
        row.setdefault("message", "")
    unit["rows"] = rows
    return unit


def collect_metrics(run_dir: Path) -> pd.DataFrame:
    """The tidy per-case table of every completed unit, in a canonical order."""
    rows: list[dict[str, Any]] = []
    for unit_path in sorted((Path(run_dir) / "units").glob("*.json")):
        rows.extend(io.read_json(unit_path)["rows"])
    table = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    return table.sort_values(
        ["dataset", "model", "seed", "flow", "case", "target", "metric"], kind="stable"
    ).reset_index(drop=True)


def _write_table(path: Path, table: pd.DataFrame) -> None:
    with io.atomic_path(path) as temp:
        table.to_csv(temp, index=False, float_format="%.10g")


def provenance() -> dict[str, Any]:
    """Package versions and the git state of the project, for the run record."""
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("medsam2-bench", "numpy", "scipy", "pandas", "medpy", "scikit-image",
                    "nibabel", "torch", "sam2"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    git: dict[str, Any] = {"commit": None, "dirty": None}
    here = Path(__file__).resolve().parent
    try:
        git["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, check=True,
                                       capture_output=True, text=True).stdout.strip()
        git["dirty"] = bool(subprocess.run(["git", "status", "--porcelain"], cwd=here,
                                           check=True, capture_output=True, text=True).stdout)
    except (OSError, subprocess.CalledProcessError):
        pass
    return {"versions": versions, "git": git, "platform": platform.platform()}


def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
