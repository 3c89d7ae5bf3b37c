"""Run a plan: ledger first, then (flow, model, seed) units, then tables and report.

Layout of a run directory (DESIGN section 6)::

    config.json          plan, package versions, git hash, seeds, adapter fingerprints,
                         executor, shard
    prompts.jsonl        the prompt ledger, written before any model runs
    manifest.json        flows read per dataset (and read failures)
    units/KEY.json       one file per completed unit: its tidy rows, timings and memory
    predictions/...      masks (PNG per image, NIfTI per volume and target)
    logs/KEY.txt         traceback of a failed unit
    metrics.csv          tidy per-case table (all units)
    units.csv            one row per unit: status, attempts, cache use, seconds, memory
    summary.json         aggregates with counts and confidence intervals
    report.md, figures/  the report

A unit is identified by a key derived from (dataset, flow, model, protocol,
parameters, seed), so results never depend on execution order; ``--resume``
skips the units whose file exists. Every file is written atomically.

Units run on an executor (:mod:`bench.executors`: in-process, a process pool
or Ray); the driver writes each unit file as its result comes back. With
``shard=(i, n)`` only the units whose key falls in shard ``i`` of ``n`` run
(:mod:`bench.shard`); every shard writes the full ledger and manifest.

Each unit records ``seconds`` (wall time of the unit in its worker),
``attempts`` (1 + the retries it used after its worker died), ``restarts``
(times it was stopped because another unit's worker died), ``cache``
(``hit``, ``miss`` or ``off``: see :mod:`bench.cache`), ``peak_rss_mb`` (the
worker process's peak resident memory after the unit, from
``getrusage(RUSAGE_SELF).ru_maxrss``: a high-water mark that includes what the
process held before, e.g. model weights), ``rss_growth_mb`` (how much the unit
raised that peak) and ``gpu_peak_mb`` (``torch.cuda.max_memory_allocated``
during the unit, when CUDA is in use; else null).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adapters import Adapter, create
from bench import atomic
from bench.cache import (
    AdapterIdentity,
    PredictionCache,
    adapter_identity,
    frames_digest,
    prediction_key,
)
from bench.errors import RunError
from bench.executors import Executor, UnitSink, UnitSpec, WorkContext, make_executor, module_paths
from bench.metrics import EmptyPolicy
from bench.plan import DatasetRun, RunPlan
from bench.prompts import get_protocol, ledger, make_prompts, run_clicks, scored_frames
from bench.prompts.protocols import resolve_prompt_kind
from bench.readers import read_flow, read_flows
from bench.resources import source_checkout
from bench.scoring import check_prediction, failure_rows, score_flow
from bench.shard import in_shard, parse_shard
from bench.store import prediction_folder, write_prediction
from bench.types import Flow, Prediction

# ``click`` is empty except for interactive runs, where it numbers the Dice after each click.
TIDY_COLUMNS = ["dataset", "flow", "case", "patient", "target", "model", "protocol", "seed",
                "metric", "value", "status", "message", "click"]
UNIT_COLUMNS = ["key", "dataset", "flow", "model", "seed", "status", "attempts", "restarts",
                "cache", "seconds", "peak_rss_mb", "rss_growth_mb", "gpu_peak_mb", "worker",
                "message"]


@dataclass
class RunOutcome:
    run_dir: Path
    units_total: int
    units_run: int
    units_reused: int
    units_failed: int
    cases_failed: int
    read_failures: int
    units_cached: int = 0
    units_retried: int = 0
    units_all: int = 0
    shard: tuple[int, int] | None = None


def unit_key(dataset: str, flow: str, model: str, plan: RunPlan, seed: int) -> str:
    """Stable identifier of one (flow, model, protocol, seed) unit of work."""
    return key_for(dataset, flow, model, plan.protocol, plan.protocol_params, seed)


def key_for(dataset: str, flow: str, model: str, protocol: str,
            protocol_params: Mapping[str, Any], seed: int) -> str:
    """:func:`unit_key` from plain values (e.g. a stored plan record)."""
    identity = json.dumps(
        [dataset, flow, model, protocol, protocol_params, seed], sort_keys=True
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:20]


def expected_units(plan: Mapping[str, Any], manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every unit of a run, from its stored plan record and manifest, in run order."""
    units = []
    for dataset in plan["datasets"]:
        entry = manifest["datasets"].get(dataset["name"], {})
        if entry.get("refused"):
            continue
        for flow in entry.get("flows", []):
            for seed in plan["seeds"]:
                for model in plan["models"]:
                    units.append({"key": key_for(dataset["name"], flow["id"], model,
                                                 plan["protocol"], plan["protocol_params"],
                                                 seed),
                                  "dataset": dataset["name"], "flow": flow["id"],
                                  "model": model, "seed": seed})
    return units


