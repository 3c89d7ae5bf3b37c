"""Progress events of a run: what the runner's stages tell a display.

``bench.runner.execute(..., progress=callback)`` calls ``callback(event)``
with one of these, in this order: :class:`DatasetReading` and, for a dataset
with unreadable cases that is not evaluated, :class:`DatasetRefused` (per
dataset, while the prompt ledger is derived); :class:`UnitsPlanned` once; then
:class:`UnitRetrying` and :class:`UnitFinished` as units come back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DatasetReading:
    """The flows of ``dataset`` are being read and their prompts derived."""

    dataset: str


@dataclass(frozen=True)
class DatasetRefused:
    """``dataset`` has unreadable cases and is not evaluated (no ``--skip-bad-cases``).

    ``failures`` are the manifest's records, ``{"error": one line}`` each.
    """

    dataset: str
    failures: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class UnitsPlanned:
    """The units to compute now.

    ``total`` units will run (``reused`` were complete already); ``selected``
    is the number of units of this shard and ``all`` that of the whole run.
    """

    total: int
    reused: int
    selected: int
    all: int
    executor: str
    shard: str | None = None


@dataclass(frozen=True)
class UnitRetrying:
    """The worker of a unit died; the unit starts again as attempt ``attempt``."""

    dataset: str
    flow: str
    model: str
    seed: int
    attempt: int
    reason: str


@dataclass(frozen=True)
class UnitFinished:
    """A unit is stored: ``status`` ``ok`` or ``error``; ``cache`` ``hit``, ``miss`` or ``off``."""

    dataset: str
    flow: str
    model: str
    seed: int
    status: str
    cache: str
    attempts: int
    seconds: float | None


Event = DatasetReading | DatasetRefused | UnitsPlanned | UnitRetrying | UnitFinished
Progress = Callable[[Event], None]


def ignore(event: Event) -> None:
    """A progress callback that shows nothing."""
