"""The one reader interface and the one registry of readers.

Every source of flows (file layouts, nnU-Net folders, HuggingFace datasets,
the special layouts, the demo generators) is a :class:`Reader` registered
under the name a card gives as ``reader = "..."``. A reader does two things:

- :meth:`Reader.list_flows` lists the flows of a dataset cheaply, as
  :class:`FlowRef` objects (ids in stream order, no pixel data);
- :meth:`Reader.load_flow` loads one of them.

It also declares its card options once, as a strict model
(:attr:`Reader.options_model`), against which a card's ``[options]`` table
is validated when the card is loaded, and may check the card as a whole
(:meth:`Reader.check_card`). :func:`option_reference` lists every option of
every reader from these models.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from pydantic import BaseModel

from bench.errors import DataError, unknown_name
from bench.settings import Settings, field_reference, validate

if TYPE_CHECKING:
    from bench.readers.cards import Card
    from bench.types import Flow


@dataclass(frozen=True, eq=False)
class FlowRef:
    """One flow of a dataset as listed by its reader, before it is loaded.

    Readers subclass it to carry what loading needs (the cases of a file
    layout, the index of a generated flow).

    Attributes
    ----------
    id : str
        The flow's id, unique within the dataset; the loaded flow has it.
    """

    id: str

    @property
    def size(self) -> int:
        """Cases in this flow (what ``--limit`` counts); one unless a subclass says more."""
        return 1

    def head(self, count: int) -> FlowRef:
        """This flow cut to its first ``count`` cases (``1 <= count <= size``)."""
        return self


class Reader(ABC):
    """A source of flows: lists a dataset's flows and loads one of them.

    Subclasses set :attr:`options_model` and implement :meth:`list_flows`
    and :meth:`load_flow`; :func:`register_reader` makes them available to
    cards. One instance serves every card of its reader.
    """

    name: ClassVar[str] = ""
    options_model: ClassVar[type[Settings]] = Settings
    """The card options this reader accepts (``[options]`` of its cards)."""

    def check_card(self, card: Card) -> None:
        """Check what the options model alone cannot (e.g. options against the kind).

        Called when a card is loaded. Raises ConfigError naming the card's key.
        """
        return None  # by default the options model says it all

    def needs_root(self, card: Card) -> bool:
        """False for readers that need no dataset folder (generated or hub data)."""
        return True

    def options(self, card: Card) -> Settings:
        """The card's options as this reader's model (validated on first use if needed)."""
        if isinstance(card.options, self.options_model):
            return card.options
        return validate(self.options_model, card.options.model_dump(exclude_unset=True),
                        f"{card.where}.options")

    @abstractmethod
    def list_flows(self, card: Card, root: Path | None) -> Sequence[FlowRef]:
        """The dataset's flows in stream order, without reading pixel data where possible.

        Raises
        ------
        ConfigError, DataError
            The dataset cannot be listed (no root, a missing folder, a bad layout).
        """

    @abstractmethod
    def load_flow(self, card: Card, ref: FlowRef, errors: list[DataError] | None = None
                  ) -> Flow:
        """Load one listed flow.

        Parameters
        ----------
        card : Card
        ref : FlowRef
            One entry of :meth:`list_flows` for the same card and root.
        errors : list, optional
            When given, bad cases inside the flow are skipped and their
            :class:`DataError` appended here; otherwise the first one raises.

        Raises
        ------
        DataError
            A bad case (without ``errors``), or a flow none of whose cases loads.
        """


ReaderT = TypeVar("ReaderT", bound=type[Reader])

_READERS: dict[str, Reader] = {}

# Modules holding the built-in readers, imported on first lookup (not at import
# time, so that loading a card does not pull in every reader's dependencies
# before it is needed, and the reader modules can import this one).
_BUILTIN_MODULES = ("bench.readers.demo", "bench.readers.volumes", "bench.readers.pairs2d",
                    "bench.readers.special", "bench.readers.nnunet", "bench.readers.hf")
_loaded = False


def register_reader(name: str) -> Callable[[ReaderT], ReaderT]:
    """Class decorator: make a :class:`Reader` available to cards as ``reader = name``."""

    def decorate(cls: ReaderT) -> ReaderT:
        if name in _READERS and type(_READERS[name]) is not cls:
            raise ValueError(f"reader {name!r} is registered twice")
        cls.name = name
        _READERS[name] = cls()
        return cls

    return decorate


def get_reader(name: str, where: str = "") -> Reader:
    """The reader registered as ``name``.

    Raises
    ------
    ConfigError
        No such reader (with the nearest known name).
    """
    _load_builtin()
    if name not in _READERS:
        raise unknown_name("reader", name, _READERS, where)
    return _READERS[name]


def reader_names() -> list[str]:
    """Every registered reader's name, sorted."""
    _load_builtin()
    return sorted(_READERS)


def option_reference(readers: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Every card option of the given readers (default: all), from their models.

    Returns
    -------
    list of dict
        One row per option declaration, in declaration order, with ``name``
        (as written in ``[options]``; ``sources[].image`` for a key of a
        sub-layout table), ``type``, ``default``, ``description`` and
        ``reader`` (the readers that accept it, comma-separated).

    Raises
    ------
    ConfigError
        An unknown reader name.
    """
    rows: dict[tuple[str, str, str, str], list[str]] = {}
    for name in readers if readers is not None else reader_names():
        for row in _model_rows(get_reader(name).options_model):
            key = (row["name"], row["type"], row["default"], row["description"])
            rows.setdefault(key, []).append(name)
    return [{"name": n, "type": t, "default": d, "description": text, "reader": ", ".join(r)}
            for (n, t, d, text), r in rows.items()]


def _model_rows(model: type[BaseModel], prefix: str = "") -> list[dict[str, str]]:
    """Rows of ``model``'s fields, followed by those of tables of sub-models."""
    rows = []
    for row, field in zip(field_reference(model), model.model_fields.values(), strict=True):
        rows.append({**row, "name": prefix + row["name"]})
        nested = _sub_model(field.annotation)
        if nested is not None:
            rows.extend(_model_rows(nested, f"{prefix}{row['name']}[]."))
    return rows


def _sub_model(annotation: object) -> type[BaseModel] | None:
    """The model of a field holding a list of tables (``sources``), if any."""
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        found = _sub_model(arg)
        if found is not None:
            return found
    return None


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


__all__ = ["FlowRef", "Reader", "get_reader", "option_reference", "reader_names",
           "register_reader"]
