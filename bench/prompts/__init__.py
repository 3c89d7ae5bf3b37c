"""Prompts: kinds, protocols, the keyed random streams and the prompt ledger.

Usage by the runner::

    from bench.prompts import make_prompts, scored_frames, PROTOCOLS, ledger

    prompts = make_prompts(flow, "one-prompt", seed=0, prompt_kind="box", params={})
    # params: a table, or the protocol's typed parameters (e.g. OnePromptParams)
    rows = ledger.prompt_rows(prompts, dataset=flow.dataset, case=flow.id,
                              protocol="one-prompt", seed=0)
    ledger.write_ledger(run_dir / "prompts.jsonl", rows)
    again = ledger.rows_to_prompts(ledger.read_ledger(run_dir / "prompts.jsonl"), flow)
"""

from bench.prompts import interactive, kinds, ledger, streams
from bench.prompts.interactive import next_click, noc, run_clicks
from bench.prompts.kinds import deepest_point, jitter_box, mask_sha256, tight_box
from bench.prompts.protocols import (
    PROTOCOLS,
    InteractiveParams,
    OfficialCodeParams,
    OnePromptParams,
    PaperRandomParams,
    PromptParams,
    ProtocolParams,
    ProtocolSpec,
    get_protocol,
    labelled_slab,
    make_prompts,
    official_targets,
    official_window,
    resolve_prompt_kind,
    scored_frames,
)
from bench.prompts.scope import ScoringScope, given_frames, scoring_scope
from bench.prompts.streams import KeyedStream, keyed_stream
from bench.prompts.view import draw_prompts

__all__ = [
    "PROTOCOLS",
    "InteractiveParams",
    "KeyedStream",
    "OfficialCodeParams",
    "OnePromptParams",
    "PaperRandomParams",
    "PromptParams",
    "ProtocolParams",
    "ProtocolSpec",
    "ScoringScope",
    "deepest_point",
    "draw_prompts",
    "get_protocol",
    "given_frames",
    "interactive",
    "jitter_box",
    "keyed_stream",
    "kinds",
    "labelled_slab",
    "ledger",
    "make_prompts",
    "mask_sha256",
    "next_click",
    "noc",
    "official_targets",
    "official_window",
    "resolve_prompt_kind",
    "run_clicks",
    "scored_frames",
    "scoring_scope",
    "streams",
    "tight_box",
]
