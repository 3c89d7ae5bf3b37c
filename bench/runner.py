"""Run a plan: record, ledger, units, tables. This module only sequences the stages.

1. :meth:`bench.rundir.RunDir.begin`: the run record (``config.json``), or the
   checks of a resumed run; then the adapters' fingerprints.
2. :func:`bench.derive.derive_ledger`: read every flow once, write the prompt
   ledger and the manifest before any model runs.
3. The units (:mod:`bench.units`) not yet stored, of this shard
   (:mod:`bench.shard`), run on an executor (:mod:`bench.executors`); the
   driver stores each one as it comes back, so that ``--resume`` skips it.
   On resume, a stored unit that failed, or whose inputs changed (frames,
   masks, spacing, prompts, the adapter's options or checkpoint sha256, the
   metrics version: :func:`bench.units.unit_inputs`), is run again; how many
   and why is recorded in ``config.json`` (``resumed[-1].recomputed``).
4. ``metrics.csv`` and ``units.csv`` from the stored units.

The report (:mod:`bench.report`) is a later stage of its own. Progress is told
through typed events (:mod:`bench.progress`).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.adapters import Adapter, create
from bench.cache import PredictionCache, adapter_digest
from bench.derive import derive_ledger
from bench.errors import ConfigError
from bench.executors import Executor, UnitSink, make_executor, module_paths
from bench.flow_memo import FLOWS
from bench.plan import RunPlan
from bench.progress import (
    Progress,
    UnitFinished,
    UnitRetrying,
    UnitsPlanned,
    ignore,
    listening_to_frames,
)
from bench.prompts import ledger
from bench.prompts.interchange import ImportedPrompts
from bench.rundir import RunDir, UnitRecord, card_record
from bench.shard import in_shard, parse_shard, shard_text
from bench.units import (
    UnitSpec,
    UnitWorker,
    WorkContext,
    changed_inputs,
    failed_unit,
    unit_specs,
)


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
    # Stored units run again on resume: key -> why (failed earlier, or which inputs changed).
    recomputed: dict[str, str] = field(default_factory=dict)
    # Failed units of this run's selection in its tables (this attempt's and earlier ones).
    units_failed_stored: int = 0

    def recomputed_text(self) -> str:
        """``3 units recomputed (2 masks changed, 1 failed earlier)``, or ""."""
        if not self.recomputed:
            return ""
        reasons = ", ".join(f"{count} {reason}" for reason, count in
                            _reason_counts(self.recomputed).items())
        return f"{len(self.recomputed)} stored unit(s) recomputed ({reasons})"


def execute(plan: RunPlan, run_dir: Path, *, resume: bool = False,
            progress: Progress | None = None, record: dict[str, Any] | None = None,
            executor: str | Executor = "local", workers: int | None = None,
            ray_address: str | None = None, shard: str | tuple[int, int] | None = None,
            retries: int = 2,
            cache: PredictionCache | str | os.PathLike[str] | None = None,
            prompts: ImportedPrompts | None = None) -> RunOutcome:
    """Run ``plan`` into ``run_dir``.

    Parameters
    ----------
    progress : callable or None
        ``progress(event)`` with the events of :mod:`bench.progress`.
    record : dict, optional
        Extra provenance to store in ``config.json`` (CLI arguments).
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
    prompts : ImportedPrompts, optional
        Prompts read from a file (``bench run --prompts``) instead of derived.

    Raises
    ------
    ConfigError
        A bad option (retries, shard, executor).
    RunError
        The run directory cannot take this run (not empty without
        ``resume``, or a resumed run that differs).
    """
    rundir = RunDir(run_dir)
    notify = progress or ignore
    if retries < 0:
        raise ConfigError(f"--retries: must not be negative, got {retries}")
    chosen = parse_shard(shard if isinstance(shard, str) or shard is None
                         else f"{shard[0]}/{shard[1]}")
    runner = executor if isinstance(executor, Executor) else make_executor(
        executor, workers, ray_address)
    store = cache if isinstance(cache, PredictionCache) or cache is None else \
        PredictionCache(cache)
    execution = {**runner.describe(), "retries": retries,
                 "cache": str(store.root) if store is not None else None,
                 "shard": shard_text(chosen)}
    created, fresh = not rundir.path.exists(), rundir.is_empty()
    rundir.begin({"plan": plan.identity(), "shard": shard_text(chosen),
                  "cards": {d.name: card_record(d.card) for d in plan.datasets}},
                 {**(record or {}), "execution": execution}, resume=resume)
    ledger_written = False
    try:
        adapters = {name: create(name, plan.model_settings.get(name)) for name in plan.models}
        fingerprints = {name: adapter.fingerprint() for name, adapter in adapters.items()}
        rundir.record_adapters(fingerprints)
        manifest = derive_ledger(plan, rundir, notify, prompts)
        ledger_written = True
    finally:
        # a new run stopped before any unit (a bad checkpoint, a refused dataset) leaves no
        # record behind to demand --resume of a run that never started; the error goes on
        if fresh and not ledger_written:
            rundir.abandon(created)
    specs = unit_specs(rundir.expected_units(), manifest,
                       ledger.group_rows(rundir.read_ledger()), plan.protocol,
                       {name: adapter_digest(fp) for name, fp in fingerprints.items()})
    selected = [spec for spec in specs if in_shard(spec.key, chosen)]
    stale = _stale(rundir, selected)
    if resume:
        rundir.record_resume(recomputed={"units": len(stale),
                                         "reasons": _reason_counts(stale)})
    pending = _pending(selected, rundir.unit_keys() - set(stale), manifest,
                       largest_first=runner.name != "local")

    outcome = RunOutcome(rundir.path, len(selected), 0, len(selected) - len(pending), 0, 0,
                         sum(len(e["failures"]) for e in manifest["datasets"].values()),
                         units_all=len(specs), shard=chosen, recomputed=stale)
    notify(UnitsPlanned(total=len(pending), reused=outcome.units_reused,
                        selected=len(selected), all=len(specs), executor=runner.name,
                        shard=shard_text(chosen)))
    modules = _adapter_modules(adapters)
    context = WorkContext(plan=plan, run_dir=str(rundir.path.resolve()),
                          cache_dir=str(store.root.resolve()) if store is not None else None,
                          modules=modules, paths=module_paths(modules))
    local = UnitWorker(context, adapters=adapters, cache=store) if runner.name == "local" \
        else None
    try:
        with listening_to_frames(notify):  # units running here report their frames
            runner.run(pending, context, _Recorder(rundir, plan, outcome, notify),
                       retries=retries, local_worker=local)
    finally:
        FLOWS.clear()  # the flows the ledger stage kept for the units

    table = rundir.write_metrics()
    outcome.cases_failed = int(
        table.loc[table["status"] == "error", ["dataset", "case", "model", "seed"]]
        .drop_duplicates().shape[0]
    )
    units = rundir.unit_table()
    outcome.units_failed_stored = int(
        (units["key"].isin({spec.key for spec in selected}) & (units["status"] != "ok")).sum())
    rundir.write_unit_table()
    return outcome


class _Recorder(UnitSink):
    """Stores each finished unit under its key, keeps the counts and tells the display."""

    def __init__(self, rundir: RunDir, plan: RunPlan, outcome: RunOutcome,
                 notify: Progress) -> None:
        self.rundir, self.plan, self.outcome, self.notify = rundir, plan, outcome, notify
        self.retried: set[str] = set()

    def result(self, spec: UnitSpec, unit: UnitRecord) -> None:
        self.rundir.write_unit(unit)
        if unit.cache == "hit":
            self.outcome.units_cached += 1
        else:
            self.outcome.units_run += 1
        if unit.status == "error":
            self.outcome.units_failed += 1
        self.notify(UnitFinished(dataset=spec.dataset, flow=spec.flow, model=spec.model,
                                 seed=spec.seed, status=unit.status, cache=unit.cache,
                                 attempts=unit.attempts, seconds=unit.seconds))

    def retry(self, spec: UnitSpec, attempt: int, reason: str) -> None:
        if spec.key not in self.retried:
            self.retried.add(spec.key)
            self.outcome.units_retried += 1
        self.notify(UnitRetrying(dataset=spec.dataset, flow=spec.flow, model=spec.model,
                                 seed=spec.seed, attempt=attempt, reason=reason))

    def gave_up(self, spec: UnitSpec, attempts: int, reason: str, restarts: int = 0) -> None:
        message = f"WorkerDied: {reason}; gave up after {attempts} attempt(s)"
        self.rundir.write_log(spec.key, message + "\n")
        self.result(spec, dataclasses.replace(failed_unit(spec, self.plan, message, attempts),
                                              restarts=restarts))


def _stale(rundir: RunDir, selected: list[UnitSpec]) -> dict[str, str]:
    """Stored units of ``selected`` to run again, with why: failed, or their inputs changed."""
    stored = rundir.unit_keys()
    stale = {}
    for spec in selected:
        if spec.key not in stored:
            continue
        unit = rundir.read_unit(rundir.unit_path(spec.key))
        changed = changed_inputs(unit.inputs, spec.inputs)
        if unit.status != "ok":
            stale[spec.key] = "failed earlier"
        elif changed:
            stale[spec.key] = f"{'+'.join(changed)} changed"
    return stale


def _reason_counts(stale: Mapping[str, str]) -> dict[str, int]:
    return dict(sorted(Counter(stale.values()).items()))


def _pending(selected: list[UnitSpec], done: set[str], manifest: Mapping[str, Any], *,
             largest_first: bool) -> list[UnitSpec]:
    """The selected units not stored yet, in run order or largest flow first."""
    pending = [spec for spec in selected if spec.key not in done]
    if largest_first:
        # With several workers the slowest units should not start last; a flow's
        # units stay together. The order never changes a result.
        sizes = {(name, flow["id"]): flow["pixels"]
                 for name, entry in manifest["datasets"].items() for flow in entry["flows"]}
        pending.sort(key=lambda spec: -sizes[(spec.dataset, spec.flow)])
    return pending


def _adapter_modules(adapters: Mapping[str, Adapter]) -> tuple[str, ...]:
    """Modules that define the run's adapters, for workers that start fresh."""
    return tuple(sorted({type(adapter).__module__ for adapter in adapters.values()}))
