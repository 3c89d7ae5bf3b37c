"""Units of work: what one unit needs (:class:`UnitSpec`) and the worker that runs it.

A unit is one (dataset, flow, model, protocol, seed), named by
:func:`bench.rundir.unit_key`. The runner lists the units still to do as
:class:`UnitSpec` records and an executor (:mod:`bench.executors`) hands them
to :class:`UnitWorker` objects, in the driver or in worker processes. A worker
re-reads the flow by id (flows never cross processes), runs the adapter on
the ledger's prompts, scores the prediction, writes the masks and returns a
:class:`~bench.rundir.UnitRecord`.

A unit's own failure (unreadable flow, adapter exception, unusable
prediction) never raises: it is recorded, with its traceback in
``logs/KEY.txt``, as a record of status ``error`` holding one error row per
case, target and metric, and the run goes on.

Each record carries ``seconds`` (wall time of the unit in its worker),
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

import dataclasses
import os
import socket
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.adapters import Adapter, create
from bench.cache import (
    AdapterIdentity,
    PredictionCache,
    adapter_identity,
    canonical,
    prediction_key,
    score_key,
    sha256_text,
)
from bench.errors import RunError
from bench.flow_memo import FLOWS
from bench.metrics import METRICS_VERSION, OFFICIAL_METRICS, EmptyPolicy
from bench.plan import RunPlan
from bench.prompts import cvpr25, get_protocol, ledger, sam_med3d
from bench.prompts.interactive import click_sessions
from bench.prompts.scope import adapter_views, scoring_scope
from bench.prompts.streams import keyed_stream
from bench.readers import read_flow
from bench.rundir import RunDir, UnitRecord, UnitRef, check_frames
from bench.scoring import check_prediction, failure_rows, score_flow
from bench.store import write_prediction
from bench.types import Flow, Prompt


def one_line(err: BaseException) -> str:
    """``Type: message`` of an exception on one line (for tables and manifests)."""
    return " ".join(f"{type(err).__name__}: {err}".split())


@dataclass(frozen=True)
class UnitSpec:
    """One unit of work: a (dataset, flow, model, seed) and what a worker needs for it.

    Attributes
    ----------
    key : str
        The unit key (:func:`bench.rundir.unit_key`).
    position : int
        Index of the flow among the flows the dataset's reader yielded.
    frames_sha256 : str
        Digest of the frames the ledger was derived from; a worker checks the
        flow it reads against it.
    rows : tuple of dict
        The flow's prompt ledger rows for this seed.
    case_ids, patient_ids, targets
        From the manifest, to record a failure without reading the flow.
    masks_sha256 : str
        Digest of the flow's masks when the ledger was derived ("" when not
        recorded); a worker checks it too.
    inputs : dict
        :func:`unit_inputs`: digests of everything the unit's numbers depend
        on, stored in its record so that a resumed run can tell whether a
        stored unit still holds.
    sources : tuple of dict
        The manifest entries (id, position, digests) of the flows the rows
        take support slices from (``alpnet-protocol``'s support volume); a
        worker reads and checks them too.
    """

    key: str
    dataset: str
    flow: str
    model: str
    seed: int
    position: int
    frames_sha256: str
    rows: tuple[dict[str, Any], ...]
    case_ids: tuple[str, ...]
    patient_ids: tuple[str, ...]
    targets: tuple[str, ...]
    masks_sha256: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    sources: tuple[dict[str, Any], ...] = ()


def unit_inputs(flow: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                adapter: str, sources: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """What a unit's numbers depend on beyond the stored plan, as digests.

    Parameters
    ----------
    flow : mapping
        The flow's manifest entry (frames and masks digests, spacing).
    rows : sequence of mapping
        The unit's prompt ledger rows.
    adapter : str
        :func:`bench.cache.adapter_digest` of the model's fingerprint
        (resolved options, checkpoint sha256, device, versions).
    sources : sequence of mapping
        The manifest entries of the flows the rows take support slices from
        (their frames are the support images); recorded only when there are.
    """
    inputs = {"frames": flow["frames_sha256"], "masks": flow.get("masks_sha256", ""),
              "spacing": flow.get("spacing"),
              "prompts": sha256_text(canonical(sorted(row["hash"] for row in rows))),
              "adapter": adapter, "metrics_version": METRICS_VERSION}
    if sources:
        inputs["sources"] = source_digests(sources)
    return inputs


def source_digests(sources: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Support flow id -> its frames and masks digests."""
    return {entry["id"]: [entry["frames_sha256"], entry.get("masks_sha256", "")]
            for entry in sources}


def changed_inputs(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The names of the inputs that differ (all of them for a record without inputs)."""
    return sorted(name for name in set(stored) | set(current)
                  if stored.get(name) != current.get(name))


@dataclass(frozen=True)
class WorkContext:
    """What every worker needs, sent once per worker (never a flow).

    ``modules`` are imported in a fresh worker so that adapters registered
    outside the built-in list (plugins, tests) exist there; ``paths`` are
    added to ``sys.path`` for that.
    """

    plan: RunPlan
    run_dir: str
    cache_dir: str | None
    modules: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    token: str = field(default_factory=lambda: os.urandom(8).hex())


def unit_specs(units: Sequence[UnitRef], manifest: Mapping[str, Any],
               rows_by_flow: Mapping[tuple[str, str, str, int], list[dict[str, Any]]],
               protocol: str, adapters: Mapping[str, str] | None = None) -> list[UnitSpec]:
    """The spec of each unit of the index (:meth:`bench.rundir.RunDir.expected_units`).

    ``adapters`` maps each model to its :func:`bench.cache.adapter_digest`
    (for :func:`unit_inputs`).
    """
    flows = {(name, flow["id"]): flow for name, entry in manifest["datasets"].items()
             for flow in entry["flows"]}
    specs = []
    for unit in units:
        flow = flows[(unit.dataset, unit.flow)]
        rows = rows_by_flow.get((unit.dataset, unit.flow, protocol, unit.seed), [])
        sources = tuple(dict(flows[(unit.dataset, source)])
                        for source in ledger.source_ids(rows))
        specs.append(UnitSpec(
            key=unit.key, dataset=unit.dataset, flow=unit.flow, model=unit.model,
            seed=unit.seed, position=flow["position"], frames_sha256=flow["frames_sha256"],
            rows=tuple(rows), case_ids=tuple(flow["case_ids"]),
            patient_ids=tuple(flow["patient_ids"]), targets=tuple(flow["targets"]),
            masks_sha256=flow.get("masks_sha256", ""),
            inputs=unit_inputs(flow, rows, (adapters or {}).get(unit.model, ""), sources),
            sources=sources))
    return specs


def failed_unit(spec: UnitSpec, plan: RunPlan, message: str, attempts: int) -> UnitRecord:
    """The record of a unit that produced no prediction, built without reading its flow."""
    rows = failure_rows(spec.targets, spec.case_ids, spec.patient_ids, plan.metrics, message)
    return UnitRecord(key=spec.key, dataset=spec.dataset, flow=spec.flow, model=spec.model,
                      protocol=plan.protocol, seed=spec.seed, status="error", message=message,
                      rows=_label(rows, spec, spec.flow, spec.model, plan.protocol),
                      attempts=attempts, inputs=dict(spec.inputs))


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
        self.rundir = RunDir(context.run_dir)
        self.datasets = {dataset.name: dataset for dataset in self.plan.datasets}
        self.adapters: dict[str, Adapter] = dict(adapters or {})
        self.identities: dict[str, AdapterIdentity] = {}
        self.cache = cache if cache is not None else (
            PredictionCache(context.cache_dir) if context.cache_dir else None)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._flow: tuple[tuple[str, str], Flow] | None = None
        self._source: tuple[tuple[str, str], Flow] | None = None
        self._listings: dict[tuple[str, str], Any] = {}

    def run(self, spec: UnitSpec, attempt: int = 1) -> UnitRecord:
        """Run one unit and return its record (never raises for a unit's own failure)."""
        started = time.perf_counter()
        rss_before = _peak_rss_mb()
        cuda = _gpu_reset()
        try:
            flow = self._read(spec)
            adapter = self._adapter(spec.model)
            identity = self._identity(spec.model) if self.cache is not None else None
            prompts = ledger.rows_to_prompts(spec.rows, flow, self._read_sources(spec))
        except Exception as err:  # the unit fails, recorded with its traceback; the worker goes on
            self.rundir.write_log(spec.key, traceback.format_exc())
            unit = failed_unit(spec, self.plan, one_line(err), attempt)
        else:
            unit = run_unit(self.plan, self.rundir, spec, flow, adapter, prompts,
                            cache=self.cache if identity and identity.cacheable else None,
                            identity=identity)
        rss_after = _peak_rss_mb()
        return dataclasses.replace(
            unit, seconds=round(time.perf_counter() - started, 4), attempts=attempt,
            restarts=0, worker=self.worker, peak_rss_mb=_round(rss_after),
            rss_growth_mb=_round(rss_after - rss_before) if rss_after is not None
            and rss_before is not None else None,
            gpu_peak_mb=_gpu_peak_mb() if cuda or _gpu_in_use() else None)

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
        flow = self._load(spec.dataset, spec.flow, spec.position, spec.frames_sha256,
                          spec.masks_sha256)
        self._flow = (key, flow)
        return flow

    def _read_sources(self, spec: UnitSpec) -> dict[str, Flow]:
        """The support volumes of the unit's rows, each checked against its digests.

        The last one read is kept: the queries of a fold share their support.
        """
        found = {}
        for entry in spec.sources:
            key = (spec.dataset, entry["id"])
            if self._source is None or self._source[0] != key:
                self._source = None
                self._source = (key, self._load(spec.dataset, entry["id"], entry["position"],
                                                entry["frames_sha256"],
                                                entry.get("masks_sha256", "")))
            found[entry["id"]] = self._source[1]
        return found

    def _load(self, name: str, flow_id: str, position: int, frames_sha256: str,
              masks_sha256: str) -> Flow:
        """Flow ``flow_id`` of dataset ``name``, checked against the ledger stage's digests."""
        # the flow the ledger stage read, when this process kept it (same digests)
        flow = FLOWS.get(name, flow_id, position, frames_sha256, masks_sha256)
        if flow is None:
            dataset = self.datasets[name]
            flow = read_flow(dataset.card, dataset.root, flow_id, position, self.plan.limit,
                             self._listings)
            check_frames(flow, frames_sha256, masks_sha256)
        return flow


def run_unit(plan: RunPlan, rundir: RunDir, spec: UnitSpec, flow: Flow, adapter: Adapter,
             prompts: Sequence[Prompt], *, cache: PredictionCache | None = None,
             identity: AdapterIdentity | None = None) -> UnitRecord:
    """Predict, score and store one unit whose flow and prompts are read.

    An exception of the adapter, of scoring or of writing the masks is the
    unit's failure: recorded (traceback in ``logs/KEY.txt``), never raised.
    """
    state, notes, session = "off", {}, None
    try:
        modality = next((d.card.modality for d in plan.datasets if d.name == spec.dataset), "")
        seen = flow if adapter.capabilities.sees_ground_truth else flow.view(modality)
        # What this model is shown (support rows: in-context models only, once per k).
        views = adapter_views(adapter.name, adapter.capabilities.in_context, prompts,
                              protocol=plan.protocol, params=plan.params, seed=spec.seed,
                              dataset=flow.dataset, flow_id=flow.id)
        notes = adapter.unit_notes(seen, views[0][1])  # e.g. medsam2's memory for this flow
        prediction, cache_key, click_rows, labelled = None, None, [], None
        if plan.protocol == "interactive":
            # Later clicks depend on the model's answers: nothing to cache or replay.
            max_clicks = get_protocol("interactive").resolve(plan.protocol_params)["max_clicks"]
            view = flow.view(modality)
            prediction, click_rows = click_sessions(
                flow, prompts, lambda clicks, previous: adapter.predict_click(view, clicks,
                                                                             previous),
                max_clicks)
        elif plan.protocol == sam_med3d.PROTOCOL:
            # Clicks 2.. come from the model's previous answer: nothing to cache or replay.
            num_clicks = get_protocol(plan.protocol).resolve(plan.protocol_params)["num_clicks"]
            prediction, click_rows = sam_med3d.adapter_sessions(
                flow, flow.view(modality), adapter, prompts, num_clicks,
                lambda target, frame, purpose: keyed_stream(
                    spec.seed, flow.dataset, flow.id, target, frame, plan.protocol, purpose))
        elif plan.protocol == cvpr25.PROTOCOL:
            # Each step's clicks come from the model's previous answer: nothing to cache.
            session = _cvpr25_session(plan, flow, seen, adapter, prompts)
            prediction, click_rows = session.prediction, session.rows
            notes = {**notes, "cvpr25_given": session.given}
        else:
            # An adapter whose predictions follow the seed is never served another seed's.
            seeded = adapter.use_run_seed(spec.seed)
            if (cache is not None and identity is not None and not _needs_logits(plan)
                    and not seeded and len(views) == 1):
                cache_key = prediction_key(identity, flow.view(), spec.frames_sha256, spec.rows,
                                           source_digests(spec.sources))
                prediction = cache.get(cache_key)
                state = "hit" if prediction is not None else "miss"
            if prediction is None:
                prediction = adapter.predict(seen, views[0][1])
            labelled = [(views[0][0], prediction),
                        *((label, adapter.predict(seen, shown)) for label, shown in views[1:])]
        if labelled is None:  # the session protocols: one prediction, the model's own label
            labelled = [(adapter.name, prediction)]
        # Scored on the ledger's prompts (support rows included), the same cases for every model.
        scope = scoring_scope(flow, plan.protocol, prompts, plan.params)
        rows = []
        for label, prediction in labelled:
            check_prediction(flow, prediction, sorted({p.target for p in prompts}))
            if cache is not None and cache_key is not None and state == "miss":
                _store(cache, cache_key, prediction, adapter.name)
            rows_key = (_rows_key(plan, spec, flow, cache_key, label)
                        if cache is not None and cache_key is not None else None)
            scored = cache.get_rows(cache_key, rows_key) if rows_key else None
            if scored is None:
                scored = score_flow(flow, prediction, scope=scope, metrics=plan.metrics,
                                    policy=EmptyPolicy(both_empty=plan.empty_policy),
                                    nsd_tolerance_mm=plan.nsd_tolerance_mm,
                                    score_prompted=plan.score_prompted, model=label)
                if rows_key:
                    _store_rows(cache, cache_key, rows_key, scored)
            rows += [{**row, "model": label} for row in scored]
            write_prediction(rundir.prediction_folder(label, spec.seed, spec.dataset), flow,
                             prediction)
        rows += click_rows
        status, message, scores = "ok", "", prediction.scores
    except RunError:  # the environment (a full disk): the run stops, resumable
        raise
    except Exception as err:  # the unit fails, recorded with its traceback; the run goes on
        rundir.write_log(spec.key, traceback.format_exc())
        status, message, scores = "error", one_line(err), {}
        rows = failure_rows(flow.targets, flow.case_ids, flow.patient_ids, plan.metrics,
                            message)
    return UnitRecord(key=spec.key, dataset=spec.dataset, flow=flow.id, model=adapter.name,
                      protocol=plan.protocol, seed=spec.seed, status=status, message=message,
                      scores=scores, rows=_label(rows, spec, flow.id, adapter.name,
                                                 plan.protocol),
                      cache=state, inputs=dict(spec.inputs), notes=dict(notes),
                      clicks=session.clicks if session and status == "ok" else [],
                      step_seconds=session.seconds if session and status == "ok" else [])


def _cvpr25_session(plan: RunPlan, flow: Flow, seen: Any, adapter: Adapter,
                    prompts: Sequence[Prompt]) -> cvpr25.Session:
    """Run a cvpr25-interactive session: the box step and 5 click steps (see the module)."""
    targets = sorted({p.target for p in prompts})

    def check(prediction: Any) -> None:
        check_prediction(flow, prediction, targets)

    return cvpr25.run_session(
        flow, prompts, lambda given, previous: adapter.predict_step(seen, given, previous),
        cvpr25.Accepts.of(adapter.capabilities), nsd=cvpr25.load_nsd(), check=check,
        tolerance_mm=plan.nsd_tolerance_mm)


def _needs_logits(plan: RunPlan) -> bool:
    # The prediction cache stores masks only: official metrics need the adapter's logits.
    return any(m in OFFICIAL_METRICS for m in plan.metrics)


def _label(rows: list[dict[str, Any]], spec: UnitSpec, flow: str, model: str,
           protocol: str) -> list[dict[str, Any]]:
    """Tidy rows: a case's scores plus the unit's dataset, flow, model, protocol and seed."""
    for row in rows:
        row.update(dataset=spec.dataset, flow=flow, protocol=protocol, seed=spec.seed)
        row.setdefault("model", model)  # in-context rows keep their MODEL@kK label
        row.setdefault("message", "")
    return rows


def _rows_key(plan: RunPlan, spec: UnitSpec, flow: Flow, cache_key: str,
              label: str) -> str | None:
    """:func:`bench.cache.score_key` of a cached unit's rows; None (not stored) when the
    ground truth's digest was not recorded: the prediction key does not name it."""
    if not spec.masks_sha256:
        return None
    return score_key(cache_key, {
        "masks_sha256": spec.masks_sha256, "kind": flow.kind, "frames": len(flow.frames),
        "case_ids": list(flow.case_ids), "patient_ids": list(flow.patient_ids),
        "targets": list(flow.targets), "spacing": flow.spacing,
        "metrics": list(plan.metrics), "metrics_version": METRICS_VERSION,
        "empty_policy": plan.empty_policy, "nsd_tolerance_mm": plan.nsd_tolerance_mm,
        "score_prompted": plan.score_prompted, "protocol": plan.protocol,
        "params": plan.params.model_dump(mode="json"),
        "ledger": sorted(row["hash"] for row in spec.rows), "label": label})


def _store_rows(cache: PredictionCache, key: str, rows_key: str,
                rows: list[dict[str, Any]]) -> None:
    try:
        cache.put_rows(key, rows_key, rows)
    except (OSError, RunError):  # a full or read-only cache costs speed, never a result
        pass


def _store(cache: PredictionCache, key: str, prediction: Any, adapter: str) -> None:
    try:
        cache.put(key, prediction, {"adapter": adapter})
    except (OSError, RunError):  # a full or read-only cache costs speed, never a result
        pass


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB (None where unsupported)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def _gpu_in_use() -> bool:
    # Only a process that already imported torch and initialised CUDA has GPU memory to report.
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


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
