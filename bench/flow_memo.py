"""Flows read by the ledger stage, kept for the units of the same process.

:func:`bench.derive.derive_ledger` reads every flow once (digests, prompts);
the in-process worker (:class:`bench.units.UnitWorker`) then needs the same
flows again. Reading them twice doubled the reading cost of a run, which is
most of what a rerun served from the prediction cache pays. The ledger stage
offers each flow it read to :data:`FLOWS`; a worker in the same process takes
it from there instead of reading it again.

Bounded: flows are kept only while their in-memory size (decoded frames,
source frames and masks; frames read lazily from files count nothing, packed
masks their packed bytes) fits :data:`BUDGET_BYTES`, in reading order (the
order the units run in), so a large dataset keeps its first flows and the
others are read again, as before. A flow is handed out only for the same
dataset, flow id, position and digests the ledger recorded, which are the
digests of that very object: the check a re-read flow undergoes
(:func:`bench.rundir.check_frames`) holds by construction. The runner clears
the memo when its units are done.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from bench.frames import LazyFrames, PackedMasks
from bench.types import Flow

BUDGET_BYTES = 256 * 2**20
"""In-memory bytes of the flows kept at most (256 MiB)."""


def flow_nbytes(flow: Flow) -> int:
    """The memory a flow's pixels hold: arrays in full, lazy frames nothing, packed
    masks their bits."""
    total = _nbytes(flow.frames)
    if flow.source_frames is not None:
        total += _nbytes(flow.source_frames)
    return total + sum(_nbytes(masks) for masks in flow.masks.values())


def _nbytes(items: Any) -> int:
    if isinstance(items, LazyFrames):
        return 0  # read from their files when indexed (a couple of recent ones kept)
    if isinstance(items, PackedMasks):
        return sum(items.bits(i).nbytes for i in range(len(items)))
    if isinstance(items, np.ndarray):
        return int(items.nbytes)
    return sum(int(np.asarray(item).nbytes) for item in _iterate(items))


def _iterate(items: Any) -> Iterable[Any]:
    return (items[i] for i in range(len(items)))


class FlowMemo:
    """Flows by (dataset, flow id, position), kept while they fit a byte budget."""

    def __init__(self, budget: int = BUDGET_BYTES) -> None:
        self.budget = int(budget)
        self.used = 0
        self._flows: dict[tuple[str, str, int], tuple[Flow, str, str]] = {}

    def __len__(self) -> int:
        return len(self._flows)

    def offer(self, dataset: str, position: int, flow: Flow, frames_sha256: str,
              masks_sha256: str) -> bool:
        """Keep ``flow`` (read at ``position`` of ``dataset``, with these digests) if it
        fits the budget; return whether it was kept."""
        size = flow_nbytes(flow)
        if self.used + size > self.budget:
            return False
        key = (dataset, flow.id, int(position))
        if key in self._flows:
            return True
        self._flows[key] = (flow, frames_sha256, masks_sha256)
        self.used += size
        return True

    def get(self, dataset: str, flow_id: str, position: int, frames_sha256: str,
            masks_sha256: str) -> Flow | None:
        """The flow kept for these, or None (not kept, or other digests)."""
        kept = self._flows.get((dataset, flow_id, int(position)))
        if kept is None or kept[1] != frames_sha256 or (masks_sha256 and
                                                         kept[2] != masks_sha256):
            return None
        return kept[0]

    def clear(self) -> None:
        self._flows.clear()
        self.used = 0


FLOWS = FlowMemo()
"""The process's memo: filled by the ledger stage, read by in-process workers."""
