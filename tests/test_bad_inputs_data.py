"""A corpus of bad data inputs (issue 11, items 1-3): masks, volumes and layouts.

Each case is built here, from synthetic files or copies of the real samples
in ../shared/data (those cases skip when the folder is absent), and has one
expected outcome: a one-line error naming the file (asserted on its text, and
on the exit code where it goes through the CLI), or a correct number
(asserted against the file read independently, or against a clean run).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_readers_support import revise

from bench.errors import ConfigError, DataError
from bench.readers import get_reader, load_card
from bench.readers.cards import card_from_table
from bench.readers.check import check_dataset, layout_problems

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real sample data not found at {SHARED} (absent on a fresh "
                                "clone; set BENCH_SHARED_DATA to point at it)")
VOC = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192]  # index 255: border


# --------------------------------------------------------------------------- helpers


def card(name: str, drop=(), **options):
    loaded = load_card(REPO / "datasets" / f"{name}.toml")
    return revise(loaded, drop=drop, options=options) if (options or drop) else loaded


def volume_card(**options):
    table = {"name": "vol", "reader": "volumes", "kind": "volume", "targets": ["tumour"],
             "options": {"image": "{id}_image.nii.gz", "mask": "{id}_label.nii.gz",
                         "labels": {"tumour": 1}, **options}}
    return card_from_table(table, "vol.toml")


def load_all(card, root):
    reader = get_reader(card.reader)
    return [reader.load_flow(card, ref) for ref in reader.list_flows(card, root)]


def refusal(card, root) -> str:
    with pytest.raises(DataError) as caught:
        load_all(card, root)
    text = str(caught.value)
    assert "\n" not in text
    return text


def save(path: Path, image: Image.Image | np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path, **kwargs)
    return path


def rgb(h: int, w: int) -> np.ndarray:
    return (np.random.default_rng(h * w).random((h, w, 3)) * 255).astype(np.uint8)


def wbc_root(root: Path, mask, name: str = "001", suffix: str = ".png", **kwargs) -> Path:
    """A WBC layout with one case; returns the mask file."""
    shape = np.asarray(mask).shape[:2] if not isinstance(mask, Image.Image) else mask.size[::-1]
    save(root / "Dataset 1" / f"{name}.bmp", rgb(*shape), format="BMP")
    return save(root / "Dataset 1" / f"{name}{suffix}", mask, **kwargs)


def cell(levels=(0, 128, 255), shape=(12, 12)) -> np.ndarray:
    """A cell: background, a cytoplasm ring (36 - 4 pixels) and a nucleus (4 pixels)."""
    mask = np.full(shape, levels[0], dtype=np.uint16 if max(levels) > 255 else np.uint8)
    mask[2:8, 2:8] = levels[1]
    mask[4:6, 4:6] = levels[2]
    return mask


def nii(path: Path, array: np.ndarray, zooms=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)) -> Path:
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = origin
    image = nib.Nifti1Image(array, affine)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def brain(root: Path, image: np.ndarray | None = None, **label_geometry) -> tuple[Path, Path]:
    label = np.zeros((6, 6, 4), np.uint8)
    label[1:4, 1:4, 1:3] = 1
    if image is None:
        image = np.arange(label.size, dtype=np.float32).reshape(label.shape)
    return (nii(root / "b1_image.nii.gz", image),
            nii(root / "b1_label.nii.gz", label, **label_geometry))


def raw_header_spacing(path: Path, spacing: tuple[float, float, float]) -> None:
    """Rewrite a NIfTI's stored pixdim (nibabel would 'fix' it when saving through it)."""
    image = nib.load(str(path))
    header = image.header.copy()
    header["pixdim"][1:4] = spacing
    data = np.asarray(image.dataobj)
    with nib.openers.ImageOpener(str(path), "wb") as handle:
        header.write_to(handle)
        handle.write(b"\0" * (int(header["vox_offset"]) - header.sizeof_hdr))
        handle.write(data.tobytes(order="F"))


