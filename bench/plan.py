"""Resolve a suite of ``bench.toml`` plus command-line choices into a run plan.

The plan is everything that determines a run's results. It is stored in the
run directory, and ``--resume`` refuses to continue a run whose plan differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adapters import create, registered
from bench.config import Config
from bench.errors import ConfigError
from bench.prompts import get_protocol
from bench.readers.cards import Card


@dataclass(frozen=True)
class DatasetRun:
    """One dataset of a run: its card and root (None for generated demo data)."""

    card: Card
    root: Path | None

    @property
    def name(self) -> str:
        return self.card.name


@dataclass(frozen=True)
class RunPlan:
    suite: str
    protocol: str
    protocol_params: dict[str, Any]
    datasets: tuple[DatasetRun, ...]
    models: tuple[str, ...]
    model_settings: dict[str, dict[str, Any]]
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    empty_policy: str
    nsd_tolerance_mm: float
    limit: int | None = None
    skip_bad_cases: bool = False
    description: str = ""
    reproduces: str = ""
    demo: bool = False
    unconfigured: tuple[str, ...] = field(default=())
    # Suite models that cannot run here (missing package or checkpoint): name -> reason.
    skipped_models: dict[str, str] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The JSON-ready fields that define the results (compared on resume)."""
        record = asdict(self)
        record["datasets"] = [
            {"name": d.name, "root": str(d.root) if d.root else None} for d in self.datasets
        ]
        return record


def make_plan(
    config: Config,
    suite_name: str,
    *,
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    limit: int | None = None,
    protocol_params: dict[str, Any] | None = None,
    device: str | None = None,
    random_weights: bool = False,
    checkpoints: dict[str, str] | None = None,
    skip_bad_cases: bool = False,
) -> RunPlan:
    """Build the plan for ``suite_name``; CLI choices override the suite's own.

    When none of the suite's datasets has a root configured, the suite's demo
    datasets stand in for them (``plan.demo`` is then True). ``device``,
    ``random_weights`` and ``checkpoints`` (model -> path) go to the settings
    of the models that need weights. A dataset with unreadable cases is
    refused unless ``skip_bad_cases`` (then they are skipped and listed).
    """
    if suite_name not in config.suites:
        from difflib import get_close_matches

        hint = get_close_matches(suite_name, list(config.suites), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"unknown suite {suite_name!r}{suggestion}; known: {', '.join(config.suites)}"
        )
    suite = config.suites[suite_name]

    configured = [d for d in suite.datasets if _is_demo(config, d) or config.root(d)]
    unconfigured = tuple(d for d in suite.datasets if d not in configured)
    chosen = configured or list(suite.demo)
    if datasets:
        candidates = set(suite.datasets) | set(suite.demo)
        unknown = [d for d in datasets if d not in candidates]
        if unknown:
            raise ConfigError(
                f"dataset(s) {', '.join(unknown)} not in suite {suite_name!r}; "
                f"choose from {', '.join(sorted(candidates))}"
            )
        missing = [d for d in datasets if not (_is_demo(config, d) or config.root(d))]
        if missing:
            raise ConfigError(
                f"dataset(s) {', '.join(missing)} have no root: set [datasets] "
                f"{missing[0]} = \"/path/to/{missing[0]}\" in {config.path}"
            )
        chosen = list(datasets)
    if not chosen:
        raise ConfigError(f"suite {suite_name!r} has no datasets to run")

    run_models = tuple(models) if models else suite.models
    params = {**suite.protocol_params, **(protocol_params or {})}
    get_protocol(suite.protocol).resolve(params, where=f"[suites.{suite_name}.protocol_params]")
    settings = _model_settings(config, run_models, device, random_weights, checkpoints or {})
    skipped = {}
    for model in run_models:
        reason = create(model, settings[model]).unavailable()
        if reason and models:
            raise ConfigError(f"model {model!r} cannot run: {reason}")
        if reason:
            skipped[model] = reason
    run_models = tuple(m for m in run_models if m not in skipped)
    if not run_models:
        raise ConfigError(f"no model of suite {suite_name!r} can run here: "
                          + "; ".join(f"{m}: {r}" for m, r in skipped.items()))
    settings = {m: settings[m] for m in run_models}
    return RunPlan(
        suite=suite_name,
        protocol=suite.protocol,
        protocol_params=params,
        datasets=tuple(DatasetRun(config.cards[d], config.root(d)) for d in chosen),
        models=run_models,
        model_settings=settings,
        seeds=tuple(seeds) if seeds else (suite.seeds or (int(config.defaults["seed"]),)),
        metrics=suite.metrics or tuple(config.defaults["metrics"]),
        empty_policy=suite.empty_policy or str(config.defaults["empty_policy"]),
        nsd_tolerance_mm=float(config.defaults["nsd_tolerance_mm"]),
        limit=limit,
        skip_bad_cases=skip_bad_cases,
        description=suite.description,
        reproduces=suite.reproduces,
        demo=all(_is_demo(config, d) for d in chosen),
        unconfigured=unconfigured,
        skipped_models=skipped,
    )


def _model_settings(config: Config, models: Sequence[str], device: str | None,
                    random_weights: bool, checkpoints: dict[str, str]) -> dict[str, dict]:
    adapters = registered()
    unknown = [m for m in (*models, *checkpoints) if m not in adapters]
    if unknown:
        create(unknown[0])  # raises the registry's error with the nearest name
    settings = {}
    for model in models:
        chosen = dict(config.models.get(model, {}))
        if adapters[model].capabilities.needs_weights:
            if device is not None:
                chosen["device"] = device
            if random_weights:
                chosen["random_weights"] = True
            if model in checkpoints:
                chosen["checkpoint"] = str(Path(checkpoints[model]).resolve())
        elif model in checkpoints:
            raise ConfigError(f"--checkpoint {model}=...: model {model!r} uses no weights")
        settings[model] = chosen
    return settings


def _is_demo(config: Config, dataset: str) -> bool:
    return config.cards[dataset].synthetic
