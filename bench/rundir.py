"""The run directory: its layout, and every read and write of its files.

Layout (DESIGN section 6)::

    config.json          the plan, the dataset cards, package versions, git state, seeds,
                         adapter fingerprints, executor, shard; resumes and merges
    prompts.jsonl        the prompt ledger (:mod:`bench.prompts.ledger`), written before
                         any model runs
    manifest.json        flows read per dataset (and read failures)
    units/KEY.json       one completed unit (:class:`UnitRecord`): its tidy rows,
                         timings and memory
    predictions/...      masks (:mod:`bench.store`: PNG per image, NIfTI per volume and
                         target)
    logs/KEY.txt         traceback of a failed unit
    metrics.csv          tidy per-case table of every unit (:data:`METRICS_COLUMNS`: the
                         unit rows' :data:`TIDY_COLUMNS` and the ``random_weights`` stamp)
    units.csv            one row per unit (:data:`UNIT_COLUMNS`)
    summary.json         aggregates with counts and intervals (:mod:`bench.report`)
    report.md, report.html, report.tex, figures/   the report

A unit is one (dataset, flow, model, protocol, parameters, seed), named by
:func:`unit_key`; :meth:`RunDir.expected_units` lists every unit of a run from
its stored plan and manifest (resume, shards and merge use it). Every write is
atomic (:mod:`bench.atomic`). The report, ``bench prompts`` and the gallery
read everything they need from here, the dataset cards included: never from the
``bench.toml`` of the working directory.

Readers of derived files check them first: ``metrics.csv`` must be exactly the
table of ``units/`` (:meth:`RunDir.check_metrics`), a unit file must hold the
unit its name says, and a damaged JSON file is a DataError naming it.

(Over 500 lines on purpose: this class is the single owner of the run
directory's layout, reads, writes and consistency checks; splitting it would
scatter that ownership.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import atomic
from bench.cache import DIGEST_VERSION, flow_frames_digest, masks_digest
from bench.errors import DataError, RunError
from bench.prompts import ledger
from bench.provenance import provenance, timestamp
from bench.readers import read_flow
from bench.readers.cards import Card, card_from_table, card_to_table
from bench.store import prediction_folder
from bench.types import Flow

CONFIG = "config.json"
MANIFEST = "manifest.json"
LEDGER = "prompts.jsonl"
METRICS = "metrics.csv"
UNIT_TABLE = "units.csv"
SUMMARY = "summary.json"
REPORT_NAMES = {"md": "report.md", "html": "report.html", "tex": "report.tex"}

# ``click`` is empty except for interactive runs, where it numbers the Dice after each click.
TIDY_COLUMNS = ["dataset", "flow", "case", "patient", "target", "model", "protocol", "seed",
                "metric", "value", "status", "message", "click"]
# metrics.csv adds one column to the unit rows: True on every row of a model that ran with
# randomly initialised weights (--random-weights), so that no row of a smoke test can be taken
# for a result once the table leaves its run directory (:func:`random_weight_models`).
RANDOM_WEIGHTS = "random_weights"
METRICS_COLUMNS = [*TIDY_COLUMNS, RANDOM_WEIGHTS]
# ``step`` numbers the steps of a cvpr25-interactive session (0: the box, 1-5: the clicks) on
# its per-step rows. The column is there only in the tables of runs that have such rows, so
# the tables of the other protocols are unchanged.
STEP = "step"
STEP_COLUMNS = [*TIDY_COLUMNS, STEP, RANDOM_WEIGHTS]
UNIT_COLUMNS = ["key", "dataset", "flow", "model", "seed", "status", "attempts", "restarts",
                "cache", "seconds", "peak_rss_mb", "rss_growth_mb", "gpu_peak_mb", "worker",
                "message", "notes"]
# Parts of config.json that a resumed run must share with the run it continues.
RESUME_KEYS = ("plan", "cards", "shard")
# Parts of the plan a resumed run may change: each unit records the adapter's digest
# (options, checkpoint sha256) and units whose adapter changed are recomputed.
PER_UNIT_PLAN_KEYS = ("model_settings",)


def unit_key(dataset: str, flow: str, model: str, protocol: str,
             protocol_params: Mapping[str, Any], seed: int) -> str:
    """Stable identifier of one (flow, model, protocol, seed) unit of work."""
    identity = json.dumps([dataset, flow, model, protocol, protocol_params, seed],
                          sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:20]


def random_weight_models(config: Mapping[str, Any]) -> list[str]:
    """The models of a run record (``config.json``) that ran with random initial weights.

    A model is stamped when its plan settings say ``random_weights`` (what
    ``--random-weights`` sets on every model with weights) or its recorded
    fingerprint says ``meaningless``. A resumed run reruns every unit whose
    adapter changed, so the record's current settings hold for all its units.
    """
    plan = config.get("plan", {})
    settings = plan.get("model_settings", {}) if isinstance(plan, Mapping) else {}
    adapters = config.get("adapters", {})
    chosen = {model for model, entry in settings.items()
              if isinstance(entry, Mapping) and entry.get("random_weights")}
    chosen |= {model for model, entry in adapters.items()
               if isinstance(entry, Mapping) and entry.get("meaningless")}
    # An in-context model's rows are labelled per support set size (MODEL@kK, one-prompt k_shot).
    k_shot = (plan.get("protocol_params") or {}).get("k_shot") if isinstance(plan, Mapping) \
        else None
    in_context = {model for model, entry in adapters.items()
                  if isinstance(entry, Mapping) and entry.get("in_context")}
    chosen |= {f"{model}@k{k}" for model in chosen & in_context
               for k in (k_shot if isinstance(k_shot, list) else [k_shot] if k_shot else [])}
    return sorted(chosen)


def format_notes(notes: Mapping[str, Any]) -> str:
    """A unit's ``notes`` as one ``units.csv`` cell: ``key=value; ...`` in key order."""
    return "; ".join(f"{key}={notes[key]}" for key in sorted(notes))


