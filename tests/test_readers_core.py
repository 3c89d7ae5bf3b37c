"""Unit tests of the reader machinery: patterns, label decoding, votes, geometry, cards."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from test_readers_support import revise

from bench.errors import ConfigError, DataError
from bench.readers import get_reader, load_card, load_cards
from bench.readers.cards import Card
from bench.readers.files import MissingDependency, read_volume
from bench.readers.geometry import frame_order, slicing_axis, to_source_order, window_intensities
from bench.readers.labels import decode_labels, label_spec, present_values, vote
from bench.readers.layout import layouts
from bench.readers.options import LabelOptions
from bench.readers.patterns import Pattern

CARDS = Path(__file__).resolve().parents[1] / "datasets"
PAPER_DATASETS = ["btcv", "refuge2", "brats", "tnmix", "isic", "kits23", "atlas23", "tdsc-abus",
                  "wbc", "segrap", "crossmoda23", "refuge", "cadvidset", "stare", "toothfairy"]


def label_spec_of(targets, **options):
    """The label spec of a card with these targets and label options."""
    card = Card(name="labels-test", reader="volumes", kind="volume", targets=tuple(targets))
    return label_spec(card, LabelOptions(**options))


# --------------------------------------------------------------------------- patterns


def test_pattern_captures_fields_and_backreferences():
    pattern = Pattern("**/BraTS2021_{id}/BraTS2021_{id}_flair.nii.gz", {"id": r"\d{5}"})
    assert pattern.glob == "**/BraTS2021_*/BraTS2021_*_flair.nii.gz"
    assert pattern.regex.match("a/b/BraTS2021_00012/BraTS2021_00012_flair.nii.gz")["id"] == "00012"
    assert pattern.regex.match("BraTS2021_00012/BraTS2021_00012_flair.nii.gz")["id"] == "00012"
    assert pattern.regex.match("BraTS2021_00012/BraTS2021_00013_flair.nii.gz") is None
    assert pattern.regex.match("BraTS2021_0012/BraTS2021_0012_flair.nii.gz") is None


def test_pattern_field_constraint_rejects_annotator_suffix():
    plain = Pattern("im{id}.ppm")
    assert plain.regex.match("im0001.ah.ppm")["id"] == "0001.ah"  # why STARE constrains id
    constrained = Pattern("im{id}.ppm", {"id": r"\d{4}"})
    assert constrained.regex.match("im0001.ah.ppm") is None
    assert constrained.regex.match("im0001.ppm")["id"] == "0001"
    assert Pattern("{a}/x*.png").regex.match("d/x12.png")["a"] == "d"
    assert Pattern("{a}/x*.png").regex.match("d/e/x12.png") is None


def test_pattern_find_skips_hidden_and_macos_files(tmp_path):
    for name in ("img2.nii.gz", "img10.nii.gz", "img1.nii.gz", "._img3.nii.gz",
                 "__MACOSX/img4.nii.gz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = Pattern("**/img{id}.nii.gz").find(tmp_path)
    assert [f["id"] for _, f in found] == ["1", "2", "10"]  # natural order


# --------------------------------------------------------------------------- labels


def test_decode_labels_regions_and_merges():
    raw = np.array([[0, 1, 2], [4, 4, 0]], np.uint8)
    spec = label_spec_of(["WT", "TC", "ET"], **{"labels": {"ncr": 1, "ed": 2, "et": 4},
                                                      "regions": {"WT": [1, 2, 4],
                                                                  "TC": ["ncr", "et"],
                                                                  "ET": [4]}})
    masks, info = decode_labels(raw, spec)
    assert masks["WT"].tolist() == [[False, True, True], [True, True, False]]
    assert masks["TC"].tolist() == [[False, True, False], [True, True, False]]
    assert masks["ET"].sum() == 2 and info == {"unknown": [], "remapped": []}


def test_decode_labels_unknown_values_error_or_warn():
    raw = np.array([0, 1, 7, 9], np.int16)
    strict = label_spec_of(["a"], **{"labels": {"a": 1}})
    with pytest.raises(DataError, match=r"lab.nii.gz: mask values \[7, 9\] are not declared"):
        decode_labels(raw, strict, "lab.nii.gz")
    lenient = label_spec_of(["a"], **{"labels": {"a": 1}, "unknown_labels": "warn"})
    masks, info = decode_labels(raw, lenient)
    assert masks["a"].tolist() == [False, True, False, False] and info["unknown"] == [7, 9]


def test_decode_labels_refuses_stray_grey_levels_unless_remapped():
    raw = np.array([0, 9, 128, 255], np.uint8)
    options = {"levels": [0, 128, 255], "labels": {"cyto": 128, "nuc": 255}}
    with pytest.raises(DataError, match=r"m.png: mask values \[9\] are not declared .*"
                                        r"options.remap = \{ 9 = 0 \}"):
        decode_labels(raw, label_spec_of(["cyto", "nuc"], **options), "m.png")
    spec = label_spec_of(["cyto", "nuc"], **options, remap={9: 0})
    masks, info = decode_labels(raw, spec)
    assert masks["cyto"].tolist() == [False, False, True, False]
    assert masks["nuc"].tolist() == [False, False, False, True]
    assert info["remapped"] == [9]


def test_decode_labels_background_255_and_threshold():
    refuge = label_spec_of(["disc", "cup"], **{
        "levels": [0, 128, 255], "background": 255, "labels": {"cup": 0, "rim": 128},
        "regions": {"disc": ["cup", "rim"], "cup": ["cup"]}})
    masks, _ = decode_labels(np.array([255, 128, 0, 128], np.uint8), refuge)
    assert masks["disc"].tolist() == [False, True, True, True]
    assert masks["cup"].tolist() == [False, False, True, False]
    jpeg = label_spec_of(["vessel"], **{"threshold": 128})
    masks, info = decode_labels(np.array([0, 3, 127, 128, 252], np.uint8), jpeg, "m.jpg")
    assert masks["vessel"].tolist() == [False, False, False, True, True]
    assert info["unknown"] == []


def test_decode_labels_rejects_nan_and_fractions():
    spec = label_spec_of(["a"], **{"labels": {"a": 1}})
    with pytest.raises(DataError, match="NaN"):
        decode_labels(np.array([0.0, np.nan]), spec, "m.nii")
    with pytest.raises(DataError, match="non-integer"):
        decode_labels(np.array([0.0, 0.5]), spec, "m.nii")
    masks, _ = decode_labels(np.array([0.0, 1.0]), spec)
    assert masks["a"].tolist() == [False, True]


def test_label_spec_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"targets: 'liver' has no label value"):
        label_spec_of(["liver"], **{"labels": {"kidney": 1}})
    with pytest.raises(ConfigError, match=r"regions.AG: unknown label 'adrenal'"):
        label_spec_of(["AG"], **{"labels": {"x": 1}, "regions": {"AG": ["adrenal"]}})


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32])
def test_present_values_matches_unique(dtype):
    rng = np.random.default_rng(3)
    low = -50 if np.issubdtype(dtype, np.signedinteger) or dtype == np.float32 else 0
    array = rng.integers(low, 200, (3, 70, 50)).astype(dtype)
    np.testing.assert_array_equal(present_values(array), np.unique(array))


def test_vote_rules():
    raters = [np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool),
              np.array([1, 0, 0, 0], bool)]
    assert vote(raters, "majority").tolist() == [True, False, False, False]
    assert vote(raters, "any").tolist() == [True, True, True, False]
    assert vote(raters, "all").tolist() == [True, False, False, False]
    # two raters: mean >= 0.5 (the official MedSAM-2 rule) counts a tie as foreground
    assert vote(raters[:2], "majority").tolist() == [True, True, True, False]


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("transpose", [False, True])
def test_frame_order_round_trip(axis, transpose):
    volume = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    order = frame_order(axis, transpose)
    frames = np.transpose(volume, order)
    assert frames.shape[0] == volume.shape[axis]
    meta = {"source_axes": tuple(np.argsort(order))}
    np.testing.assert_array_equal(to_source_order(frames, meta), volume)


def test_slicing_axis_auto_and_errors():
    assert slicing_axis("auto", (0.8, 0.8, 5.0)) == 2
    assert slicing_axis("auto", (3.0, 1.0, 1.0)) == 0
    assert slicing_axis("auto", (1.0, 1.0, 1.0)) == 2
    assert slicing_axis(2, (1.0, 1.0, 1.0)) == 2
    btcv = load_card(CARDS / "btcv.toml")
    with pytest.raises(ConfigError, match=r"btcv.toml.options.axis\b.*2.* \(got 3\)"):
        revise(btcv, options={"axis": 3})


def test_window_fixed_and_percentile():
    volume = np.array([[[-1000.0, -125.0, 75.0, 275.0, 1000.0]]], np.float32)
    out, window = window_intensities(volume.copy(), [-125, 275], None, "x")
    np.testing.assert_allclose(out.ravel(), [0, 0, 0.5, 1, 1])
    assert window == [-125.0, 275.0]
    ramp = np.arange(101, dtype=np.float32).reshape(1, 1, 101)
    out, window = window_intensities(ramp.copy(), "percentile", [10, 90], "x")
    assert window == pytest.approx([10.0, 90.0])
    assert out.ravel()[50] == pytest.approx(0.5)


def test_missing_simpleitk_gives_install_hint(tmp_path, monkeypatch):
    path = tmp_path / "DATA_001.nrrd"
    path.write_bytes(b"NRRD0004\n")
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    with pytest.raises(MissingDependency, match=r"pip install 'medsam2-bench\[itk\]'"):
        read_volume(path)


# --------------------------------------------------------------------------- cards


def test_every_card_validates():
    cards = load_cards(CARDS)
    assert set(PAPER_DATASETS) <= set(cards)
    assert {"official-btcv", "official-refuge"} <= set(cards)
    for card in cards.values():
        if card.reader == "demo":
            continue
        reader = get_reader(card.reader)
        assert isinstance(card.options, reader.options_model)
        if card.reader in ("volumes", "pairs2d"):
            assert layouts(card)
            assert set(reader.label_spec(card).targets) == set(card.targets), card.name
        if getattr(card.options, "as_image_flow", False):
            assert card.kind == "image-flow"
        if not reader.volumes:  # readers of 2D images take no volume options
            assert "window" not in reader.options_model.model_fields


def test_paper_cards_say_what_the_dataset_is():
    cards = load_cards(CARDS)
    for name in PAPER_DATASETS:
        card = cards[name]
        assert card.title and card.modality and card.citation and card.licence, name
        assert card.download and card.description, name
    one_prompt = {"kits23": "point", "atlas23": "point", "tdsc-abus": "point", "wbc": "point",
                  "segrap": "box", "crossmoda23": "box", "refuge": "box",
                  "cadvidset": "mask", "stare": "mask", "toothfairy": "mask"}
    assert {n: cards[n].one_prompt_kind for n in one_prompt} == one_prompt
    for name in ("kits23", "atlas23", "tdsc-abus", "segrap", "crossmoda23", "toothfairy"):
        assert cards[name].kind == "image-flow" and cards[name].options.as_image_flow


def test_card_option_errors():
    card = load_card(CARDS / "btcv.toml")
    with pytest.raises(ConfigError, match=r"unknown key 'windw' \(did you mean 'window'\?\)"):
        revise(card, options={"windw": [0, 1]})
    with pytest.raises(ConfigError, match="as_image_flow: True does not fit kind = 'volume'"):
        revise(card, options={"as_image_flow": True})
    with pytest.raises(ConfigError, match="vote: expected 'majority', 'any' or 'all'"):
        revise(card, options={"vote": "mean"})


# --------------------------------------------------------------------------- 2D files


def test_2d_file_formats(tmp_path):
    from PIL import Image

    from bench.readers.files import read_image2d, read_mask2d

    grey = np.zeros((4, 5), np.uint8)
    grey[1, 1:4] = 255
    Image.fromarray(grey).convert("P").save(tmp_path / "mask.gif")  # grey palette
    np.testing.assert_array_equal(read_mask2d(tmp_path / "mask.gif"), grey)
    indexed = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    indexed.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)  # colour palette
    indexed.save(tmp_path / "labels.png")
    with pytest.raises(DataError, match=r"labels.png: palette .* set options.encoding = "
                                        r"'palette'"):
        read_mask2d(tmp_path / "labels.png")
    assert read_mask2d(tmp_path / "labels.png", encoding="palette").tolist() == [[0, 1], [2, 1]]
    Image.fromarray(grey > 0).save(tmp_path / "binary.png")  # mode "1"
    np.testing.assert_array_equal(read_mask2d(tmp_path / "binary.png"), grey)
    deep = (np.arange(20, dtype=np.uint16) * 3000).reshape(4, 5)
    Image.fromarray(deep).save(tmp_path / "deep.tif")
    np.testing.assert_array_equal(read_image2d(tmp_path / "deep.tif"), deep)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert read_image2d(tmp_path / "rgba.png").shape == (4, 5, 3)
    colour = np.zeros((4, 5, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="colour.png: colour mask with unequal channels; set "
                                        "the card option mask_channel"):
        read_mask2d(tmp_path / "colour.png")
    assert read_mask2d(tmp_path / "colour.png", channel=0)[0, 0] == 255
    (tmp_path / "cut.png").write_bytes((tmp_path / "rgba.png").read_bytes()[:40])
    with pytest.raises(DataError, match="cut.png: unreadable"):
        read_image2d(tmp_path / "cut.png")
