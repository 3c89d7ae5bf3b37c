"""Miniature trees in each published layout, read back through the real cards.

Every test writes a few tiny cases in the dataset's real file formats under
``tmp_path`` and checks targets, label merges, regions, grey-level decoding,
spacing, geometry and case counts against values computed by hand or
directly from the arrays the test wrote.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_readers_support import revise

from bench.errors import ConfigError
from bench.readers import get_reader, load_card, read_flows
from bench.readers.check import check_dataset, has_errors
from bench.readers.geometry import to_source_order

CARDS = Path(__file__).resolve().parents[1] / "datasets"


def card(name: str, **options):
    loaded = load_card(CARDS / f"{name}.toml")
    return revise(loaded, options=options) if options else loaded


def list_cases(card, root):
    return get_reader(card.reader).list_cases(card, root)


def list_flows(card, root):
    return get_reader(card.reader).list_flows(card, root)


def load_case(card, ref):
    return get_reader(card.reader).load_case(card, ref)


def load_flow(card, ref):
    return get_reader(card.reader).load_flow(card, ref)


def nii(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))


def png(path: Path, array: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def errors_of(problems):
    return [p for p in problems if p.severity == "error"]


# --------------------------------------------------------------------------- volumes


def test_btcv_merges_adrenals_windows_ct_and_keeps_geometry(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(-1000, 1000, (8, 9, 5)).astype(np.int16)
    labels = np.zeros((8, 9, 5), np.uint8)
    labels[1:3, 1:4, 1:3] = 12  # 12 voxels right adrenal
    labels[5:7, 5:8, 2:4] = 13  # 12 voxels left adrenal
    labels[0, 0, :] = 6  # liver, 5 voxels
    for case in ("0001", "0002"):  # two cases, not one duplicated (a check error)
        nii(tmp_path / f"RawData/Training/img/img{case}.nii.gz", image + (case == "0002"),
            (0.7, 0.8, 2.5))
        nii(tmp_path / f"RawData/Training/label/label{case}.nii.gz", labels, (0.7, 0.8, 2.5))
    nii(tmp_path / "RawData/Testing/img/img0061.nii.gz", image)  # unlabelled: not read
    btcv = card("btcv")
    cases = list_cases(btcv, tmp_path)
    assert [c.id for c in cases] == ["img0001", "img0002"]
    flow = load_case(btcv, cases[0])
    assert flow.kind == "volume" and flow.targets == list(btcv.targets)
    assert len(flow.targets) == 12
    # slices along the third array axis, rows along j and columns along i (as SimpleITK's
    # (z, y, x) arrays): (n, H, W) = (5, 9, 8), spacing in that order
    assert flow.frames.shape == (5, 9, 8) and flow.frames.dtype == np.float32
    assert flow.spacing == (2.5, 0.8, 0.7)
    expected = np.clip((image.astype(np.float32) + 125) / 400, 0, 1)
    np.testing.assert_allclose(flow.frames, expected.T, atol=1e-6)
    ag = to_source_order(flow.masks["AG"], flow.meta)
    assert np.array_equal(ag, (labels == 12) | (labels == 13)) and ag.sum() == 24
    assert to_source_order(flow.masks["liver"], flow.meta).sum() == 5
    assert flow.masks["spleen"].sum() == 0
    np.testing.assert_allclose(flow.meta["affine"], np.diag([0.7, 0.8, 2.5, 1.0]), atol=1e-6)
    assert flow.meta["source_shape"] == (8, 9, 5)
    problems = check_dataset(btcv, tmp_path)
    assert not has_errors(problems)
    assert str(problems[-1]) == f"warning: {tmp_path}: 2 cases found, 30 expected"


def test_brats_regions_and_selectable_channel(tmp_path):
    seg = np.zeros((6, 6, 4), np.uint8)
    seg[0:2, 0:2, 0] = 1  # 4 necrotic
    seg[2:5, 2:5, 1] = 2  # 9 oedema
    seg[5, 0:3, 2] = 4  # 3 enhancing
    case = tmp_path / "BraTS2021_Training_Data/BraTS2021_00007"
    for channel, value in (("flair", 1.0), ("t1", 2.0), ("t1ce", 3.0), ("t2", 4.0)):
        nii(case / f"BraTS2021_00007_{channel}.nii.gz",
            np.full(seg.shape, value, np.float32) + np.arange(4, dtype=np.float32))
    nii(case / "BraTS2021_00007_seg.nii.gz", seg)
    brats = revise(card("brats"), drop=["window"])
    flow = next(read_flows(brats, tmp_path))
    assert flow.id == "BraTS2021_00007"
    assert {t: int(m.sum()) for t, m in flow.masks.items()} == {"WT": 16, "TC": 7, "ET": 3}
    assert flow.frames[0, 0, 0] == 1.0  # FLAIR (1.0 + slice 0)
    t1ce = revise(brats, options={"vars": {"channel": "t1ce"}})
    assert next(read_flows(t1ce, tmp_path)).frames[2, 0, 0] == 5.0  # 3.0 + slice 2


def _kits_tree(root: Path, n_cases: int = 3) -> None:
    for c in range(n_cases):
        seg = np.zeros((6, 8, 8), np.uint8)  # KiTS arrays are (z, y, x)
        seg[1:5, 2:6, 2:6] = 1
        seg[2, 3:5, 3:5] = 2
        seg[4, 2, 2] = 3
        image = np.full(seg.shape, -125 + 40 * c, np.int16)
        nii(root / f"dataset/case_{c:05d}/imaging.nii.gz", image, (3.0, 0.8, 0.8))
        nii(root / f"dataset/case_{c:05d}/segmentation.nii.gz", seg, (3.0, 0.8, 0.8))


def test_kits23_slices_into_target_images_across_patients(tmp_path):
    _kits_tree(tmp_path)
    kits = card("kits23", chunk_size=4)
    cases = list_cases(kits, tmp_path)
    # target slices 1..4; 3 evenly spaced picks: linspace(0, 3, 3).round() = [0, 2, 3]
    assert [c.id for c in cases[:3]] == ["case_00000/s0001", "case_00000/s0003",
                                         "case_00000/s0004"]
    assert len(cases) == 9 and {c.patient for c in cases} == {
        "case_00000", "case_00001", "case_00002"}
    flows = list_flows(kits, tmp_path)
    assert [len(f.cases) for f in flows] == [4, 4, 1]
    flow = load_flow(kits, flows[0])
    assert flow.kind == "image-flow" and len(flow.frames) == 4
    assert flow.frames[0].shape == (8, 8) and flow.spacing == (0.8, 0.8)
    assert flow.patient_ids == ["case_00000"] * 3 + ["case_00001"]
    # HEC targets: slice 4 holds kidney (16 - 1 cyst voxel) and the cyst
    counts = {t: [int(m.sum()) for m in ms] for t, ms in flow.masks.items()}
    assert counts["kidney and masses"] == [16, 16, 16, 16]
    assert counts["masses"] == [0, 0, 1, 0] and counts["tumour"] == [0, 0, 0, 0]
    assert flow.frames[3][0, 0] == pytest.approx(40 / 400)  # case 1: -85 HU in the window
    assert flow.case_ids[0] == "case_00000/s0001"
    # the same data as volumes
    volumes = revise(kits, kind="volume", options={"as_image_flow": False})
    whole = load_flow(volumes, list_flows(volumes, tmp_path)[0])
    assert whole.frames.shape == (6, 8, 8) and whole.spacing == (3.0, 0.8, 0.8)
    assert int(whole.masks["tumour"].sum()) == 4


def test_atlas23_auto_axis_follows_largest_spacing(tmp_path):
    seg = np.zeros((4, 5, 6), np.uint8)
    seg[1, 1:3, 1:3] = 1
    seg[1, 1, 1] = 2
    nii(tmp_path / "train/imagesTr/im0.nii.gz", np.ones(seg.shape, np.float32), (3.0, 1.0, 1.0))
    nii(tmp_path / "train/labelsTr/lb0.nii.gz", seg, (3.0, 1.0, 1.0))
    atlas = card("atlas23")
    (ref,) = list_cases(atlas, tmp_path)
    assert ref.id == "im0/s0001"  # axis 0 (3 mm), one slice holds the liver
    flow = load_case(atlas, ref)
    assert flow.frames[0].shape == (6, 5)  # NIfTI storage: in-plane axes (k, j)
    assert int(flow.masks["liver"][0].sum()) == 4 and int(flow.masks["tumour"][0].sum()) == 1


def test_segrap_regions_follow_the_organisers_mapping(tmp_path):
    seg = np.zeros((3, 4, 9), np.uint8)
    for value in range(1, 10):
        seg[0, 0, value - 1] = value
    seg[1, 1, 0] = 54
    base = tmp_path / "SegRap2023"
    nii(base / "SegRap2023_Training_Set_120cases/segrap_0001/image.nii.gz",
        np.zeros(seg.shape, np.int16))
    nii(base / "SegRap2023_Training_Set_120cases_OneHot_Labels/Task001/segrap_0001.nii.gz", seg)
    segrap = revise(card("segrap"), kind="volume", options={"as_image_flow": False})
    flow = next(read_flows(segrap, tmp_path))
    counts = {t: int(m.sum()) for t, m in flow.masks.items()}
    assert len(counts) == 45
    assert counts["Brain"] == 9 and counts["BrainStem"] == 1 and counts["Trachea"] == 1
    assert counts["TemporalLobe_L"] == 2 and counts["Hippocampus_L"] == 2  # value 6 is shared


def test_crossmoda23_vs_is_intra_plus_extra_meatal(tmp_path):
    seg = np.zeros((4, 4, 3), np.uint8)
    seg[0, 0, 1], seg[1, 1, 1], seg[2, 2, 1] = 1, 2, 3
    nii(tmp_path / "crossmoda2023_etz_1_ceT1.nii.gz", np.ones(seg.shape, np.float32))
    nii(tmp_path / "crossmoda2023_etz_1_hrT2.nii.gz", np.ones(seg.shape, np.float32))
    nii(tmp_path / "crossmoda2023_etz_1_Label.nii.gz", seg)
    cross = card("crossmoda23")
    (ref,) = list_cases(cross, tmp_path)
    flow = load_case(cross, ref)
    assert ref.id == "etz_1/s0001" and flow.meta["image"].endswith("_ceT1.nii.gz")
    assert int(flow.masks["vestibular schwannoma"][0].sum()) == 2
    assert int(flow.masks["cochlea"][0].sum()) == 1


def test_tdsc_abus_nrrd_geometry(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    data = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)  # SimpleITK order (z, y, x)
    mask = np.zeros_like(data)
    mask[2, 1:3, 1:4] = 1
    for folder, array in (("DATA", data), ("MASK", mask)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.2, 0.073, 0.476))
        image.SetOrigin((10.0, 20.0, 30.0))
        (tmp_path / "Train" / folder).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(tmp_path / "Train" / folder / f"{folder}_007.nrrd"))
    tdsc = revise(card("tdsc-abus"), kind="volume",
                  options={"as_image_flow": False, "window": [0, 255]})
    flow = next(read_flows(tdsc, tmp_path))
    # sliced along z, the frames are SimpleITK's own (z, y, x) array
    assert flow.frames.shape == (4, 5, 6)
    assert flow.spacing == pytest.approx((0.476, 0.073, 0.2))
    np.testing.assert_allclose(flow.frames * 255, data, atol=1e-4)
    assert int(flow.masks["tumour"][2].sum()) == 6
    np.testing.assert_allclose(flow.meta["affine"][:3, 3], [-10.0, -20.0, 30.0])
    sliced = card("tdsc-abus")
    assert [c.id for c in list_cases(sliced, tmp_path)] == ["007/s0002"]


def test_toothfairy_npy_keeps_dense_annotations_only(tmp_path):
    data = np.arange(5 * 4 * 3, dtype=np.int16).reshape(5, 4, 3)
    canal = np.zeros_like(data)
    canal[1:4, 1, 1] = 1
    (tmp_path / "Dataset/P1").mkdir(parents=True)
    (tmp_path / "Dataset/P2").mkdir(parents=True)
    np.save(tmp_path / "Dataset/P1/data.npy", data)
    np.save(tmp_path / "Dataset/P1/gt_alpha.npy", canal)
    np.save(tmp_path / "Dataset/P2/data.npy", data)
    np.save(tmp_path / "Dataset/P2/gt_sparse.npy", canal)  # sparse only: left out
    tooth = card("toothfairy")
    cases = list_cases(tooth, tmp_path)
    assert [c.id for c in cases] == ["P1/s0001", "P1/s0002", "P1/s0003"]
    flow = load_case(tooth, cases[1])
    assert flow.spacing == (0.3, 0.3) and flow.frames[0].shape == (4, 3)
    assert int(flow.masks["inferior alveolar canal"][0].sum()) == 1
    problems = check_dataset(tooth, tmp_path)
    assert not has_errors(problems)
    assert any("1 images without mask left out" in p.message for p in problems)


def test_official_btcv_hub_layout(tmp_path):
    for i in range(3):
        frame = np.full((6, 7), 50 * i, np.uint8)
        png(tmp_path / f"Test/image/img0035/{i}.jpg", np.stack([frame] * 3, -1), "JPEG")
        mask = np.zeros((6, 7), np.int64)
        mask[1:3, 1:3] = 12 if i == 1 else 0
        (tmp_path / "Test/mask/img0035").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / f"Test/mask/img0035/{i}.npy", mask)
    official = card("official-btcv")
    flow = next(read_flows(official, tmp_path))
    assert flow.id == "img0035" and flow.frames.shape == (3, 6, 7)
    assert flow.spacing is None  # JPEG slices carry no geometry
    assert [int(m.sum()) for m in flow.masks["right adrenal"]] == [0, 4, 0]
    np.testing.assert_allclose(flow.frames[:, 3, 3], [0, 50 / 255, 100 / 255], atol=2 / 255)


# --------------------------------------------------------------------------- 2D pairs


def test_wbc_grey_levels_and_declared_stray_value(tmp_path):
    mask = np.zeros((10, 10), np.uint8)
    mask[2:8, 2:8] = 128
    mask[4:6, 4:6] = 255
    mask[0, 0] = 9  # declared by the card: remap = { 9 = 0 }, here for every file
    for folder, n in (("Dataset 1", 2), ("Dataset 2", 1)):
        for i in range(1, n + 1):
            png(tmp_path / folder / f"{i:03d}.bmp", rgb(10, 10, i), "BMP")
            png(tmp_path / folder / f"{i:03d}.png", mask)
    wbc = card("wbc", remap_files=["*.png"])
    flows = list_flows(wbc, tmp_path)
    assert [(f.id, len(f.cases)) for f in flows] == [("wbc/Dataset 1", 2), ("wbc/Dataset 2", 1)]
    flow = load_flow(wbc, flows[0])
    assert flow.case_ids == ["Dataset 1/001", "Dataset 1/002"]
    assert flow.frames[0].shape == (10, 10, 3) and flow.frames[0].dtype == np.uint8
    assert int(flow.masks["cytoplasm"][0].sum()) == 36 - 4
    assert int(flow.masks["nucleus"][0].sum()) == 4
    assert not flow.masks["cytoplasm"][0][0, 0]
    assert flow.meta["cases"][0]["remapped_values"] == [9]
    notes = [p for p in check_dataset(wbc, tmp_path) if "remapped" in p.message]
    assert len(notes) == 3 and "[9]" in notes[0].message and notes[0].severity == "info"
    mask[9, 9] = 120  # not declared: refused, naming the file and the option
    png(tmp_path / "Dataset 2" / "001.png", mask)
    errors = [p for p in check_dataset(wbc, tmp_path) if p.severity == "error"]
    assert len(errors) == 1 and errors[0].path.endswith("Dataset 2/001.png")
    assert "[120] are not declared" in errors[0].message and "options.remap" in errors[0].message


def test_refuge2_decodes_disc_and_cup_from_grey_levels(tmp_path):
    mask = np.full((12, 12), 255, np.uint8)
    mask[2:10, 2:10] = 128
    mask[4:7, 4:7] = 0
    png(tmp_path / "REFUGE2/train/images/0001.jpg", rgb(12, 12), "JPEG")
    png(tmp_path / "REFUGE2/train/mask/0001.bmp", mask, "BMP")
    png(tmp_path / "REFUGE2/Illustration/overview.jpg", rgb(12, 12), "JPEG")  # excluded
    assert not errors_of(check_dataset(card("refuge2"), tmp_path))
    flow = next(read_flows(card("refuge2"), tmp_path))
    assert flow.id == "refuge2/images"
    assert int(flow.masks["optic disc"][0].sum()) == 64
    assert int(flow.masks["optic cup"][0].sum()) == 9


def test_refuge_2018_and_multirater_layouts(tmp_path):
    mask = np.full((8, 8), 255, np.uint8)
    mask[1:7, 1:7] = 128
    mask[3:5, 3:5] = 0
    png(tmp_path / "Training400/Glaucoma/g0001.jpg", rgb(8, 8), "JPEG")
    png(tmp_path / "Annotation-Training400/Disc_Cup_Masks/Glaucoma/g0001.bmp", mask, "BMP")
    # multi-rater: pixel (0, c) is marked by c + 1 of the 7 raters
    folder = tmp_path / "REFUGE-MultiRater/Test-400/T0001"
    png(folder / "T0001.jpg", rgb(8, 8), "JPEG")
    for r in range(1, 8):
        cup = np.zeros((8, 8), np.uint8)
        cup[0, r - 1:] = 255
        png(folder / f"T0001_seg_cup_{r}.png", cup)
        png(folder / f"T0001_seg_disc_{r}.png", np.full((8, 8), 255, np.uint8))
    refuge = card("refuge")
    cases = list_cases(refuge, tmp_path)
    assert [c.id for c in cases] == ["refuge2018/g0001", "multirater/T0001"]
    classic = load_case(refuge, cases[0])
    assert int(classic.masks["optic disc"][0].sum()) == 36
    assert int(classic.masks["optic cup"][0].sum()) == 4
    multi = load_case(refuge, cases[1])
    # column c has c + 1 votes: majority (>= 4 of 7) from column 3 on
    assert multi.masks["optic cup"][0][0].tolist() == [False] * 3 + [True] * 5
    assert int(multi.masks["optic disc"][0].sum()) == 64
    assert [f.id for f in list_flows(refuge, tmp_path)] == ["refuge/Glaucoma", "refuge/Test"]


def test_official_refuge_reads_the_cropped_images_and_cup_raters(tmp_path):
    # func_2d/dataset.py: <id>_cropped.jpg and <id>_seg_cup_<r>_cropped.jpg (JPEG), not the
    # uncropped <id>.jpg / _seg_cup_<r>.png beside them.
    folder = tmp_path / "REFUGE/Test-400/V0001"
    png(folder / "V0001.jpg", rgb(40, 48), "JPEG")  # uncropped: ignored
    png(folder / "V0001_cropped.jpg", rgb(16, 32), "JPEG")
    for r in range(1, 8):
        cup = np.zeros((16, 32), np.uint8)
        cup[4:12, : 4 * r] = 255  # column block c (4 px) marked by raters c+1..7: 7 - c votes
        png(folder / f"V0001_seg_cup_{r}_cropped.jpg", cup, "JPEG")
        png(folder / f"V0001_seg_cup_{r}.png", np.zeros((40, 48), np.uint8))  # ignored
        png(folder / f"V0001_seg_disc_{r}_cropped.jpg", np.full((16, 32), 255, np.uint8),
            "JPEG")
    png(tmp_path / "REFUGE/Training-400/n0001/n0001_cropped.jpg", rgb(16, 32), "JPEG")
    flow = next(read_flows(card("official-refuge"), tmp_path))
    assert flow.case_ids == ["V0001"] and flow.targets == ["optic cup"]
    assert np.shape(flow.frames[0])[:2] == (16, 32)
    cup = flow.masks["optic cup"][0]
    # majority (>= 4 of 7): column blocks 0-3 (7, 6, 5, 4 votes), not 4-7; rows 4-11 only
    assert cup[8].tolist() == [True] * 16 + [False] * 16
    assert not cup[:3].any() and not cup[13:].any()


def _ddti_xml(path: Path, marks: dict[int, str]) -> None:
    body = "".join(f"<mark><image>{k}</image><svg>{v}</svg></mark>" for k, v in marks.items())
    path.write_text(f'<?xml version="1.0"?><case><number>1</number>{body}</case>')


def test_tnmix_combines_tnscui_pairs_and_ddti_polygons(tmp_path):
    nodule = np.zeros((10, 12), np.uint8)
    nodule[2:5, 3:9] = 255
    for i in (1, 2):
        png(tmp_path / f"TN-SCUI2020/image/{i}.PNG", rgb(10, 12, i)[..., 0], "PNG")
        png(tmp_path / f"TN-SCUI2020/mask/{i}.PNG", nodule, "PNG")
    ddti = tmp_path / "DDTI"
    ddti.mkdir()
    png(ddti / "1_1.jpg", rgb(20, 30), "JPEG")
    png(ddti / "1_2.jpg", rgb(20, 30), "JPEG")
    square = [{"x": 5, "y": 5}, {"x": 15, "y": 5}, {"x": 15, "y": 12}, {"x": 5, "y": 12}]
    triangle = [{"x": 20, "y": 2}, {"x": 25, "y": 2}, {"x": 20, "y": 4}]
    _ddti_xml(ddti / "1.xml", {1: json.dumps([{"points": square, "regionType": "freehand"},
                                              {"points": triangle}]),
                               2: ""})
    tnmix = card("tnmix")
    cases = list_cases(tnmix, tmp_path)
    assert [c.id for c in cases] == ["tnscui/1", "tnscui/2", "ddti/1_1", "ddti/1_2"]
    assert cases[2].patient == "ddti/1"
    flows = list_flows(tnmix, tmp_path)
    assert [(f.id, len(f.cases)) for f in flows] == [("tnmix/tnscui", 2), ("tnmix/ddti", 2)]
    scui = load_flow(tnmix, flows[0])
    assert int(scui.masks["nodule"][0].sum()) == 18 and scui.frames[0].ndim == 2
    poly = load_flow(tnmix, flows[1])
    mask = poly.masks["nodule"][0]
    # filled square with its boundary: rows 5..12, cols 5..15
    square_mask = np.zeros((20, 30), bool)
    square_mask[5:13, 5:16] = True
    assert np.array_equal(mask & square_mask, square_mask)
    assert int(mask[:, :18].sum()) == 88
    assert mask[2, 20] and mask[3, 21] and not mask[10, 25]
    assert not poly.masks["nodule"][1].any()  # empty <svg>: empty mask


def test_isic_both_mask_spellings_and_superpixels_ignored(tmp_path):
    lesion = np.zeros((6, 8), np.uint8)
    lesion[1:4, 2:6] = 255
    png(tmp_path / "ISBI2016_ISIC_Part1_Training_Data/ISIC_0000001.jpg", rgb(6, 8), "JPEG")
    png(tmp_path / "ISBI2016_ISIC_Part1_Training_GroundTruth/ISIC_0000001_Segmentation.png",
        lesion)
    png(tmp_path / "ISIC2018_Task1-2_Training_Input/ISIC_0000002.jpg", rgb(6, 8, 1), "JPEG")
    png(tmp_path / "ISIC2018_Task1-2_Training_Input/ISIC_0000002_superpixels.png", rgb(6, 8))
    png(tmp_path / "ISIC2018_Task1_Training_GroundTruth/ISIC_0000002_segmentation.png", lesion)
    isic = card("isic")
    flows = list_flows(isic, tmp_path)
    assert [f.id for f in flows] == ["isic/ISBI2016_ISIC_Part1_Training_Data",
                                     "isic/ISIC2018_Task1-2_Training_Input"]
    for ref in flows:
        flow = load_flow(isic, ref)
        assert int(flow.masks["lesion"][0].sum()) == 12
    assert not errors_of(check_dataset(isic, tmp_path))


def test_isic_image_in_two_splits_is_refused_naming_both(tmp_path, capsys):
    # The same image id under train/ and val/: never one of them kept by sort order.
    lesion = np.zeros((6, 8), np.uint8)
    lesion[1:4, 2:6] = 255
    for split in ("train", "val"):
        png(tmp_path / split / "ISIC_0000001.jpg", rgb(6, 8), "JPEG")
        png(tmp_path / split / "ISIC_0000001_segmentation.png", lesion)
    errors = [str(e) for e in errors_of(check_dataset(card("isic"), tmp_path))]
    image = next(e for e in errors if "ISIC_0000001.jpg and" in e)
    assert f"{tmp_path / 'train' / 'ISIC_0000001.jpg'} and " \
           f"{tmp_path / 'val' / 'ISIC_0000001.jpg'} both match case 'ISIC_0000001'" in image
    assert "exclude = ['val/*'] (or ['train/*'])" in image
    # bench run runs the same checks before any unit: exit 2, the same line.
    from bench.cli import main

    code = main(["run", "--suite", "one-prompt", "--datasets", "isic", "--root",
                 f"isic={tmp_path}", "--models", "full-frame", "--out", str(tmp_path / "run")])
    assert code == 2 and not (tmp_path / "run" / "metrics.csv").exists()
    assert "both match case 'ISIC_0000001'" in capsys.readouterr().err


def _ppm_gz(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PPM")
    path.write_bytes(gzip.compress(buffer.getvalue()))


def test_stare_gzipped_ppm_and_second_annotator(tmp_path):
    ah = np.zeros((5, 7, 3), np.uint8)
    ah[2, :] = 255
    vk = np.zeros((5, 7, 3), np.uint8)
    vk[2, :3] = 255
    vk[4, :] = 255
    _ppm_gz(tmp_path / "im0001.ppm.gz", rgb(5, 7))
    _ppm_gz(tmp_path / "im0001.ah.ppm.gz", ah)
    _ppm_gz(tmp_path / "im0001.vk.ppm.gz", vk)
    stare = card("stare")
    flow = next(read_flows(stare, tmp_path))
    assert flow.case_ids == ["im0001"] and flow.frames[0].shape == (5, 7, 3)
    assert int(flow.masks["vessel"][0].sum()) == 7
    both = card("stare", raters=["ah", "vk"], vote="all")
    assert int(next(read_flows(both, tmp_path)).masks["vessel"][0].sum()) == 3
    either = card("stare", raters=["ah", "vk"], vote="any")
    assert int(next(read_flows(either, tmp_path)).masks["vessel"][0].sum()) == 14


def test_cadvidset_one_flow_per_video(tmp_path):
    vessel = np.zeros((4, 4), np.uint8)
    vessel[1, :] = 255
    for video in ("v1", "v2"):
        for frame in range(3):
            png(tmp_path / f"images/{video}/{frame:03d}.png", rgb(4, 4, frame)[..., 0])
            png(tmp_path / f"masks/{video}/{frame:03d}.png", vessel)
    flows = list_flows(card("cadvidset"), tmp_path)
    assert [(f.id, len(f.cases)) for f in flows] == [("cadvidset/v1", 3), ("cadvidset/v2", 3)]
    flow = load_flow(card("cadvidset"), flows[1])
    assert flow.case_ids == ["v2/000", "v2/001", "v2/002"] and set(flow.patient_ids) == {"v2"}


# --------------------------------------------------------------------------- nnU-Net, HF


def _nnunet_card(tmp_path: Path, targets=(), **options):
    path = tmp_path / "my-task.toml"
    lines = ['name = "my-task"', 'reader = "nnunet"', 'kind = "volume"',
             f"targets = {json.dumps(list(targets))}"]
    path.write_text("\n".join(lines) + "\n")
    loaded = load_card(path)
    return revise(loaded, options=options) if options else loaded


def test_nnunet_v2_needs_no_card_beyond_its_name_and_channel(tmp_path):
    root = tmp_path / "Dataset042_Liver"
    seg = np.zeros((4, 4, 3), np.uint8)
    seg[1:3, 1:3, 1] = 1
    seg[1, 1, 1] = 2
    for case in ("liver_001", "liver_002"):
        nii(root / f"imagesTr/{case}_0000.nii.gz", np.ones(seg.shape, np.float32) * 7)
        nii(root / f"imagesTr/{case}_0001.nii.gz", np.ones(seg.shape, np.float32) * 9)
        nii(root / f"labelsTr/{case}.nii.gz", seg)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": {"background": 0, "liver": 1, "tumour": 2, "whole": [1, 2]},
        "numTraining": 2, "file_ending": ".nii.gz"}))
    with pytest.raises(ConfigError, match=r"options.channel: the dataset has 2 channels "
                                          r"\['CT', 'PET'\]; set options.channel"):
        list(read_flows(_nnunet_card(tmp_path), root))  # which modality is never guessed
    task = _nnunet_card(tmp_path, channel="CT")
    flows = list(read_flows(task, root))
    assert [f.id for f in flows] == ["liver_001", "liver_002"]
    counts = {t: int(m.sum()) for t, m in flows[0].masks.items()}
    assert counts == {"liver": 3, "tumour": 1, "whole": 4}
    assert float(flows[0].frames.max()) == 7.0
    pet = _nnunet_card(tmp_path, targets=["tumour"], channel="PET")
    flow = next(read_flows(pet, root))
    assert flow.targets == ["tumour"] and float(flow.frames.max()) == 9.0


def test_msd_4d_images_and_v1_labels(tmp_path):
    root = tmp_path / "Task01_BrainTumour"
    seg = np.zeros((4, 4, 3), np.uint8)
    seg[0, 0, 0] = 3
    image = np.stack([np.full(seg.shape, c, np.float32) for c in range(4)], axis=-1)
    nii(root / "imagesTr/BRATS_001.nii.gz", image)
    nii(root / "labelsTr/BRATS_001.nii.gz", seg)
    (root / "dataset.json").write_text(json.dumps({
        "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor",
                   "3": "enhancing tumour"},
        "training": [{"image": "./imagesTr/BRATS_001.nii.gz",
                      "label": "./labelsTr/BRATS_001.nii.gz"}]}))
    task = _nnunet_card(tmp_path, channel="t1gd")
    flow = next(read_flows(task, root))
    assert flow.targets == ["edema", "non-enhancing tumor", "enhancing tumour"]
    assert float(flow.frames.max()) == 2.0 and int(flow.masks["enhancing tumour"].sum()) == 1


def test_huggingface_load_from_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    images, masks = [], []
    for i in range(3):
        mask = np.zeros((6, 5), np.uint8)
        mask[: i + 1, 0] = 255
        images.append(Image.fromarray(rgb(6, 5, i)))
        masks.append(Image.fromarray(mask))
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image(),
                                  "name": datasets.Value("string")})
    data = datasets.Dataset.from_dict({"image": images, "mask": masks,
                                       "name": ["a", "b", "c"]}, features=features)
    data.save_to_disk(str(tmp_path / "saved"))
    path = tmp_path / "hf-set.toml"
    path.write_text('name = "hf-set"\nreader = "hf"\nkind = "image-flow"\n'
                    'targets = ["lesion"]\n[options]\npath = "saved"\nid_column = "name"\n'
                    'threshold = 128\nchunk_size = 2\n')
    hf = load_card(path)
    flows = list(read_flows(hf, tmp_path))
    assert [f.case_ids for f in flows] == [["a", "b"], ["c"]]
    assert [int(m.sum()) for m in flows[0].masks["lesion"]] == [1, 2]
    assert flows[1].frames[0].shape == (6, 5, 3)
    np.testing.assert_array_equal(flows[1].frames[0], rgb(6, 5, 2))


def test_huggingface_damaged_image_is_one_failed_case_naming_its_row(tmp_path):
    datasets = pytest.importorskip("datasets")
    mask = np.zeros((6, 5), np.uint8)
    mask[:2, 0] = 255
    good = io.BytesIO()
    Image.fromarray(rgb(6, 5, 0)).save(good, format="PNG")
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image()})
    data = datasets.Dataset.from_dict(
        {"image": [{"bytes": good.getvalue(), "path": None},
                   {"bytes": b"not an image", "path": None}],
         "mask": [Image.fromarray(mask)] * 2}, features=features)
    data.save_to_disk(str(tmp_path / "saved"))
    path = tmp_path / "hf-bad.toml"
    path.write_text('name = "hf-bad"\nreader = "hf"\nkind = "image-flow"\n'
                    'targets = ["lesion"]\n[options]\npath = "saved"\nthreshold = 128\n')
    hf = load_card(path)
    errors: list = []
    (flow,) = list(read_flows(hf, tmp_path, None, errors))
    assert flow.case_ids == ["000000"]
    (error,) = errors
    assert str(error).startswith("hf-bad[1]: unreadable row (UnidentifiedImageError")


def test_streaming_keeps_memory_about_one_case(tmp_path):
    import tracemalloc

    shape = (96, 96, 60)
    labels = np.zeros(shape, np.uint8)
    for value in range(1, 14):
        labels[7 * value: 7 * value + 5, 10:80, 5:50] = value
    image = (np.arange(np.prod(shape)) % 2000 - 1000).astype(np.int16).reshape(shape)
    for i in range(1, 5):
        nii(tmp_path / f"RawData/Training/img/img{i:04d}.nii.gz", image)
        nii(tmp_path / f"RawData/Training/label/label{i:04d}.nii.gz", labels)
    btcv = card("btcv")

    def peak(limit: int) -> int:
        tracemalloc.start()
        for flow in read_flows(btcv, tmp_path, limit):
            del flow
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    one_case = int(np.prod(shape)) * (4 + 12)  # float32 frames + 12 boolean masks
    single, four = peak(1), peak(4)
    # one case plus its file's raw arrays and decoding temporaries; nothing accumulates
    assert single < 3 * one_case
    assert four < 1.15 * single
