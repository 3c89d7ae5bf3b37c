"""Per-frame SAM and MedSAM (bench.adapters.sam), with a randomly initialised ViT-B.

The model runs at 64 px (the smallest input the adapters accept) to keep CPU
time down; every frame is encoded once per process (the embedding cache).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

import torch.nn.functional as F  # noqa: E402
from bench.adapters import checkpoints, create  # noqa: E402
from bench.adapters.sam.adapter import SamOptions  # noqa: E402
from bench.adapters.sam.build import VARIANTS, Variant, build_sam, load_model  # noqa: E402
from bench.adapters.sam.inputs import frames_uint8, mask_logits, medsam_box, medsam_input  # noqa: E402
from bench.adapters.torch_utils import state_dict_digest  # noqa: E402
from segment_anything import SamPredictor, sam_model_registry  # noqa: E402
from skimage.transform import resize  # noqa: E402

from bench.errors import ConfigError  # noqa: E402
from bench.settings import validate  # noqa: E402
from bench.types import FlowFrames, Prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
RANDOM = {"random_weights": True, "image_size": SIZE, "device": "cpu", "init_seed": 0}


def test_listing_models_does_not_import_torch():
    code = ("import sys; from bench.adapters import registered; names = registered(); "
            "assert 'sam' in names and 'medsam' in names; "
            "assert 'torch' not in sys.modules and 'segment_anything' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A 40x48 RGB uint8 frame: a bright disc on a darker ramp."""
    rows, cols = np.mgrid[:40, :48]
    grey = 40 + 2 * cols + 150 * (((rows - 18) ** 2 + (cols - 22) ** 2) <= 81)
    return np.stack([grey, grey * 0.8, grey * 0.6], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    return load_model("sam", validate(SamOptions, RANDOM, "test"), torch.device("cpu")).model


# ------------------------------------------------------------------------- architecture


def test_builder_matches_the_package_at_1024_and_scales_grids():
    with torch.device("meta"):
        ours = build_sam("vit_b", 1024).state_dict()
        package = sam_model_registry["vit_b"](checkpoint=None).state_dict()
        small = build_sam("vit_b", 256)
    assert {k: tuple(v.shape) for k, v in ours.items()} == \
        {k: tuple(v.shape) for k, v in package.items()}
    # At 256 px the encoder grid is 16x16: positional embedding and global-attention
    # relative positions follow; windowed blocks keep their 14x14 windows.
    shapes = {k: tuple(v.shape) for k, v in small.state_dict().items()}
    assert shapes["image_encoder.pos_embed"] == (1, 16, 16, 768)
    assert shapes["image_encoder.blocks.2.attn.rel_pos_h"] == (31, 64)
    assert shapes["image_encoder.blocks.0.attn.rel_pos_h"] == (27, 64)
    assert small.prompt_encoder.image_embedding_size == (16, 16)
    assert set(shapes) == set(ours)


# ------------------------------------------------------------------ pre/post-processing


def test_mask_logits_by_hand():
    # A 32x16 mask on a 64 px model: decoder grid 16, longest side 32 -> 16, so the
    # mask is halved to 16x8 and padded on the right to 16x16.
    mask = np.zeros((32, 16), dtype=bool)
    mask[8:24, 4:12] = True
    logits = mask_logits(mask, 64)
    inside = np.log(999.0)
    expected = np.full((1, 16, 16), -inside, dtype=np.float32)
    expected[0, 4:12, 2:6] = inside
    assert logits.shape == (1, 16, 16)
    np.testing.assert_allclose(logits, expected, rtol=1e-6)


def test_frames_to_uint8():
    grey = np.array([[0.0, 0.5], [0.25, 1.0]], dtype=np.float32)
    out = frames_uint8([grey], "image-flow")[0]
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out[..., 0].tolist() == [[0, 128], [64, 255]]  # rint(x * 255)
    rgb = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert np.array_equal(frames_uint8([rgb], "image-flow")[0], rgb)


def test_medsam_box_and_input_follow_medsam_inference():
    # MedSAM_Inference.py: box / [W, H, W, H] * 1024 on the frame-pixel box.
    box = medsam_box((95, 255, 190, 350), (512, 640), 1024)
    np.testing.assert_allclose(box, [95 * 1.6, 255 * 2, 190 * 1.6, 350 * 2])
    image = np.zeros((10, 20, 3), dtype=np.uint8)
    image[2:8, 5:15] = (200, 100, 50)
    image[0, 0] = (20, 20, 20)
    tensor = medsam_input(image, 64)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == np.float32
    assert tensor.min() == 0.0 and tensor.max() == 1.0  # min-max over the whole image
    # Constant image: the 1e-8 clip keeps it finite (all zeros).
    assert not medsam_input(np.full((5, 5, 3), 7, np.uint8), 64).any()


# ------------------------------------------------------------------------- prediction


def test_sam_matches_segment_anything_predictor(frame, model):
    mask_prompt = np.zeros(frame.shape[:2], dtype=bool)
    mask_prompt[10:27, 14:31] = True
    prompts = [
        Prompt("boxed", 0, "box", box=(13, 9, 31, 27)),
        Prompt("clicked", 0, "point", points=((22, 18),), labels=(1,)),
        Prompt("masked", 0, "mask", mask=mask_prompt),
    ]
    flow = FlowFrames("f", "synthetic", "image-flow", [frame, frame[::-1].copy()])
    adapter = create("sam", RANDOM)
    pred = adapter.predict(flow, prompts)

    reference = SamPredictor(model)
    reference.set_image(frame)
    expected = {
        "boxed": reference.predict(box=np.array([13, 9, 31, 27]), multimask_output=False),
        # A single click: three candidates, the best by the IoU head.
        "clicked": reference.predict(point_coords=np.array([[22.0, 18.0]]),
                                     point_labels=np.array([1]), multimask_output=True),
        "masked": reference.predict(box=np.array([14, 10, 30, 26]),
                                    mask_input=mask_logits(mask_prompt, SIZE),
                                    multimask_output=False),
    }
    for target, (masks, quality, _) in expected.items():
        best = int(np.argmax(quality))
        assert np.array_equal(pred.masks[target][0], masks[best]), target
        assert pred.scores[target][0] == pytest.approx(float(quality[best]), abs=1e-6)
        # The unprompted frame gets an empty mask and no score.
        assert not pred.masks[target][1].any() and pred.scores[target][1] is None
        # Logits: the kept mask's, at the frame's shape, before the threshold at 0.
        kept = pred.logits[target][0]
        assert kept.shape == frame.shape[:2]
        np.testing.assert_array_equal(kept > 0, masks[best])
        assert pred.logits[target][1].shape == (1, 1)
        assert float(pred.logits[target][1][0, 0]) < 0.1  # below every official threshold
    assert len(expected["clicked"][1]) == 3
    assert "EMPTY prediction" in adapter.description


def test_medsam_matches_medsam_inference(frame, model):
    adapter = create("medsam", RANDOM)
    box = (13, 9, 31, 27)
    flow = FlowFrames("f", "synthetic", "image-flow", [frame, frame])
    pred = adapter.predict(flow, [Prompt("t", 1, "box-jitter", box=box),
                                  Prompt("gone", 1, "empty-mask")])

    # MedSAM_Inference.py, step by step.
    height, width = frame.shape[:2]
    image = resize(frame, (SIZE, SIZE), order=3, preserve_range=True,
                   anti_aliasing=True).astype(np.uint8)
    image = (image - image.min()) / np.clip(image.max() - image.min(), 1e-8, None)
    tensor = torch.tensor(image).float().permute(2, 0, 1).unsqueeze(0)
    box_s = np.array([box]) / np.array([width, height, width, height]) * SIZE
    with torch.no_grad():
        embedding = model.image_encoder(tensor)
        sparse, dense = model.prompt_encoder(
            points=None, boxes=torch.as_tensor(box_s, dtype=torch.float)[:, None, :], masks=None)
        logits, quality = model.mask_decoder(
            image_embeddings=embedding, image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=False)
        prob = F.interpolate(torch.sigmoid(logits), size=(height, width), mode="bilinear",
                             align_corners=False)
    expected = prob.squeeze().numpy() > 0.5
    assert np.array_equal(pred.masks["t"][1], expected)
    # The decoder's low-resolution logits as they are (the official metrics resize them).
    np.testing.assert_allclose(pred.logits["t"][1], logits[0, 0].numpy(), atol=1e-5)
    assert pred.logits["t"][0].shape == (1, 1) and pred.logits["gone"][1].shape == (1, 1)
    assert pred.scores["t"][1] == pytest.approx(float(quality[0, 0]), abs=1e-6)
    assert not pred.masks["t"][0].any() and pred.scores["t"][0] is None
    # An empty-mask prompt declares the target absent: empty, not segmented.
    assert not any(m.any() for m in pred.masks["gone"]) and pred.scores["gone"] == [None, None]


def test_official_metrics_are_computed_from_their_logits(frame):
    # medsam now exposes logits: dice_official is a number (not "unavailable"), the one
    # the official scorer gives on those logits; the unprompted frame scores as empty.
    from bench.metrics import EmptyPolicy
    from bench.official_metrics import official_image_scores
    from bench.scoring import score_flow
    from bench.types import Flow

    truth = np.zeros(frame.shape[:2], dtype=bool)
    truth[10:27, 14:31] = True
    flow = Flow("f", "synthetic", "image-flow", [frame, frame], {"t": [truth, truth]})
    pred = create("medsam", RANDOM).predict(flow.view(), [Prompt("t", 0, "box",
                                                                  box=(13, 9, 31, 27))])
    rows = score_flow(flow, pred, metrics=["dice_official"],
                      policy=EmptyPolicy(both_empty="exclude"), nsd_tolerance_mm=2.0)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["value"] == pytest.approx(official_image_scores(pred.logits["t"][0],
                                                                   truth)[0])
    assert rows[1]["value"] == pytest.approx(0.0, abs=1e-6)  # smoothed: nothing predicted


def test_settings_are_validated():
    from typing import get_args

    assert get_args(Variant) == tuple(VARIANTS)
    with pytest.raises(ConfigError, match=r"^\[models.medsam\].variant: expected 'vit_b' "
                                          r"\(got 'vit_l'\)( \(did you mean 'vit_b'\?\))?$"):
        create("medsam", {"variant": "vit_l"})
    with pytest.raises(ConfigError, match=r"^\[models.sam\].image_size: expected a multiple "
                                          r"of 64 \(got 100\)$"):
        create("sam", {"image_size": 100})
    with pytest.raises(ConfigError, match=r"^\[models.sam\].multimask: expected 'auto', "
                                          r"'always' or 'never' \(got 'some'\)$"):
        create("sam", {"multimask": "some"})
    with pytest.raises(ConfigError, match=r"\[models.medsam\]: unknown key 'multimask'"):
        create("medsam", {"multimask": "auto"})
    record = create("sam", RANDOM).options.model_dump()
    assert record == {"variant": "vit_b", "image_size": SIZE, "checkpoint": "", "device": "cpu",
                      "random_weights": True, "init_seed": 0, "cache_mb": 512,
                      "cache_dir": "", "multimask": "auto", "mask_prompt": "logits+box"}


def test_medsam_refuses_points(frame):
    flow = FlowFrames("f", "synthetic", "image-flow", [frame])
    with pytest.raises(ValueError, match="medsam takes box prompts only.*point"):
        create("medsam", RANDOM).predict(flow, [Prompt("t", 0, "point", points=((3, 4),),
                                                       labels=(1,))])


def test_random_weights_are_seeded_and_stamped_meaningless(model):
    record = create("sam", RANDOM).fingerprint()
    assert record["meaningless"] is True and record["checkpoint_sha256"] == ""
    assert record["weights_digest"] == state_dict_digest(model.state_dict())
    # The weights are a function of init_seed alone, and building them leaves the
    # global random stream alone.
    before = torch.random.get_rng_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rebuilt = build_sam("vit_b", SIZE)
    assert state_dict_digest(rebuilt.state_dict()) == record["weights_digest"]
    assert torch.equal(torch.random.get_rng_state(), before)


# ------------------------------------------------------------------------- checkpoints


def test_missing_checkpoint_names_the_setting_and_the_source(monkeypatch):
    monkeypatch.delenv("MEDSAM2_BENCH_CHECKPOINT_MEDSAM", raising=False)
    adapter = create("medsam", {"device": "cpu"})
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"\[models.medsam\].*MEDSAM2_BENCH_CHECKPOINT_MEDSAM.*"
                             r"--checkpoint medsam=PATH.*bowang-lab/MedSAM"):
        adapter.fingerprint()


