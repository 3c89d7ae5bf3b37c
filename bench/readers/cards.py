"""Dataset cards: ``datasets/NAME.toml`` files describing a dataset as data.

A card says how to read a dataset in its published layout (which reader, which
file patterns, which label values make which target), what it is (modality,
2D or 3D, citation, licence, where to download) and how the benchmark uses it
(prompt kind for the one-prompt suite, expected case count).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.settings import read_toml
from bench.validate import check_table

_CARD_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "title": str,
    "reader": str,
    "kind": str,
    "modality": str,
    "targets": list,
    "one_prompt_kind": str,
    "synthetic": bool,
    "citation": str,
    "licence": str,
    "download": str,
    "expected_cases": int,
    "description": str,
    "options": dict,
}


@dataclass(frozen=True)
class Card:
    """A parsed dataset card. ``options`` are the reader's own settings."""

    name: str
    reader: str
    kind: str
    targets: tuple[str, ...]
    title: str = ""
    modality: str = ""
    one_prompt_kind: str = "point"
    synthetic: bool = False
    citation: str = ""
    licence: str = ""
    download: str = ""
    expected_cases: int | None = None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def load_card(path: Path) -> Card:
    """Read and validate one card file."""
    card = card_from_table(read_toml(path), str(path))
    if card.name != path.stem:
        raise ConfigError(f"{path}.name: {card.name!r} differs from the file name {path.stem!r}")
    return replace(card, path=path)


def card_from_table(table: dict[str, Any], where: str) -> Card:
    """Validate a card's table (as read from TOML, or as recorded by :func:`card_to_table`)."""
    table = dict(table)
    check_table(table, _CARD_SCHEMA, where, required=("name", "reader", "kind", "targets"))
    if table["kind"] not in ("volume", "image-flow"):
        raise ConfigError(f"{where}.kind: expected 'volume' or 'image-flow', got {table['kind']!r}")
    targets = tuple(str(t) for t in table.pop("targets"))
    return Card(targets=targets, **table)


def card_to_table(card: Card) -> dict[str, Any]:
    """The card as a JSON/TOML-ready table, so a run directory can rebuild it."""
    table = {key: value for key, value in asdict(card).items() if key != "path"}
    table["targets"] = list(card.targets)
    return table


def load_cards(folder: Path) -> dict[str, Card]:
    """All cards in ``folder`` by name."""
    return {card.name: card for card in map(load_card, sorted(folder.glob("*.toml")))}
