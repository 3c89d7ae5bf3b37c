"""Tests of the registration baseline and the reference floor adapters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bench.adapters.base import create, registered
from bench.adapters.registration import nearest_templates, to_grey, warp_mask, working_shape
from bench.adapters.template_masks import box_to_mask, points_to_mask
from scipy import ndimage as ndi
from skimage.draw import ellipse

from bench.errors import ConfigError
from bench.settings import read_toml
from bench.types import FlowFrames, Prompt


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def disc(shape: tuple[int, int], row: float, col: float, radius: float) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius**2


def texture(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth random texture in [0, 0.4]: gives the optical flow something to lock on."""
    noise = ndi.gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)
    return 0.4 * (noise - noise.min()) / np.ptp(noise)


def image_flow(frames: list[np.ndarray]) -> FlowFrames:
    return FlowFrames("flow", "synthetic", "image-flow", frames)


@pytest.fixture(scope="module")
def adapter():
    return create("registration")


# ------------------------------------------------------------------------- registration


def test_translated_pair_is_followed(adapter):
    shape = (96, 96)
    truth0 = disc(shape, 45, 40, 15)
    frame0 = texture(shape) + 0.5 * truth0
    frame1 = np.roll(frame0, (3, 5), axis=(0, 1))
    truth1 = np.roll(truth0, (3, 5), axis=(0, 1))

    pred = adapter.predict(image_flow([frame0, frame1]), [Prompt("t", 0, "mask", mask=truth0)])

    assert list(pred.masks) == ["t"]
    assert np.array_equal(pred.masks["t"][0], truth0)  # the prompted frame keeps its mask
    propagated = dice(pred.masks["t"][1], truth1)
    unregistered = dice(truth0, truth1)
    assert propagated > 0.9
    assert unregistered < 0.8  # copying the template would score clearly lower
    assert propagated - unregistered > 0.15

    # The other direction (template on the shifted frame) moves the mask back.
    back = adapter.predict(image_flow([frame0, frame1]), [Prompt("t", 1, "mask", mask=truth1)])
    assert dice(back.masks["t"][0], truth0) > 0.9

    again = adapter.predict(image_flow([frame0, frame1]), [Prompt("t", 0, "mask", mask=truth0)])
    assert np.array_equal(again.masks["t"][1], pred.masks["t"][1])  # deterministic


def drifting_blob(speed: int, n_slices: int = 16, shape=(64, 64)):
    """A textured blob drifting ``speed`` px per slice over a flat, noisy background."""
    rng = np.random.default_rng(1)
    pattern = texture((shape[0] + speed * n_slices, shape[1]), seed=7)
    truth = np.stack([disc(shape, 12 + speed * k, 32, 8) for k in range(n_slices)])
    volume = np.stack([
        np.where(blob, 0.5 + pattern[speed * (n_slices - k) :][: shape[0]], 0.2)
        + 0.03 * rng.standard_normal(shape)
        for k, blob in enumerate(truth)
    ])
    return volume, truth


def test_volume_propagation_follows_drifting_blob(adapter):
    volume, truth = drifting_blob(speed=1)
    template = 5
    flow = FlowFrames("vol", "synthetic", "volume", volume)

    pred = adapter.predict(flow, [Prompt("t", template, "mask", mask=truth[template])])

    scores = [dice(p, t) for p, t in zip(pred.masks["t"], truth, strict=True)]
    assert min(scores) > 0.85, scores
    assert dice(truth[template], truth[-1]) < 0.3  # the blob really moved


def test_volume_propagates_slice_to_slice(adapter):
    # At 2 px per slice the last slice is 24 px from the template: registering
    # the template directly (the same frames as an image flow) loses the blob,
    # stepping slice to slice follows it.
    volume, truth = drifting_blob(speed=2)
    prompts = [Prompt("t", 3, "mask", mask=truth[3])]
    as_volume = adapter.predict(FlowFrames("v", "synthetic", "volume", volume), prompts)
    as_images = adapter.predict(FlowFrames("v", "synthetic", "image-flow", volume), prompts)
    assert dice(as_volume.masks["t"][-1], truth[-1]) > 0.7
    assert dice(as_images.masks["t"][-1], truth[-1]) < 0.3
    assert dice(as_volume.masks["t"][0], truth[0]) > 0.85  # and backwards from the template


def test_nearest_templates_rule():
    assert nearest_templates(5, [1, 3]) == [1, 1, 1, 3, 3]  # frame 2 is a tie -> 1
    assert nearest_templates(6, [4, 0]) == [0, 0, 0, 4, 4, 4]
    assert nearest_templates(3, [2]) == [2, 2, 2]
    with pytest.raises(ValueError, match="no prompted frame"):
        nearest_templates(3, [])


