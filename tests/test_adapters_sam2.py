"""The ``sam2`` and ``medsam2`` adapters on a randomly initialised SAM 2.0 tiny model (CPU).

The weights are SAM 2's random initialisation with the object-score head's
output bias raised by 20, so that the decoder always reports the object as
present and the masks are non-trivial (random weights otherwise often gate
every mask to empty, which would make the equality tests vacuous).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import get_args
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from bench.adapters.medsam2.adapter import MedSAM2Adapter  # noqa: E402
from bench.adapters.process_cache import EmbeddingCache  # noqa: E402
from bench.adapters.sam2 import preprocess  # noqa: E402
from bench.adapters.sam2.adapter import SAM2Adapter, hole_filling_available  # noqa: E402
from bench.adapters.sam2.build import instantiate  # noqa: E402
from bench.adapters.sam2.prompts import group_prompts  # noqa: E402
from bench.adapters.sam2.session import PROVIDER_KEY, FlowInputs, new_inference_state  # noqa: E402

from bench.errors import ConfigError  # noqa: E402
from bench.prompts.kinds import prompt_from_mask  # noqa: E402
from bench.types import FlowFrames, Prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256  # model input size (image_size) of every test here


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # These tiny models are far faster on one thread than on two contended cores
    # (OpenMP barriers); results do not depend on it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    state = instantiate("sam2_hiera_t", 256, 0).state_dict()
    state["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 20.0
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save({"model": state}, path)
    return path


def settings(checkpoint, size=SIZE, **extra):
    return {"checkpoint": str(checkpoint), "image_size": size, "device": "cpu", **extra}


def sam2(checkpoint, **extra):
    return SAM2Adapter(settings=settings(checkpoint, config="sam2_hiera_t", **extra))


def medsam2(checkpoint, **extra):
    extra.setdefault("preprocessing", "sam2")
    return MedSAM2Adapter(settings=settings(checkpoint, **extra))


def volume(n=4, shape=(72, 80), seed=0):
    """A small uint8 volume: a bright square drifting one row per slice."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, (n, *shape), dtype=np.uint8)
    for i in range(n):
        frames[i, 20 + i:50 + i, 25:55] += 150
    return FlowFrames("vol", "synthetic", "volume", frames)


def square(shape=(72, 80), shift=1):
    mask = np.zeros(shape, dtype=bool)
    mask[20 + shift:50 + shift, 25:55] = True
    return mask


POINT = Prompt("t", 1, "point", points=((40, 35),), labels=(1,))


def same(a, b):
    return set(a.masks) == set(b.masks) and all(
        len(a.masks[t]) == len(b.masks[t])
        and all(np.array_equal(x, y) for x, y in zip(a.masks[t], b.masks[t], strict=True))
        for t in a.masks) and a.scores == b.scores


def test_sam2_matches_the_stock_video_predictor(checkpoint):
    """Same masks and IoU predictions as SAM2VideoPredictor run through its own API."""
    from sam2.build_sam import build_sam2_video_predictor

    flow = volume()
    ours = sam2(checkpoint).predict(flow, [POINT])
    assert all(ours.masks["t"][i].any() for i in range(4))

    stock = build_sam2_video_predictor("configs/sam2/sam2_hiera_t.yaml", str(checkpoint),
                                       device="cpu",
                                       hydra_overrides_extra=[f"++model.image_size={SIZE}"])
    stock.fill_hole_area = 0
    assert type(stock).__name__ == "SAM2VideoPredictor"
    # Stock init_state, fed the same preprocessed frames in place of its JPEG loader.
    unit = preprocess.unit_range(flow.frames, flow.kind)
    images = torch.stack([preprocess.model_input(u, SIZE, "sam2") for u in unit])
    with mock.patch("sam2.sam2_video_predictor.load_video_frames",
                    return_value=(images, 72, 80)):
        state = stock.init_state("in-memory")
    inputs = FlowInputs(flow, stock, "w", EmbeddingCache(0), image_size=SIZE,
                        preprocessing="sam2")
    assert set(new_inference_state(stock, inputs, (1, 1))) - {PROVIDER_KEY} == set(state)

    ious = []
    heads = stock._forward_sam_heads

    def record(*args, **kwargs):
        out = heads(*args, **kwargs)
        ious.append(float(out[2][0].max()))
        return out

    stock._forward_sam_heads = record
    stock.add_new_points_or_box(state, 1, 1, points=[[40, 35]], labels=[1])
    masks = {}
    for reverse in (False, True):
        for frame, _, logits in stock.propagate_in_video(state, reverse=reverse):
            masks[frame] = (logits[0, 0] > 0).numpy()
    assert all(np.array_equal(masks[i], ours.masks["t"][i]) for i in range(4))
    # Decoder calls in processing order: prompted frame 1, forward 2, 3, backward 0.
    assert ious == pytest.approx([ours.scores["t"][i] for i in (1, 2, 3, 0)], abs=0)


