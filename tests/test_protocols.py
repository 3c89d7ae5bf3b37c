"""Prompt protocols (issue 3, DESIGN sections 2 and 4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.errors import ConfigError
from bench.prompts import (
    PROTOCOLS,
    PaperRandomParams,
    get_protocol,
    labelled_slab,
    make_prompts,
    resolve_prompt_kind,
    scored_frames,
)
from bench.prompts.kinds import deepest_point, tight_box
from bench.types import Flow


def volume(presence: dict[str, list[int]], n: int, size: int = 8, name: str = "vol") -> Flow:
    """A volume whose target t occupies a small square on the frames in presence[t]."""
    masks = {}
    for i, (target, frames) in enumerate(presence.items()):
        mask = np.zeros((n, size, size), bool)
        for f in frames:
            mask[f, 1 + i % 3:4 + i % 3, 2:5 + f % 3] = True
        masks[target] = mask
    return Flow(name, "demo", "volume", np.zeros((n, size, size), np.float32), masks)


def image_flow(presence: dict[str, list[int]], n: int, name: str = "flow") -> Flow:
    """An image flow of mixed frame shapes."""
    shapes = [(6 + i % 3, 7 + i % 2) for i in range(n)]
    masks = {}
    for target, frames in presence.items():
        per_frame = []
        for f, shape in enumerate(shapes):
            mask = np.zeros(shape, bool)
            if f in frames:
                mask[1:4, 2:5] = True
            per_frame.append(mask)
        masks[target] = per_frame
    frames = [np.zeros(shape + (3,), np.uint8) for shape in shapes]
    return Flow(name, "demo", "image-flow", frames, masks)


presence_patterns = st.integers(1, 14).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.dictionaries(st.sampled_from(["a", "b", "c"]),
                        st.lists(st.integers(0, n - 1), unique=True), min_size=1),
    )
)


# ------------------------------------------------------------------ one-prompt


@settings(max_examples=80, deadline=None)
@given(presence_patterns, st.sampled_from(["first", "random"]), st.integers(0, 1000),
       st.sampled_from(["point", "point-random", "box", "box-jitter", "mask"]))
def test_one_prompt_gives_exactly_one_prompted_frame_per_target(pattern, template, seed, kind):
    n, presence = pattern
    flow = volume(presence, n)
    prompts = make_prompts(flow, "one-prompt", seed=seed, prompt_kind=kind,
                           params={"template": template})
    per_target = {}
    for prompt in prompts:
        per_target.setdefault(prompt.target, []).append(prompt.frame)
        assert prompt.kind == kind
    assert set(per_target) == {t for t, frames in presence.items() if frames}
    for target, frames in per_target.items():
        assert len(frames) == 1
        assert frames[0] in presence[target]
        if template == "first":
            assert frames[0] == min(presence[target])


def test_one_prompt_template_index_and_its_errors():
    flow = volume({"a": [2, 3, 4], "b": [3, 7]}, 9)
    prompts = make_prompts(flow, "one-prompt", seed=0, prompt_kind="box",
                           params={"template": 3})
    assert [(p.target, p.frame) for p in prompts] == [("a", 3), ("b", 3)]
    assert prompts[0].box == tight_box(flow.masks["a"][3])
    with pytest.raises(ValueError, match="absent"):
        make_prompts(flow, "one-prompt", seed=0, prompt_kind="box", params={"template": 7})
    with pytest.raises(ValueError, match="only 9 frames"):
        make_prompts(flow, "one-prompt", seed=0, prompt_kind="box", params={"template": 9})


def test_one_prompt_random_template_depends_on_seed_and_is_uniform():
    flow = volume({"a": list(range(10))}, 10)
    chosen = [make_prompts(flow, "one-prompt", seed=s, prompt_kind="point",
                           params={"template": "random"})[0].frame for s in range(400)]
    counts = np.bincount(chosen, minlength=10)
    assert len(counts) == 10
    sigma = np.sqrt(400 * 0.1 * 0.9)
    assert np.all(np.abs(counts - 40) < 4 * sigma)


def test_one_prompt_needs_a_prompt_kind():
    flow = volume({"a": [0]}, 2)
    with pytest.raises(ValueError, match="prompt kind"):
        make_prompts(flow, "one-prompt", seed=0, params={})
    # The prompt_kind parameter is an accepted override.
    prompts = make_prompts(flow, "one-prompt", seed=0, params={"prompt_kind": "mask"})
    assert prompts[0].kind == "mask"
    assert np.array_equal(prompts[0].mask, flow.masks["a"][0])


# ------------------------------------------------------------------ paper-random


@pytest.mark.parametrize(
    ("kind", "params", "p"),
    [("volume", {}, 0.25), ("image-flow", {}, 0.3), ("volume", {"p": 0.1}, 0.1)],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_paper_random_fraction_within_a_binomial_bound(kind, params, p, seed):
    n = 2000
    masks = np.zeros((n, 2, 2), bool)
    masks[:, 0, 0] = True
    flow = Flow("big", "demo", kind, np.zeros((n, 2, 2)), {"t": masks})
    prompts = make_prompts(flow, "paper-random", seed=seed, params=params)
    assert all(prompt.kind == "mask" for prompt in prompts)  # the paper's default kind
    fraction = len(prompts) / n
    assert abs(fraction - p) <= 4 * np.sqrt(p * (1 - p) / n)


@settings(max_examples=60, deadline=None)
@given(presence_patterns, st.integers(0, 1000))
def test_paper_random_prompts_only_target_frames_and_at_least_one(pattern, seed):
    n, presence = pattern
    flow = volume(presence, n)
    prompts = make_prompts(flow, "paper-random", seed=seed, prompt_kind="point",
                           params={"p": 0.2})
    per_target = {}
    for prompt in prompts:
        assert prompt.frame in presence[prompt.target]
        assert prompt.points == (deepest_point(flow.masks[prompt.target][prompt.frame]),)
        per_target.setdefault(prompt.target, []).append(prompt.frame)
    assert set(per_target) == {t for t, frames in presence.items() if frames}
    assert all(len(set(frames)) == len(frames) for frames in per_target.values())


def test_paper_random_fallback_is_one_keyed_frame():
    flow = volume({"a": [1, 4, 6]}, 8)
    picks = set()
    for seed in range(60):
        prompts = make_prompts(flow, "paper-random", seed=seed, prompt_kind="box",
                               params={"p": 1e-12})
        assert len(prompts) == 1
        picks.add(prompts[0].frame)
        again = make_prompts(flow, "paper-random", seed=seed, prompt_kind="box",
                             params={"p": 1e-12})
        assert again == prompts
    assert picks == {1, 4, 6}


def test_paper_random_larger_p_prompts_a_superset():
    flow = volume({"a": list(range(40))}, 40)
    small = {p.frame for p in make_prompts(flow, "paper-random", seed=5, prompt_kind="point",
                                           params={"p": 0.2})}
    large = {p.frame for p in make_prompts(flow, "paper-random", seed=5, prompt_kind="point",
                                           params={"p": 0.6})}
    assert small < large


# ------------------------------------------------------------------ official-code


def test_official_code_volume_hand_case():
    # 32 slices. a: 3-28, so the labelled slab is 3-28 (n = 26), scored window 3-8 (26 // 4 = 6),
    # prompts on window slices 0, 2, 4 = frames 3, 5, 7. b: 4-5 and 20 (in the window, absent
    # on 3 and 7 -> empty-mask there). c: 15-18, absent from the window -> no prompt at all.
    flow = volume({"a": list(range(3, 29)), "b": [4, 5, 20], "c": [15, 16, 17, 18]}, 32)
    assert labelled_slab(flow) == (3, 29)
    assert scored_frames(flow, "official-code", {}) == [3, 4, 5, 6, 7, 8]
    prompts = make_prompts(flow, "official-code", seed=0, prompt_kind="point", params={})
    got = [(p.target, p.frame, p.kind) for p in prompts]
    assert got == [("a", 3, "box"), ("a", 5, "box"), ("a", 7, "box"),
                   ("b", 3, "empty-mask"), ("b", 5, "box"), ("b", 7, "empty-mask")]
    for prompt in prompts:
        truth = flow.masks[prompt.target][prompt.frame]
        if prompt.kind == "box":
            assert prompt.box == tight_box(truth)
        else:
            assert prompt.mask.shape == truth.shape and not prompt.mask.any()


def test_official_code_volume_click_variant_and_prompt_freq():
    flow = volume({"a": list(range(0, 40))}, 40)  # slab 0-39, window 0-9
    prompts = make_prompts(flow, "official-code", seed=3,
                           params={"prompt": "click", "prompt_freq": 3})
    assert [p.frame for p in prompts] == [0, 3, 6, 9]
    for prompt in prompts:
        (x, y), = prompt.points
        assert prompt.kind == "point-random" and prompt.labels == (1,)
        assert flow.masks["a"][prompt.frame][y, x]


def test_official_code_short_slab_scores_nothing():
    flow = volume({"a": [5, 6, 7]}, 10)  # n = 3, floor(3/4) = 0
    assert scored_frames(flow, "official-code", {}) == []
    assert make_prompts(flow, "official-code", seed=0, params={}) == []
    assert labelled_slab(volume({"a": []}, 4)) is None


@settings(max_examples=60, deadline=None)
@given(presence_patterns, st.integers(1, 3))
def test_official_code_prompts_stay_on_even_window_frames(pattern, freq):
    n, presence = pattern
    flow = volume(presence, n)
    window = scored_frames(flow, "official-code", {"prompt_freq": freq})
    prompts = make_prompts(flow, "official-code", seed=0, params={"prompt_freq": freq})
    in_window = [t for t, frames in presence.items() if set(frames) & set(window)]
    assert sorted((p.target, p.frame) for p in prompts) == sorted(
        (t, f) for t in in_window for f in window[::freq])
    for prompt in prompts:
        assert prompt.frame in window and (prompt.frame - window[0]) % freq == 0
        present = prompt.frame in presence[prompt.target]
        assert prompt.kind == ("box" if present else "empty-mask")


def test_official_code_image_flow_clicks_every_fifth_image():
    flow = image_flow({"disc": list(range(12)), "cup": [0, 1, 2, 3, 4, 6, 10]}, 12)
    assert scored_frames(flow, "official-code", {}) is None
    prompts = make_prompts(flow, "official-code", seed=0, params={})
    assert [(p.target, p.frame) for p in prompts] == [
        ("cup", 0), ("cup", 5), ("cup", 10), ("disc", 0), ("disc", 5), ("disc", 10)]
    for prompt in prompts:
        (x, y), = prompt.points
        truth = flow.masks[prompt.target][prompt.frame]
        assert prompt.kind == "point-random"
        assert 0 <= y < truth.shape[0] and 0 <= x < truth.shape[1]
        if truth.any():
            assert prompt.labels == (1,) and truth[y, x]
        else:  # cup absent from image 5: a negative click, as the official random_click
            assert (prompt.target, prompt.frame) == ("cup", 5) and prompt.labels == (0,)


# ------------------------------------------------------------------ every-frame, interactive


@settings(max_examples=40, deadline=None)
@given(presence_patterns)
def test_every_frame_and_interactive_prompt_each_frame_containing_the_target(pattern):
    n, presence = pattern
    flow = volume(presence, n)
    expected = sorted((t, f) for t, frames in presence.items() for f in frames)
    every = make_prompts(flow, "every-frame", seed=0, params={})
    assert [(p.target, p.frame) for p in every] == expected
    assert all(p.kind == "point" for p in every)
    first_clicks = make_prompts(flow, "interactive", seed=0, prompt_kind="box", params={})
    assert [(p.target, p.frame) for p in first_clicks] == expected
    for prompt in first_clicks:
        assert prompt.kind == "point" and prompt.labels == (1,)
        assert prompt.points == (deepest_point(flow.masks[prompt.target][prompt.frame]),)


# ------------------------------------------------------------------ seeds


def test_seed_changes_random_protocols_not_point_or_box():
    flow = volume({"a": list(range(2, 30)), "b": list(range(10, 20))}, 32)
    for kind in ("point", "box"):
        base = make_prompts(flow, "one-prompt", seed=0, prompt_kind=kind, params={})
        assert make_prompts(flow, "one-prompt", seed=1, prompt_kind=kind, params={}) == base
    runs = [make_prompts(flow, "paper-random", seed=s, prompt_kind="point", params={})
            for s in range(3)]
    frame_sets = [{(p.target, p.frame) for p in run} for run in runs]
    assert frame_sets[0] != frame_sets[1] and frame_sets[1] != frame_sets[2]
    points = {}
    for run in runs:  # same frame, same point, whatever the seed
        for prompt in run:
            assert points.setdefault((prompt.target, prompt.frame), prompt.points) == prompt.points
    jitter = [make_prompts(flow, "every-frame", seed=s, prompt_kind="box-jitter", params={})
              for s in range(2)]
    assert [p.box for p in jitter[0]] != [p.box for p in jitter[1]]


# ------------------------------------------------------------------ specs, params, cards


def test_protocol_registry_and_parameters():
    assert set(PROTOCOLS) >= {"one-prompt", "paper-random", "official-code", "every-frame",
                              "interactive", "medsam-box", "sam-med3d-clicks"}
    assert PROTOCOLS["one-prompt"].defaults == {"template": "first", "prompt_kind": None,
                                                "max_jitter": 20, "k_shot": None}
    assert PROTOCOLS["official-code"].defaults == {"prompt": "box", "prompt_freq": 2,
                                                   "click_every": 5}
    assert PROTOCOLS["interactive"].defaults["max_clicks"] == 20
    with pytest.raises(ConfigError, match=r"^protocol_params: unknown key 'templat' \(did you "
                       r"mean 'template'\?\)$"):
        PROTOCOLS["one-prompt"].resolve({"templat": "first"})
    with pytest.raises(ConfigError, match=r"^protocol_params.template: expected 'first', "
                       r"'middle' or 'random', or a valid integer \(got 'last'\)$"):
        PROTOCOLS["one-prompt"].resolve({"template": "last"})
    with pytest.raises(ConfigError, match=r"^protocol_params.p: expected a value <= 1.0 \(got "
                       r"1.5\)$"):
        PROTOCOLS["paper-random"].resolve({"p": 1.5})
    with pytest.raises(ConfigError, match=r"^protocol_params.p: expected a valid number"):
        PROTOCOLS["paper-random"].resolve({"p": True})
    with pytest.raises(ConfigError, match=r"^protocol_params.prompt_freq: expected a value >= 1"):
        PROTOCOLS["official-code"].resolve({"prompt_freq": 0})
    with pytest.raises(ConfigError, match=r"^protocol_params.max_jitter: expected a valid integer"):
        PROTOCOLS["every-frame"].resolve({"max_jitter": "5"})
    with pytest.raises(ConfigError, match=r"prompt_kind: .*\(got 'boxes'\) \(did you mean "
                       r"'box'\?\)$"):
        PROTOCOLS["every-frame"].resolve({"prompt_kind": "boxes"})
    with pytest.raises(ConfigError, match=r"^unknown protocol 'every_frame' \(did you mean "
                       r"'every-frame'\?\)$"):
        get_protocol("every_frame")
    with pytest.raises(ConfigError, match="unknown key 'prompt_kind'"):
        make_prompts(volume({"a": [0]}, 1), "official-code", seed=0,
                     params={"prompt_kind": "box"})


def test_protocol_parameters_are_typed_and_remember_what_was_set():
    spec = PROTOCOLS["paper-random"]
    params = spec.settings({"p": 0.4})
    assert isinstance(params, PaperRandomParams)
    assert (params.p, params.prompt_kind, params.max_jitter) == (0.4, None, 20)
    assert params.model_fields_set == {"p"}
    assert spec.settings(params) is params  # already typed: used as is
    assert spec.resolve({"p": 0.4}) == {"p": 0.4, "prompt_kind": None, "max_jitter": 20}
    # An integer where a number is expected is the same number (TOML writes 1 for 1.0).
    assert spec.settings({"p": 1}).p == 1.0
    thresholds = PROTOCOLS["interactive"].settings({"noc_thresholds": [0.5, 0.75]})
    assert thresholds.noc_thresholds == (0.5, 0.75)
    # Typed parameters give the same prompts as the table they came from.
    flow = volume({"a": list(range(6))}, 6)
    assert make_prompts(flow, "paper-random", seed=3, params=params) == \
        make_prompts(flow, "paper-random", seed=3, params={"p": 0.4})


def test_resolve_prompt_kind():
    assert resolve_prompt_kind("one-prompt", {}, "box") == "box"
    assert resolve_prompt_kind("one-prompt", {"prompt_kind": "mask"}, "box") == "mask"
    assert resolve_prompt_kind("paper-random", {}, "box") == "mask"
    assert resolve_prompt_kind("every-frame", {}, "box") == "point"
    assert resolve_prompt_kind("official-code", {}, "box") is None
    assert resolve_prompt_kind("interactive", {}, "box") is None


def test_cards_state_prompt_counts_and_ground_truth_use():
    for name, spec in PROTOCOLS.items():
        text = spec.card({}, "point")
        assert text.startswith(name) and "Taken from ground truth" in text
    assert "p = 0.4" in PROTOCOLS["paper-random"].card({"p": 0.4})
    assert "p = 0.25 for volumes, 0.3 for image flows" in PROTOCOLS["paper-random"].card()
    official = PROTOCOLS["official-code"].card()
    for needle in ("labelled slab", "floor(n/4)", "all-zero mask", "index % 5 == 0"):
        assert needle in official
    assert "one uniform random click" in PROTOCOLS["official-code"].card({"prompt": "click"})
    assert "1 prompt per flow and target" in PROTOCOLS["one-prompt"].card({}, "box")
    assert "mask itself" in PROTOCOLS["one-prompt"].card({}, "mask")