# --------------------------------------------------------------------------- masks


def test_16_bit_mask_is_refused_by_a_card_of_8_bit_levels(tmp_path):
    path = wbc_root(tmp_path, cell((0, 32896, 65535)))
    assert np.asarray(Image.open(path)).max() == 65535  # stored as 16 bits
    text = refusal(card("wbc"), tmp_path)
    assert text.startswith(f"{path}: mask values [32896, 65535] are not declared")
    assert "a 16-bit mask? declare the values it holds in options.labels" in text


def test_16_bit_mask_reads_by_value_when_the_card_declares_its_values(tmp_path):
    wbc_root(tmp_path, cell((0, 32896, 65535)))
    wide = card("wbc", levels=[0, 32896, 65535], labels={"cytoplasm": 32896, "nucleus": 65535})
    (flow,) = load_all(wide, tmp_path)
    assert int(flow.masks["cytoplasm"][0].sum()) == 32 and int(flow.masks["nucleus"][0].sum()) == 4


def test_index_mask_is_refused_by_a_card_of_grey_levels(tmp_path):
    path = wbc_root(tmp_path, cell((0, 1, 2)))
    text = refusal(card("wbc"), tmp_path)
    assert text.startswith(f"{path}: mask values [1, 2] are not declared by the card (found "
                           "[0, 1, 2], declared [0, 128, 255])")
    assert "class indices or a 0/1 mask? set options.labels" in text


def test_index_mask_reads_when_the_card_declares_indices(tmp_path):
    wbc_root(tmp_path, cell((0, 1, 2)))
    (flow,) = load_all(card("wbc", drop=["levels"], labels={"cytoplasm": 1, "nucleus": 2}),
                       tmp_path)
    assert int(flow.masks["cytoplasm"][0].sum()) == 32 and int(flow.masks["nucleus"][0].sum()) == 4


