"""Stage 1 of the data flow: dataset cards and the readers that turn a card
plus a root folder into a stream of :class:`bench.types.Flow` objects.

A reader is a function ``reader(card, root, limit, errors) -> Iterator[Flow]``
registered under a name; a card names its reader in ``reader = "..."``.
Readers yield one flow at a time so that memory stays about one case. With an
``errors`` list, a reader skips bad cases and appends their
:class:`~bench.readers.check.DataError` to it, so one bad file never ends a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from bench.readers.cards import Card, load_card, load_cards
from bench.types import Flow

Reader = Callable[[Card, "Path | None", "int | None", "list | None"], Iterator[Flow]]

_READERS: dict[str, Reader] = {}


def register_reader(name: str) -> Callable[[Reader], Reader]:
    """Decorator: make a reader available to cards as ``reader = name``."""

    def decorate(func: Reader) -> Reader:
        if name in _READERS and _READERS[name] is not func:
            raise ValueError(f"reader {name!r} is registered twice")
        _READERS[name] = func
        return func

    return decorate


def get_reader(name: str) -> Reader:
    _load_builtin()
    if name not in _READERS:
        raise KeyError(f"unknown reader {name!r}; known: {', '.join(sorted(_READERS))}")
    return _READERS[name]


def read_flows(card: Card, root: Path | None = None, limit: int | None = None,
               errors: list | None = None) -> Iterator[Flow]:
    """Stream the flows of the dataset described by ``card`` under ``root``.

    ``limit`` caps the number of flows; readers must stop reading files once
    it is reached. Without ``errors`` the first bad case raises; with a list,
    bad cases are skipped and their errors appended to it.
    """
    yield from get_reader(card.reader)(card, root, limit, errors)


_BUILTIN_MODULES = ("bench.readers.demo", "bench.readers.volumes", "bench.readers.pairs2d",
                    "bench.readers.special", "bench.readers.nnunet", "bench.readers.hf")
_loaded = False


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import importlib

        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


__all__ = ["Card", "Flow", "get_reader", "load_card", "load_cards", "read_flows", "register_reader"]