def prompt_kind_for(plan: RunPlan, dataset: DatasetRun) -> str | None:
    """The prompt kind: the suite's override, else the protocol's rule for this card."""
    return resolve_prompt_kind(plan.protocol, plan.protocol_params, dataset.card.one_prompt_kind)


def execute(plan: RunPlan, run_dir: Path, *, resume: bool = False, progress: Any = None,
            record: dict[str, Any] | None = None, executor: str | Executor = "local",
            workers: int | None = None, ray_address: str | None = None,
            shard: str | tuple[int, int] | None = None, retries: int = 2,
            cache: PredictionCache | str | os.PathLike[str] | None = None) -> RunOutcome:
    """Run ``plan`` into ``run_dir``.

    Parameters
    ----------
    progress : callable or None
        ``progress(event, **info)`` callback for displays (see :mod:`bench.cli`).
    record : dict, optional
        Extra provenance to store in ``config.json`` (CLI arguments, versions).
    executor : {"local", "processes", "ray"} or Executor
        Where units run (:mod:`bench.executors`); ``workers`` and
        ``ray_address`` configure it.
    shard : "i/n", (i, n) or None
        Run only the units of shard ``i`` of ``n`` (:func:`bench.shard.in_shard`).
    retries : int
        How often a unit whose worker process died is started again.
    cache : PredictionCache, folder or None
        Prediction cache shared by workers and runs; None (the default here)
        disables it. Hits are scored anew; ``units_cached`` counts them.
    """
    run_dir = Path(run_dir)
    notify = progress or (lambda *args, **kwargs: None)
    if retries < 0:
        raise ValueError(f"--retries: must not be negative, got {retries}")
    chosen_shard = parse_shard(shard) if isinstance(shard, str) else shard
    if chosen_shard is not None:
        parse_shard(f"{chosen_shard[0]}/{chosen_shard[1]}")  # checks the range
    runner = executor if isinstance(executor, Executor) else make_executor(
        executor, workers, ray_address)
    store = cache if isinstance(cache, PredictionCache) or cache is None else \
        PredictionCache(cache)
    execution = {**runner.describe(), "retries": retries,
                 "cache": str(store.root) if store is not None else None,
                 "shard": _shard_text(chosen_shard)}
    _prepare_run_dir(plan, run_dir, resume, {**(record or {}), "execution": execution},
                     chosen_shard)

    adapters = {name: create(name, plan.model_settings.get(name)) for name in plan.models}
    config = atomic.read_json(run_dir / "config.json")
    config["adapters"] = {name: adapter.fingerprint() for name, adapter in adapters.items()}
    atomic.write_json(run_dir / "config.json", config)

    manifest = _write_ledger(plan, run_dir, notify)
    rows_by_flow = ledger.group_rows(ledger.read_ledger(run_dir / "prompts.jsonl"))
    specs = unit_specs(plan, manifest, rows_by_flow)
    selected = [spec for spec in specs if in_shard(spec.key, chosen_shard)]
    pending = [spec for spec in selected
               if not (run_dir / "units" / f"{spec.key}.json").exists()]
    if runner.name != "local":
        # Largest flows first, so that the slowest units do not start last; a
        # flow's units stay together. The order never changes a result.
        sizes = {(name, flow["id"]): flow["pixels"]
                 for name, entry in manifest["datasets"].items() for flow in entry["flows"]}
        pending.sort(key=lambda spec: -sizes[(spec.dataset, spec.flow)])

    outcome = RunOutcome(run_dir, len(selected), 0, len(selected) - len(pending), 0, 0,
                         sum(len(e["failures"]) for e in manifest["datasets"].values()),
                         units_all=len(specs), shard=chosen_shard)
    notify("units", total=len(pending), reused=outcome.units_reused, all=len(specs),
           selected=len(selected), executor=runner.name, shard=_shard_text(chosen_shard))
    context = WorkContext(plan=plan, run_dir=str(run_dir.resolve()),
                          cache_dir=str(store.root.resolve()) if store is not None else None,
                          modules=_adapter_modules(adapters),
                          paths=module_paths(_adapter_modules(adapters)))
    local = UnitWorker(context, adapters=adapters, cache=store) if runner.name == "local" \
        else None
    runner.run(pending, context, _Recorder(run_dir, plan, outcome, notify), retries=retries,
               local_worker=local)

    table = write_metrics(run_dir)
    outcome.cases_failed = int(
        table.loc[table["status"] == "error", ["dataset", "case", "model", "seed"]]
        .drop_duplicates().shape[0]
    )
    write_unit_summary(run_dir)
    return outcome


