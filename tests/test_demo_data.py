"""Tests of the built-in synthetic demo data (bench/readers/demo/, datasets/demo-*.toml)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label, regionprops

from bench.errors import ConfigError
from bench.readers import load_card, read_flows
from bench.readers.demo import (
    DEMO_VERSION,
    GENERATORS,
    DemoOptions,
    expected_case_count,
    generate_flow,
)
from bench.types import Flow

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
DEMO_CARDS = ["demo-fundus", "demo-dermoscopy", "demo-ultrasound", "demo-cells", "demo-ct"]
# Which real dataset each card stands in for, and its one-prompt prompt kind (DESIGN 4).
STANDS_IN_FOR = {
    "demo-fundus": ("fundus", "REFUGE", "box"),
    "demo-dermoscopy": ("dermoscopy", "ISIC", "box"),
    "demo-ultrasound": ("ultrasound", "TDSC-ABUS", "point"),
    "demo-cells": ("cells", "WBC", "point"),
    "demo-ct": ("ct", "BTCV", "box"),
}


@pytest.fixture(scope="module")
def demo_flows() -> dict[str, list[Flow]]:
    """Every demo card's full stream, generated once for the module."""
    return {name: list(read_flows(load_card(DATASETS / f"{name}.toml"))) for name in DEMO_CARDS}


