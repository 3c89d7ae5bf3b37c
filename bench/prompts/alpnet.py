"""``alpnet-protocol``: the 1-way 1-shot volume protocol of the ALPNet family.

SSL-ALPNet (Ouyang et al., ECCV 2020), and ADNet and Q-Net after it, score a
few-shot model on abdominal CT ("SABS", the 30 labelled BTCV scans) this way.
The rule, written from cheng-01037/Self-supervised-Fewshot-Medical-Image-
Segmentation@a3029d8 (``validation.py``, ``dataloaders/ManualAnnoDatasetv2.py``
``get_scanids`` and ``get_support``, ``dataloaders/common.py``
``ValidationDataset``, ``examples/test_ssl_abdominal_ct.sh``):

- **Support volume.** The scans, sorted by the last number in their name, are
  split into folds of consecutive scans (5 folds of 6 for SABS); the queries
  of fold f are its scans, and its support volume is the scan just after the
  fold (``support_idx = [6]``: "the additionally loaded scan"), wrapping
  around for the last fold. No scan is its own support.
- **Support slices.** The support volume's slices containing the class
  (``zlist``, at least one labelled pixel, ascending) give ``npart`` support
  slices: part i takes ``zlist[int(pct_i * len(zlist))]`` with
  ``pct_i = 1 / (2 npart) + i (1 - 1 / npart) / (npart - 1)``, i.e. 1/6, 1/2
  and 5/6 for the default ``npart = 3`` (0.5 for ``npart = 1``).
- **Query slices.** A query slice z is matched by relative position: with
  ``z_min``, ``z_max`` the first and last query slices containing the class,
  its part is ``int((z - z_min) // ((z_max - z_min) / npart))``, clipped to
  ``0 .. npart - 1`` (part 0 when ``z_min == z_max``); it is segmented from
  that part's support slice alone (1-shot).
- **Scoring.** Only query slices within ``[z_min, z_max]`` count
  (``z_margin = 0``); true and false positives and negatives are summed over
  them, so a scan's Dice is the 3D Dice of that slab, and the reported Dice
  is the mean over scans, per class.
- **Settings 1 and 2** differ only in training: in Setting 2 the training
  slices containing a test class are removed (``exclude_cls_list``, e.g. the
  kidneys), in Setting 1 they stay (unlabelled). The harness trains nothing;
  ``setting`` labels which kind of model (or predictions) a run scores.

The harness reads each flow once (:mod:`bench.derive`): what this protocol
needs of a flow is kept as a :class:`FlowSummary` (which slices contain each
target, and the support slices' mask digests), and the ledger rows of every
query are made from the summaries once all flows are read. A row of kind
``support-volume`` is one support slice: ``case`` the query, ``source`` the
support volume, ``frame`` the slice there, ``z_range`` the query slices it
serves.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.prompts.kinds import mask_sha256, present_frames
from bench.types import Flow

if TYPE_CHECKING:  # the parameters are declared with the other protocols'
    from bench.prompts.protocols import AlpnetParams

PROTOCOL = "alpnet-protocol"
#: The ledger kind of a support slice taken from another volume (the support volume).
KIND = "support-volume"


def part_percentages(npart: int) -> list[float]:
    """Where in ``zlist`` each part's support slice is: 1/6, 1/2, 5/6 for 3 parts."""
    if npart == 1:
        return [0.5]
    half = 1.0 / (npart * 2)
    step = (1.0 - 1.0 / npart) / (npart - 1)
    return [half + step * i for i in range(npart)]


def support_slices(zlist: Sequence[int], npart: int) -> list[int]:
    """The support slice of each part, from the ascending slices containing the class."""
    if not zlist:
        raise ValueError("no slice contains the class")
    return [int(zlist[int(pct * len(zlist))]) for pct in part_percentages(npart)]