def test_01_mask_is_refused_by_a_card_of_grey_levels(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    path = wbc_root(tmp_path, mask)
    assert refusal(card("wbc"), tmp_path).startswith(f"{path}: mask values [1] are not declared")


def test_01_mask_under_a_threshold_card_is_refused_not_read_empty(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    save(tmp_path / "ISIC_0000001.jpg", rgb(8, 8))
    path = save(tmp_path / "ISIC_0000001_segmentation.png", mask)
    text = refusal(card("isic"), tmp_path)
    assert text == (f"{path}: mask values [0, 1] all lie below threshold = 128, so every target "
                    "would be empty (an index or 0/1 mask?): set options.threshold = 1, or drop "
                    "threshold and declare options.labels")


def test_01_mask_reads_with_the_threshold_its_message_names(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 1
    save(tmp_path / "ISIC_0000001.jpg", rgb(8, 8))
    save(tmp_path / "ISIC_0000001_segmentation.png", mask)
    (flow,) = load_all(card("isic", threshold=1), tmp_path)
    np.testing.assert_array_equal(flow.masks["lesion"][0], mask == 1)


def test_01_jpeg_mask_is_refused(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 1
    save(tmp_path / "origin1" / "image_001.jpg", rgb(16, 16))
    path = save(tmp_path / "groundtruth1" / "image_001.jpg", mask, quality=95)
    text = refusal(card("fundus-optic-disc"), tmp_path)
    assert text.startswith(f"{path}: mask values [0, 1") and "all lie below threshold = 128" in text


def test_jpeg_mask_without_threshold_names_the_threshold_option(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    save(tmp_path / "origin1" / "image_001.jpg", rgb(16, 16))
    path = save(tmp_path / "groundtruth1" / "image_001.jpg", mask, quality=75)
    lossless = card("fundus-optic-disc", drop=["threshold"], labels={"optic disc": 255})
    text = refusal(lossless, tmp_path)
    assert text.startswith(f"{path}: mask values [")
    assert "a lossy JPEG mask: set options.threshold = 128 to binarise it" in text


def test_palette_mask_is_refused_unless_the_card_says_palette(tmp_path):
    mask = Image.fromarray(cell((0, 1, 2)), mode="P")
    mask.putpalette(VOC)
    path = wbc_root(tmp_path, mask)
    assert refusal(card("wbc"), tmp_path) == (
        f"{path}: palette (colour-indexed) mask: its pixels are palette indices; set "
        "options.encoding = 'palette' to read them as label values")


def test_palette_mask_reads_its_indices_with_encoding_palette(tmp_path):
    mask = Image.fromarray(cell((0, 1, 2)), mode="P")
    mask.putpalette(VOC)
    wbc_root(tmp_path, mask)
    voc = card("wbc", drop=["levels"], encoding="palette",
               labels={"cytoplasm": 1, "nucleus": 2})
    (flow,) = load_all(voc, tmp_path)
    assert int(flow.masks["cytoplasm"][0].sum()) == 32 and int(flow.masks["nucleus"][0].sum()) == 4


def test_palette_border_value_must_be_declared(tmp_path):
    indices = cell((0, 1, 2))
    indices[0, :] = 255  # VOC's "void" border
    mask = Image.fromarray(indices, mode="P")
    mask.putpalette(VOC)
    path = wbc_root(tmp_path, mask)
    voc = {"encoding": "palette", "labels": {"cytoplasm": 1, "nucleus": 2}}
    text = refusal(card("wbc", drop=["levels"], **voc), tmp_path)
    assert text.startswith(f"{path}: mask values [255] are not declared")
    assert "options.remap = { 255 = 0 }" in text
    (flow,) = load_all(card("wbc", drop=["levels", "remap_files"], **voc, remap={255: 0}),
                       tmp_path)
    assert int(flow.masks["cytoplasm"][0].sum()) == 32


def test_grey_palette_mask_reads_as_its_grey_levels(tmp_path):
    mask = Image.fromarray(cell()).convert("P")  # a palette of greys
    wbc_root(tmp_path, mask, suffix=".png")
    (flow,) = load_all(card("wbc"), tmp_path)
    assert int(flow.masks["cytoplasm"][0].sum()) == 32 and int(flow.masks["nucleus"][0].sum()) == 4


def test_palette_encoding_on_a_grey_mask_is_refused(tmp_path):
    path = wbc_root(tmp_path, cell())
    text = refusal(card("wbc", encoding="palette"), tmp_path)
    assert text == (f"{path}: options.encoding = 'palette' but the mask is not a palette image "
                    "(mode L); remove the option")


def test_colour_mask_with_unequal_channels_is_refused(tmp_path):
    mask = np.zeros((8, 8, 3), np.uint8)
    mask[2:4, 2:4, 0] = 255
    path = wbc_root(tmp_path, mask)
    assert refusal(card("wbc"), tmp_path) == (f"{path}: colour mask with unequal channels; set "
                                              "the card option mask_channel to pick one")


def test_stray_value_without_declaration_names_remap(tmp_path):
    mask = cell()
    mask[0, 0] = 9
    path = wbc_root(tmp_path, mask)
    text = refusal(card("wbc"), tmp_path)  # Dataset 1/001 is not in remap_files
    assert text.startswith(f"{path}: mask values [9] are not declared by the card")
    assert "options.remap = { 9 = 0 } declares a stray value as a class" in text


def test_remap_to_an_undeclared_value_is_refused(tmp_path):
    mask = cell()
    mask[0, 0] = 9
    path = wbc_root(tmp_path, mask)
    text = refusal(card("wbc", drop=["remap_files"], remap={9: 77}), tmp_path)
    assert text.startswith(f"{path}: mask values [77] are not declared")


def test_per_target_mask_with_jpeg_noise_needs_a_threshold(tmp_path):
    table = {"name": "t", "reader": "pairs2d", "kind": "image-flow", "targets": ["lesion"],
             "options": {"image": "img/{id}.png", "target_masks": {"lesion": "seg/{id}.jpg"}}}
    mask = np.zeros((16, 16), np.uint8)
    mask[3:11, 5:13] = 255
    save(tmp_path / "img" / "a.png", rgb(16, 16))
    path = save(tmp_path / "seg" / "a.jpg", mask, quality=60)
    text = refusal(card_from_table(table, "t.toml"), tmp_path)
    assert text.startswith(f"{path}: per-target mask holds several non-zero values [")
    assert "set options.threshold (e.g. threshold = 128 for JPEG masks)" in text
    table["options"]["threshold"] = 128
    (flow,) = load_all(card_from_table(table, "t.toml"), tmp_path)
    np.testing.assert_array_equal(flow.masks["lesion"][0], np.asarray(Image.open(path)) >= 128)


def test_undeclared_label_in_a_volume_names_the_label_file(tmp_path):
    _, label = brain(tmp_path)
    data = np.asarray(nib.load(str(label)).dataobj).copy()
    data[0, 0, 0] = 14
    nii(label, data)
    text = refusal(volume_card(), tmp_path)
    assert text.startswith(f"{label}: mask values [14] are not declared by the card (found "
                           "[0, 1, 14], declared [0, 1])")


@needs_shared
def test_real_wbc_stray_values_read_as_declared_and_match_a_clean_copy(tmp_path):
    source = SHARED / "wbc" / "Dataset 2"
    raw = np.asarray(Image.open(source / "050.png"))
    assert 9 in raw
    root = tmp_path / "wbc"
    (root / "Dataset 2").mkdir(parents=True)
    for suffix in (".bmp", ".png"):
        shutil.copy(source / f"050{suffix}", root / "Dataset 2" / f"050{suffix}")
    (flow,) = load_all(card("wbc"), root)
    np.testing.assert_array_equal(flow.masks["cytoplasm"][0], raw == 128)
    np.testing.assert_array_equal(flow.masks["nucleus"][0], raw == 255)
    text = refusal(card("wbc", drop=["remap", "remap_files"]), root)
    assert text.startswith(f"{root / 'Dataset 2' / '050.png'}: mask values [9] are not declared")
    assert "options.remap = { 9 = 0 }" in text


@needs_shared
def test_real_fundus_jpeg_masks_threshold_as_read_independently(tmp_path):
    root = SHARED / "fundus-optic-disc"
    (flow,) = load_all(card("fundus-optic-disc"), root)
    first = root / "sample_dataset" / "groundtruth1" / f"image_{flow.case_ids[0]}.jpg"
    np.testing.assert_array_equal(flow.masks["optic disc"][0],
                                  np.asarray(Image.open(first).convert("L")) >= 128)


# --------------------------------------------------------------------------- volumes


def test_4d_image_is_refused_without_a_channel(tmp_path):
    image = np.stack([np.zeros((6, 6, 4), np.float32), np.ones((6, 6, 4), np.float32)], -1)
    path, _ = brain(tmp_path, image)
    assert refusal(volume_card(), tmp_path) == (
        f"{path}: 4D image with 2 channels (shape (6, 6, 4, 2)): set options.channel to the "
        "index of the channel (modality) to read")


def test_4d_image_reads_the_channel_the_card_names(tmp_path):
    image = np.stack([np.zeros((6, 6, 4), np.float32), np.full((6, 6, 4), 5, np.float32)], -1)
    brain(tmp_path, image)
    (flow,) = load_all(volume_card(channel=1), tmp_path)
    assert float(np.asarray(flow.frames).min()) == 5.0


def test_4d_image_channel_out_of_range_is_refused(tmp_path):
    image = np.zeros((6, 6, 4, 2), np.float32)
    path, _ = brain(tmp_path, image)
    assert refusal(volume_card(channel=3), tmp_path) == (
        f"{path}: channel 3 not in a 4D image with 2 channels")


def test_4d_image_with_one_channel_reads(tmp_path):
    brain(tmp_path, np.ones((6, 6, 4, 1), np.float32))
    (flow,) = load_all(volume_card(), tmp_path)
    assert int(flow.masks["tumour"].sum()) == 18


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 0.0), (1.0, -0.5, 1.0), (np.nan, 1.0, 1.0)])
@pytest.mark.parametrize("role", ["image", "label"])
def test_invalid_voxel_spacing_is_refused_never_1_mm(tmp_path, spacing, role):
    paths = dict(zip(("image", "label"), brain(tmp_path), strict=True))
    raw_header_spacing(paths[role], spacing)
    text = refusal(volume_card(), tmp_path)
    assert text.startswith(f"{paths[role]}: invalid voxel spacing (")
    assert text.endswith("in the header (zero, negative or NaN): fix the file's header; "
                         "distances in mm cannot be computed from it")


def test_invalid_spacing_option_is_a_config_error():
    with pytest.raises(ConfigError, match=r"vol.toml.options.spacing.2: expected a value > 0"):
        volume_card(spacing=[1.0, 1.0, 0.0])
    with pytest.raises(ConfigError, match=r"vol.toml.options.spacing.0: expected a finite"):
        volume_card(spacing=[float("nan"), 1.0, 1.0])


def test_label_affine_beyond_tolerance_names_both_files(tmp_path):
    image, label = brain(tmp_path, origin=(0.0, 0.0, 5.0))
    text = refusal(volume_card(), tmp_path)
    assert text.startswith(f"{label}: geometry differs from the image {image} (affine")
    assert "beyond 1e-3 mm; options.check_geometry = false accepts it" in text


def test_label_affine_within_tolerance_reads(tmp_path):
    brain(tmp_path, origin=(0.0, 0.0, 1e-5))
    (flow,) = load_all(volume_card(), tmp_path)
    assert flow.spacing == (2.0, 1.0, 1.0) and int(flow.masks["tumour"].sum()) == 18


def test_nnunet_with_several_channels_needs_a_channel(tmp_path):
    root = tmp_path / "Dataset001_X"
    seg = np.zeros((4, 4, 3), np.uint8)
    seg[1, 1, 1] = 1
    for channel in (0, 1):
        nii(root / f"imagesTr/x_001_{channel:04d}.nii.gz", np.ones(seg.shape, np.float32))
    nii(root / "labelsTr/x_001.nii.gz", seg)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "lesion": 1},
        "file_ending": ".nii.gz"}))
    task = card_from_table({"name": "x", "reader": "nnunet", "kind": "volume", "targets": []},
                           "x.toml")
    with pytest.raises(ConfigError, match=r"^x.options.channel: the dataset has 2 channels "
                                          r"\['T1', 'T2'\]; set options.channel"):
        load_all(task, root)