class _Recorder(UnitSink):
    """Writes each finished unit under its key and keeps the counts."""

    def __init__(self, run_dir: Path, plan: RunPlan, outcome: RunOutcome, notify: Any) -> None:
        self.run_dir, self.plan, self.outcome, self.notify = run_dir, plan, outcome, notify
        self.retried: set[str] = set()

    def result(self, spec: UnitSpec, unit: dict[str, Any]) -> None:
        atomic.write_json(self.run_dir / "units" / f"{spec.key}.json", unit)
        if unit.get("cache") == "hit":
            self.outcome.units_cached += 1
        else:
            self.outcome.units_run += 1
        if unit["status"] == "error":
            self.outcome.units_failed += 1
        self.notify("advance", dataset=spec.dataset, flow=spec.flow, model=spec.model,
                    seed=spec.seed, status=unit["status"], cache=unit.get("cache"),
                    attempts=unit.get("attempts", 1), seconds=unit.get("seconds"))

    def retry(self, spec: UnitSpec, attempt: int, reason: str) -> None:
        if spec.key not in self.retried:
            self.retried.add(spec.key)
            self.outcome.units_retried += 1
        self.notify("retry", dataset=spec.dataset, flow=spec.flow, model=spec.model,
                    seed=spec.seed, attempt=attempt, reason=reason)

    def gave_up(self, spec: UnitSpec, attempts: int, reason: str, restarts: int = 0) -> None:
        message = f"WorkerDied: {reason}; gave up after {attempts} attempt(s)"
        atomic.write_text(self.run_dir / "logs" / f"{spec.key}.txt", message + "\n")
        self.result(spec, {**failed_unit(spec, self.plan, message, attempts),
                           "restarts": restarts})


def failed_unit(spec: UnitSpec, plan: RunPlan, message: str, attempts: int) -> dict[str, Any]:
    """The record of a unit that produced no prediction, built without reading its flow."""
    rows = [{**row, "dataset": spec.dataset, "flow": spec.flow, "model": spec.model,
             "protocol": plan.protocol, "seed": spec.seed}
            for row in failure_rows(spec.targets, spec.case_ids, spec.patient_ids,
                                    plan.metrics, message)]
    return {"key": spec.key, "dataset": spec.dataset, "flow": spec.flow, "model": spec.model,
            "protocol": plan.protocol, "seed": spec.seed, "status": "error",
            "message": message, "scores": {}, "rows": rows, "seconds": None,
            "attempts": attempts, "restarts": 0, "cache": "off", "peak_rss_mb": None,
            "rss_growth_mb": None, "gpu_peak_mb": None, "worker": None}


