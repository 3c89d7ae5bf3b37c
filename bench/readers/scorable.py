"""Whether the one-prompt protocol can score a dataset's flows at all.

One-prompt gives each flow's template (its prompted image) and scores the
other images of the flow. A layout whose every flow holds one image (one flow
per case folder, say) therefore scores nothing, and a run of it would end
with empty tables. ``bench datasets new``, ``bench datasets check`` and
``bench run`` refuse such a layout before any work, naming the flow count and
the option that fixes it; no file is decoded (the reader's listing only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import Problem
from bench.readers.cards import Card
from bench.readers.cases import FileReader
from bench.readers.options import VolumeReaderOptions
from bench.readers.registry import get_reader

# The card options that make flows larger (what the message names).
CARD_FIX = 'the card\'s [options] group = "all" (one flow) or a larger chunk_size'


def unscorable_flows(flows: Sequence[Any], fix: str) -> str | None:
    """Why one-prompt can score none of ``flows`` (each holds one image), or None."""
    if flows and all(len(flow.cases) < 2 for flow in flows):
        return (f"{len(flows)} flow(s) of one image each: one-prompt gives each flow's "
                "template image and scores the others, so nothing would be scored; group "
                f"the images into larger flows ({fix})")
    return None


def one_prompt_problem(card: Card, root: Path | None, fix: str = CARD_FIX) -> Problem | None:
    """An error when one-prompt can score no image of ``card``'s 2D flows, else None.

    Only 2D image flows listed from files are checked: a volume is scored
    slice by slice within itself, and sliced volumes are listed only by
    reading every mask (left to the run, which says "no case was scored").
    """
    if card.kind != "image-flow" or root is None:
        return None
    reader = get_reader(card.reader, f"{card.where}.reader")
    if not isinstance(reader, FileReader):
        return None
    options = reader.options(card)
    if isinstance(options, VolumeReaderOptions) and options.as_image_flow:
        return None
    flows = reader.list_flows(card, root)
    message = unscorable_flows(flows, fix)
    return Problem("error", str(card.path or card.where), message) if message else None


__all__ = ["CARD_FIX", "one_prompt_problem", "unscorable_flows"]