@dataclass(frozen=True)
class UnitRef:
    """One unit of a run as the index lists it."""

    key: str
    dataset: str
    flow: str
    model: str
    seed: int


@dataclass(frozen=True)
class UnitRecord:
    """A completed unit, as stored in ``units/KEY.json``.

    ``status`` is ``ok`` or ``error`` (then ``message`` says why and ``rows``
    hold one ``error`` row per case, target and metric). ``rows`` are tidy
    rows (:data:`TIDY_COLUMNS`). ``cache`` is ``hit``, ``miss`` or ``off``
    (:mod:`bench.cache`). ``seconds``, ``attempts``, ``restarts``, the memory
    fields and ``worker`` describe how the unit ran (see :mod:`bench.units`),
    not its result. ``inputs`` are the digests of what the result depends on
    (:func:`bench.units.unit_inputs`); a resumed run recomputes a unit whose
    inputs changed. ``notes`` are what the adapter chose for this unit
    (:meth:`bench.adapters.base.Adapter.unit_notes`, e.g. ``medsam2``'s
    memory), written to ``units.csv`` as ``key=value; ...``.
    """

    key: str
    dataset: str
    flow: str
    model: str
    protocol: str
    seed: int
    status: str
    message: str = ""
    scores: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    cache: str = "off"
    seconds: float | None = None
    attempts: int = 1
    restarts: int = 0
    peak_rss_mb: float | None = None
    rss_growth_mb: float | None = None
    gpu_peak_mb: float | None = None
    worker: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    # cvpr25-interactive: the clicks made (a result) and the model's seconds per step (not one).
    # Written only when not empty, so other protocols' unit files are unchanged.
    clicks: list[dict[str, Any]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    # The fields that are the unit's result; the others may differ between two
    # runs of the same unit (timings, memory, worker, attempts, cache use).
    RESULT_FIELDS = ("key", "dataset", "flow", "model", "protocol", "seed", "status",
                     "message", "scores", "rows", "inputs", "notes", "clicks")
    OPTIONAL_FIELDS = ("clicks", "step_seconds")

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        return {name: value for name, value in record.items()
                if value or name not in self.OPTIONAL_FIELDS}

    @classmethod
    def from_json(cls, data: Any, where: str) -> UnitRecord:
        """A record from the JSON of a unit file; DataError naming ``where`` if it is not one."""
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        if not isinstance(data, dict):
            raise DataError(where, "not a unit record (expected a JSON object)")
        unknown, missing = sorted(set(data) - names), sorted(required - set(data))
        if unknown or missing:
            raise DataError(where, f"not a unit record: {'unknown' if unknown else 'missing'} "
                            f"field(s) {', '.join(unknown or missing)}")
        if isinstance(data.get("rows"), list):  # strict JSON: a NaN score was written as null
            data = {**data, "rows": [{**row, "value": atomic.nan_for_null(row["value"])}
                                     if isinstance(row, dict) and "value" in row else row
                                     for row in data["rows"]]}
        return cls(**data)

    def result(self) -> str:
        """The canonical text of the result fields (to compare two runs of one unit)."""
        record = self.to_json()
        return json.dumps({name: record[name] for name in self.RESULT_FIELDS if name in record},
                          sort_keys=True)


class RunDir:
    """A run directory at ``path``: its file layout and typed reads and writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ layout

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def ledger_path(self) -> Path:
        return self.path / LEDGER

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def unit_table_path(self) -> Path:
        return self.path / UNIT_TABLE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    def unit_path(self, key: str) -> Path:
        return self.path / "units" / f"{key}.json"

    def log_path(self, key: str) -> Path:
        return self.path / "logs" / f"{key}.txt"

    def prediction_folder(self, model: str, seed: int, dataset: str) -> Path:
        """Where the predictions of ``model`` for ``dataset`` under ``seed`` are written."""
        return prediction_folder(self.path, model, seed, dataset)

    def report_path(self, fmt: str) -> Path:
        """The report file of format ``fmt`` (``md``, ``html`` or ``tex``)."""
        return self.path / REPORT_NAMES[fmt]

    def is_empty(self) -> bool:
        """True when the folder does not exist or holds nothing (a file is not empty)."""
        return not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir()))

    def abandon(self, created: bool) -> None:
        """Undo :meth:`begin` of a new run stopped before any unit ran.

        Removes the record, the ledger and the manifest (and temporaries), and
        the folder itself when this run ``created`` it and it is then empty,
        so that the same ``--out`` can be used again without ``--resume``.
        """
        for name in (CONFIG, LEDGER, MANIFEST):
            (self.path / name).unlink(missing_ok=True)
        atomic.remove_partials(self.path)
        if created and self.is_empty() and self.path.exists():
            self.path.rmdir()

    # ------------------------------------------------------------------ config

    def read_config(self) -> dict[str, Any]:
        return self._read_json(self.config_path)

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic.write_json(self.config_path, dict(config))

    def read_plan(self) -> dict[str, Any]:
        """The stored plan record (:meth:`bench.plan.RunPlan.identity`)."""
        config = self.read_config()
        if "plan" not in config:
            raise DataError(self.config_path, "no 'plan': not the config of a run")
        return config["plan"]

    def read_cards(self) -> dict[str, Card]:
        """The dataset cards the run was made with, by name (empty when none are recorded)."""
        tables = self.read_config().get("cards", {})
        return {name: card_from_table(table, f"{self.config_path}: cards.{name}")
                for name, table in tables.items()}

    def begin(self, fixed: Mapping[str, Any], record: Mapping[str, Any], *,
              resume: bool) -> None:
        """Start the run's record, or check that a resumed run is the run stored here.

        Parameters
        ----------
        fixed : mapping
            :data:`RESUME_KEYS` (``plan``, ``cards``, ``shard``): what defines
            the run. A resumed run must have the same.
        record : mapping
            This attempt's facts (command line, executor): stored in the new
            record, or appended to ``resumed`` with the time.

        Raises
        ------
        RunError
            The folder holds files but ``resume`` is false; it is not a run
            directory; or the stored run differs from ``fixed``.
        """
        current = json.loads(json.dumps(dict(fixed)))
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path}: --out is a file, not a folder; name a new or "
                           "empty folder")
        if self.is_empty():
            self.write_config({**current, "provenance": provenance(), "started": timestamp(),
                               **record})
            return
        if not resume:
            raise RunError(f"{self.path} is not empty: pass --resume to continue it, or "
                           "another --out")
        if not self.config_path.exists():
            raise RunError(f"{self.path} has no {CONFIG}: not a run directory")
        stored = self.read_config()
        self._check_same_run(stored, current)
        removed = atomic.remove_partials(self.path)
        attempt = {"time": timestamp(), **record}
        for name in PER_UNIT_PLAN_KEYS:
            if stored["plan"].get(name) != current["plan"].get(name):
                attempt[f"{name}_before"] = stored["plan"].get(name)
                stored["plan"][name] = current["plan"].get(name)
        if removed:
            attempt["partials_removed_on_resume"] = removed
        stored.setdefault("resumed", []).append(attempt)
        self.write_config(stored)

    def _check_same_run(self, stored: Mapping[str, Any], current: Mapping[str, Any]) -> None:
        old, new = stored.get("plan", {}), current["plan"]
        changed = sorted(k for k in set(old) | set(new)
                         if old.get(k) != new.get(k) and k not in PER_UNIT_PLAN_KEYS)
        if changed:
            raise RunError(f"cannot resume {self.path}: the plan differs in "
                           f"{', '.join(changed)}; start a new run with another --out")
        if stored.get("shard") != current["shard"]:
            raise RunError(f"cannot resume {self.path}: it holds shard "
                           f"{stored.get('shard') or 'none (all units)'}, not "
                           f"{current['shard'] or 'all units'}")
        old, new = stored.get("cards", {}), current["cards"]
        cards = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if cards:
            raise RunError(f"cannot resume {self.path}: the dataset card(s) of "
                           f"{', '.join(cards)} differ from those the run started with; "
                           "start a new run with another --out")

    def record(self, **entries: Any) -> None:
        """Add or replace top-level entries of ``config.json`` (e.g. ``adapters``)."""
        self.write_config({**self.read_config(), **entries})

    def record_adapters(self, fingerprints: Mapping[str, Mapping[str, Any]]) -> None:
        """Store the adapters' fingerprints as ``adapters``, and keep every earlier one.

        ``adapters_history`` lists, per model, each distinct fingerprint any
        attempt of the run used (so every checkpoint sha256 that contributed
        to a unit stays on record).
        """
        config = self.read_config()
        plain = json.loads(json.dumps(dict(fingerprints), default=str))
        history = config.get("adapters_history", {})
        for name, fingerprint in plain.items():
            if fingerprint not in history.setdefault(name, []):
                history[name].append(fingerprint)
        self.write_config({**config, "adapters": plain, "adapters_history": history})

    def record_resume(self, **entries: Any) -> None:
        """Add entries to this attempt's record in ``resumed`` (e.g. units recomputed)."""
        config = self.read_config()
        if config.get("resumed"):
            config["resumed"][-1].update(entries)
            self.write_config(config)

    # -------------------------------------------------------- manifest, ledger

    def read_manifest(self) -> dict[str, Any]:
        return self._read_json(self.manifest_path)

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        atomic.write_json(self.manifest_path, dict(manifest))

    def read_ledger(self) -> list[dict[str, Any]]:
        """The prompt ledger, every row's fields and hash checked (the one ledger parser)."""
        return ledger.read_ledger(self.ledger_path)

    def keep_ledger(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write the ledger; when one exists (a resume), check it holds exactly ``rows``.

        Raises
        ------
        RunError
            The stored ledger differs: the completed units used other prompts.
        """
        if not self.ledger_path.exists():
            ledger.write_ledger(self.ledger_path, rows)
        elif ledger.dumps_ledger(rows) != self.ledger_path.read_bytes():
            raise RunError(f"{self.ledger_path} differs from the prompts derived now; the data "
                           "or the protocol changed since the run started: start a new run")

    def read_flow(self, dataset: str, flow_id: str,
                  listings: dict[tuple[str, str], Any] | None = None) -> Flow:
        """Read one flow of the run again from its recorded card and root, checked.

        Raises
        ------
        DataError
            The dataset or flow is not part of the run, its card is not
            recorded, or the frames read now differ from those the prompt
            ledger was derived from.
        """
        roots = {d["name"]: d["root"] for d in self.read_plan()["datasets"]}
        if dataset not in roots:
            raise DataError(self.config_path, f"dataset {dataset!r} is not part of this run")
        cards = self.read_cards()
        if dataset not in cards:
            raise DataError(self.config_path, f"no dataset card {dataset!r} recorded")
        manifest = self.read_manifest()
        if manifest.get("digest_version", 1) != DIGEST_VERSION:
            raise DataError(self.manifest_path, "written by another version of medsam2-bench "
                            f"(frame digests v{manifest.get('digest_version', 1)}, this one "
                            f"v{DIGEST_VERSION}): its flows cannot be checked against the data; "
                            "run the suite again to re-read them")
        entry = manifest["datasets"].get(dataset, {})
        listed = next((f for f in entry.get("flows", []) if f["id"] == flow_id), None)
        if listed is None:
            raise DataError(self.manifest_path,
                            f"flow {flow_id!r} is not part of dataset {dataset!r} in this run")
        root = Path(roots[dataset]) if roots[dataset] else None
        flow = read_flow(cards[dataset], root, flow_id, listed["position"],
                         self.read_plan()["limit"], listings)
        check_frames(flow, listed["frames_sha256"], listed.get("masks_sha256", ""))
        return flow

    # ------------------------------------------------------------------- units

    def unit_paths(self) -> list[Path]:
        """The files of the completed units, sorted (never a partial write)."""
        return sorted(p for p in (self.path / "units").glob("*.json")
                      if atomic.PARTIAL_MARK not in p.name)

    def unit_keys(self) -> set[str]:
        """Keys of the completed units."""
        return {path.stem for path in self.unit_paths()}

    def read_unit(self, path: Path) -> UnitRecord:
        unit = UnitRecord.from_json(self._read_json(path), str(path))
        if unit.key != Path(path).stem:
            raise DataError(path, f"holds unit {unit.key}, not the unit its name says")
        return unit

    def write_unit(self, unit: UnitRecord) -> None:
        atomic.write_json(self.unit_path(unit.key), unit.to_json())

    def write_log(self, key: str, text: str) -> None:
        atomic.write_text(self.log_path(key), text)

    def output_files(self) -> list[Path]:
        """The files of ``predictions/`` and ``logs/``, sorted (never a partial write)."""
        return [path for folder in ("predictions", "logs")
                for path in sorted((self.path / folder).rglob("*"))
                if path.is_file() and atomic.PARTIAL_MARK not in path.name]

    def expected_units(self) -> list[UnitRef]:
        """Every unit of the run, in run order (dataset, flow, seed, model).

        From the stored plan and manifest, so that shards and merges agree on
        the units without the plan object.
        """
        plan, manifest = self.read_plan(), self.read_manifest()
        units = []
        for dataset in plan["datasets"]:
            name = dataset["name"]
            if name not in manifest["datasets"]:
                raise DataError(self.manifest_path, f"no entry for dataset {name!r} of the plan")
            entry = manifest["datasets"][name]
            if entry["refused"]:
                continue
            for flow in entry["flows"]:
                for seed in plan["seeds"]:
                    for model in plan["models"]:
                        key = unit_key(name, flow["id"], model, plan["protocol"],
                                       plan["protocol_params"], seed)
                        units.append(UnitRef(key, name, flow["id"], model, seed))
        return units

    def missing_units(self) -> list[UnitRef]:
        """Units of the plan with no unit file (an interrupted run, or a shard).

        Empty for a run without unit files (a table written by hand).
        """
        done = self.unit_keys()
        if not done:
            return []
        return [unit for unit in self.expected_units() if unit.key not in done]

    # ------------------------------------------------------------------ tables

    def collect_metrics(self) -> pd.DataFrame:
        """The tidy per-case table of every completed unit, in a canonical order.

        Columns :data:`METRICS_COLUMNS`: the unit rows, and ``random_weights``
        from the run record (:func:`random_weight_models`; all False without
        ``config.json``).
        """
        rows: list[dict[str, Any]] = []
        for path in self.unit_paths():
            rows.extend(self.read_unit(path).rows)
        stepped = any(row.get(STEP) is not None for row in rows)
        table = pd.DataFrame(rows, columns=[*TIDY_COLUMNS, STEP] if stepped else TIDY_COLUMNS)
        table["click"] = table["click"].astype("Int64")
        if stepped:
            table[STEP] = table[STEP].astype("Int64")
        stamped = (random_weight_models(self.read_config()) if self.config_path.exists()
                   else [])
        table[RANDOM_WEIGHTS] = table["model"].isin(stamped).astype(bool)
        return table.sort_values(
            ["dataset", "model", "seed", "flow", "case", "target", "metric", "click",
             *([STEP] if stepped else [])],
            kind="stable").reset_index(drop=True)

    def write_metrics(self) -> pd.DataFrame:
        """Write ``metrics.csv`` (:meth:`collect_metrics`) and return the table."""
        table = self.collect_metrics()
        _write_csv(self.metrics_path, table)
        return table

    def read_metrics(self) -> pd.DataFrame:
        """The tidy table of the run (``metrics.csv``), with empty messages as ''.

        The table is checked first (:meth:`check_metrics`): every reader of
        a run (report, check, compare) refuses a truncated or edited table.
        A table without the ``random_weights`` column (written before it
        existed, or by hand) gets it from the run record (all False without
        one).
        """
        self.check_metrics()
        try:
            table = pd.read_csv(self.metrics_path, keep_default_na=False, na_values=[""],
                                dtype={"case": str, "patient": str, "flow": str,
                                       "message": str, "target": str, "dataset": str,
                                       "model": str})
        except (ValueError, pd.errors.ParserError) as err:
            raise DataError(self.metrics_path, f"not a metrics table ({_one_line(err)})") \
                from None
        if list(table.columns) not in (TIDY_COLUMNS, METRICS_COLUMNS, STEP_COLUMNS):
            raise DataError(self.metrics_path, "not a metrics table: its columns are "
                            f"{', '.join(map(str, table.columns))}")
        table["message"] = table["message"].fillna("")
        if RANDOM_WEIGHTS not in table.columns:
            stamped = (random_weight_models(self.read_config()) if self.config_path.exists()
                       else [])
            table[RANDOM_WEIGHTS] = table["model"].isin(stamped)
        elif not table[RANDOM_WEIGHTS].isin([True, False]).all():
            raise DataError(self.metrics_path, f"column {RANDOM_WEIGHTS}: expected True or "
                            "False in every row")
        table[RANDOM_WEIGHTS] = table[RANDOM_WEIGHTS].astype(bool)
        return table

    def check_metrics(self) -> None:
        """Raise DataError unless ``metrics.csv`` is exactly the table of ``units/``.

        A run's table is derived from its unit files (:meth:`write_metrics`);
        a table that differs (truncated, edited, or older than the units) is
        refused, as is a unit file that is no unit of the stored plan. A table
        without unit files (written by hand) is taken as it is.
        """
        if not self.metrics_path.exists():
            raise DataError(self.metrics_path,
                            f"no metrics table; is {self.path} a finished run?")
        paths = self.unit_paths()
        if not paths:
            return
        if self.config_path.exists() and self.manifest_path.exists():
            expected = {unit.key for unit in self.expected_units()}
            for path in paths:
                if path.stem not in expected:
                    raise DataError(path, "not a unit of this run's plan and manifest")
        stored = self.metrics_path.read_bytes().decode("utf-8", errors="replace")
        rebuilt_table = self.collect_metrics()
        if stored.split("\n", 1)[0].rstrip("\r") == ",".join(TIDY_COLUMNS):
            # Written before the random_weights column: compared without it.
            rebuilt_table = rebuilt_table[TIDY_COLUMNS]
        rebuilt = rebuilt_table.to_csv(index=False, float_format="%.10g")
        if stored != rebuilt:
            have, want = stored.count("\n") - 1, rebuilt.count("\n") - 1
            raise DataError(self.metrics_path, f"does not match the {len(paths)} unit file(s) "
                            f"in units/ ({max(have, 0)} rows, the units hold {want}): "
                            "truncated, edited or stale; rerun `bench run --resume --out "
                            f"{self.path}` to rebuild it")

    def unit_table(self) -> pd.DataFrame:
        """One row per completed unit: status, attempts, cache use, wall time and memory."""
        records = []
        for path in self.unit_paths():
            unit = self.read_unit(path).to_json()
            unit["notes"] = format_notes(unit["notes"])
            records.append({column: unit[column] for column in UNIT_COLUMNS})
        table = pd.DataFrame(records, columns=UNIT_COLUMNS)
        return table.sort_values(["dataset", "model", "seed", "flow"], kind="stable") \
            .reset_index(drop=True)

    def write_unit_table(self) -> Path:
        """Write ``units.csv`` (:meth:`unit_table`)."""
        _write_csv(self.unit_table_path, self.unit_table())
        return self.unit_table_path

    def read_unit_table(self) -> pd.DataFrame | None:
        """``units.csv``, or None when the run has none (e.g. written by hand)."""
        if not self.unit_table_path.exists():
            return None
        return pd.read_csv(self.unit_table_path)

    # --------------------------------------------------------- summary, report

    def read_summary(self) -> dict[str, Any]:
        return self._read_json(self.summary_path)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        atomic.write_json(self.summary_path, dict(summary))

    def write_report(self, fmt: str, text: str) -> Path:
        path = self.report_path(fmt)
        atomic.write_text(path, text)
        return path

    # ----------------------------------------------------------------- helpers

    def _read_json(self, path: Path) -> Any:
        if not path.is_file():
            raise DataError(path, f"not found: is {self.path} a run directory?")
        try:
            return atomic.read_json(path)
        except json.JSONDecodeError as err:
            raise DataError(path, f"invalid JSON ({err.msg}, line {err.lineno})") from None
        except UnicodeDecodeError:
            raise DataError(path, "invalid JSON (not UTF-8 text)") from None


def card_record(card: Card) -> dict[str, Any]:
    """The card as ``config.json`` records it, to be rebuilt by :meth:`RunDir.read_cards`.

    Unset optional fields (None) are left out, as in a card file (TOML has no
    null), so that the record validates like the card file did.
    """
    return {key: value for key, value in card_to_table(card).items() if value is not None}


def check_frames(flow: Flow, expected_sha256: str, masks_sha256: str = "") -> None:
    """Raise DataError unless ``flow``'s frames (and masks, when a digest is given) are
    those the ledger was derived from."""
    if flow_frames_digest(flow.frames, flow.source_frames) != expected_sha256:
        raise DataError(f"{flow.dataset}/{flow.id}", "its frames differ from those read when "
                        "the prompt ledger was written (did the data change?)")
    if masks_sha256 and masks_digest(flow.masks) != masks_sha256:
        raise DataError(f"{flow.dataset}/{flow.id}", "its masks differ from those read when "
                        "the prompt ledger was written (did the data change?)")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic.atomic_path(path) as temp:
        table.to_csv(temp, index=False, float_format="%.10g")