@needs_shared
def test_real_brain_label_reads_as_nibabel_counts_it(tmp_path):
    root = SHARED / "brain-tumour-mr"
    flows = load_all(card("brain-tumour-mr"), root)
    for flow in flows:
        label = np.asarray(nib.load(str(root / f"{flow.id}_label.nii.gz")).dataobj)
        assert int(flow.masks["tumour"].sum()) == int((label == 1).sum()) > 0


# --------------------------------------------------------------------------- layouts


def project(tmp_path: Path, roots: dict[str, Path], cards: Path | None = None) -> Path:
    lines = ["[datasets]"] + [f'{name} = "{root}"' for name, root in roots.items()]
    lines += ["[suites.t]", 'protocol = "one-prompt"',
              f"datasets = {json.dumps(list(roots))}", 'models = ["full-frame"]']
    config = tmp_path / "bench.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def bench_run(config: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    from bench.cli import main

    capsys.readouterr()
    code = main(["--config", str(config), "run", "--suite", "t", "--out", str(out),
                 "--no-cache", *extra])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def wbc_cases(root: Path, n: int = 2, folder: str = "Dataset 1") -> None:
    for i in range(1, n + 1):  # each its own image: identical cases would be duplicates
        save(root / folder / f"{i:03d}.bmp", np.roll(rgb(12, 12), i, axis=1), format="BMP")
        save(root / folder / f"{i:03d}.png", cell())


