"""Support sets under one-prompt (``k_shot``): ledger rows, nesting, views, scoring scope.

Expectations are built by hand from the definition (the template, then the
other frames containing the target in the order of their keyed draw
``keyed_stream(seed, dataset, flow, target, frame, "one-prompt", "support")``),
not from the selection code.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import ConfigError
from bench.prompts import get_protocol, ledger, make_prompts
from bench.prompts.protocols import k_values
from bench.prompts.scope import adapter_views, k_label, parse_k_label, scoring_scope
from bench.prompts.streams import keyed_stream
from bench.types import Flow

SEED = 5


def image_flow(n: int = 12) -> Flow:
    """An image flow of non-square frames; target "a" on frames 2..n-1, "b" on 0, 3, 5."""
    shapes = [(20 + i % 3, 31) for i in range(n)]
    presence = {"a": range(2, n), "b": (0, 3, 5)}
    masks = {}
    for target, frames in presence.items():
        per_frame = []
        for f, shape in enumerate(shapes):
            mask = np.zeros(shape, bool)
            if f in frames:
                mask[2:9, 3 + f:12 + f] = True
            per_frame.append(mask)
        masks[target] = per_frame
    frames = [np.full(shape, i, np.float32) for i, shape in enumerate(shapes)]
    return Flow("flow", "demo", "image-flow", frames, masks)


def expected_support(flow: Flow, target: str, template: int, k: int) -> list[int]:
    """The template, then the k - 1 other target frames of smallest keyed draw, leaving at
    least one target frame out of the set."""
    frames = [f for f, m in enumerate(flow.masks[target]) if m.any() and f != template]
    draw = {f: keyed_stream(SEED, flow.dataset, flow.id, target, f, "one-prompt",
                            "support").uniform() for f in frames}
    keep = min(k - 1, len(frames) - 1)
    return [template, *sorted(frames, key=lambda f: (draw[f], f))[:max(keep, 0)]]


def prompts_for(flow: Flow, k_shot, kind: str = "box"):
    return make_prompts(flow, "one-prompt", seed=SEED, prompt_kind=kind,
                        params={"k_shot": k_shot})


def test_support_rows_are_the_template_and_drawn_frames():
    flow = image_flow()
    prompts = prompts_for(flow, [1, 2, 4])
    templates = {p.target: p.frame for p in prompts if p.kind == "box"}
    assert templates == {"a": 2, "b": 0}  # template = "first" frame containing the target
    for target, template in templates.items():
        support = sorted(p.frame for p in prompts if p.kind == "support" and p.target == target)
        want = expected_support(flow, target, template, 4)
        assert support == sorted(want)
        for prompt in prompts:
            if prompt.kind == "support" and prompt.target == target:
                assert np.array_equal(prompt.mask, flow.masks[target][prompt.frame])
    # "b" is on 3 frames only: one of them is left to score, whatever k
    b_support = sorted(p.frame for p in prompts if p.kind == "support" and p.target == "b")
    assert len(b_support) == 2 and b_support[0] == 0 and set(b_support) < {0, 3, 5}


def test_no_k_shot_no_support_rows_and_the_template_is_unchanged():
    flow = image_flow()
    plain = make_prompts(flow, "one-prompt", seed=SEED, prompt_kind="box")
    with_k = prompts_for(flow, 4)
    assert all(p.kind == "box" for p in plain)
    assert [p for p in with_k if p.kind == "box"] == plain


@pytest.mark.parametrize("bad", [3, 0, 128, [1, 5], "2", True])
def test_k_shot_accepts_powers_of_two_up_to_64(bad):
    with pytest.raises(ConfigError, match="k_shot"):
        get_protocol("one-prompt").settings({"k_shot": bad})
    assert k_values(get_protocol("one-prompt").settings({"k_shot": [4, 1, 64]})) == (1, 4, 64)
    assert k_values(get_protocol("one-prompt").settings({"k_shot": 8})) == (8,)


def test_views_nest_per_k_and_only_in_context_models_see_support():
    flow = image_flow()
    params = get_protocol("one-prompt").settings({"k_shot": [1, 2, 4]})
    prompts = prompts_for(flow, [1, 2, 4])
    common = dict(protocol="one-prompt", params=params, seed=SEED, dataset="demo",
                  flow_id="flow")
    plain = adapter_views("registration", False, prompts, **common)
    assert plain == [("registration", [p for p in prompts if p.kind == "box"])]
    views = adapter_views("universeg", True, prompts, **common)
    assert [label for label, _ in views] == ["universeg@k1", "universeg@k2", "universeg@k4"]
    for (label, shown), k in zip(views, (1, 2, 4), strict=True):
        assert all(p.kind == "mask" for p in shown)
        for target, template in (("a", 2), ("b", 0)):
            frames = sorted(p.frame for p in shown if p.target == target)
            assert frames == sorted(expected_support(flow, target, template, k)), label
            for p in shown:
                assert np.array_equal(p.mask, flow.masks[p.target][p.frame])


def test_support_frames_are_given_for_every_model():
    flow = image_flow()
    params = get_protocol("one-prompt").settings({"k_shot": [1, 4]})
    prompts = prompts_for(flow, [1, 4])
    scope = scoring_scope(flow, "one-prompt", prompts, params)
    assert scope.given_for("a") == frozenset(expected_support(flow, "a", 2, 4))
    assert scope.given_for("b") == frozenset(expected_support(flow, "b", 0, 4))
    assert len(scope.given_for("b")) == 2


def test_support_slices_of_a_volume_are_given():
    n = 9
    masks = np.zeros((n, 10, 14), bool)
    masks[1:8, 2:6, 3:9] = True
    flow = Flow("vol", "demo", "volume", np.zeros((n, 10, 14), np.float32), {"t": masks})
    prompts = make_prompts(flow, "one-prompt", seed=SEED, prompt_kind="point",
                           params={"k_shot": 2})
    support = sorted(p.frame for p in prompts if p.kind == "support")
    assert support == sorted(expected_support(flow, "t", 1, 2))
    scope = scoring_scope(flow, "one-prompt", prompts,
                          get_protocol("one-prompt").settings({"k_shot": 2}))
    assert scope.given_for("t") == frozenset(support)


def test_ledger_keeps_template_and_support_row_on_one_frame_and_reads_back():
    flow = image_flow()
    prompts = prompts_for(flow, 2, kind="mask")
    rows = ledger.prompt_rows(prompts, dataset="demo", case="flow", protocol="one-prompt",
                              seed=SEED)
    data = ledger.dumps_ledger(rows)
    assert data == ledger.dumps_ledger(list(reversed(rows)))  # order-free bytes
    kinds = [(r["target"], r["frame"], r["kind"]) for r in rows]
    assert ("a", 2, "mask") in kinds and ("a", 2, "support") in kinds
    back = ledger.rows_to_prompts(rows, flow)
    for prompt in back:
        assert np.array_equal(prompt.mask, flow.masks[prompt.target][prompt.frame])


def test_k_labels_round_trip():
    assert k_label("universeg", 16) == "universeg@k16"
    assert parse_k_label("universeg@k16") == ("universeg", 16)
    assert parse_k_label("registration") == ("registration", None)
    assert parse_k_label("odd@kx") == ("odd@kx", None)