@pytest.mark.parametrize("kind", ["image-flow", "volume"])
def test_each_frame_uses_its_nearest_template(adapter, kind):
    # Identical frames, so the registration is the identity and each output
    # is the mask of the template it came from; the two templates differ.
    shape = (48, 48)
    frame = texture(shape, seed=2) + 0.3 * disc(shape, 24, 24, 10)
    mask_a = disc(shape, 15, 15, 6)
    mask_b = disc(shape, 33, 33, 6)
    flow = FlowFrames("f", "synthetic", kind, np.stack([frame] * 5))
    prompts = [Prompt("t", 1, "mask", mask=mask_a), Prompt("t", 3, "mask", mask=mask_b)]

    masks = adapter.predict(flow, prompts).masks["t"]

    used = ["a" if dice(m, mask_a) > 0.9 else "b" if dice(m, mask_b) > 0.9 else "?"
            for m in masks]
    assert used == ["a", "a", "a", "b", "b"]


def test_empty_mask_prompt_declares_absence(adapter):
    shape = (40, 40)
    frame = texture(shape, seed=5) + 0.4 * disc(shape, 20, 20, 8)
    flow = FlowFrames("f", "synthetic", "volume", np.stack([frame] * 4))
    prompts = [Prompt("t", 0, "empty-mask"), Prompt("t", 3, "mask", mask=disc(shape, 20, 20, 8))]
    masks = adapter.predict(flow, prompts).masks["t"]
    assert [bool(m.any()) for m in masks] == [False, False, True, True]


def test_unprompted_targets_are_not_predicted(adapter):
    shape = (40, 40)
    frame = texture(shape) + 0.5 * disc(shape, 20, 20, 8)
    pred = adapter.predict(
        image_flow([frame, frame]), [Prompt("kidney", 0, "mask", mask=disc(shape, 20, 20, 8))]
    )
    assert set(pred.masks) == {"kidney"}


def test_mixed_shape_image_flow(adapter):
    # The same scene (disc at the centre, radius a quarter of the short side)
    # at three shapes, one of them RGB.
    shapes = [(64, 80), (50, 50), (90, 70)]
    truths = [disc(s, s[0] / 2, s[1] / 2, min(s) / 4) for s in shapes]
    frames = [0.2 + 0.6 * t.astype(float) for t in truths]
    frames[1] = np.repeat((255 * frames[1])[..., None], 3, axis=2).astype(np.uint8)

    pred = adapter.predict(image_flow(frames), [Prompt("t", 0, "mask", mask=truths[0])])

    masks = pred.masks["t"]
    assert [m.shape for m in masks] == shapes
    assert all(m.dtype == bool for m in masks)
    assert np.array_equal(masks[0], truths[0])
    for mask, truth in zip(masks[1:], truths[1:], strict=True):
        assert dice(mask, truth) > 0.8