def query_part(z: int, z_min: int, z_max: int, npart: int) -> int:
    """The part of query slice ``z`` (relative position in ``[z_min, z_max]``), clipped."""
    if z_max == z_min:
        return 0
    part = int((z - z_min) // ((z_max - z_min) / npart))
    return min(max(part, 0), npart - 1)


def part_ranges(n_frames: int, z_min: int, z_max: int, npart: int
                ) -> dict[int, tuple[int, int]]:
    """Per part, the inclusive range of query slices it serves (parts serving none left out).

    Every slice of the volume is served (those before ``z_min`` by part 0,
    those after ``z_max`` by the last), as upstream predicts every slice;
    only ``[z_min, z_max]`` is scored.
    """
    ranges: dict[int, list[int]] = {}
    for z in range(n_frames):
        low_high = ranges.setdefault(query_part(z, z_min, z_max, npart), [z, z])
        low_high[1] = z
    return {part: (low, high) for part, (low, high) in sorted(ranges.items())}


def scan_order(cases: Sequence[str]) -> list[str]:
    """Upstream's scan order: by the last number in each name.

    Raises
    ------
    ValueError
        A name without a number, or two names ending in the same number: the
        folds would then rest on an order upstream never defined.
    """
    numbers = {}
    for case in cases:
        found = re.findall(r"\d+", case)
        if not found:
            raise ValueError(f"{PROTOCOL}: case {case!r} has no number to order the folds by "
                             "(upstream sorts scans by the last number in their name); set "
                             "support_case, or a card case_id holding the scan number")
        numbers[case] = int(found[-1])
    order = sorted(cases, key=lambda case: numbers[case])
    for before, after in itertools.pairwise(order):
        if numbers[before] == numbers[after]:
            raise ValueError(f"{PROTOCOL}: cases {before!r} and {after!r} both end in number "
                             f"{numbers[after]}, so their fold order is undefined; set "
                             "support_case, or make the card's case_id distinct by number")
    return order


def support_cases(cases: Sequence[str], params: AlpnetParams) -> dict[str, str]:
    """Query case -> its support case (the support case itself, under ``support_case``,
    is not a query).

    Raises
    ------
    ValueError
        Fewer than two cases, a ``support_case`` that is not among them, or
        (fold rule) names that do not order (:func:`scan_order`).
    """
    if len(cases) < 2:
        raise ValueError(f"{PROTOCOL} needs at least two volumes (a support and a query), "
                         f"got {len(cases)}")
    if params.support_case is not None:
        if params.support_case not in cases:
            raise ValueError(f"{PROTOCOL} support_case {params.support_case!r} is not a case "
                             f"of the dataset; cases: {', '.join(sorted(cases)[:8])}"
                             f"{' ...' if len(cases) > 8 else ''}")
        return {case: params.support_case for case in cases if case != params.support_case}
    order = scan_order(cases)
    n, folds = len(order), int(params.folds)
    bounds = [fold * n // folds for fold in range(folds + 1)]
    return {order[position]: order[bounds[fold + 1] % n]
            for fold in range(folds) for position in range(bounds[fold], bounds[fold + 1])}


@dataclass(frozen=True)
class SupportSlice:
    """One support slice of a volume for one target: its index and mask digest."""

    frame: int
    mask_sha256: str
    mask_shape: tuple[int, ...]


@dataclass(frozen=True)
class FlowSummary:
    """What the protocol needs of one volume, kept while the others are read."""

    id: str
    frames: int
    presence: Mapping[str, tuple[int, ...]]
    supports: Mapping[str, tuple[SupportSlice, ...]]


def chosen_targets(targets: Sequence[str], params: AlpnetParams) -> list[str]:
    """The flow's targets this run scores (``targets`` parameter, in the card's order)."""
    wanted = params.targets
    return [t for t in targets if wanted is None or t in wanted]


def summarise(flow: Flow, params: AlpnetParams) -> FlowSummary:
    """The :class:`FlowSummary` of a volume (the support slices of each chosen target)."""
    if flow.kind != "volume":
        raise ValueError(f"{PROTOCOL} scores volumes; flow {flow.id!r} of dataset "
                         f"{flow.dataset!r} is an image flow")
    presence, supports = {}, {}
    for target in chosen_targets(flow.targets, params):
        frames = tuple(present_frames(flow.masks[target]))
        presence[target] = frames
        if frames:
            slices = []
            for frame in support_slices(frames, params.npart):
                mask = np.asarray(flow.masks[target][frame]).astype(bool)
                slices.append(SupportSlice(frame, mask_sha256(mask), tuple(mask.shape)))
            supports[target] = tuple(slices)
    return FlowSummary(flow.id, len(flow.frames), presence, supports)


def ledger_rows(summaries: Sequence[FlowSummary], params: AlpnetParams
                ) -> dict[str, list[dict[str, Any]]]:
    """Per query flow, its ``support-volume`` prompt contents (before ledger fields).

    Each content has ``target``, ``frame`` (in the support volume),
    ``source`` (the support case), ``z_range`` (the query slices served),
    ``mask_sha256`` and ``mask_shape``. A target absent from the query or
    from its support volume gets no row (it is not scored).
    """
    by_id = {summary.id: summary for summary in summaries}
    pairs = support_cases(list(by_id), params)
    contents: dict[str, list[dict[str, Any]]] = {}
    for query_id, source_id in pairs.items():
        query, source = by_id[query_id], by_id[source_id]
        rows = contents.setdefault(query_id, [])
        for target, frames in query.presence.items():
            if not frames or target not in source.supports:
                continue
            ranges = part_ranges(query.frames, frames[0], frames[-1], params.npart)
            for part, z_range in ranges.items():
                slice_ = source.supports[target][part]
                rows.append({"target": target, "frame": slice_.frame, "source": source_id,
                             "z_range": z_range, "mask_sha256": slice_.mask_sha256,
                             "mask_shape": slice_.mask_shape})
    return contents


def scored_extent(flow: Flow, target: str) -> tuple[int, ...]:
    """The query slices scored for ``target``: its z-extent ``[z_min, z_max]``."""
    frames = present_frames(flow.masks[target])
    return tuple(range(frames[0], frames[-1] + 1)) if frames else ()


def card(params: AlpnetParams, kind: str | None = None) -> str:
    """The protocol card printed in reports."""
    pcts = ", ".join(f"{p:.3g}" for p in part_percentages(params.npart))
    if params.support_case is not None:
        support = (f"the support volume is case {params.support_case!r} for every other "
                   "case (it is not scored itself)")
    else:
        support = (f"the cases, sorted by the last number in their id (an id without one, "
                   f"or two ending in the same number, is refused), form {params.folds} "
                   "folds of consecutive cases (fold f: cases f*n//folds to "
                   "(f+1)*n//folds - 1 of the n read); each fold's support volume is the case "
                   "just after it, the first case for the last fold, so every case is a "
                   "query once (SABS, 30 scans: 5 folds of 6, support_idx = [6])")
    setting = {1: "Setting 1 (test classes seen, unlabelled, in training)",
               2: "Setting 2 (training slices containing the test classes removed)",
               None: "setting not stated"}[params.setting]
    classes = ("every target of the card" if params.targets is None
               else ", ".join(params.targets) + " (those a dataset has)")
    return (f"{PROTOCOL} (SSL-ALPNet, cheng-01037/Self-supervised-Fewshot-Medical-Image-"
            f"Segmentation@a3029d8), 1-way 1-shot on volumes; {setting}; classes: {classes}. "
            f"Per query volume and class: {support}. The support volume's slices containing "
            f"the class (zlist) give {params.npart} support slice(s), zlist[int(pct * "
            f"len(zlist))] for pct = {pcts}. Each query slice z is matched by relative position "
            f"in the class's query extent [z_min, z_max]: part int((z - z_min) // ((z_max - "
            f"z_min) / {params.npart})), clipped (part 0 when z_min = z_max), and is segmented "
            f"from that part's support slice (image and ground-truth mask) alone. Scoring: "
            f"only the slices of [z_min, z_max] (z_margin 0), as one 3D case per volume and "
            f"class (Dice over the slab, as upstream sums TP/FP/FN over those slices); a class "
            f"absent from the query or its support volume is not scored. Settings 1 and 2 "
            f"differ only in how the model was trained; the harness trains nothing. Only "
            f"in-context models (given the support slices) and models that read saved masks "
            f"(predictions) run it. Taken from ground truth beyond the support masks: the "
            f"query's class extent (z_min, z_max: where scoring happens and which support "
            f"slice each query slice gets), and which classes each volume contains.")


__all__ = ["KIND", "PROTOCOL", "FlowSummary", "SupportSlice", "card",
           "chosen_targets", "ledger_rows", "part_percentages",
           "part_ranges", "query_part", "scan_order", "scored_extent", "summarise",
           "support_cases", "support_slices"]
