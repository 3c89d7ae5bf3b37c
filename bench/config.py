"""``bench.toml``: suites, dataset roots, model settings and defaults.

The file is validated on load. An unknown key or a value of the wrong type is
a :class:`~bench.validate.ConfigError` naming the key (with the nearest valid
name), never a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.readers.cards import Card, load_cards
from bench.validate import check_table, read_toml

CONFIG_NAME = "bench.toml"

_TOP_SCHEMA = {"defaults": dict, "datasets": dict, "models": dict, "suites": dict}
_DEFAULTS_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "seed": int,
    "out": str,
    "metrics": list,
    "empty_policy": str,
    "nsd_tolerance_mm": (int, float),
    "cache_dir": str,  # prediction cache (bench.cache); "" = default, env var wins
}
_SUITE_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "description": str,
    "reproduces": str,
    "protocol": str,
    "protocol_params": dict,
    "datasets": list,
    "demo": list,
    "models": list,
    "metrics": list,
    "seeds": list,
    "empty_policy": str,
}


@dataclass(frozen=True)
class Suite:
    """A named benchmark suite: datasets x models under one protocol."""

    name: str
    protocol: str
    datasets: tuple[str, ...]
    models: tuple[str, ...]
    demo: tuple[str, ...] = ()
    description: str = ""
    reproduces: str = ""
    protocol_params: dict[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    empty_policy: str = ""


@dataclass(frozen=True)
class Config:
    """A validated ``bench.toml`` together with the dataset cards it refers to."""

    path: Path
    defaults: dict[str, Any]
    roots: dict[str, Path | None]
    models: dict[str, dict[str, Any]]
    suites: dict[str, Suite]
    cards: dict[str, Card]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def root(self, dataset: str) -> Path | None:
        """The configured root of ``dataset``, or None when not configured."""
        return self.roots.get(dataset)


def find_config(start: Path | None = None) -> Path:
    """Locate ``bench.toml``: the working directory or a parent, else the project's own."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    bundled = Path(__file__).resolve().parent.parent / CONFIG_NAME
    if bundled.is_file():
        return bundled
    raise ConfigError(f"no {CONFIG_NAME} in {here} or its parents; pass --config PATH")


def load_config(path: Path | None = None) -> Config:
    """Read and validate ``bench.toml`` (found with :func:`find_config` if not given)."""
    path = Path(path) if path is not None else find_config()
    table = read_toml(path)
    where = path.name
    check_table(table, _TOP_SCHEMA, where)

    defaults = {"seed": 0, "out": "runs", "metrics": ["dice", "iou", "hd95"],
                "empty_policy": "exclude", "nsd_tolerance_mm": 2.0}
    user_defaults = table.get("defaults", {})
    check_table(user_defaults, _DEFAULTS_SCHEMA, f"{where}: [defaults]")
    defaults.update(user_defaults)

    cards = load_cards(path.parent / "datasets")

    roots: dict[str, Path | None] = {}
    for name, root in table.get("datasets", {}).items():
        _check_name(name, cards, f"{where}: [datasets]", "dataset")
        if not isinstance(root, str):
            raise ConfigError(f"{where}: datasets.{name}: expected a path string, got {root!r}")
        roots[name] = (path.parent / root).resolve() if root else None

    models: dict[str, dict[str, Any]] = {}
    for name, settings in table.get("models", {}).items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{where}: models.{name}: expected a table")
        models[name] = _resolve_paths(dict(settings), path.parent)

    suites: dict[str, Suite] = {}
    for name, raw in table.get("suites", {}).items():
        suite_where = f"{where}: [suites.{name}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{suite_where}: expected a table")
        check_table(raw, _SUITE_SCHEMA, suite_where, required=("protocol", "datasets", "models"))
        for dataset in (*raw["datasets"], *raw.get("demo", [])):
            _check_name(dataset, cards, suite_where, "dataset")
        suites[name] = Suite(
            name=name,
            protocol=raw["protocol"],
            datasets=tuple(raw["datasets"]),
            models=tuple(raw["models"]),
            demo=tuple(raw.get("demo", ())),
            description=raw.get("description", ""),
            reproduces=raw.get("reproduces", ""),
            protocol_params=dict(raw.get("protocol_params", {})),
            metrics=tuple(raw.get("metrics", ())),
            seeds=tuple(raw.get("seeds", ())),
            empty_policy=raw.get("empty_policy", ""),
        )
    return Config(path=path, defaults=defaults, roots=roots, models=models, suites=suites,
                  cards=cards)


# Model settings that hold paths; relative ones are relative to bench.toml.
_PATH_SETTINGS = ("checkpoint", "folder", "cache_dir")


def _resolve_paths(settings: dict[str, Any], folder: Path) -> dict[str, Any]:
    for key in _PATH_SETTINGS:
        value = settings.get(key)
        if isinstance(value, str) and value:
            settings[key] = str((folder / Path(value).expanduser()).resolve())
    return settings


def _check_name(name: str, known: dict[str, Any], where: str, what: str) -> None:
    if name not in known:
        from difflib import get_close_matches

        hint = get_close_matches(name, list(known), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{where}: unknown {what} {name!r}{suggestion}")
