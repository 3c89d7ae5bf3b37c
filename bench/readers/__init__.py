"""Stage 1 of the data flow: dataset cards and the readers that turn a card
plus a root folder into a stream of :class:`bench.types.Flow` objects.

Every reader implements one interface (:class:`~bench.readers.registry.Reader`:
list the flows, load one flow) and is registered under the name a card gives
in ``reader = "..."``. :func:`read_flows` streams a dataset one flow at a time,
so that memory stays about one case; :func:`read_flow` re-reads one flow by
id. With an ``errors`` list, bad cases are skipped and their
:class:`~bench.errors.DataError` appended to it, so one bad file never ends a
run.

Modules: ``cards`` (the card model), ``registry`` (the interface, the
registry, the options reference), ``options`` (options shared by the file
readers), ``cases`` (file-based readers: cases grouped into flows),
``labels`` (mask decoding), ``geometry`` (volume frames), ``slicing``
(volumes as image flows), ``patterns`` (the file-name template language),
``layout`` (pattern layouts), ``files`` (file formats), the readers
``volumes``, ``pairs2d``, ``nnunet`` (also ``nnunet-2d``), ``hf``, ``special``
and ``demo``, ``check`` (dataset checks), ``new_card`` (``bench datasets new``)
and ``reference`` (the generated card reference).

``limit`` counts cases (images or volumes), never flows: see :func:`_limited`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.errors import ConfigError, DataError
from bench.readers.cards import Card, card_from_table, card_to_table, load_card, load_cards
from bench.readers.registry import (
    FlowRef,
    Reader,
    get_reader,
    option_reference,
    reader_names,
    register_reader,
)
from bench.types import Flow

Listings = dict[tuple[str, str], dict[str, FlowRef]]
"""Flow listings kept between calls of :func:`read_flow`, by (dataset, root)."""


def read_flows(card: Card, root: Path | None = None, limit: int | None = None,
               errors: list[DataError] | None = None,
               truncation: list[Truncation] | None = None) -> Iterator[Flow]:
    """Stream the flows of the dataset described by ``card`` under ``root``.

    Parameters
    ----------
    card : Card
    root : Path or None
        The dataset folder (readers of generated or hub data need none).
    limit : int, optional
        Read at most ``limit`` cases (images or volumes): the first ones in the
        reader's order (see :func:`_limited`); a case that fails to load counts.
    errors : list, optional
        Without it the first bad case raises; with a list, bad cases and
        flows are skipped and their errors appended to it.
    truncation : list, optional
        When given and ``limit`` leaves cases out, a :class:`Truncation`
        describing the cut is appended to it (before the first flow is read).

    Raises
    ------
    ConfigError
        A negative ``limit``; a dataset that cannot be listed.
    DataError
        A bad case, without ``errors``.
    """
    reader = get_reader(card.reader, f"{card.where}.reader")
    refs, cut = _limited(reader.list_flows(card, root), limit)
    if cut is not None and truncation is not None:
        truncation.append(cut)
    for ref in refs:
        try:
            yield reader.load_flow(card, ref, errors)
        except DataError as err:
            if errors is None:
                raise
            errors.append(err)


def read_flow(card: Card, root: Path | None, flow_id: str, position: int = 0,
              limit: int | None = None, listings: Listings | None = None) -> Flow:
    """Read one flow of a dataset again, by id, as :func:`read_flows` yields it.

    Parameters
    ----------
    card, root
        As for :func:`read_flows`.
    flow_id : str
        The flow's id.
    position : int
        Its position in the run's stream (as the manifest records it); named
        in the error when the flow is gone.
    limit : int, optional
        The run's limit: only the cases :func:`read_flows` would read are read.
    listings : dict, optional
        Keeps each dataset's listing between calls, so that re-reading many
        flows lists the dataset once.

    Raises
    ------
    DataError
        When the reader no longer lists a flow with this id (within ``limit``).
    """
    reader = get_reader(card.reader, f"{card.where}.reader")
    key = (card.name, str(root))
    refs = listings.get(key) if listings is not None else None
    if refs is None:
        refs = {ref.id: ref for ref in _limited(reader.list_flows(card, root), limit)[0]}
        if listings is not None:
            listings[key] = refs
    if flow_id not in refs:
        raise DataError(str(root or card.name), f"flow {flow_id!r} (position {position}) of "
                        f"dataset {card.name!r} cannot be read again: the reader no longer "
                        "yields it (did the data change?)")
    return reader.load_flow(card, refs[flow_id], [])


@dataclass(frozen=True)
class Truncation:
    """How ``--limit`` cut a dataset: what was listed and what is read.

    Attributes
    ----------
    limit : int
        The limit, in cases.
    cases_listed, cases_kept : int
        Cases (images or volumes) the reader lists, and those read.
    flows_listed, flows_kept : int
        Flows listed, and flows read (whole or cut).
    flow_cut : str or None
        The last flow read when only its first cases are (an image flow).
    """

    limit: int
    cases_listed: int
    cases_kept: int
    flows_listed: int
    flows_kept: int
    flow_cut: str | None = None

    def describe(self) -> str:
        """One line for reports and logs."""
        cut = f"; flow {self.flow_cut!r} cut to its first images" if self.flow_cut else ""
        return (f"first {self.cases_kept} of {self.cases_listed} cases in the reader's order "
                f"({self.flows_kept} of {self.flows_listed} flows{cut})")


def _limited(refs: Sequence[FlowRef], limit: int | None
             ) -> tuple[Sequence[FlowRef], Truncation | None]:
    """The flows a run with ``limit`` reads, and the truncation (None when nothing is cut).

    ``limit`` counts cases (images or volumes, :attr:`FlowRef.size`), not
    flows: the first ``limit`` cases in the reader's (natural, sorted) order
    are kept, the last flow read being cut to the cases that fit. The choice
    depends on the files alone, never on a seed, so every seed of a run (and
    every rerun) scores the same cases.
    """
    if limit is None:
        return refs, None
    if limit < 0:
        raise ConfigError(f"limit must be non-negative or None, got {limit}")
    kept: list[FlowRef] = []
    left = limit
    cut = None
    for ref in refs:
        if left <= 0:
            break
        size = ref.size
        if size > left:
            ref, cut = ref.head(left), ref.id
            size = left
        kept.append(ref)
        left -= size
    listed = sum(ref.size for ref in refs)
    if len(kept) == len(refs) and cut is None:
        return refs, None
    return kept, Truncation(limit, listed, limit - left, len(refs), len(kept), cut)


__all__ = ["Card", "Flow", "FlowRef", "Listings", "Reader", "card_from_table", "card_to_table",
           "get_reader", "load_card", "load_cards", "option_reference", "read_flow",
           "read_flows", "reader_names", "register_reader", "Truncation"]