def unit_specs(plan: RunPlan, manifest: Mapping[str, Any],
               rows_by_flow: Mapping[tuple[str, str, str, int], list[dict[str, Any]]]
               ) -> list[UnitSpec]:
    """Every unit of the run, in run order (dataset, flow, seed, model)."""
    specs = []
    for dataset in plan.datasets:
        entry = manifest["datasets"][dataset.name]
        if entry["refused"]:
            continue
        for flow in entry["flows"]:
            for seed in plan.seeds:
                rows = tuple(rows_by_flow.get((dataset.name, flow["id"], plan.protocol, seed),
                                              []))
                for model in plan.models:
                    specs.append(UnitSpec(
                        key=unit_key(dataset.name, flow["id"], model, plan, seed),
                        dataset=dataset.name, flow=flow["id"], model=model, seed=seed,
                        position=flow["position"], frames_sha256=flow["frames_sha256"],
                        rows=rows, case_ids=tuple(flow["case_ids"]),
                        patient_ids=tuple(flow["patient_ids"]), targets=tuple(flow["targets"])))
    return specs


def _adapter_modules(adapters: Mapping[str, Adapter]) -> tuple[str, ...]:
    """Modules that define the run's adapters, for workers that start fresh."""
    return tuple(sorted({type(adapter).__module__ for adapter in adapters.values()}))


def _shard_text(shard: tuple[int, int] | None) -> str | None:
    return None if shard is None else f"{shard[0]}/{shard[1]}"


def _prepare_run_dir(plan: RunPlan, run_dir: Path, resume: bool, record: dict[str, Any],
                     shard: tuple[int, int] | None = None) -> None:
    config_path = run_dir / "config.json"
    if run_dir.exists() and any(run_dir.iterdir()):
        if not resume:
            raise RunError(
                f"{run_dir} is not empty: pass --resume to continue it, or another --out"
            )
        if not config_path.exists():
            raise RunError(f"{run_dir} has no config.json: not a run directory")
        stored = atomic.read_json(config_path)["plan"]
        current = json.loads(json.dumps(plan.identity()))
        changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        if changed:
            raise RunError(
                f"cannot resume {run_dir}: the plan differs in {', '.join(changed)}; "
                "start a new run with another --out"
            )
        previous = atomic.read_json(config_path)
        if previous.get("shard") != _shard_text(shard):
            raise RunError(f"cannot resume {run_dir}: it holds shard "
                           f"{previous.get('shard') or 'none (all units)'}, not "
                           f"{_shard_text(shard) or 'all units'}")
        removed = atomic.remove_partials(run_dir)
        if removed:
            record = {**record, "partials_removed_on_resume": removed}
        previous.setdefault("resumed", []).append({"time": _now(), **record})
        atomic.write_json(config_path, previous)
        return
    atomic.write_json(config_path, {"plan": plan.identity(), "provenance": provenance(),
                                "started": _now(), "shard": _shard_text(shard), **record})


def _write_ledger(plan: RunPlan, run_dir: Path, notify: Any) -> dict[str, Any]:
    """Derive every prompt of the run and write the ledger before any model runs.

    The manifest lists each flow read with its position in the reader's stream,
    its case and patient ids and the digest of its frames, so that a worker can
    read the flow again by id and check that it got the same one.
    """
    rows: list[dict[str, Any]] = []
    manifest: dict[str, Any] = {"datasets": {}}
    for dataset in plan.datasets:
        entry: dict[str, Any] = {"root": str(dataset.root) if dataset.root else None,
                                 "synthetic": dataset.card.synthetic, "flows": [],
                                 "failures": [], "refused": False}
        notify("read", dataset=dataset.name)
        dataset_rows: list[dict[str, Any]] = []
        position = 0
        for flow, failure in _stream(dataset, plan.limit):
            if flow is None:
                entry["failures"].append(failure)
                continue
            entry["flows"].append({"id": flow.id, "frames": len(flow.frames),
                                   "cases": len(flow.case_ids), "targets": flow.targets,
                                   "spacing": list(flow.spacing) if flow.spacing else None,
                                   "position": position, "case_ids": list(flow.case_ids),
                                   "patient_ids": list(flow.patient_ids),
                                   "frames_sha256": frames_digest(flow.frames),
                                   "pixels": int(sum(np.size(frame) for frame in flow.frames))})
            position += 1
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
    atomic.write_json(run_dir / "manifest.json", manifest)
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