def test_empty_root_refuses_the_run_naming_root_and_patterns(tmp_path, capsys):
    root = tmp_path / "empty"
    root.mkdir()
    code, text = bench_run(project(tmp_path, {"wbc": root}), tmp_path / "run", capsys)
    assert code == 2 and not (tmp_path / "run").exists()  # refused before any work
    assert (f"{root}: dataset 'wbc': no case found: no file matches the card's image "
            "pattern(s) '{set}/{id}.bmp'; the root holds no files") in text


def test_root_one_level_too_high_names_the_subfolder(tmp_path, capsys):
    wbc_cases(tmp_path / "data" / "wbc")
    code, text = bench_run(project(tmp_path, {"wbc": tmp_path / "data"}), tmp_path / "run",
                           capsys)
    assert code == 2
    assert (f"the root looks one level too high: its subfolder {tmp_path / 'data' / 'wbc'} "
            "matches 2 image(s), set the dataset root to it") in text


def test_root_one_level_too_low_names_the_parent(tmp_path):
    wbc_cases(tmp_path / "wbc")
    (problem,) = [p for p in layout_problems(card("wbc"), tmp_path / "wbc" / "Dataset 1")
                  if p.severity == "error"]
    assert problem.message.endswith(f"its parent {tmp_path / 'wbc'} matches 2 image(s), set "
                                    "the dataset root to it")


