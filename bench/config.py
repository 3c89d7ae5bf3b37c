"""``bench.toml``: suites, dataset roots, model settings and defaults.

The file is declared once, by the settings models below: :class:`BenchToml`
(the top level), :class:`Defaults` (``[defaults]``) and :class:`Suite`
(``[suites.NAME]``; its ``protocol_params`` are the protocol's own model in
:mod:`bench.prompts.protocols`). It is validated on load: an unknown key, a
value of the wrong type, an unknown protocol, metric or dataset name is one
:class:`~bench.errors.ConfigError` line naming the key (with the nearest valid
name), never a silent default. ``[models.NAME]`` tables belong to the adapters:
each adapter validates its own table when it is created (:func:`bench.adapters.create`).
:func:`settings_reference` lists every key for help and docs.

Which file and which cards (:func:`load_config`): ``--config FILE``, else
``bench.toml`` in the working directory or a parent, else the built-in
default (:mod:`bench.resources`), whose relative paths resolve against the
working directory. Cards: the ``--cards`` folders in order, then ``./cards``,
then ``datasets/`` beside the active ``bench.toml``, then the built-in cards;
the first card of a name wins, and one that hides a different card of the
same name is reported in :attr:`Config.notices` (printed by every command and
recorded in a run's ``config.json``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, model_validator

from bench import resources
from bench.errors import ConfigError, unknown_name
from bench.metrics import METRIC_NAMES
from bench.prompts.protocols import PROTOCOLS, ProtocolName, get_protocol
from bench.readers.cards import Card, card_to_table, load_cards
from bench.settings import Items, Settings, read_toml, table_reference, validate

CONFIG_NAME = resources.CONFIG_NAME
# Cards of the working directory: `bench datasets new` writes there without a bench.toml.
USER_CARDS_FOLDER = "cards"

#: A metric name: those :func:`bench.metrics.score_case` computes.
MetricName = Literal[METRIC_NAMES]  # type: ignore[valid-type]
#: How cases with both masks empty are scored (:class:`bench.metrics.EmptyPolicy`).
EmptyChoice = Literal["exclude", "one"]
Seed = Annotated[int, Field(ge=0)]


def _distinct(values: tuple[Any, ...]) -> tuple[Any, ...]:
    # A repeated dataset, model or seed would make two units with one key.
    for index, value in enumerate(values):
        if value in values[:index]:
            raise ValueError(f"{value!r} is listed twice")
    return values


Names = Annotated[Items[str], AfterValidator(_distinct)]
Metrics = Annotated[Items[MetricName], AfterValidator(_distinct)]
Seeds = Annotated[Items[Seed], AfterValidator(_distinct)]


class Defaults(Settings):
    """``[defaults]``: what every suite uses unless it says otherwise."""

    seed: Seed = Field(0, description="seed of the prompt ledger's keyed random streams "
                       "(a suite's seeds win)")
    out: str = Field("runs", description="run directories go to OUT/SUITE/TIMESTAMP, relative "
                     "to bench.toml (to the working directory for the built-in default)")
    metrics: Metrics = Field(("dice", "iou", "hd95"), min_length=1,
                             description="metrics scored (a suite's metrics win)")
    empty_policy: EmptyChoice = Field(
        "exclude", description="cases whose prediction and reference are both empty: "
        "'exclude' them from means, or score them 'one' (the official code)")
    nsd_tolerance_mm: float = Field(2.0, ge=0, allow_inf_nan=False,
                                    description="tolerance of the NSD metric, in mm")
    cache_dir: str = Field("", description='prediction cache folder, relative to bench.toml; '
                           '"" = the default (MEDSAM2_BENCH_CACHE wins)')

    # Read access by key for bench/cli.py until it reads attributes; then delete both.
    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


class Suite(Settings):
    """``[suites.NAME]``: a named benchmark suite, datasets x models under one protocol."""

    description: str = Field("", description="one line for `bench list suites` and reports")
    reproduces: str = Field("", description="what it reproduces (e.g. 'Table 1'), for reports")
    protocol: ProtocolName = Field(description="the prompt protocol (`bench list protocols`)")
    protocol_params: dict[str, Any] = Field(
        default_factory=dict, description="the protocol's parameters (the tables "
        "suites.NAME.protocol_params of each protocol below)")
    datasets: Names = Field(min_length=1, description="dataset cards it runs (those with a "
                            "root under [datasets])")
    demo: Names = Field((), description="built-in demo cards that stand in when none of its "
                        "datasets has a root")
    models: Names = Field(min_length=1, description="models (adapters) it runs; those that "
                          "cannot run here are skipped with the reason")
    metrics: Metrics = Field((), description="metrics scored; empty: [defaults] metrics")
    seeds: Seeds = Field((), description="seeds; empty: [defaults] seed")
    empty_policy: EmptyChoice | None = Field(None, description="both-empty cases; none: "
                                             "[defaults] empty_policy")
    model_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="[suites.NAME.model_settings.MODEL]: settings of "
        "model MODEL in this suite only, over its [models.MODEL] table (e.g. the "
        "official-code suite's medsam2 click_order); recorded in the run's plan")

    _name: str = PrivateAttr("")

    @property
    def name(self) -> str:
        """The suite's key in ``[suites]``."""
        return self._name