def test_warp_mask_identity_keeps_thin_structures():
    # A 1-px line at full resolution survives a 4x smaller working grid.
    mask = np.zeros((128, 128), dtype=bool)
    mask[40, 10:120] = True
    work = np.stack(np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij"))
    assert np.array_equal(warp_mask(mask, work, (128, 128)), mask)


# ----------------------------------------------------------------- prompts -> template


CLEAN_SHAPE = (80, 90)
CLEAN_DISC = disc(CLEAN_SHAPE, 38, 50, 14)


def _clean(bright_object: bool = True) -> np.ndarray:
    return np.where(CLEAN_DISC, 0.8, 0.2) if bright_object else np.where(CLEAN_DISC, 0.2, 0.8)


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


@pytest.mark.parametrize("bright_object", [True, False])
def test_box_prompt_recovers_disc(adapter, bright_object):
    frame = _clean(bright_object)
    x0, y0, x1, y1 = _tight_box(CLEAN_DISC)
    jittered = (x0 - 15, y0 - 3, x1 + 9, y1 + 20)
    for kind, box in [("box", (x0, y0, x1, y1)), ("box-jitter", jittered)]:
        pred = adapter.predict(image_flow([frame]), [Prompt("t", 0, kind, box=box)])
        assert dice(pred.masks["t"][0], CLEAN_DISC) > 0.9, kind


def test_box_without_contrast_falls_back_to_inscribed_ellipse():
    box = (10, 20, 49, 39)  # 40 x 20 px
    mask = box_to_mask(np.full((60, 70), 0.5), box)
    reference = np.zeros((60, 70), dtype=bool)
    reference[ellipse(29.5, 29.5, 10, 20, shape=(60, 70))] = True
    assert dice(mask, reference) > 0.95
    assert not mask[:20].any() and not mask[:, 50:].any()  # inside the box


@pytest.mark.parametrize("kind", ["point", "point-random"])
def test_point_prompt_recovers_disc(adapter, kind):
    # The disc centre, and an off-centre click 9 px from it.
    for click in [(50, 38), (44, 45)]:
        pred = adapter.predict(
            image_flow([_clean()]), [Prompt("t", 0, kind, points=(click,), labels=(1,))]
        )
        assert dice(pred.masks["t"][0], CLEAN_DISC) > 0.9, click


def test_point_on_textured_disc():
    frame = texture(CLEAN_SHAPE, seed=3) + 0.5 * CLEAN_DISC
    mask = points_to_mask(to_grey(frame), [(50, 38)], [1])
    assert dice(mask, CLEAN_DISC) > 0.9


def test_negative_clicks_remove_what_they_grow():
    grey = to_grey(_clean())
    positive = points_to_mask(grey, [(50, 38)], [1])
    # A negative click on the background removes nothing from the disc ...
    assert np.array_equal(points_to_mask(grey, [(50, 38), (5, 5)], [1, 0]), positive)
    # ... and one on the disc itself removes it.
    assert not points_to_mask(grey, [(50, 38), (52, 40)], [1, 0]).any()


def test_point_on_flat_frame_falls_back_to_small_disc():
    # A flat frame floods everywhere at any tolerance: the fallback disc has
    # radius 4 % of the short side (0.04 * 100 = 4 px) around the click.
    mask = points_to_mask(np.zeros((100, 120)), [(30, 60)], [1])
    assert np.array_equal(mask, disc((100, 120), 60, 30, 4.0))


def test_bad_prompts_raise_clear_errors(adapter):
    frame = _clean()
    flow = image_flow([frame])
    with pytest.raises(ValueError, match=r"mask shape \(10, 10\) != frame shape \(80, 90\)"):
        adapter.predict(flow, [Prompt("t", 0, "mask", mask=np.ones((10, 10), bool))])
    with pytest.raises(ValueError, match="frame 3, but the flow has 1 frames"):
        adapter.predict(flow, [Prompt("t", 3, "mask", mask=CLEAN_DISC)])
    with pytest.raises(ValueError, match="outside the 90x80 frame"):
        adapter.predict(flow, [Prompt("t", 0, "point", points=((200, 5),), labels=(1,))])
    with pytest.raises(ValueError, match="x0 <= x1"):
        adapter.predict(flow, [Prompt("t", 0, "box", box=(30, 5, 10, 20))])


# ---------------------------------------------------------------------------- settings


def test_settings_are_validated():
    unknown = r"\[models.registration\]: unknown key 'atachment' \(did you mean 'attachment'\?\)"
    with pytest.raises(ConfigError, match=unknown):
        create("registration", {"atachment": 10.0})
    with pytest.raises(ConfigError, match=r"^\[models.registration\].size: expected a valid "
                                          r"integer \(got '128'\)$"):
        create("registration", {"size": "128"})
    with pytest.raises(ConfigError, match=r"^\[models.registration\].size: expected a value "
                                          r">= 8 \(got 2\)$"):
        create("registration", {"size": 2})
    with pytest.raises(ConfigError, match=r"^\[models.registration\].attachment: expected a "
                                          r"number \(got True\)$"):
        create("registration", {"attachment": True})
    model = create("registration", {"size": 64, "attachment": 10})
    assert model.fingerprint()["settings"] == {
        "attachment": 10, "tightness": 0.3, "num_warp": 5, "size": 64,
    }


def test_working_shape():
    assert working_shape([(200, 100)], 128) == (128, 64)  # longest side to size
    assert working_shape([(60, 80)], 128) == (60, 80)  # never upsampled
    # The most common shape decides; ties go to the first seen.
    assert working_shape([(100, 50), (300, 300), (300, 300)], 100) == (100, 100)
    assert working_shape([(256, 128), (128, 256)], 64) == (64, 32)


# --------------------------------------------------------------------------- reference


def test_reference_adapters_shapes_and_values():
    frames = [np.zeros((20, 30)), np.zeros((15, 10, 3), dtype=np.uint8), np.ones((7, 7))]
    flow = image_flow(frames)
    prompts = [Prompt("a", 0, "point", points=((1, 1),), labels=(1,)), Prompt("b", 2, "box",
               box=(0, 0, 3, 3)), Prompt("a", 1, "point", points=((2, 2),), labels=(1,))]
    for name, value in [("empty", False), ("full-frame", True)]:
        pred = create(name).predict(flow, prompts)
        assert list(pred.masks) == ["a", "b"]
        for masks in pred.masks.values():
            assert [m.shape for m in masks] == [(20, 30), (15, 10), (7, 7)]
            assert all(m.dtype == bool and np.all(m == value) for m in masks)
        assert create(name).predict(flow, []).masks == {}
    with pytest.raises(ConfigError, match=r"\[models.empty\]: unknown key 'size'"):
        create("empty", {"size": 3})


def test_bench_toml_model_tables_are_accepted():
    config = read_toml(Path(__file__).parents[1] / "bench.toml")
    for name in ("registration", "empty", "full-frame"):
        model = create(name, config["models"][name])
        assert model.fingerprint()["adapter"] == name


def test_adapters_are_registered():
    names = registered()
    for name in ("registration", "empty", "full-frame"):
        assert name in names
        assert names[name].description