def _grey(image: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601) of an RGB image, or the grey image itself."""
    if image.ndim == 2:
        return image.astype(float)
    return image.astype(float) @ np.array([0.299, 0.587, 0.114])


def _ring(mask: np.ndarray, inner: int, outer: int) -> np.ndarray:
    """Pixels between ``inner`` and ``outer`` px outside ``mask``."""
    outside = ndi.binary_dilation(mask, iterations=inner)
    return ndi.binary_dilation(mask, iterations=outer) & ~outside


def _assert_flows_equal(a: Flow, b: Flow) -> None:
    assert (a.id, a.dataset, a.kind, a.spacing) == (b.id, b.dataset, b.kind, b.spacing)
    assert a.case_ids == b.case_ids and a.patient_ids == b.patient_ids and a.meta == b.meta
    assert len(a.frames) == len(b.frames)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        assert fa.dtype == fb.dtype and fa.shape == fb.shape and fa.tobytes() == fb.tobytes()
    assert list(a.masks) == list(b.masks)
    for target in a.masks:
        for ma, mb in zip(a.masks[target], b.masks[target], strict=True):
            assert ma.tobytes() == mb.tobytes()


def _write_card(folder: Path, name: str, kind: str, targets: list[str], options: str) -> Path:
    path = folder / f"{name}.toml"
    quoted = ", ".join(f'"{t}"' for t in targets)
    path.write_text(f'name = "{name}"\nreader = "demo"\nkind = "{kind}"\ntargets = [{quoted}]\n'
                    f"synthetic = true\noptions = {{ {options} }}\n")
    return path


# --- cards -------------------------------------------------------------------


@pytest.mark.parametrize("name", DEMO_CARDS)
def test_card_describes_its_generator(name: str) -> None:
    card = load_card(DATASETS / f"{name}.toml")
    generator, real, prompt = STANDS_IN_FOR[name]
    options = card.options
    assert isinstance(options, DemoOptions) and options.generator == generator
    assert card.reader == "demo" and card.synthetic is True
    assert card.licence == "CC0 (generated)"
    assert card.kind == GENERATORS[generator].kind
    assert card.targets == GENERATORS[generator].targets
    assert card.one_prompt_kind == prompt == GENERATORS[generator].one_prompt_kind
    assert "SYNTHETIC" in card.description and real in card.description
    assert card.title and card.modality


@pytest.mark.parametrize("name", DEMO_CARDS)
def test_expected_cases_match_the_stream(name: str, demo_flows: dict[str, list[Flow]]) -> None:
    card = load_card(DATASETS / f"{name}.toml")
    flows = demo_flows[name]
    cases = [case for flow in flows for case in flow.case_ids]
    assert len(flows) == card.options.flows
    assert len(cases) == card.expected_cases == expected_case_count(card.options)
    assert len(set(cases)) == len(cases)
    assert len({flow.id for flow in flows}) == len(flows)
    for flow in flows:
        assert flow.dataset == name and flow.kind == card.kind
        assert flow.targets == list(card.targets)
        assert flow.meta["generator"] == card.options.generator
        assert flow.meta["demo_version"] == DEMO_VERSION


# --- determinism ---------------------------------------------------------------


@pytest.mark.parametrize("name", DEMO_CARDS)
def test_limit_stops_early_and_keeps_each_flow(name: str,
                                               demo_flows: dict[str, list[Flow]]) -> None:
    card = load_card(DATASETS / f"{name}.toml")
    stream = demo_flows[name]
    assert list(read_flows(card, limit=0)) == []
    # --limit counts cases: a volume is one, an image flow holds one per image.
    size = len(stream[0].case_ids)
    limit = size + 1 if len(stream) > 1 else size
    limited = list(read_flows(card, root=Path("/nonexistent"), limit=limit))  # root is ignored
    _assert_flows_equal(limited[0], stream[0])
    assert sum(len(f.case_ids) for f in limited) == min(limit, sum(len(f.case_ids)
                                                                   for f in stream))
    if len(limited) > 1:  # the second flow cut to its first case: a prefix of the stream's
        assert limited[1].case_ids == stream[1].case_ids[:1]
        assert limited[1].patient_ids == stream[1].patient_ids[:1]
        assert limited[1].frames[0].tobytes() == stream[1].frames[0].tobytes()
        for target, masks in limited[1].masks.items():
            assert np.array_equal(masks[0], stream[1].masks[target][0])
    # The last flow generated alone equals the last flow of the stream.
    last = len(stream) - 1
    _assert_flows_equal(generate_flow(card.options, last, dataset=name), stream[last])


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_generation_is_byte_identical_and_seeded(generator: str) -> None:
    frames = 10 if generator == "ct" else 3
    options = DemoOptions(generator=generator, flows=2, frames=frames, size=64)
    first, again = generate_flow(options, 0), generate_flow(options, 0)
    _assert_flows_equal(first, again)
    other_flow = generate_flow(options, 1)
    other_seed = generate_flow(options.model_copy(update={"seed": 1}), 0)
    for other in (other_flow, other_seed):
        assert first.frames[0].tobytes() != other.frames[0].tobytes()


@pytest.mark.parametrize("generator", ["fundus", "dermoscopy", "ultrasound", "cells"])
def test_an_image_does_not_depend_on_the_flow_length(generator: str) -> None:
    short = generate_flow(DemoOptions(generator=generator, frames=3, size=64,
                                      aspect_jitter=0.2), 0)
    long = generate_flow(DemoOptions(generator=generator, frames=5, size=64,
                                     aspect_jitter=0.2), 0)
    for i in range(3):
        assert short.frames[i].tobytes() == long.frames[i].tobytes()
        assert short.case_ids[i] == long.case_ids[i]
        assert short.patient_ids[i] == long.patient_ids[i]


# --- structure of frames and masks -----------------------------------------------


@pytest.mark.parametrize("name", DEMO_CARDS[:4])
def test_image_flow_frames_and_masks(name: str, demo_flows: dict[str, list[Flow]]) -> None:
    card = load_card(DATASETS / f"{name}.toml")
    size, per_patient = card.options.size, card.options.images_per_patient
    grey = card.options.generator == "ultrasound"
    for flow in demo_flows[name]:
        assert flow.spacing is None
        assert flow.case_ids == [f"{flow.id}/img{i:02d}" for i in range(len(flow.frames))]
        # Consecutive images share a patient: ceil(frames / per_patient) patients.
        assert flow.patient_ids == [f"{flow.id}-p{i // per_patient:02d}"
                                    for i in range(len(flow.frames))]
        for i, frame in enumerate(flow.frames):
            assert frame.dtype == np.uint8
            assert frame.ndim == (2 if grey else 3) and frame.shape[0] == size
            assert frame.shape[1] % 8 == 0 and size <= frame.shape[1] <= 1.25 * size
            for target in flow.targets:
                mask = flow.masks[target][i]
                assert mask.dtype == bool and mask.shape == frame.shape[:2]
                # Every image shows its targets (>= 50 px), not filling the frame.
                assert mask.sum() >= 50 and mask.mean() < 0.5


def test_dermoscopy_widths_vary_and_lesions_are_irregular(
        demo_flows: dict[str, list[Flow]]) -> None:
    flows = demo_flows["demo-dermoscopy"]
    assert len({frame.shape[1] for flow in flows for frame in flow.frames}) > 1
    for flow in flows:
        for mask in flow.masks["lesion"]:
            assert label(mask).max() == 1
            # Non-convex: the lesion fills clearly less than its convex hull.
            assert regionprops(mask.astype(np.uint8))[0].solidity < 0.975


def test_cup_lies_strictly_inside_the_disc(demo_flows: dict[str, list[Flow]]) -> None:
    for flow in demo_flows["demo-fundus"]:
        for disc, cup in zip(flow.masks["disc"], flow.masks["cup"], strict=True):
            assert cup.any() and not (cup & ~ndi.binary_erosion(disc)).any()
            assert 0.05 < cup.sum() / disc.sum() < 0.6


def test_cell_masks_follow_the_wbc_convention(demo_flows: dict[str, list[Flow]]) -> None:
    for flow in demo_flows["demo-cells"]:
        for cytoplasm, nucleus in zip(flow.masks["cytoplasm"], flow.masks["nucleus"], strict=True):
            assert not (cytoplasm & nucleus).any()  # cytoplasm is the ring, not the whole cell
            # The nucleus is surrounded by cytoplasm: its 1-px outer border is all cytoplasm.
            border = ndi.binary_dilation(nucleus) & ~nucleus
            assert border.any() and (cytoplasm[border]).all()
            # The cell (both labels) is one blob without holes.
            cell = cytoplasm | nucleus
            assert label(cell).max() == 1 and (ndi.binary_fill_holes(cell) == cell).all()


def test_ct_volumes(demo_flows: dict[str, list[Flow]]) -> None:
    card = load_card(DATASETS / "demo-ct.toml")
    n, size = card.options.frames, card.options.size
    for flow in demo_flows["demo-ct"]:
        assert flow.case_ids == [flow.id] and flow.patient_ids == [flow.id]
        assert flow.spacing == tuple(card.options.spacing)
        assert flow.spacing[0] > flow.spacing[1] == flow.spacing[2]  # anisotropic
        assert isinstance(flow.frames, np.ndarray) and flow.frames.dtype == np.float32
        assert flow.frames.shape == (n, size, size)
        # The card's soft-tissue window maps [-160, 240] HU onto [0, 1], clipping air and bone.
        assert flow.frames.min() == 0.0 and flow.frames.max() == 1.0
        labels = np.zeros((n, size, size), dtype=int)
        for target, mask in flow.masks.items():
            assert mask.dtype == bool and mask.shape == (n, size, size)
            present = mask.any(axis=(1, 2))
            assert present.sum() >= n // 3, target
            assert not (labels[mask] > 0).any(), f"{target} overlaps another organ"
            labels[mask] = 1
        # Organs come and go along the slab: slices without the organ exist.
        for target in ("liver", "spleen", "kidney_left", "kidney_right"):
            assert not flow.masks[target].any(axis=(1, 2)).all(), target
        # Radiological view: the liver (patient's right) lies on the image's left,
        # the spleen and left kidney on its right.
        column = {t: np.nonzero(m)[2].mean() for t, m in flow.masks.items()}
        assert column["liver"] < size / 2 < column["spleen"]
        assert column["kidney_right"] < size / 2 < column["kidney_left"]


# --- the image carries information about the mask ---------------------------------------


def test_fundus_disc_and_cup_are_brighter(demo_flows: dict[str, list[Flow]]) -> None:
    for flow in demo_flows["demo-fundus"]:
        for i, frame in enumerate(flow.frames):
            grey = _grey(frame)
            disc, cup = flow.masks["disc"][i], flow.masks["cup"][i]
            assert grey[disc].mean() - grey[_ring(disc, 2, 10)].mean() > 30
            assert grey[cup].mean() - grey[disc & ~cup].mean() > 10
            assert frame[..., 0].mean() > frame[..., 1].mean() > frame[..., 2].mean()  # red-orange


def test_dermoscopy_lesion_is_darker(demo_flows: dict[str, list[Flow]]) -> None:
    for flow in demo_flows["demo-dermoscopy"]:
        for frame, lesion in zip(flow.frames, flow.masks["lesion"], strict=True):
            grey = _grey(frame)
            assert grey[_ring(lesion, 3, 12)].mean() - grey[lesion].mean() > 25


def test_ultrasound_nodule_is_hypoechoic(demo_flows: dict[str, list[Flow]]) -> None:
    for flow in demo_flows["demo-ultrasound"]:
        for frame, nodule in zip(flow.frames, flow.masks["nodule"], strict=True):
            grey = frame.astype(float)
            assert grey[_ring(nodule, 3, 12)].mean() - grey[nodule].mean() > 12
            # Outside the sector the image is black; the nodule lies inside it.
            assert grey[0, 0] == 0 and (grey[nodule] > 0).mean() > 0.9


def test_cells_nucleus_darkest_and_cell_darker_than_background(
        demo_flows: dict[str, list[Flow]]) -> None:
    for flow in demo_flows["demo-cells"]:
        for i, frame in enumerate(flow.frames):
            grey = _grey(frame)
            cytoplasm, nucleus = flow.masks["cytoplasm"][i], flow.masks["nucleus"][i]
            assert grey[cytoplasm].mean() - grey[nucleus].mean() > 40
            assert grey[~(cytoplasm | nucleus)].mean() - grey[cytoplasm].mean() > 15


def test_ct_organs_have_their_hounsfield_units(demo_flows: dict[str, list[Flow]]) -> None:
    # Portal-venous phase: liver and spleen ~100-130 HU, kidney cortex brighter,
    # contrast-filled aorta brightest; all well above their fat/bowel surroundings.
    expected = {"liver": (90, 130), "spleen": (95, 135), "kidney_left": (120, 175),
                "kidney_right": (120, 175), "aorta": (150, 210)}
    windowed = {flow.id: flow.frames for flow in demo_flows["demo-ct"]}
    card = load_card(DATASETS / "demo-ct.toml")
    options = card.options.model_copy(update={"window": None})  # raw HU
    for index in range(options.flows):
        flow = generate_flow(options, index)
        volume = flow.frames
        assert volume.min() < -900 and volume.max() > 400  # air and bone, in HU
        for target, mask in flow.masks.items():
            low, high = expected[target]
            assert low < volume[mask].mean() < high, target
            shell = ndi.binary_dilation(mask, structure=np.ones((1, 3, 3)), iterations=2) & ~mask
            assert volume[mask].mean() - volume[shell].mean() > 40, target
        # The card's frames are exactly these HU values windowed to [-160, 240] -> [0, 1].
        expected_frames = (np.clip(volume, -160, 240) + 160) / 400
        np.testing.assert_allclose(windowed[flow.id], expected_frames, atol=1e-6)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "targets", "options", "message"),
    [
        ("image-flow", ["nodule"], 'generator = "ultrasound", frame = 3',
         r"options: unknown key 'frame' \(did you mean 'frames'\?\)"),
        ("image-flow", ["nodule"], 'generator = "sonar"',
         r"options\.generator: expected 'fundus', .*'ct'.* \(got 'sonar'\)"),
        ("image-flow", ["nodule"], "frames = 3", r"options: missing required key 'generator'"),
        ("volume", ["nodule"], 'generator = "ultrasound"',
         r"options\.generator: 'ultrasound' makes 'image-flow' flows, card kind is 'volume'"),
        ("image-flow", ["lesion"], 'generator = "ultrasound"',
         r"options\.generator: 'ultrasound' makes targets \['nodule'\]"),
        ("image-flow", ["nodule"], 'generator = "ultrasound", size = 32',
         r"options\.size: .*64 \(got 32\)"),
        ("image-flow", ["nodule"], 'generator = "ultrasound", flows = 0',
         r"options\.flows: .*1 \(got 0\)"),
        ("image-flow", ["nodule"], 'generator = "ultrasound", size = "big"',
         r"options\.size: expected a valid integer \(got 'big'\)"),
        ("image-flow", ["nodule"], 'generator = "ultrasound", spacing = [1.0, 1.0, 1.0]',
         r"options\.spacing: only volume generators take a spacing"),
        ("image-flow", ["nodule"], 'generator = "ultrasound", aspect_jitter = 2',
         r"options\.aspect_jitter: .*1(\.0)? \(got 2\)"),
        ("volume", list(GENERATORS["ct"].targets), 'generator = "ct", spacing = [5.0, 3.0]',
         r"options\.spacing: .*3 items"),
        ("volume", list(GENERATORS["ct"].targets), 'generator = "ct", spacing = [5.0, 3.0, 0]',
         r"options\.spacing\.2: .*0 \(got 0\)"),
        ("volume", list(GENERATORS["ct"].targets), 'generator = "ct", window = [240, -160]',
         r"options\.window: expected \[low, high\] in HU with low < high"),
        ("volume", list(GENERATORS["ct"].targets), 'generator = "ct", frames = 4',
         r"options\.frames: must be at least 8 for a volume, got 4"),
    ],
)
def test_bad_options_are_one_line_config_errors(tmp_path: Path, kind: str, targets: list[str],
                                                options: str, message: str) -> None:
    path = _write_card(tmp_path, "demo-bad", kind, targets, options)
    with pytest.raises(ConfigError) as err:
        load_card(path)  # refused when the card is loaded, before any flow is read
    text = str(err.value)
    assert re.search(message, text) and text.startswith(str(path)) and "\n" not in text


def test_negative_limit_and_index_are_rejected(tmp_path: Path) -> None:
    card = load_card(_write_card(tmp_path, "demo-us", "image-flow", ["nodule"],
                                 'generator = "ultrasound", size = 64, frames = 2'))
    with pytest.raises(ValueError, match="limit must be non-negative"):
        next(read_flows(card, limit=-1))
    with pytest.raises(ValueError, match="flow index must be non-negative"):
        generate_flow(card.options, -1)


def test_a_small_custom_card_reads(tmp_path: Path) -> None:
    card = load_card(_write_card(tmp_path, "demo-tiny", "volume", list(GENERATORS["ct"].targets),
                                 'generator = "ct", flows = 1, frames = 8, size = 64, '
                                 "spacing = [2.5, 6, 6]"))
    (flow,) = read_flows(card)
    assert flow.frames.shape == (8, 64, 64) and flow.spacing == (2.5, 6.0, 6.0)
    assert flow.id == "ct-v0" and flow.dataset == "demo-tiny"