class UnitWorker:
    """Runs units in one process: each adapter built once, a flow read once per run of units.

    Parameters
    ----------
    context : WorkContext
        The plan, run directory and cache folder.
    adapters : dict, optional
        Adapters already built (the local executor passes the driver's).
    cache : PredictionCache, optional
        Default: one on ``context.cache_dir`` when set.
    """

    def __init__(self, context: WorkContext, adapters: Mapping[str, Adapter] | None = None,
                 cache: PredictionCache | None = None) -> None:
        self.context = context
        self.plan: RunPlan = context.plan
        self.run_dir = Path(context.run_dir)
        self.datasets = {dataset.name: dataset for dataset in self.plan.datasets}
        self.adapters: dict[str, Adapter] = dict(adapters or {})
        self.identities: dict[str, AdapterIdentity] = {}
        self.cache = cache if cache is not None else (
            PredictionCache(context.cache_dir) if context.cache_dir else None)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._flow: tuple[tuple[str, str], Flow] | None = None
        self._listings: dict[tuple[str, str], Any] = {}

    def run(self, spec: UnitSpec, attempt: int = 1) -> dict[str, Any]:
        """Run one unit and return its record (never raises for a unit's own failure)."""
        started = time.perf_counter()
        rss_before = _peak_rss_mb()
        cuda = _gpu_reset()
        try:
            flow = self._read(spec)
            adapter = self._adapter(spec.model)
            identity = self._identity(spec.model) if self.cache is not None else None
            prompts = ledger.rows_to_prompts(spec.rows, flow)
        except Exception as err:  # the unit fails, recorded; the worker goes on
            message = _one_line(err)
            atomic.write_text(self.run_dir / "logs" / f"{spec.key}.txt", traceback.format_exc())
            unit = failed_unit(spec, self.plan, message, attempt)
        else:
            unit = _run_unit(self.plan, self.run_dir, spec, flow, adapter, prompts,
                             cache=self.cache if identity and identity.cacheable else None,
                             identity=identity)
        rss_after = _peak_rss_mb()
        unit.update(
            seconds=round(time.perf_counter() - started, 4), attempts=attempt, restarts=0,
            worker=self.worker, peak_rss_mb=_round(rss_after),
            rss_growth_mb=_round(rss_after - rss_before) if rss_after is not None
            and rss_before is not None else None,
            gpu_peak_mb=_gpu_peak_mb() if cuda or _gpu_in_use() else None)
        return unit

    def _adapter(self, model: str) -> Adapter:
        if model not in self.adapters:
            self.adapters[model] = create(model, self.plan.model_settings.get(model))
        return self.adapters[model]

    def _identity(self, model: str) -> AdapterIdentity:
        if model not in self.identities:
            self.identities[model] = adapter_identity(self._adapter(model))
        return self.identities[model]

    def _read(self, spec: UnitSpec) -> Flow:
        key = (spec.dataset, spec.flow)
        if self._flow is not None and self._flow[0] == key:
            return self._flow[1]
        self._flow = None  # free the previous flow before reading the next
        dataset = self.datasets[spec.dataset]
        flow = read_flow(dataset.card, dataset.root, spec.flow, spec.position, self.plan.limit,
                         self._listings)
        if frames_digest(flow.frames) != spec.frames_sha256:
            raise RunError(f"flow {spec.dataset}/{spec.flow}: its frames differ from those read "
                           "when the prompt ledger was written (did the data change?)")
        self._flow = (key, flow)
        return flow


