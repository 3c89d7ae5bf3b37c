"""Progress events of a run: what the runner's stages tell a display.

``bench.runner.execute(..., progress=callback)`` calls ``callback(event)``
with one of these, in this order: :class:`DatasetReading` and, for a dataset
with unreadable cases that is not evaluated, :class:`DatasetRefused` (per
dataset, while the prompt ledger is derived); :class:`UnitsPlanned` once; then
:class:`UnitRetrying` and :class:`UnitFinished` as units come back, and
:class:`FramesDone` while a unit of the local executor runs (so that a
dataset of one long flow visibly moves).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
class DatasetWarnings:
    """Warnings found while reading ``dataset`` (a mask copied from another case), one
    line each as ``"path: message"``; the manifest records them with the layout's."""

    dataset: str
    lines: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class FramesDone:
    """Inside the running unit: ``done`` of its ``total`` frames are predicted.

    Sent while a unit runs in the driver process (the local executor), from
    the adapters' frame loops through :func:`frames_done`; units in worker
    processes report only when they finish.
    """

    done: int
    total: int


Event = (DatasetReading | DatasetRefused | DatasetWarnings | UnitsPlanned | UnitRetrying
         | UnitFinished | FramesDone)
Progress = Callable[[Event], None]


def ignore(event: Event) -> None:
    """A progress callback that shows nothing."""


# The driver's listener of frame progress; None in worker processes (nothing to tell).
_FRAME_LISTENER: list[Callable[[int, int], None]] = []


def frames_done(done: int, total: int) -> None:
    """Called by adapters in their frame loops: ``done`` of ``total`` frames predicted.

    Cheap when nobody listens (worker processes, tests), so a loop may call it
    once per frame.
    """
    if _FRAME_LISTENER:
        _FRAME_LISTENER[-1](done, total)


@contextmanager
def listening_to_frames(notify: Progress) -> Iterator[None]:
    """While inside, :func:`frames_done` sends :class:`FramesDone` events to ``notify``."""
    _FRAME_LISTENER.append(lambda done, total: notify(FramesDone(done, total)))
    try:
        yield
    finally:
        _FRAME_LISTENER.pop()