@pytest.fixture(scope="module")
def three_targets():
    flow = volume()
    prompts = [POINT, Prompt("u", 2, "box", box=(25, 22, 54, 51)),
               Prompt("v", 1, "mask", mask=square(shift=1)),
               Prompt("v", 3, "empty-mask", mask=np.zeros((72, 80), bool))]
    return flow, prompts


def test_medsam2_fifo_equals_sam2(checkpoint, three_targets):
    flow, prompts = three_targets
    stock = sam2(checkpoint).predict(flow, prompts)
    fifo = medsam2(checkpoint, memory="fifo", fill_hole_area=0).predict(flow, prompts)
    assert same(stock, fifo)
    assert set(fifo.masks) == {"t", "u", "v"}
    for target in fifo.masks:
        assert [m.shape for m in fifo.masks[target]] == [(72, 80)] * 4
        assert any(m.any() for m in fifo.masks[target])
    # IoU head in [0, 1] (sigmoid); None where the mask came straight from a mask prompt.
    assert [s is None for s in fifo.scores["v"]] == [False, True, False, True]
    assert all(0 <= s <= 1 for t in "tu" for s in fifo.scores[t])
    # The mask prompt is the output on its frame; the empty-mask prompt declares absence.
    iou = (fifo.masks["v"][1] & square()).sum() / (fifo.masks["v"][1] | square()).sum()
    assert iou > 0.9
    assert not fifo.masks["v"][3].any()


def test_embedding_cache_gives_identical_masks(checkpoint, tmp_path, monkeypatch):
    flow = volume(seed=1)
    fresh = sam2(checkpoint, cache_mb=0)
    calls = []
    predictor = fresh.load().predictor
    encode = predictor.forward_image
    monkeypatch.setattr(predictor, "forward_image", lambda x: calls.append(1) or encode(x))
    reference = fresh.predict(flow, [POINT])
    assert len(calls) >= 4  # no in-memory cache: the encoder runs for every lookup
    calls.clear()
    cached = sam2(checkpoint)
    first = cached.predict(flow, [POINT])
    encoded = len(calls)
    assert encoded == 4
    second = cached.predict(flow, [POINT, Prompt("w", 0, "box", box=(20, 15, 60, 55))])
    assert len(calls) == encoded  # a second protocol on the same frames: no encoder run
    assert same(reference, first)
    assert all(np.array_equal(a, b)
               for a, b in zip(first.masks["t"], second.masks["t"], strict=True))
    # On disk: a new process-like adapter (no memory cache) reads the features back.
    on_disk = sam2(checkpoint, cache_mb=0, cache_dir=str(tmp_path))
    assert same(reference, on_disk.predict(flow, [POINT]))
    assert len(list(tmp_path.glob("*.pt"))) == 4
    calls.clear()
    assert same(reference, sam2(checkpoint, cache_mb=0, cache_dir=str(tmp_path)).predict(
        flow, [POINT]))
    assert calls == []