def test_root_holding_another_datasets_layout_names_that_card(tmp_path, capsys):
    fundus = tmp_path / "fundus"
    for i in range(3):
        save(fundus / "origin1" / f"image_{i:03d}.jpg", rgb(8, 8))
        save(fundus / "groundtruth1" / f"image_{i:03d}.jpg", cell(shape=(8, 8)))
    code, text = bench_run(project(tmp_path, {"wbc": fundus}), tmp_path / "run", capsys)
    assert code == 2 and f"{fundus}: dataset 'wbc': no case found" in text
    assert "the root holds another dataset's layout: it matches the card(s) " in text
    assert "'fundus-optic-disc' (3 images)" in text  # the built-in cards, on the same line
    problems = check_dataset(card("wbc"), fundus,
                             cards={"wbc": card("wbc"), "fundus-optic-disc":
                                    card("fundus-optic-disc")})
    assert any("the root holds another dataset's layout: it matches the card(s) "
               "'fundus-optic-disc' (3 images), not 'wbc'" in p.message for p in problems)


def test_two_images_matching_one_case_name_both_and_suggest_exclude(tmp_path, capsys):
    table = {"name": "drive", "reader": "pairs2d", "kind": "image-flow", "targets": ["vessel"],
             "options": {"image": "**/{id}_training.png", "mask": "**/{id}_manual1.png",
                         "threshold": 128}}
    for folder in ("images", "mask"):  # DRIVE's field-of-view masks share the image names
        save(tmp_path / "DRIVE" / folder / "21_training.png", rgb(8, 8))
    save(tmp_path / "DRIVE" / "1st_manual" / "21_manual1.png", cell(shape=(8, 8)))
    drive = card_from_table(table, "drive.toml")
    errors = [p for p in layout_problems(drive, tmp_path) if p.severity == "error"]
    assert [str(p) for p in errors] == [
        f"error: {tmp_path / 'DRIVE/mask/21_training.png'}: ambiguous: "
        f"{tmp_path / 'DRIVE/images/21_training.png'} and "
        f"{tmp_path / 'DRIVE/mask/21_training.png'} both match case '21' (pattern "
        "'**/{id}_training.png'); add options.exclude = ['DRIVE/mask/*'] (or "
        "['DRIVE/images/*']) to keep one of them"]
    table["options"]["exclude"] = ["DRIVE/mask/*"]
    assert layout_problems(card_from_table(table, "drive.toml"), tmp_path) == []