def _run_unit(plan: RunPlan, run_dir: Path, spec: UnitSpec, flow: Flow, adapter: Adapter,
              prompts: Sequence[Any], *, cache: PredictionCache | None = None,
              identity: AdapterIdentity | None = None) -> dict[str, Any]:
    unit: dict[str, Any] = {"key": spec.key, "dataset": spec.dataset, "flow": flow.id,
                            "model": adapter.name, "protocol": plan.protocol, "seed": spec.seed,
                            "cache": "off"}
    policy = EmptyPolicy(both_empty=plan.empty_policy)
    try:
        seen = flow if adapter.capabilities.sees_ground_truth else flow.view()
        prediction, cache_key = None, None
        if cache is not None and identity is not None:
            cache_key = prediction_key(identity, flow.view(), spec.frames_sha256, spec.rows)
            prediction = cache.get(cache_key)
            unit["cache"] = "hit" if prediction is not None else "miss"
        click_rows: list[dict[str, Any]] = []
        if plan.protocol == "interactive":
            # Later clicks depend on the model's answers: nothing to cache or replay.
            prediction, click_rows = _interactive_sessions(plan, flow, adapter, prompts)
            unit["cache"] = "off"
            cache_key = None
        elif prediction is None:
            prediction = adapter.predict(seen, prompts)
        check_prediction(flow, prediction, sorted({p.target for p in prompts}))
        if cache is not None and cache_key is not None and unit["cache"] == "miss":
            _store(cache, cache_key, prediction, adapter.name)
        rows = score_flow(flow, prediction,
                          scored_frames=scored_frames(flow, plan.protocol, plan.protocol_params),
                          metrics=plan.metrics, policy=policy,
                          nsd_tolerance_mm=plan.nsd_tolerance_mm) + click_rows
        write_prediction(prediction_folder(run_dir, adapter.name, spec.seed, spec.dataset), flow,
                         prediction)
        unit.update(status="ok", message="", scores=prediction.scores)
    except Exception as err:  # recorded per unit; the run goes on
        message = _one_line(err)
        atomic.write_text(run_dir / "logs" / f"{spec.key}.txt", traceback.format_exc())
        rows = failure_rows(flow.targets, flow.case_ids, flow.patient_ids, plan.metrics, message)
        unit.update(status="error", message=message, scores={})
    for row in rows:
        row.update(dataset=spec.dataset, flow=flow.id, model=adapter.name,
                   protocol=plan.protocol, seed=spec.seed)
        row.setdefault("message", "")
    unit["rows"] = rows
    return unit


def _interactive_sessions(plan: RunPlan, flow: Flow, adapter: Adapter, prompts: Sequence[Any]
                          ) -> tuple[Prediction, list[dict[str, Any]]]:
    """Run one RITM session per ledger prompt (first click) against ``adapter``.

    The runner owns the ground truth and places every further click; the
    adapter only answers :meth:`~adapters.Adapter.predict_click`. The final
    mask of each session becomes the prediction of its frame (scored like any
    other protocol); the Dice after every click (rows with ``click``) and
    NoC@85 / NoC@90 (clicks to reach that Dice, ``max_clicks`` when never
    reached, as RITM counts) become extra rows. For a volume every prompted
    slice is a session of the volume's case.
    """
    max_clicks = get_protocol("interactive").resolve(plan.protocol_params)["max_clicks"]
    view = flow.view()
    masks = {p.target: [np.zeros(np.shape(f)[:2], dtype=bool) for f in flow.frames]
             for p in prompts}
    rows: list[dict[str, Any]] = []
    def answer(clicks: Any, previous: np.ndarray | None) -> np.ndarray:
        return adapter.predict_click(view, clicks, previous)

    for prompt in prompts:
        ref = np.asarray(flow.masks[prompt.target][prompt.frame], dtype=bool)
        trace = run_clicks(answer, ref, target=prompt.target, frame=prompt.frame,
                           max_clicks=max_clicks)
        if trace.mask is not None:
            masks[prompt.target][prompt.frame] = trace.mask
        index = 0 if flow.kind == "volume" else prompt.frame
        where = {"case": flow.case_ids[index], "patient": flow.patient_ids[index],
                 "target": prompt.target, "status": "ok"}
        rows += [{**where, "metric": "dice", "value": float(value), "click": number}
                 for number, value in enumerate(trace.dice, start=1)]
        rows += [{**where, "metric": f"noc{round(level * 100)}",
                  "value": float(trace.noc(level, max_clicks))} for level in (0.85, 0.9)]
    return Prediction(masks=masks), rows


