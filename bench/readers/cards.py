"""Dataset cards: ``datasets/NAME.toml`` files describing a dataset as data.

A card says how to read a dataset in its published layout (which reader, which
file patterns, which label values make which target), what it is (modality,
2D or 3D, citation, licence, where to download) and how the benchmark uses it
(prompt kind for the one-prompt suite, expected case count).

A card is validated once, when it is loaded: its keys against :class:`Card`,
its ``[options]`` table against its reader's options model (see
:mod:`bench.readers.registry`), and the whole against the reader's own checks.
The options then travel as that typed model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr

from bench.errors import ConfigError
from bench.readers.registry import get_reader
from bench.settings import Items, Settings, read_toml, validate
from bench.types import PROMPT_KINDS


class Card(Settings):
    """A parsed dataset card; ``options`` are the reader's own settings, as its model."""

    name: str = Field(description="the card's name; must equal the file name without .toml")
    reader: str = Field(description="the reader that turns the dataset into flows")
    kind: Literal["volume", "image-flow"] = Field(description=(
        "'volume' (a 3D image is one flow, scored in 3D) or 'image-flow' (2D images of one "
        "target, each scored as its own case)"))
    targets: Items[str] = Field(description=(
        "the targets scored, in order (an nnU-Net card may give [] for every label)"))
    title: str = Field("", description="the dataset's full name")
    modality: str = Field("", description="imaging modality, e.g. 'CT', 'fundus photograph'")
    one_prompt_kind: Literal[PROMPT_KINDS] = Field(  # type: ignore[valid-type]
        "point", description="prompt kind of the one-prompt suite for this dataset")
    synthetic: bool = Field(False, description="built-in generated data (reports say so)")
    citation: str = Field("", description="how to cite the dataset")
    licence: str = Field("", description="the dataset's licence")
    download: str = Field("", description="where to download the dataset")
    expected_cases: int | None = Field(None, ge=0, description=(
        "the published number of cases, checked by 'bench datasets check'"))
    description: str = Field("", description="what the dataset is, in a few sentences")
    options: Settings = Field(default_factory=Settings, description=(
        "the reader's own options (see the options reference)"))
    _path: Path | None = PrivateAttr(None)

    @property
    def path(self) -> Path | None:
        """The file the card was read from (None for a card built in code)."""
        return self._path

    @property
    def where(self) -> str:
        """The card's file (or name), to start messages with."""
        return str(self.path or self.name)


def load_card(path: Path) -> Card:
    """Read and validate one card file."""
    card = card_from_table(read_toml(path), str(path), path=path)
    if card.name != path.stem:
        raise ConfigError(f"{path}.name: {card.name!r} differs from the file name {path.stem!r}")
    return card


def card_from_table(table: Mapping[str, Any], where: str, path: Path | None = None) -> Card:
    """Validate a card's table (as read from TOML, or as recorded by :func:`card_to_table`).

    Parameters
    ----------
    table : mapping
        The card's keys, ``options`` as a table.
    where : str
        Where the table came from, for messages.
    path : Path, optional
        The card's file, kept in :attr:`Card.path`.

    Raises
    ------
    ConfigError
        One line naming the key: an unknown or missing key, a wrong type or
        value, an unknown reader, options the reader does not accept.
    """
    table = dict(table)
    options = table.pop("options", {})
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}.options: expected a table, got {options!r}")
    card = validate(Card, table, where)
    reader = get_reader(card.reader, f"{where}.reader")
    typed = validate(reader.options_model, options, f"{where}.options")
    card = card.model_copy(update={"options": typed})
    card._path = path
    reader.check_card(card)
    return card


def card_to_table(card: Card) -> dict[str, Any]:
    """The card as a JSON/TOML-ready table, so a run directory can rebuild it.

    Options are the keys the card set (defaults are left to the reader's model).
    """
    table = card.model_dump(mode="json", exclude={"options"})
    table["options"] = card.options.model_dump(mode="json", exclude_unset=True)
    return table


def load_cards(folder: Path) -> dict[str, Card]:
    """All cards in ``folder`` by name."""
    return {card.name: card for card in map(load_card, sorted(folder.glob("*.toml")))}


__all__ = ["Card", "card_from_table", "card_to_table", "load_card", "load_cards"]