def test_two_masks_matching_one_case_are_an_error(tmp_path):
    wbc_cases(tmp_path, 1)
    save(tmp_path / "Dataset 1" / "extra" / "001.png", cell())
    multi = card("wbc", mask="**/{id}.png")
    errors = [p for p in layout_problems(multi, tmp_path) if p.severity == "error"]
    assert len(errors) == 1 and errors[0].message.startswith(
        f"ambiguous: {tmp_path / 'Dataset 1/001.png'} and "
        f"{tmp_path / 'Dataset 1/extra/001.png'} both match case 'Dataset 1/001'")
    assert "options.exclude = ['Dataset 1/extra/*']" in errors[0].message


def test_a_dataset_of_a_multi_dataset_suite_never_vanishes(tmp_path, capsys):
    wbc_cases(tmp_path / "wbc")
    empty = tmp_path / "fundus"
    empty.mkdir()
    config = project(tmp_path, {"wbc": tmp_path / "wbc", "fundus-optic-disc": empty})
    code, text = bench_run(config, tmp_path / "run", capsys)
    assert code == 2 and f"{empty}: dataset 'fundus-optic-disc': no case found" in text


def test_layout_warnings_are_printed_and_recorded(tmp_path, capsys):
    wbc_cases(tmp_path / "wbc", 2)
    code, text = bench_run(project(tmp_path, {"wbc": tmp_path / "wbc"}), tmp_path / "run",
                           capsys)
    assert code == 0
    assert f"warning: dataset wbc: {tmp_path / 'wbc'}: 2 cases found, 400 expected" in text
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["datasets"]["wbc"]["layout"] == [
        {"severity": "warning", "path": str(tmp_path / "wbc"),
         "message": "2 cases found, 400 expected"}]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Dataset layout warnings" in report and "2 cases found, 400 expected" in report


def test_an_undeclared_mask_value_fails_the_run_naming_the_file(tmp_path, capsys):
    wbc_cases(tmp_path / "wbc", 2)
    bad = cell()
    bad[0, 0] = 3
    save(tmp_path / "wbc" / "Dataset 1" / "002.png", bad)
    code, _ = bench_run(project(tmp_path, {"wbc": tmp_path / "wbc"}), tmp_path / "run", capsys)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    entry = manifest["datasets"]["wbc"]
    assert code == 1 and entry["refused"]
    (failure,) = entry["failures"]
    assert failure["error"].startswith(f"DataError: {tmp_path / 'wbc/Dataset 1/002.png'}: mask "
                                       "values [3] are not declared")


@needs_shared
def test_real_wbc_with_declared_strays_scores_as_a_cleaned_copy(tmp_path, capsys):
    source = SHARED / "wbc" / "Dataset 2"
    names = ["049", "050", "051"]
    runs = {}
    for kind in ("published", "cleaned"):
        root = tmp_path / kind
        (root / "Dataset 2").mkdir(parents=True)
        for name in names:
            shutil.copy(source / f"{name}.bmp", root / "Dataset 2" / f"{name}.bmp")
            mask = np.asarray(Image.open(source / f"{name}.png"))
            if kind == "cleaned":
                mask = np.where(np.isin(mask, [0, 128, 255]), mask, 0).astype(np.uint8)
            save(root / "Dataset 2" / f"{name}.png", mask)
        work = tmp_path / f"{kind}-project"
        work.mkdir()
        code, _ = bench_run(project(work, {"wbc": root}), work / "run", capsys)
        assert code == 0
        table = pd.read_csv(work / "run" / "metrics.csv", dtype={"case": str})
        runs[kind] = table.drop(columns=[c for c in table.columns if "time" in c or "path" in c])
    assert len(runs["published"]) > 0
    pd.testing.assert_frame_equal(runs["published"], runs["cleaned"])
