"""Flow storage that does not grow with the flow: packed masks and lazily read frames.

Packed masks are checked bit for bit against the masks they hold; lazy frames
against the files read independently with PIL (real samples in
../shared/data, skipped when absent) and against an eager read; registration
of a long image flow image by image against registering each target alone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from bench.adapters.registration import RegistrationAdapter
from PIL import Image

from bench.cache import PredictionCache, frames_digest, masks_digest
from bench.errors import DataError
from bench.frames import LazyFrames, PackedMasks, array_sha256, frame_shapes
from bench.readers import get_reader, load_card
from bench.types import FlowFrames, Prediction, Prompt

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
needs_samples = pytest.mark.skipif(
    not (SHARED / "fundus-optic-disc").is_dir(),
    reason=f"real sample data not found at {SHARED} (set BENCH_SHARED_DATA)")


def random_masks(seed: int = 0) -> list[np.ndarray]:
    # Sizes that are not multiples of 8, so the padding of the last byte is exercised.
    rng = np.random.default_rng(seed)
    return [rng.random(shape) < 0.3 for shape in ((7, 5), (1, 1), (13, 11), (8, 8), (3, 17))]


def test_packed_masks_give_back_every_bit():
    masks = random_masks()
    packed = PackedMasks(masks)
    assert len(packed) == len(masks) and packed.shapes == [m.shape for m in masks]
    assert frame_shapes(packed) == [m.shape for m in masks]
    for original, back in zip(masks, packed, strict=True):
        assert back.dtype == bool
        np.testing.assert_array_equal(back, original)
    np.testing.assert_array_equal(packed[-1], masks[-1])
    assert [m.shape for m in packed[1:3]] == [(1, 1), (13, 11)]
    with pytest.raises(IndexError):
        packed[5]
    # Nonzero counts as True, whatever the dtype.
    np.testing.assert_array_equal(PackedMasks([np.array([[0, 3], [255, 0]], np.uint8)])[0],
                                  [[False, True], [True, False]])


def test_packed_masks_store_an_eighth_of_a_bool_mask():
    packed = PackedMasks([np.ones((400, 600), bool)])
    assert packed.bits(0).nbytes == 400 * 600 // 8


def test_packed_masks_set_filled_and_from_bits():
    masks = random_masks(1)
    packed = PackedMasks.filled([m.shape for m in masks], False)
    assert not any(m.any() for m in packed)
    packed[2] = masks[2]
    np.testing.assert_array_equal(packed[2], masks[2])
    assert not packed[3].any()  # masks of one shape share bits: setting one leaves the rest
    full = PackedMasks.filled([(3, 5), (3, 5)], True)
    assert full[0].all() and full[1].all() and full[0].shape == (3, 5)
    copy = PackedMasks.from_bits([PackedMasks(masks).bits(i) for i in range(5)],
                                 [m.shape for m in masks])
    for original, back in zip(masks, copy, strict=True):
        np.testing.assert_array_equal(back, original)
    with pytest.raises(ValueError, match="packed mask of 1 bytes for shape"):
        PackedMasks.from_bits([np.zeros(1, np.uint8)], [(4, 4)])


def test_digests_do_not_depend_on_how_frames_and_masks_are_stored():
    frames = [np.arange(12, dtype=np.uint8).reshape(3, 4), np.ones((2, 5, 3), np.uint8)]
    lazy = LazyFrames(lambda i: frames[i].copy(), [f.shape for f in frames],
                      [array_sha256(f) for f in frames], ["a.png", "b.png"])
    assert frames_digest(lazy) == frames_digest(frames)
    masks = random_masks(2)
    assert masks_digest({"t": PackedMasks(masks)}) == masks_digest({"t": masks})
    assert masks_digest({"t": PackedMasks(masks[:-1])}) != masks_digest({"t": masks})


def test_lazy_frames_read_on_demand_keep_few_and_refuse_a_changed_frame():
    store = [np.full((4, 4), i, np.uint8) for i in range(5)]
    reads: list[int] = []

    def read(index: int) -> np.ndarray:
        reads.append(index)
        return store[index].copy()

    lazy = LazyFrames(read, [(4, 4)] * 5, [array_sha256(f) for f in store],
                      [f"f{i}.png" for i in range(5)], keep=2)
    assert reads == [] and frame_shapes(lazy) == [(4, 4)] * 5
    assert [int(f[0, 0]) for f in lazy] == [0, 1, 2, 3, 4] and reads == [0, 1, 2, 3, 4]
    lazy[4], lazy[3]
    assert reads == [0, 1, 2, 3, 4]  # the two most recent are kept
    lazy[0]
    assert reads[-1] == 0
    assert not lazy[0].flags.writeable
    store[1] = np.full((4, 4), 9, np.uint8)
    with pytest.raises(DataError, match=r"f1\.png: changed on disk"):
        lazy[1]


def fundus(tmp_path: Path) -> tuple:
    root = tmp_path / "fundus"
    shutil.copytree(SHARED / "fundus-optic-disc", root)
    card = load_card(REPO / "datasets" / "fundus-optic-disc.toml")
    reader = get_reader(card.reader)
    (ref,) = reader.list_flows(card, root)
    return root, card, reader, ref


@needs_samples
def test_image_flow_frames_are_read_lazily_and_equal_the_files(tmp_path):
    root, card, reader, ref = fundus(tmp_path)
    flow = reader.load_flow(card, ref)
    assert isinstance(flow.frames, LazyFrames) and len(flow.frames) == 19
    assert isinstance(flow.masks["optic disc"], PackedMasks)
    images = sorted((root / "sample_dataset" / "origin1").glob("*.jpg"))
    for index in (0, 7, 18):
        np.testing.assert_array_equal(flow.frames[index], np.asarray(Image.open(images[index])))
        truth = np.asarray(Image.open(images[index].parents[1] / "groundtruth1"
                                      / images[index].name)) >= 128
        np.testing.assert_array_equal(flow.masks["optic disc"][index], truth)
    assert frame_shapes(flow.frames) == [(400, 600, 3)] * 19
    # The digest is that of the pixels: the same as for the frames read eagerly.
    assert frames_digest(flow.frames) == frames_digest(
        [np.asarray(Image.open(path)) for path in images])


@needs_samples
def test_an_image_changed_after_loading_is_refused_naming_it(tmp_path):
    root, card, reader, ref = fundus(tmp_path)
    flow = reader.load_flow(card, ref)
    victim = sorted((root / "sample_dataset" / "origin1").glob("*.jpg"))[3]
    pixels = np.asarray(Image.open(victim)).copy()
    pixels[:50] = 0
    Image.fromarray(pixels).save(victim)
    np.asarray(flow.frames[2])  # the others still read
    with pytest.raises(DataError, match=rf"{victim.name}: changed on disk"):
        flow.frames[3]


@needs_samples
def test_registration_image_by_image_equals_each_target_alone(tmp_path):
    # Two targets prompted on different templates share each image's registration
    # (which is then dropped): the masks equal those of each target run alone.
    root, card, reader, ref = fundus(tmp_path)
    flow = reader.load_flow(card, ref)
    frames = LazyFrames(flow.frames._read, flow.frames.shapes[:5], flow.frames.digests[:5],
                        flow.frames.sources[:5])
    view = FlowFrames("f", "fundus", "image-flow", frames)
    masks = flow.masks["optic disc"]
    prompts = [Prompt("disc", 0, "mask", mask=masks[0]),
               Prompt("rim", 4, "box", box=(200, 100, 400, 300))]
    adapter = RegistrationAdapter({"size": 96})
    both = adapter.predict(view, prompts)
    assert isinstance(both.masks["disc"], PackedMasks)
    for prompt in prompts:
        alone = adapter.predict(view, [prompt])
        for got, expected in zip(both.masks[prompt.target], alone.masks[prompt.target],
                                 strict=True):
            np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(both.masks["disc"][0], masks[0])  # the template as given
    assert both.masks["disc"][2].any() and not both.masks["disc"][2].all()


def test_prediction_cache_round_trips_packed_masks(tmp_path):
    cache = PredictionCache(tmp_path)
    masks = random_masks(3)
    cache.put("ab" * 32, Prediction(masks={"t": PackedMasks(masks), "u": masks[:2]}))
    back = cache.get("ab" * 32)
    assert isinstance(back.masks["t"], PackedMasks)
    for original, got in zip(masks, back.masks["t"], strict=True):
        np.testing.assert_array_equal(got, original)
    np.testing.assert_array_equal(back.masks["u"][1], masks[1])


@needs_samples
@pytest.mark.parametrize(("model", "settings"), [
    ("sam2", {"config": "sam2_hiera_t"}), ("medsam2", {"memory": "official"}),
    ("random-walker", None)])
def test_adapters_take_lazily_read_frames(tmp_path, model, settings):
    # Lazily read frames are read-only arrays: an adapter that changed a frame in place
    # would fail here (random weights: only that the adapter runs is checked).
    if settings is not None:
        pytest.importorskip("sam2")
        settings = {**settings, "random_weights": True, "image_size": 256, "device": "cpu",
                    "fill_hole_area": 0}
    from bench.adapters import create

    root, card, reader, ref = fundus(tmp_path)
    flow = reader.load_flow(card, ref)
    frames = LazyFrames(flow.frames._read, flow.frames.shapes[:2], flow.frames.digests[:2],
                        flow.frames.sources[:2])
    view = FlowFrames("f", "fundus", "image-flow", frames)
    prediction = create(model, settings).predict(view, [Prompt("disc", 0, "box",
                                                                box=(250, 150, 350, 250))])
    assert [np.shape(mask) for mask in prediction.masks["disc"]] == [(400, 600)] * 2