def test_checkpoint_that_does_not_fit_is_refused_with_a_summary(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"model": {"image_encoder.pos_embed": torch.zeros(1, 64, 64, 768),
                          "extra.weight": torch.zeros(2)}}, path)
    adapter = create("sam", {"device": "cpu", "image_size": SIZE, "checkpoint": str(path)})
    with pytest.raises(checkpoints.CheckpointError) as err:
        adapter.load()
    message = str(err.value)
    assert str(path) in message and "image_size 64" in message
    assert "1 unexpected" in message and "extra.weight" in message
    assert "image_encoder.pos_embed (1, 64, 64, 768) vs model (1, 4, 4, 768)" in message
    assert "fit image_size = 1024 only" in message


def test_checkpoint_loads_strictly_and_is_fingerprinted(tmp_path, monkeypatch, model):
    # A stand-in file (its sha256 is recorded); its content is the random model's
    # state dict, served by the loader so that no 360 MB file is written.
    path = tmp_path / "sam_vit_b.pth"
    path.write_bytes(b"stand-in")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(checkpoints, "load_state_dict", lambda p: state)
    adapter = create("sam", {"device": "cpu", "image_size": SIZE, "checkpoint": str(path)})
    record = adapter.fingerprint()
    assert record["checkpoint_sha256"] == hashlib.sha256(b"stand-in").hexdigest()
    assert record["meaningless"] is False and record["checkpoint"] == str(path)
    loaded = adapter.load().model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


# ------------------------------------------------------------------------------ runner


def test_runner_stamps_random_weights_and_records_scores(tmp_path):
    from bench import atomic
    from bench.config import load_config
    from bench.plan import make_plan
    from bench.runner import execute

    config = load_config(ROOT / "bench.toml")
    config.models["sam"] = {**config.models["sam"], "image_size": SIZE}
    plan = make_plan(config, "demo", models=["sam"], datasets=["demo-fundus"], limit=1,
                     random_weights=True, device="cpu")
    outcome = execute(plan, tmp_path / "run")
    assert outcome.units_failed == 0
    record = atomic.read_json(tmp_path / "run" / "config.json")["adapters"]["sam"]
    assert record["meaningless"] is True and record["device"] == "cpu"
    unit = atomic.read_json(next((tmp_path / "run" / "units").glob("*.json")))
    lines = (tmp_path / "run" / "prompts.jsonl").read_text().splitlines()
    ledger = [json.loads(line) for line in lines]
    prompted = {(row["target"], row["frame"]) for row in ledger}
    for target, scores in unit["scores"].items():
        # A score exactly on the prompted frames; the others are empty and unscored.
        assert {(target, i) for i, s in enumerate(scores) if s is not None} == \
            {p for p in prompted if p[0] == target}