def test_mixed_shapes_each_frame_in_its_own_geometry(checkpoint):
    rng = np.random.default_rng(2)
    big = rng.integers(0, 255, (72, 80, 3), dtype=np.uint8)
    wide = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    box = Prompt("t", 1, "box", box=(30, 10, 70, 40))
    adapter = sam2(checkpoint)
    mixed = adapter.predict(FlowFrames("m", "s", "image-flow", [big, wide]), [box])
    assert [m.shape for m in mixed.masks["t"]] == [(72, 80), (60, 90)]
    # A prompted frame is decoded from its prompt alone: alone in a flow of one shape it
    # must give the same mask (and IoU), so coordinates and output size are per frame.
    alone = adapter.predict(FlowFrames("a", "s", "image-flow", [wide]),
                            [Prompt("t", 0, "box", box=(30, 10, 70, 40))])
    assert np.array_equal(mixed.masks["t"][1], alone.masks["t"][0])
    assert mixed.scores["t"][1] == alone.scores["t"][0]


def test_confidence_bank_in_the_memory_attention(checkpoint, monkeypatch):
    flow = volume(n=5, seed=3)
    adapter = medsam2(checkpoint, memory="confidence", bank_size=2)
    attention = adapter.load().predictor.memory_attention
    tokens = []
    forward = attention.forward
    monkeypatch.setattr(attention, "forward",
                        lambda **kw: tokens.append(kw["memory"].shape[0]) or forward(**kw))
    first = adapter.predict(flow, [POINT])
    again = adapter.predict(flow, [POINT])
    assert same(first, again)  # seeded draws: deterministic
    bank = adapter.last_bank
    hw = (SIZE // 16) ** 2
    # Frames 2, 3, 4 forward, then 0 backward: each attends to one drawn entry only.
    assert tokens[:4] == [hw] * 4
    assert [frame for frame, _ in bank.picks] == [2, 3, 4, 0]
    assert bank.picks[0] == (2, (1,))  # only the prompted frame is in the bank yet
    assert [d.action for d in bank.decisions][:2] == ["append", "append"]
    assert len(bank.entries) == 2
    tokens.clear()
    with_prompts = medsam2(checkpoint, memory="confidence", bank_with_prompts=True,
                           bank_draws=2, flatten_order="aligned")
    with_prompts.predict(flow, [POINT])
    assert tokens[:4] == [3 * hw] * 4  # the prompted frame + 2 draws
    fifo = medsam2(checkpoint, memory="fifo").predict(flow, [POINT])
    assert not same(first, fifo)


def test_bank_draws_are_keyed_by_seed_dataset_flow_and_target():
    from bench.adapters.medsam2.adapter import bank_generator

    from bench.prompts.streams import KeyedStream

    generator = bank_generator(3, "demo-fundus", "p01", "disc")
    key = '[3,"demo-fundus","p01","disc",null,"medsam2-bank","draws"]'
    assert generator.initial_seed() == KeyedStream(key).raw()
    draws = torch.rand(4, generator=generator)
    assert torch.equal(draws, torch.rand(4, generator=bank_generator(3, "demo-fundus", "p01",
                                                                         "disc")))
    others = [bank_generator(*args).initial_seed() for args in
              [(4, "demo-fundus", "p01", "disc"), (3, "demo-ct", "p01", "disc"),
               (3, "demo-fundus", "p02", "disc"), (3, "demo-fundus", "p01", "cup")]]
    assert len({generator.initial_seed(), *others}) == 5


def test_policy_by_flow_kind(checkpoint):
    adapter = medsam2(checkpoint)  # memory = "official"
    assert adapter.policy_for("volume") == "fifo"
    assert adapter.policy_for("image-flow") == "official-2d"
    assert adapter.new_bank(volume(), "t") is None
    image_flow = FlowFrames("i", "s", "image-flow", list(volume().frames))
    assert adapter.new_bank(image_flow, "t") is None  # the official loop keeps its own
    bank = medsam2(checkpoint, memory="confidence").new_bank(image_flow, "t")
    assert (bank.size, bank.margin, bank.draws, bank.flatten_order) == (16, 0.1, 1, "official")


def demo_flow():
    from bench.readers import read_flows
    from bench.readers.cards import load_card

    flow = next(read_flows(load_card(ROOT / "datasets" / "demo-fundus.toml"), None, 6))
    frames = list(flow.frames[:3])
    prompts = [prompt_from_mask(flow.masks["disc"][1], "box", target="disc", frame=1),
               prompt_from_mask(flow.masks["cup"][0], "point", target="cup", frame=0)]
    return FlowFrames(flow.id, flow.dataset, flow.kind, frames), prompts


@pytest.mark.parametrize("name", ["sam2", "medsam2"])
def test_end_to_end_on_a_demo_flow_deterministic(name):
    flow, prompts = demo_flow()
    cls = SAM2Adapter if name == "sam2" else MedSAM2Adapter
    config = "sam2_hiera_t" if name == "sam2" else "auto"
    adapter = cls(settings={"random_weights": True, "image_size": SIZE, "device": "cpu",
                            "config": config})
    first = adapter.predict(flow, prompts)
    second = adapter.predict(flow, prompts)
    assert same(first, second)
    assert set(first.masks) == {"disc", "cup"}
    for target in first.masks:
        assert [m.shape for m in first.masks[target]] == [f.shape[:2] for f in flow.frames]
        assert all(m.dtype == bool for m in first.masks[target])
        assert all(isinstance(s, float) and 0 <= s <= 1 for s in first.scores[target])
    record = adapter.fingerprint()
    assert record["meaningless"] is True and record["image_size"] == SIZE
    assert record["config"] == "sam2_hiera_t" and len(record["weights_digest"]) == 64
    if name == "medsam2":
        assert adapter.last_bank is not None  # an image flow: the official policy's bank


def test_settings_are_validated():
    with pytest.raises(ConfigError, match=r"\[models.medsam2\]: unknown key 'memroy' "
                                          r"\(did you mean 'memory'\?\)"):
        MedSAM2Adapter(settings={"memroy": "fifo"})
    with pytest.raises(ConfigError, match=r"^\[models.medsam2\].memory: expected 'fifo', "
                                          r"'confidence' or 'official' \(got 'lifo'\)"
                                          r"( \(did you mean 'fifo'\?\))?$"):
        MedSAM2Adapter(settings={"memory": "lifo"})
    with pytest.raises(ConfigError, match=r"^\[models.sam2\].config: unknown SAM 2 config "
                                          r"'sam2_hiera_tt' \(did you mean 'sam2_hiera_t'\?\)$"):
        SAM2Adapter(settings={"config": "sam2_hiera_tt"})
    with pytest.raises(ConfigError, match=r"\[models.sam2\]: unknown key 'memory'"):
        SAM2Adapter(settings={"memory": "fifo"})  # bank settings belong to medsam2
    with pytest.raises(ConfigError, match=r"\[models.sam2\].config: unknown SAM 2 config 'auto'"):
        SAM2Adapter(settings={"config": "auto"})  # matching a checkpoint is medsam2's
    with pytest.raises(ConfigError, match="image_size: expected a multiple of 16"):
        SAM2Adapter(settings={"image_size": 250})
    with pytest.raises(ConfigError, match="image_size: expected a value >= 64"):
        SAM2Adapter(settings={"image_size": 48})
    with pytest.raises(ConfigError, match=r"cache_mb: expected a value >= 0"):
        SAM2Adapter(settings={"cache_mb": -1})
    with pytest.raises(ConfigError, match="flatten_order"):
        MedSAM2Adapter(settings={"flatten_order": "rows"})
    with pytest.raises(ConfigError, match=r"bank_size: expected a value >= 1"):
        MedSAM2Adapter(settings={"bank_size": 0})


def test_fingerprint_settings_are_the_resolved_options_as_given():
    """The settings record keeps every default and each value's own type (cache keys)."""
    adapter = MedSAM2Adapter(settings={"random_weights": True, "cache_mb": 64,
                                       "bank_margin": 0})
    settings = adapter.options.model_dump()
    assert settings == {
        "config": "auto", "image_size": 1024, "preprocessing": "official", "checkpoint": "",
        "device": "auto", "random_weights": True, "init_seed": 0,
        "fill_hole_area": "official",
        "cache_mb": 64, "cache_dir": "", "encode_batch": 1, "compile": "off",
        "memory": "official", "bank_size": 16,
        "bank_margin": 0, "bank_draws": 1, "flatten_order": "official", "bank_seed": 0,
        "bank_with_prompts": False, "batch": 1, "click_order": "xy",
        "mask_memory": "confidence"}
    assert type(settings["bank_margin"]) is int and type(settings["cache_mb"]) is int
    assert SAM2Adapter(settings={"cache_mb": 0.5}).options.cache_mb == 0.5


def test_medsam2_defaults_are_the_official_bank_constants():
    from bench.adapters.medsam2 import memory_bank
    from bench.adapters.medsam2.adapter import FlattenOrder, MedSam2Options

    defaults = MedSam2Options()
    assert (defaults.bank_size, defaults.bank_margin) == (memory_bank.BANK_SIZE,
                                                         memory_bank.REPLACE_MARGIN)
    assert get_args(FlattenOrder) == memory_bank.FLATTEN_ORDERS


def test_devices_and_autocast():
    import contextlib
    import warnings

    from bench.adapters.torch_utils import autocast_for, select_device

    assert select_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert select_device("auto").type == "cuda"
    else:
        assert select_device("auto").type in ("cpu", "mps")
        with pytest.raises(ConfigError, match=r"^\[models.sam2\].device: 'cuda' was asked for "
                                              "but torch sees no CUDA device$"):
            SAM2Adapter(settings={"device": "cuda", "random_weights": True}).load()
    with pytest.raises(ValueError, match="device: expected one of auto, cpu, cuda, mps"):
        select_device("tpu")
    assert isinstance(autocast_for(torch.device("cpu")), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constructing a CUDA autocast without CUDA warns
        cuda = autocast_for(torch.device("cuda"))
    assert isinstance(cuda, torch.autocast) and cuda.fast_dtype == torch.bfloat16


def test_bad_prompts_are_clear_errors():
    shapes = [(72, 80)] * 2
    with pytest.raises(ValueError, match="on frame 5: the flow has 2 frames"):
        group_prompts([Prompt("t", 5, "point", points=((1, 1),), labels=(1,))], shapes)
    with pytest.raises(ValueError, match="cannot be combined"):
        group_prompts([POINT, Prompt("t", 1, "mask", mask=square())], shapes)
    with pytest.raises(ValueError, match="mask shape"):
        group_prompts([Prompt("t", 0, "mask", mask=np.ones((3, 3), bool))], shapes)
    merged = group_prompts([POINT, Prompt("t", 1, "box", box=(1, 2, 30, 40)),
                               Prompt("t", 1, "point", points=((5, 6),), labels=(0,))], shapes)
    entry = merged["t"][1]
    assert (entry.points, entry.labels, entry.box) == ([(40, 35), (5, 6)], [1, 0], (1, 2, 30, 40))


def test_preprocessing_profiles():
    grey = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    unit = preprocess.unit_range([grey], "image-flow")[0]
    assert unit.shape == (2, 2, 3)
    assert unit[..., 0].ravel().tolist() == pytest.approx([0, 1, 0.2, 0.4])
    floats = np.array([[0.0, 0.25], [0.5, 1.0]])
    assert preprocess.unit_range([floats], "image-flow")[0][..., 1].tolist() == floats.tolist()
    # A CT volume in HU: one window (0.5/99.5 percentiles) for all slices.
    hu = np.stack([np.full((4, 4), -1000.0), np.full((4, 4), 1000.0)])
    hu[0, 0, 0], hu[1, 0, 0] = 0.0, 0.0
    slices = preprocess.unit_range(hu, "volume")
    assert slices[0][1, 1, 0] == 0.0 and slices[1][1, 1, 0] == 1.0
    assert slices[0][0, 0, 0] == pytest.approx(0.5, abs=0.01)
    ones = np.ones((4, 4, 3), dtype=np.float32)
    plain = preprocess.model_input(ones, 16, "official-2d")
    assert plain.shape == (3, 16, 16) and torch.all(plain == 1)
    normalised = preprocess.model_input(ones, 16, "sam2")
    expected = [(1 - m) / s for m, s in zip(preprocess.IMAGENET_MEAN, preprocess.IMAGENET_STD,
                                            strict=True)]
    assert normalised[:, 0, 0].tolist() == pytest.approx(expected, abs=1e-6)
    assert preprocess.profile_for("official", "volume") == "official-3d"
    assert preprocess.profile_for("official", "image-flow") == "official-2d"


def test_core_install_without_torch_lists_models_and_says_what_to_install():
    code = """
import sys
sys.modules["torch"] = None
sys.modules["sam2"] = None
from bench.adapters.base import create, registered
assert {"sam2", "medsam2"} <= set(registered())
from bench.types import FlowFrames, Prompt
import numpy as np
try:
    create("medsam2", {"random_weights": True}).predict(
        FlowFrames("f", "d", "volume", np.zeros((1, 8, 8))),
        [Prompt("t", 0, "point", points=((1, 1),), labels=(1,))])
except ImportError as err:
    print(err)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == ("model 'medsam2' needs torch and sam2, which are not "
                                     "installed: pip install 'medsam2-bench[sam]'")


def test_random_weights_force_the_object_present_and_policies_differ():
    """Random weights: object score forced present, so masks are non-empty and the
    memory policies visibly differ (issue 12 item 7)."""
    from bench.adapters.sam2.adapter import FORCED_PRESENT, OBJECT_PRESENT_LOGIT

    flow = FlowFrames("i", "s", "image-flow", list(volume(n=5, seed=4).frames))
    base = {"random_weights": True, "image_size": SIZE, "device": "cpu",
            "config": "sam2_hiera_t", "preprocessing": "sam2"}
    runs = {memory: MedSAM2Adapter(settings={**base, "memory": memory}).predict(flow, [POINT])
            for memory in ("fifo", "confidence")}
    for run in runs.values():
        assert all(m.any() for m in run.masks["t"])
    assert not same(runs["fifo"], runs["confidence"])
    adapter = SAM2Adapter(settings={k: v for k, v in base.items() if k != "preprocessing"})
    head = adapter.load().predictor.sam_mask_decoder.pred_obj_score_head
    out = head(torch.randn(3, 256))
    assert torch.equal(out, torch.full((3, 1), OBJECT_PRESENT_LOGIT))
    assert adapter.fingerprint()["object_score"] == FORCED_PRESENT


@pytest.mark.parametrize("kind", ["volume", "image-flow"])
def test_logits_are_the_low_res_decoder_output_and_feed_the_official_metrics(checkpoint,
                                                                              kind):
    """Frames at the low-res size (image_size / 4): the masks are exactly logits > 0."""
    from bench.metrics import DEFAULT_POLICY
    from bench.official_metrics import official_image_scores, official_volume_scores
    from bench.scoring import score_flow
    from bench.types import Flow

    low = SIZE // 4
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 60, (3, low, low), dtype=np.uint8)
    frames[:, 16:44, 20:48] += 150
    ref = np.zeros((3, low, low), bool)
    ref[:, 16:44, 20:48] = True
    prompt = Prompt("t", 1, "point", points=((30, 30),), labels=(1,))
    for adapter in (sam2(checkpoint), medsam2(checkpoint)):
        run = adapter.predict(FlowFrames("f", "s", kind, frames), [prompt])
        assert [lg.shape for lg in run.logits["t"]] == [(low, low)] * 3
        assert all(lg.dtype == np.float32 for lg in run.logits["t"])
        for lg, mask in zip(run.logits["t"], run.masks["t"], strict=True):
            assert np.array_equal(lg > 0, mask)
        assert any(m.any() for m in run.masks["t"])
        flow = Flow("f", "s", kind, frames, {"t": ref if kind == "volume" else list(ref)})
        rows = score_flow(flow, run, metrics=["dice", "dice_official", "iou_official"],
                          policy=DEFAULT_POLICY, nsd_tolerance_mm=1.0)
        official = [r for r in rows if r["metric"] == "dice_official"]
        assert official and all(r["status"] == "ok" for r in official)
        if kind == "volume":
            dice, _ = official_volume_scores(run.logits["t"], list(ref))
            assert official[0]["value"] == pytest.approx(dice)
        else:
            values = [official_image_scores(run.logits["t"][i], ref[i])[0] for i in range(3)]
            assert [r["value"] for r in official] == pytest.approx(values)


def test_bank_draws_follow_the_run_seed_and_official_hole_area(checkpoint):
    """Issue 12 item 8: the run seed reaches the bank; fill_hole_area 8 on volumes."""
    from bench.adapters.medsam2.adapter import bank_generator

    image_flow = FlowFrames("i", "s", "image-flow", list(volume(n=5, seed=3).frames))
    adapter = medsam2(checkpoint, memory="confidence")
    assert medsam2(checkpoint, memory="fifo").use_run_seed(1) is False
    picks = {}
    for seed in (0, 1, 0):
        assert adapter.use_run_seed(seed) is True
        assert adapter.new_bank(image_flow, "t").generator.initial_seed() == \
            bank_generator(seed, "s", "i", "t").initial_seed()
        adapter.predict(image_flow, [POINT])
        picks.setdefault(seed, []).append(adapter.last_bank.picks)
    assert picks[0][0] == picks[0][1]  # the same seed repeats exactly
    assert bank_generator(0, "s", "i", "t", 5).initial_seed() != \
        bank_generator(0, "s", "i", "t").initial_seed()
    assert adapter.fingerprint()["bank"]["draws_seeded_by"].startswith("run seed")
    # With 5 frames and a bank of <= 5 entries, 4 draws: seeds 0 and 1 differ here.
    assert picks[0][0] != picks[1][0]
    official = medsam2(checkpoint)
    assert (official.hole_area("volume"), official.hole_area("image-flow")) == (8, 0)
    assert medsam2(checkpoint, fill_hole_area=3).hole_area("image-flow") == 3
    # Where SAM 2 cannot fill holes (no compiled extension, or not on CUDA: this CPU run)
    # the step is off, as SAM 2 would skip it, without a warning per frame, and the run
    # record says so.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        official.predict(volume(), [POINT])
    assert not hole_filling_available(official.load().predictor.device)
    assert official.load().predictor.fill_hole_area == 0 == official.effective_hole_area("volume")
    assert official.fingerprint()["hole_filling"].startswith("off: needs sam2's compiled")
    import torch

    with mock.patch("bench.adapters.sam2.adapter._extension_imports", return_value=True):
        assert hole_filling_available(torch.device("cuda"))
        assert not hole_filling_available(torch.device("cpu"))
    with mock.patch("bench.adapters.sam2.adapter._extension_imports", return_value=False):
        assert not hole_filling_available(torch.device("cuda"))
    sam = sam2(checkpoint)
    sam.predict(volume(), [POINT])
    assert sam.load().predictor.fill_hole_area == 0


@pytest.mark.skipif(not (torch.cuda.is_available()
                         and hole_filling_available(torch.device("cuda"))),
                    reason="needs a CUDA device and sam2 built with its CUDA extension")
def test_hole_filling_runs_on_cuda_with_the_extension(checkpoint):
    # Where SAM 2 can fill holes, the official 3D area (8) is set, no step is skipped
    # with a warning, and the run record says the setting took effect.
    model = medsam2(checkpoint, device="cuda")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.predict(volume(), [POINT])
    assert model.load().predictor.fill_hole_area == 8
    assert not [w for w in caught if "Skipping the post-processing" in str(w.message)]
    assert model.fingerprint()["hole_filling"] == "as set"