def _store(cache: PredictionCache, key: str, prediction: Prediction, adapter: str) -> None:
    try:
        cache.put(key, prediction, {"adapter": adapter})
    except OSError:  # a full or read-only cache costs speed, never a result
        pass


def collect_metrics(run_dir: Path) -> pd.DataFrame:
    """The tidy per-case table of every completed unit, in a canonical order."""
    rows: list[dict[str, Any]] = []
    for unit_path in sorted((Path(run_dir) / "units").glob("*.json")):
        rows.extend(atomic.read_json(unit_path)["rows"])
    table = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    table["click"] = table["click"].astype("Int64")
    return table.sort_values(
        ["dataset", "model", "seed", "flow", "case", "target", "metric", "click"], kind="stable"
    ).reset_index(drop=True)


def write_metrics(run_dir: Path) -> pd.DataFrame:
    """Write ``metrics.csv`` (:func:`collect_metrics`) and return the table."""
    table = collect_metrics(run_dir)
    _write_table(Path(run_dir) / "metrics.csv", table)
    return table


def unit_summary(run_dir: Path) -> pd.DataFrame:
    """One row per completed unit: status, attempts, cache use, wall time and memory."""
    records = []
    for unit_path in sorted((Path(run_dir) / "units").glob("*.json")):
        unit = atomic.read_json(unit_path)
        records.append({column: unit.get(column) for column in UNIT_COLUMNS})
    table = pd.DataFrame(records, columns=UNIT_COLUMNS)
    return table.sort_values(["dataset", "model", "seed", "flow"], kind="stable") \
        .reset_index(drop=True)


def write_unit_summary(run_dir: Path) -> Path:
    """Write ``units.csv`` (:func:`unit_summary`); the tidy table keeps its columns."""
    path = Path(run_dir) / "units.csv"
    _write_table(path, unit_summary(run_dir))
    return path


def _write_table(path: Path, table: pd.DataFrame) -> None:
    with atomic.atomic_path(path) as temp:
        table.to_csv(temp, index=False, float_format="%.10g")


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB (None where unsupported)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def _gpu_in_use() -> bool:
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:
        return False


def _gpu_reset() -> bool:
    if not _gpu_in_use():
        return False
    sys.modules["torch"].cuda.reset_peak_memory_stats()
    return True


def _gpu_peak_mb() -> float | None:
    if not _gpu_in_use():
        return None
    return _round(sys.modules["torch"].cuda.max_memory_allocated() / 2**20)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


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
    # An installed wheel has no commit (its site-packages may sit in another project's tree).
    here = source_checkout()
    if here is not None:
        try:
            git["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, check=True,
                                           capture_output=True, text=True).stdout.strip()
            git["dirty"] = bool(subprocess.run(["git", "status", "--porcelain"], cwd=here,
                                               check=True, capture_output=True,
                                               text=True).stdout)
        except (OSError, subprocess.CalledProcessError):
            pass
    return {"versions": versions, "git": git, "platform": platform.platform()}


def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