class BenchToml(Settings):
    """The top level of ``bench.toml``."""

    defaults: Defaults = Field(default_factory=Defaults)
    datasets: dict[str, str] = Field(
        default_factory=dict, description='NAME = root folder of dataset card NAME, relative '
        'to bench.toml; "" = not configured (its suites run on demo data)')
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="[models.NAME]: the settings of adapter NAME, "
        "validated by the adapter (paths relative to bench.toml)")
    suites: dict[str, Suite] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _name_suites(self) -> BenchToml:
        for name, suite in self.suites.items():
            suite._name = name
        return self


@dataclass(frozen=True)
class Config:
    """A validated ``bench.toml`` together with the dataset cards it refers to.

    Attributes
    ----------
    path : Path
    settings : BenchToml
        The file as written.
    roots : dict
        Dataset name -> root folder (resolved), None where not configured.
    models : dict
        ``[models.NAME]`` tables with their paths resolved against :attr:`folder`.
    cards : dict
        Every dataset card, by name.
    folder : Path
        What relative paths of the file (``out``, roots, checkpoints) resolve
        against: the file's folder, or the working directory for the built-in
        default, which is never written to.
    builtin : bool
        The built-in default is in use (no ``bench.toml`` was found).
    notices : tuple of str
        One line per card that hides another one of the same name.
    """

    path: Path
    settings: BenchToml
    roots: dict[str, Path | None]
    models: dict[str, dict[str, Any]]
    cards: dict[str, Card]
    folder: Path
    builtin: bool = False
    notices: tuple[str, ...] = ()

    @property
    def defaults(self) -> Defaults:
        return self.settings.defaults

    @property
    def suites(self) -> dict[str, Suite]:
        return self.settings.suites

    def root(self, dataset: str) -> Path | None:
        """The configured root of ``dataset``, or None when not configured."""
        return self.roots.get(dataset)

    def model_settings(self, model: str, suite: str | None = None) -> dict[str, Any]:
        """``[models.MODEL]``, with ``[suites.SUITE.model_settings.MODEL]`` over it.

        Paths of both resolve against :attr:`folder`.
        """
        chosen = dict(self.models.get(model, {}))
        if suite is not None and suite in self.suites:
            table = self.suites[suite].model_settings.get(model, {})
            chosen.update(_resolve_paths(dict(table), self.folder))
        return chosen


