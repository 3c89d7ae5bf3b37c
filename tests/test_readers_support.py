"""Helpers for the reader tests: change a loaded card the way a user would edit its file."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bench.readers.cards import Card, card_from_table, card_to_table


def revise(card: Card, *, drop: Iterable[str] = (), options: dict[str, Any] | None = None,
           **fields: Any) -> Card:
    """``card`` with options dropped or set and top-level keys changed, validated again.

    Raises ConfigError exactly as loading the edited card file would.
    """
    table = card_to_table(card)
    dropped = set(drop)
    edited = {k: v for k, v in table["options"].items() if k not in dropped}
    edited.update(options or {})
    table.update(fields, options=edited)
    return card_from_table(table, card.where, path=card.path)
