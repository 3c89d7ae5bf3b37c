"""``medsam2-ma`` (MedSAM2 of Ma et al. 2025): recipe steps, schedule and loading.

The model runs on SAM 2.1 tiny at 512 px with random weights, written to a
checkpoint in the published format (``{"model": state_dict}``) with the
object-score head's output bias raised by 20 so that the object is always
reported present (random weights otherwise often gate every mask to empty).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pytest
from bench.adapters import medsam2_ma as ma

from bench.errors import ConfigError
from bench.types import FlowFrames, Prompt

# -- pure functions on hand-computed cases (no torch needed)


def test_ct_window_clips_then_stretches_the_clipped_range_and_truncates():
    volume = np.array([-1000.0, 0.0, 40.0, 240.0, 1000.0])
    # window 40 +/- 200 -> [-160, 240]; (x + 160) / 400 * 255, truncated
    assert ma.ct_window(volume, 40, 400).tolist() == [0, 102, 127, 255, 255]
    assert ma.ct_window(volume, 40, 400).dtype == np.uint8


def test_ct_window_uses_the_volumes_own_range_not_the_window_bounds():
    # [0, 100] inside [-160, 240]: the textbook mapping would give 102 for 0
    assert ma.ct_window(np.array([0.0, 50.0, 100.0]), 40, 400).tolist() == [0, 127, 255]


def test_constant_volumes_map_to_zeros_instead_of_nan():
    assert ma.ct_window(np.full((2, 3), 500.0), 40, 400).tolist() == [[0, 0, 0]] * 2
    assert ma.mr_percentile(np.zeros((2, 2))).tolist() == [[0, 0]] * 2


def test_mr_percentile_clips_to_percentiles_of_positive_voxels_and_keeps_zeros():
    volume = np.concatenate([np.zeros(5), np.arange(1.0, 202.0)])
    out = ma.mr_percentile(volume)
    # percentiles of 1..201: 0.5 -> 2, 99.5 -> 200; (x - 2) / 198 * 255, truncated
    assert out[:5].tolist() == [0] * 5
    assert out[5 + 0] == 0 and out[5 + 1] == 0  # 1 and 2 clip to the low bound
    assert out[5 + 100] == 127  # 101 -> 127.5
    assert out[5 + 199] == 255 and out[5 + 200] == 255  # 200 and 201


def test_largest_component_is_26_connected_and_keeps_the_biggest():
    mask = np.zeros((4, 6, 6), dtype=bool)
    for i in range(4):
        mask[i, i, i] = True  # a diagonal chain: one component of 4 voxels in 26-connectivity
    mask[0, 5, 0:3] = True  # a face-connected bar of 3
    expected = mask.copy()
    expected[0, 5, 0:3] = False
    np.testing.assert_array_equal(ma.largest_component(mask), expected)


def test_largest_component_ties_go_to_the_first_and_empty_stays_empty():
    mask = np.zeros((3, 5, 5), dtype=bool)
    mask[0, 0, 0:2] = True
    mask[2, 4, 3:5] = True
    expected = np.zeros_like(mask)
    expected[0, 0, 0:2] = True
    np.testing.assert_array_equal(ma.largest_component(mask), expected)
    assert not ma.largest_component(np.zeros((2, 3, 3), dtype=bool)).any()


def test_pass_frames_start_at_the_earliest_prompted_frame():
    assert ma.pass_frames(6, [2]) == ([2, 3, 4, 5], [2, 1, 0])
    assert ma.pass_frames(5, [3, 1]) == ([1, 2, 3, 4], [1, 0])


def test_profiles_and_explicit_settings():
    adapter = ma.MedSAM2MaAdapter(settings={"random_weights": True})
    assert adapter.recipe() == ma.Recipe("ct-window", "two-pass", "largest-3d-cc")
    adapter = ma.MedSAM2MaAdapter(settings={"profile": "ma-mr", "postprocess": "none"})
    assert adapter.recipe() == ma.Recipe("mr-percentile", "two-pass", "none")
    assert ma.MedSAM2MaAdapter(settings={"profile": "harness"}).recipe() == ma.Recipe(
        "none", "joint", "none")
    with pytest.raises(ConfigError, match="profile"):
        ma.MedSAM2MaAdapter(settings={"profile": "ma-xx"})
    with pytest.raises(ConfigError, match="window_width"):
        ma.MedSAM2MaAdapter(settings={"window_width": 0})


def test_name_and_published_weights_are_not_medsam2s():
    from bench.adapters import registered

    assert registered()["medsam2-ma"] is ma.MedSAM2MaAdapter
    assert registered()["medsam2"] is not ma.MedSAM2MaAdapter
    reason = ma.MedSAM2MaAdapter(settings={}).unavailable()
    if "needs" not in reason:  # torch and sam2 installed: the checkpoint is what is missing
        assert "wanglab/MedSAM2" in reason and "MedSAM2_latest.pt" in reason


def test_namesakes_suite_runs_both_medsam2s_on_3d_and_2d_cards():
    from pathlib import Path

    from bench.adapters import create

    from bench.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "bench.toml")
    suite = config.settings.suites["namesakes"]
    assert list(suite.models) == ["medsam2", "medsam2-ma", "sam2.1", "medsam", "registration",
                                  "full-frame"]
    assert list(suite.datasets) == ["btcv", "kits23-volumes", "refuge2", "isic"]
    assert list(suite.demo) == ["demo-ct", "demo-fundus"]
    kinds = {name: config.cards[name].kind for name in [*suite.datasets, *suite.demo]}
    assert {kinds[n] for n in ("btcv", "kits23-volumes", "demo-ct")} == {"volume"}
    assert {kinds[n] for n in ("refuge2", "isic", "demo-fundus")} == {"image-flow"}
    # every model's bench.toml table is valid for its adapter
    for name in suite.models:
        create(name, config.models.get(name, {}))
    assert create("sam2.1", config.models["sam2.1"]).options.config == "sam2.1_hiera_t"
    with pytest.raises(ConfigError, match="expected a SAM 2.1 config"):
        create("sam2.1", {"config": "sam2_hiera_s"})


def test_namesakes_demo_run_scores_a_volume_and_an_image_flow(tmp_path):
    # Without roots the suite runs demo-ct (volumes) and demo-fundus (image flows); here
    # with the weight-free models only (the weighted ones need checkpoints).
    import pandas as pd

    from bench.cli import main

    assert main(["run", "--suite", "namesakes", "--limit", "2", "--models",
                 "registration,full-frame", "--out", str(tmp_path / "run"), "--no-cache"]) == 0
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    scored = table[table["status"] == "ok"]
    assert set(scored["dataset"]) == {"demo-ct", "demo-fundus"}
    volumes = scored[scored["dataset"] == "demo-ct"]
    assert set(volumes["case"]) == set(volumes["flow"])  # a volume is one case
    images = scored[scored["dataset"] == "demo-fundus"]
    assert (images["case"] != images["flow"]).all()  # each image is its own case


def test_report_section_compares_the_two_medsam2s_per_target_with_their_cost(tmp_path):
    from types import SimpleNamespace

    import pandas as pd
    from test_report_support import make_run, read_table

    from bench.compare import compare_models
    from bench.report.build import _namesakes
    from bench.report.document import Document, Table

    names = {"good": "medsam2", "poor": "medsam2-ma"}
    table = read_table(make_run(tmp_path / "run", models=("good", "poor"),
                                datasets=("fake-ct",)))
    table["model"] = table["model"].map(names)
    units = pd.DataFrame({"model": ["medsam2", "medsam2-ma", "full-frame", "medsam2"],
                          "dataset": ["fake-ct"] * 3 + ["fake-cells"],
                          "flow": ["v0", "v0", "v0", "c0"],
                          "status": ["ok"] * 4, "seconds": [2.0, 1.0, 0.1, 9.0],
                          "peak_rss_mb": [900.0, 500.0, 10.0, 800.0],
                          "cache": ["miss", "miss", "miss", "hit"], "attempts": [1] * 4})
    manifest = {"datasets": {"fake-ct": {"flows": [{"id": "v0", "frames": 8}]},
                             "fake-cells": {"flows": [{"id": "c0", "frames": 3}]}}}
    ctx = SimpleNamespace(table=table, metrics=["dice"], manifest=manifest,
                          rundir=SimpleNamespace(read_unit_table=lambda: units))
    doc = Document("t")
    _namesakes(doc, ctx)
    pair, cost = [block.frame for block in doc.blocks if isinstance(block, Table)]
    expected = compare_models(table, ["medsam2", "medsam2-ma"], metrics=["dice"],
                              n_resamples=1000)
    assert sorted(pair["target"]) == sorted(expected["target"]) == ["liver", "spleen"]
    assert set(pair["model_a"]) == {"medsam2"} and set(pair["model_b"]) == {"medsam2-ma"}
    assert list(cost["model"]) == ["medsam2", "medsam2-ma"]
    assert list(cost["peak RSS MB"]) == ["900.0", "500.0"]
    # seconds over the frames of the units that ran: the cache hit is not counted
    assert list(cost["seconds per frame"]) == [str(2.0 / 8), str(1.0 / 8)]
    # no section unless both ran
    doc = Document("t")
    _namesakes(doc, SimpleNamespace(table=table[table["model"] == "medsam2"], metrics=["dice"],
                                    manifest=manifest, rundir=ctx.rundir))
    assert doc.blocks == []


# -- the model (random weights, CPU)

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from bench.adapters.checkpoints import CheckpointError  # noqa: E402
from bench.adapters.sam2.build import instantiate  # noqa: E402

BOX = Prompt("t", 1, "box", box=(10, 8, 29, 23))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def state():
    return instantiate("sam2.1_hiera_t512", 512, 0).state_dict()


@pytest.fixture(scope="module")
def checkpoint(state, tmp_path_factory):
    present = OrderedDict(state)
    present["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] = (
        present["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] + 20.0)
    path = tmp_path_factory.mktemp("weights") / "MedSAM2_latest.pt"
    torch.save({"model": present, "epoch": 3}, path)
    return path


def adapter(checkpoint, **extra):
    # An explicit window: these volumes are HU without a card window (the default, the card's
    # window, is tested in test_medsam2_ma_slice.py).
    return ma.MedSAM2MaAdapter(settings={"checkpoint": str(checkpoint), "device": "cpu",
                                         "window_level": 40.0, "window_width": 400.0,
                                         **extra})


def ct_volume():
    """A 4-slice CT-like float volume: a bright block in soft tissue."""
    rng = np.random.default_rng(0)
    volume = rng.normal(0.0, 30.0, (4, 32, 40))
    volume[:, 8:24, 10:30] += 200.0
    volume[:, :, :3] = -1000.0  # air at one edge, clipped by the window
    return FlowFrames("vol", "synthetic", "volume", volume, modality="CT")


def test_the_model_is_sam21_tiny_at_512(checkpoint):
    predictor = adapter(checkpoint).load().predictor
    assert predictor.image_size == 512
    assert predictor.sam_image_embedding_size == 32
    assert predictor.sam_prompt_encoder.image_embedding_size == (32, 32)
    assert predictor.sam_prompt_encoder.mask_input_size == (128, 128)
    # feat_sizes [32, 32]: RoPE's initial table has 32 * 32 rows (stock tiny: 64 * 64)
    assert predictor.memory_attention.layers[0].self_attn.freqs_cis.shape[0] == 1024
    assert predictor.memory_attention.layers[0].cross_attn_image.freqs_cis.shape[0] == 1024


def test_checkpoint_loads_and_its_sha256_is_recorded(checkpoint, state):
    model = adapter(checkpoint)
    record = model.fingerprint()
    assert record["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert record["config"] == "sam2.1_hiera_t512" and record["image_size"] == 512
    assert record["profile"] == "ma-ct" and not record["meaningless"]
    loaded = model.load().predictor.state_dict()
    key = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"
    torch.testing.assert_close(loaded[key], state[key] + 20.0)


class NotWeights:
    """An object a weights-only unpickler must refuse."""


def test_untrusted_pickle_is_refused(state, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": dict(state), "extra": NotWeights()}, path)
    with pytest.raises(CheckpointError, match="refused to load.*NotWeights"):
        adapter(path).load()


def test_shape_mismatch_names_the_key_and_both_shapes(state, tmp_path):
    bad = dict(state)
    bad["no_obj_ptr"] = torch.zeros(1, 128)
    path = tmp_path / "bad.pt"
    torch.save({"model": bad}, path)
    with pytest.raises(CheckpointError, match=r"no_obj_ptr \(1, 128\) vs model \(1, 256\)"):
        adapter(path).load()


def test_a_sam20_state_dict_fails_the_strict_load(tmp_path):
    path = tmp_path / "sam20.pt"
    torch.save({"model": instantiate("sam2_hiera_t", 256, 0).state_dict()}, path)
    with pytest.raises(CheckpointError, match="missing.*no_obj_embed_spatial"):
        adapter(path).load()


def record_passes(monkeypatch, predictor):
    """Wrap ``propagate_in_video`` to record each pass: direction, fresh state, frames."""
    calls = []
    original = predictor.propagate_in_video

    def wrapped(state, *args, reverse=False, **kwargs):
        outputs = state["output_dict_per_obj"][0]
        call = {"reverse": reverse, "state": id(state), "frames": [],
                "tracked_before": len(outputs["non_cond_frame_outputs"])}
        calls.append(call)
        for item in original(state, *args, reverse=reverse, **kwargs):
            call["frames"].append(item[0])
            yield item

    monkeypatch.setattr(predictor, "propagate_in_video", wrapped)
    return calls


def test_two_pass_schedule_visits_the_frames_of_pass_frames(checkpoint, monkeypatch):
    model = adapter(checkpoint, postprocess="none")
    calls = record_passes(monkeypatch, model.load().predictor)
    prediction = model.predict(ct_volume(), [BOX])
    forward, backward = ma.pass_frames(4, [BOX.frame])
    assert [(c["reverse"], c["frames"]) for c in calls] == [(False, forward), (True, backward)]
    # independent passes: a fresh state, nothing tracked before the backward pass
    assert calls[0]["state"] != calls[1]["state"]
    assert calls[1]["tracked_before"] == 0
    assert all(mask.any() for mask in prediction.masks["t"])
    assert all(score is not None for score in prediction.scores["t"])


def test_two_pass_forward_frames_match_the_joint_schedule(checkpoint):
    flow = ct_volume()
    two = adapter(checkpoint, postprocess="none").predict(flow, [BOX]).masks["t"]
    joint = adapter(checkpoint, postprocess="none", schedule="joint").predict(flow, [BOX])
    # the joint schedule's forward pass is the same computation; frames after the key
    # slice come only from it in both schedules
    for frame in range(BOX.frame, 4):
        np.testing.assert_array_equal(two[frame], joint.masks["t"][frame])


def test_intensity_step_and_postprocess_are_wired(checkpoint):
    flow = ct_volume()
    recipe = adapter(checkpoint).predict(flow, [BOX]).masks["t"]
    mapped = FlowFrames("vol", "synthetic", "volume", ma.ct_window(flow.frames, 40, 400))
    raw = adapter(checkpoint, intensity="none", postprocess="none").predict(mapped, [BOX])
    expected = ma.largest_component(np.stack(raw.masks["t"]))
    np.testing.assert_array_equal(np.stack(recipe), expected)


@pytest.mark.parametrize(("modality", "profile", "refused"), [
    ("CT", "ma-ct", False), ("cone-beam CT", "ma-ct", False),
    ("MR (FLAIR by default)", "ma-mr", False), ("MR (FLAIR by default)", "ma-ct", True),
    ("", "ma-ct", True), ("ultrasound", "ma-mr", True),
    ("CT", "ma-mr", True), ("ultrasound", "harness", False),
])
def test_a_profile_intensity_step_is_refused_on_another_modality(modality, profile, refused):
    # ct-window on MR saturates it, mr-percentile on CT maps it by the wrong rule: both
    # would score garbage that looks like a number.
    flow = replace(ct_volume(), modality=modality)
    intensity = ma.PROFILES[profile].intensity
    if not refused:
        ma.check_modality(flow, intensity, profile, "[models.medsam2-ma]")
        return
    with pytest.raises(ConfigError, match=rf"profile = '{profile}' \({intensity}\) is for "
                                          r"(CT|MR) volumes, but dataset 'synthetic'"):
        ma.check_modality(flow, intensity, profile, "[models.medsam2-ma]")


def test_the_modality_refusal_names_the_fix_and_runs_in_predict(checkpoint):
    flow = replace(ct_volume(), modality="MR (T1 contrast-enhanced)")
    with pytest.raises(ConfigError, match="its card's modality is 'MR .*'; choose profile = "
                                          "'harness' or 'ma-mr', or set intensity explicitly"):
        adapter(checkpoint).predict(flow, [BOX])
    unnamed = replace(ct_volume(), modality="")
    with pytest.raises(ConfigError, match='its card gives no modality \\(add modality = "CT"'):
        adapter(checkpoint).predict(unnamed, [BOX])
    # An explicit intensity is the user's choice; an image flow has no intensity step.
    adapter(checkpoint, intensity="ct-window", postprocess="none").predict(unnamed, [BOX])
    frames = FlowFrames("img", "synthetic", "image-flow", list(ct_volume().frames[:2]))
    adapter(checkpoint).predict(frames, [Prompt("t", 0, "box", box=(10, 8, 29, 23))])


def test_the_recipe_starts_from_hounsfield_units_whatever_the_card_window(checkpoint):
    # A card window ([-125, 275], BTCV's) must not stand in for the recipe's own
    # ([-160, 240]): the frames the card scaled carry their HU, and the masks equal
    # those of the same volume given in HU.
    from bench.readers.geometry import window_intensities

    hu = ct_volume()
    windowed, _ = window_intensities(np.asarray(hu.frames, np.float32).copy(), [-125, 275],
                                     None, "card")
    carded = replace(hu, frames=windowed, source_frames=np.asarray(hu.frames, np.float32))
    model = adapter(checkpoint, postprocess="none")
    from_card = model.predict(carded, [BOX]).masks["t"]
    from_hu = model.predict(replace(hu, frames=np.asarray(hu.frames, np.float32)),
                            [BOX]).masks["t"]
    for got, expected in zip(from_card, from_hu, strict=True):
        np.testing.assert_array_equal(got, expected)
    mapped = ma.apply_intensity(carded, "ct-window", 40, 400)
    np.testing.assert_array_equal(mapped.frames, ma.ct_window(hu.frames, 40, 400))
    assert mapped.source_frames is None