def search_config(start: Path | None = None) -> Path | None:
    """``bench.toml`` in ``start`` (default: the working directory) or a parent, else None."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None = None, cards: Sequence[Path] = ()) -> Config:
    """Read and validate ``bench.toml`` and find the dataset cards.

    Parameters
    ----------
    path : Path, optional
        The file (``--config``); default: :func:`search_config`'s, else the
        built-in default.
    cards : sequence of Path
        Card folders searched first (``--cards``), in order; then ``./cards``,
        ``datasets/`` beside the file, then the built-in cards.

    Raises
    ------
    ConfigError
        For an invalid file or card, or a ``cards`` folder that does not exist.
    """
    if path is None:
        found = search_config()
        path, builtin = found or resources.builtin_config(), found is None
    else:
        path = Path(path)
        builtin = resources.in_package(path)
    # Never resolve against (and so write into) the installed package.
    folder = Path.cwd() if builtin else path.parent
    settings = parse_bench_toml(read_toml(path), path.name)
    found_cards, notices = load_card_folders(card_folders(path, cards))
    _check_dataset_names(settings, found_cards, path.name)
    roots = {name: (folder / root).resolve() if root else None
             for name, root in settings.datasets.items()}
    models = {name: _resolve_paths(dict(table), folder)
              for name, table in settings.models.items()}
    return Config(path=path, settings=settings, roots=roots, models=models, cards=found_cards,
                  folder=folder, builtin=builtin, notices=notices)


def card_folders(config_path: Path, extra: Sequence[Path] = ()) -> list[Path]:
    """The card folders in search order, each once: ``extra`` (``--cards``), ``./cards``
    (where ``bench datasets new`` writes without a ``bench.toml``), ``datasets/`` beside
    the file, the built-in cards."""
    for given in extra:
        if not Path(given).is_dir():
            raise ConfigError(f"--cards {given}: no such folder")
    candidates = [*map(Path, extra), Path.cwd() / USER_CARDS_FOLDER,
                  Path(config_path).parent / resources.CARDS_FOLDER, resources.builtin_cards()]
    folders: list[Path] = []
    for folder in candidates:
        if folder.is_dir() and folder.resolve() not in {f.resolve() for f in folders}:
            folders.append(folder)
    return folders


def load_card_folders(folders: Sequence[Path]) -> tuple[dict[str, Card], tuple[str, ...]]:
    """Every card of ``folders`` by name, the first of a name winning, and the notices.

    A card that hides a different card of the same name gives one notice
    naming both files; an identical copy (e.g. built-in cards copied into a
    work folder) hides nothing and says nothing.
    """
    builtin = resources.builtin_cards().resolve()
    cards: dict[str, Card] = {}
    notices = []
    for folder in folders:
        for name, card in load_cards(folder).items():
            kept = cards.setdefault(name, card)
            if kept is not card and card_to_table(kept) != card_to_table(card):
                which = "the built-in card" if folder.resolve() == builtin else "the card"
                notices.append(f"dataset card {name!r}: using {kept.path}, which shadows "
                               f"{which} {card.path}")
    return dict(sorted(cards.items())), tuple(notices)


def parse_bench_toml(table: Mapping[str, Any], where: str) -> BenchToml:
    """Validate a ``bench.toml`` table (no file access: dataset names are not checked).

    ``[defaults]`` and each suite are validated on their own first, so that a
    message names its table (``bench.toml: [suites.demo]: unknown key ...``);
    each suite's ``protocol_params`` against its protocol's model.
    """
    table = dict(table)
    if isinstance(table.get("defaults"), Mapping):
        table["defaults"] = validate(Defaults, table["defaults"], f"{where}: [defaults]")
    if isinstance(table.get("suites"), Mapping):
        table["suites"] = {name: _suite(raw, where, name) if isinstance(raw, Mapping) else raw
                           for name, raw in table["suites"].items()}
    return validate(BenchToml, table, where)


def _suite(table: Mapping[str, Any], where: str, name: str) -> Suite:
    suite = validate(Suite, table, f"{where}: [suites.{name}]")
    get_protocol(suite.protocol).settings(suite.protocol_params,
                                          f"{where}: [suites.{name}.protocol_params]")
    return suite


def _check_dataset_names(settings: BenchToml, cards: Mapping[str, Card], where: str) -> None:
    for name in settings.datasets:
        if name not in cards:
            raise unknown_name("dataset", name, cards, f"{where}: [datasets]")
    for suite_name, suite in settings.suites.items():
        for key in ("datasets", "demo"):
            for name in getattr(suite, key):
                if name not in cards:
                    raise unknown_name("dataset", name, cards,
                                       f"{where}: [suites.{suite_name}].{key}")
        real = [name for name in suite.demo if not cards[name].synthetic]
        if real:
            raise ConfigError(f"{where}: [suites.{suite_name}].demo: {real[0]!r} is not a "
                              "built-in demo dataset (demo stand-ins are generated, no root)")


# Model settings that hold paths; relative ones are relative to bench.toml.
_PATH_SETTINGS = ("checkpoint", "folder", "cache_dir")


def _resolve_paths(settings: dict[str, Any], folder: Path) -> dict[str, Any]:
    for key in _PATH_SETTINGS:
        value = settings.get(key)
        if isinstance(value, str) and value:
            settings[key] = str((folder / Path(value).expanduser()).resolve())
    return settings


def settings_reference() -> list[dict[str, str]]:
    """Every key of ``bench.toml``, one row each: table, key, type, default, description.

    Generated from the settings models (protocol parameters included, one
    table per protocol), for ``bench`` help and the docs.
    """
    rows = table_reference(BenchToml)
    for name, spec in PROTOCOLS.items():
        table = f"suites.NAME.protocol_params (protocol = {name!r})"
        rows.extend({**row, "table": table} for row in table_reference(spec.params))
    return rows
