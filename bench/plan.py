"""Resolve a suite of ``bench.toml`` plus command-line choices into a run plan.

The plan is everything that determines a run's results. It is stored in the
run directory, and ``--resume`` refuses to continue a run whose plan differs.
Every name the user typed (suite, datasets, models, protocol parameters,
seeds, ``--limit``, ``--root``) is checked here, before any work starts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from bench.adapters import create, registered
from bench.config import Config, Suite
from bench.errors import ConfigError, unknown_name
from bench.prompts import alpnet, get_protocol
from bench.prompts.protocols import ProtocolParams, without_k_shot
from bench.readers.cards import Card
from bench.settings import validate


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
    """A run: suite, protocol, datasets x models x seeds, and how they are scored.

    Attributes
    ----------
    params : ProtocolParams
        The protocol's typed parameters (the suite's, overridden by the
        caller's). Those set explicitly, :attr:`protocol_params`, identify the
        run's units.
    model_settings : dict
        Model name -> its ``[models.NAME]`` table plus the command line's
        device and weights choices; each adapter validates its own table.
    """

    suite: str
    protocol: str
    params: ProtocolParams
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
    # Datasets asked for with --datasets that are not in the suite's published list.
    extra_datasets: tuple[str, ...] = field(default=())
    # Suite models that cannot run here (missing package or checkpoint): name -> reason.
    skipped_models: dict[str, str] = field(default_factory=dict)
    # --score-prompted: also score the frames whose answer a prompt gave (status "prompted").
    score_prompted: bool = False

    @property
    def protocol_params(self) -> dict[str, Any]:
        """The protocol parameters set by the suite or the caller, JSON-ready.

        Defaults are left out, so that units keep their keys when a default
        parameter is added.
        """
        return self.params.model_dump(mode="json", exclude_unset=True)

    def identity(self) -> dict[str, Any]:
        """The JSON-ready fields that define the results (compared on resume)."""
        record = copy.deepcopy({f.name: getattr(self, f.name) for f in fields(self)
                                if f.name not in ("params", "datasets")})
        record["protocol_params"] = self.protocol_params
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
    protocol_params: Mapping[str, Any] | None = None,
    device: str | None = None,
    random_weights: bool = False,
    checkpoints: dict[str, str] | None = None,
    skip_bad_cases: bool = False,
    roots: Mapping[str, str | Path] | None = None,
    score_prompted: bool = False,
    prompt_kind: str | None = None,
) -> RunPlan:
    """Build the plan for ``suite_name``; the caller's choices override the suite's own.

    When none of the suite's datasets has a root configured, the suite's demo
    datasets stand in for them (``plan.demo`` is then True). ``device``,
    ``random_weights`` and ``checkpoints`` (model -> path) go to the settings
    of the models that need weights. A dataset with unreadable cases is
    refused unless ``skip_bad_cases`` (then they are skipped and listed).
    ``roots`` (dataset -> folder, ``--root``) override ``[datasets]`` of
    ``bench.toml``; a dataset outside the suite's list runs when named in
    ``datasets`` (``plan.extra_datasets`` lists it). ``score_prompted``
    (``--score-prompted``) keeps the rows of given (prompted) frames, apart
    (:mod:`bench.prompts.scope`). ``prompt_kind`` (``--prompt-kind``) sets the
    protocol's ``prompt_kind`` parameter, so it is part of the plan and the
    units' keys.

    Raises
    ------
    ConfigError
        For an unknown suite, dataset, model or protocol parameter (with the
        nearest valid name), a negative ``limit``, a bad seed, a model
        asked for by name that cannot run here, or a root that is not a folder.
    """
    if suite_name not in config.suites:
        raise unknown_name("suite", suite_name, config.suites, "--suite")
    suite = config.suites[suite_name]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"--limit: expected a non-negative integer, got {limit!r}")
    run_seeds = _choose_seeds(seeds) if seeds else (suite.seeds or (config.defaults.seed,))
    _check_model_names(config, suite, models or (), checkpoints or {})
    protocol_params = dict(protocol_params or {})
    if prompt_kind is not None:
        if "prompt_kind" not in get_protocol(suite.protocol).params.model_fields:
            raise ConfigError(f"--prompt-kind: protocol {suite.protocol!r} of suite "
                              f"{suite_name!r} has no prompt kind to choose")
        protocol_params["prompt_kind"] = prompt_kind
    params = get_protocol(suite.protocol).settings(
        {**suite.protocol_params, **protocol_params},
        where=f"[suites.{suite_name}.protocol_params]")
    roots = _check_roots(config, roots or {})
    chosen, unconfigured = _choose_datasets(config, suite, datasets, roots)

    run_models = _distinct("--models", models) if models else suite.models
    settings = _model_settings(config, run_models, device, random_weights, checkpoints or {},
                               suite_name)
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
    if not any(registered()[m].capabilities.in_context for m in run_models):
        params = without_k_shot(params)  # one-prompt support sets serve in-context models only
    if suite.protocol == alpnet.PROTOCOL:
        _check_alpnet(config, params, chosen, run_models,
                      (*suite.datasets, *suite.demo, *chosen))
    return RunPlan(
        suite=suite_name,
        protocol=suite.protocol,
        params=params,
        datasets=tuple(DatasetRun(config.cards[d], roots.get(d) or config.root(d))
                       for d in chosen),
        models=run_models,
        model_settings={m: settings[m] for m in run_models},
        seeds=run_seeds,
        metrics=suite.metrics or config.defaults.metrics,
        empty_policy=suite.empty_policy or config.defaults.empty_policy,
        nsd_tolerance_mm=config.defaults.nsd_tolerance_mm,
        limit=limit,
        skip_bad_cases=skip_bad_cases,
        description=suite.description,
        reproduces=suite.reproduces,
        demo=all(_is_demo(config, d) for d in chosen),
        unconfigured=unconfigured,
        extra_datasets=tuple(d for d in chosen if d not in (*suite.datasets, *suite.demo)),
        skipped_models=skipped,
        score_prompted=score_prompted,
    )


def _check_alpnet(config: Config, params: ProtocolParams, datasets: Sequence[str],
                  models: Sequence[str], suite_datasets: Sequence[str]) -> None:
    """alpnet-protocol: volumes only, models that can use support slices of another volume
    (or need no prompt), and ``targets`` that the datasets have (each name a target of
    some dataset of the suite, its demo stand-ins included; each dataset run having one)."""
    for model in models:
        caps = registered()[model].capabilities
        if not (caps.in_context or caps.prompt_free):
            in_context = sorted(m for m, a in registered().items()
                                if a.capabilities.in_context and not a.hidden)
            raise ConfigError(
                f"model {model!r} cannot run {alpnet.PROTOCOL}: the protocol gives no prompt "
                f"in the query volume, only support slices of another volume, which only "
                f"in-context models ({', '.join(in_context)}) use; saved masks (predictions) "
                f"and the constant baselines need none. Run {model!r} under another protocol")
    for name in datasets:
        if config.cards[name].kind != "volume":
            raise ConfigError(f"dataset {name!r} holds image flows; {alpnet.PROTOCOL} scores "
                              "volumes (support and query slices of 3D scans)")
    wanted = getattr(params, "targets", None)
    if wanted:
        have = {name: set(config.cards[name].targets) for name in datasets}
        known = {t for name in suite_datasets for t in config.cards[name].targets}
        unknown = [t for t in wanted if t not in known]
        if unknown:
            raise ConfigError(f"{alpnet.PROTOCOL} targets: {unknown[0]!r} is not a target of "
                              f"dataset(s) {', '.join(dict.fromkeys(suite_datasets))}")
        for name, targets in have.items():
            if not targets & set(wanted):
                raise ConfigError(f"{alpnet.PROTOCOL} targets: dataset {name!r} has none of "
                                  f"{', '.join(wanted)} (its targets: "
                                  f"{', '.join(config.cards[name].targets)})")


def _distinct(flag: str, values: Sequence[Any]) -> tuple[Any, ...]:
    # A repeated dataset, model or seed would make two units with one key.
    for index, value in enumerate(values):
        if value in values[:index]:
            raise ConfigError(f"{flag}: {value!r} is listed twice")
    return tuple(values)


def _choose_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"--seed/--seeds: expected non-negative integers, got {seed!r}")
    return _distinct("--seed/--seeds", seeds)


def _check_model_names(config: Config, suite: Suite, models: Sequence[str],
                       checkpoints: Mapping[str, str]) -> None:
    """Every model name typed anywhere must be a registered adapter."""
    known = registered()
    where = config.path.name
    for names, place in ((models, "--models"), (checkpoints, "--checkpoint"),
                         (suite.models, f"{where}: [suites.{suite.name}].models"),
                         (suite.model_settings, f"{where}: [suites.{suite.name}.model_settings]"),
                         (config.models, f"{where}: [models]")):
        for name in names:
            if name not in known:
                raise unknown_name("model", name, known, place)


def parse_roots(items: Sequence[str]) -> dict[str, Path]:
    """``["NAME=PATH", ...]`` (``--root``) -> {NAME: PATH}; a repeated NAME is refused."""
    roots: dict[str, Path] = {}
    for item in items:
        name, sep, path = (part.strip() for part in item.partition("="))
        if not sep or not name or not path:
            raise ConfigError(f"--root: expected NAME=PATH, got {item!r}")
        if name in roots:
            raise ConfigError(f"--root: dataset {name!r} is given twice")
        roots[name] = Path(path)
    return roots


def _check_roots(config: Config, roots: Mapping[str, str | Path]) -> dict[str, Path]:
    """Every ``--root`` names a card that reads files and an existing folder."""
    checked = {}
    for name, path in roots.items():
        if name not in config.cards:
            raise unknown_name("dataset", name, config.cards, "--root")
        if _is_demo(config, name):
            raise ConfigError(f"--root {name}=...: {name!r} is generated demo data and "
                              "reads no folder")
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"--root {name}={path}: no such folder")
        checked[name] = folder.resolve()
    return checked


def _choose_datasets(config: Config, suite: Suite, datasets: Sequence[str] | None,
                     roots: Mapping[str, Path]) -> tuple[list[str], tuple[str, ...]]:
    """The datasets to run and the suite's datasets left out for want of a root."""
    def runnable(name: str) -> bool:
        return _is_demo(config, name) or bool(roots.get(name) or config.root(name))

    configured = [d for d in suite.datasets if runnable(d)]
    unconfigured = tuple(d for d in suite.datasets if d not in configured)
    if datasets:
        unconfigured = ()  # the user named what to run: the suite's others are not skipped
        for name in datasets:
            if name not in config.cards:
                raise unknown_name("dataset", name, config.cards, "--datasets")
        chosen = list(_distinct("--datasets", datasets))
    else:
        chosen = configured or list(suite.demo)
        if not chosen:
            raise ConfigError(f"suite {suite.name!r} has no datasets to run")
    # A root for a dataset the run leaves out would be silently ignored.
    unused = [name for name in roots if name not in chosen]
    if unused:
        raise ConfigError(f"--root {unused[0]}=...: dataset {unused[0]!r} is not part of this "
                          f"run of suite {suite.name!r}; add --datasets {unused[0]} to run it")
    missing = [d for d in chosen if not runnable(d)]
    if missing:
        where = ("" if config.builtin else
                 f"set [datasets] {missing[0]} = \"/path/to/{missing[0]}\" in {config.path} or ")
        raise ConfigError(f"dataset(s) {', '.join(missing)} have no root: {where}pass "
                          f"--root {missing[0]}=PATH")
    return chosen, unconfigured


def _model_settings(config: Config, models: Sequence[str], device: str | None,
                    random_weights: bool, checkpoints: dict[str, str],
                    suite: str | None = None) -> dict[str, dict]:
    adapters = registered()
    settings = {}
    for model in models:
        chosen = config.model_settings(model, suite)
        if suite is not None and model in config.suites[suite].model_settings:
            # A bad value set for this suite is named in its table, not in [models.MODEL].
            validate(adapters[model].Options, chosen, f"{config.path.name}: "
                     f"[suites.{suite}.model_settings.{model}] over [models.{model}]")
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
