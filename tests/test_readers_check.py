"""A corpus of deliberately broken files: each defect is one clear line, nothing crashes."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_readers_support import revise

from bench.errors import DataError
from bench.readers import get_reader, load_card, read_flows
from bench.readers.check import check_dataset, has_errors

CARDS = Path(__file__).resolve().parents[1] / "datasets"


def btcv():
    return load_card(CARDS / "btcv.toml")


def nii(path: Path, array: np.ndarray, spacing=(0.8, 0.8, 2.5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))


def good_case(root: Path, case: str, shape=(6, 6, 4)) -> tuple[Path, Path]:
    image = root / f"RawData/Training/img/img{case}.nii.gz"
    label = root / f"RawData/Training/label/label{case}.nii.gz"
    nii(image, np.full(shape, int(case), np.int16))  # each case its own image: no duplicate
    labels = np.zeros(shape, np.uint8)
    labels[1:3, 1:3, 1] = 6
    nii(label, labels)
    return image, label


def errors(problems) -> list[str]:
    return [str(p) for p in problems if p.severity == "error"]


def test_clean_dataset_has_no_errors(tmp_path):
    good_case(tmp_path, "0001")
    problems = check_dataset(btcv(), tmp_path)
    assert not has_errors(problems)
    assert [p.severity for p in problems] == ["warning"]  # 1 case, 30 expected


def test_truncated_gzip(tmp_path):
    good_case(tmp_path, "0001")
    image, _ = good_case(tmp_path, "0002", shape=(40, 40, 20))
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    found = errors(check_dataset(btcv(), tmp_path))
    assert len(found) == 1
    assert found[0].startswith(f"error: {image}: unreadable (")
    assert "\n" not in found[0]


def test_not_a_nifti_at_all(tmp_path):
    image, _ = good_case(tmp_path, "0001")
    image.write_bytes(gzip.compress(b"this is not a NIfTI header"))
    (found,) = errors(check_dataset(btcv(), tmp_path))
    assert found.startswith(f"error: {image}: unreadable")


def test_image_mask_shape_mismatch(tmp_path):
    image, label = good_case(tmp_path, "0001")
    nii(label, np.zeros((6, 6, 3), np.uint8))
    (found,) = errors(check_dataset(btcv(), tmp_path))
    assert found == (f"error: {label}: mask shape (6, 6, 3) differs from image shape "
                     f"(6, 6, 4) ({image})")


def test_geometry_mismatch(tmp_path):
    image, label = good_case(tmp_path, "0001")
    nii(label, np.zeros((6, 6, 4), np.uint8), spacing=(0.8, 0.8, 5.0))
    (found,) = errors(check_dataset(btcv(), tmp_path))
    assert found.startswith(f"error: {label}: geometry differs from the image {image}")


def test_unknown_label_values(tmp_path):
    _, label = good_case(tmp_path, "0001")
    labels = np.zeros((6, 6, 4), np.uint8)
    labels[0, 0, 0], labels[1, 1, 1] = 14, 20
    nii(label, labels)
    (found,) = errors(check_dataset(btcv(), tmp_path))
    assert found.startswith(f"error: {label}: mask values [14, 20] are not declared")


def test_nan_image(tmp_path):
    image, _ = good_case(tmp_path, "0001")
    values = np.zeros((6, 6, 4), np.float32)
    values[2, 2, 2] = np.nan
    nii(image, values)
    (found,) = errors(check_dataset(btcv(), tmp_path))
    assert found == f"error: {image}: NaN or infinite values in the image"


def test_empty_folder_and_missing_root(tmp_path):
    (found,) = errors(check_dataset(btcv(), tmp_path))
    assert found == (f"error: {tmp_path}: no case found: no file matches the card's image "
                     "pattern(s) '**/Training/img/img{id}.nii.gz'; the root holds no files; "
                     "check the root folder and the card's patterns")
    (missing,) = check_dataset(btcv(), tmp_path / "nowhere")
    assert str(missing) == f"error: {tmp_path / 'nowhere'}: dataset root folder does not exist"
    (unset,) = check_dataset(btcv(), None)
    assert unset.severity == "error" and "no root folder configured" in unset.message


def test_mismatched_names(tmp_path):
    image = tmp_path / "RawData/Training/img/img0001.nii.gz"
    label = tmp_path / "RawData/Training/label/label0002.nii.gz"
    nii(image, np.zeros((6, 6, 4), np.int16))
    nii(label, np.zeros((6, 6, 4), np.uint8))
    found = errors(check_dataset(btcv(), tmp_path))
    assert f"error: {label}: mask without a matching image (leave it out with the card " \
        "option exclude, e.g. exclude = [\"*/name_of_it.png\"])" in found
    assert any(line.startswith(f"error: {image}: no mask found (expected ") and
               "label0001.nii.gz" in line and 'missing_mask = "skip"' in line for line in found)
    assert len([line for line in found if str(image) in line]) == 1


def test_empty_mask_and_implausible_spacing_are_warnings(tmp_path):
    image, label = good_case(tmp_path, "0001")
    nii(image, np.zeros((6, 6, 4), np.int16), spacing=(0.8, 0.8, 45.0))
    nii(label, np.zeros((6, 6, 4), np.uint8), spacing=(0.8, 0.8, 45.0))
    problems = check_dataset(btcv(), tmp_path)
    assert not has_errors(problems)
    lines = [str(p) for p in problems]
    assert f"warning: {label}: empty mask: no target present" in lines
    assert f"warning: {image}: implausible spacing (45.0, 0.8, 0.8) mm" in lines


def _wbc_pair(root: Path, name: str, mask_shape=(8, 8)) -> tuple[Path, Path]:
    image, mask = root / "Dataset 1" / f"{name}.bmp", root / "Dataset 1" / f"{name}.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    labels = np.zeros(mask_shape, np.uint8)
    labels[2:4, 2:4] = 255
    Image.fromarray(labels).save(mask)
    return image, mask


def test_broken_2d_pairs(tmp_path):
    wbc = load_card(CARDS / "wbc.toml")
    _wbc_pair(tmp_path, "001")
    _, truncated = _wbc_pair(tmp_path, "002")
    truncated.write_bytes(truncated.read_bytes()[:40])
    _, small = _wbc_pair(tmp_path, "003", mask_shape=(8, 7))
    orphan = tmp_path / "Dataset 1" / "009.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(orphan)
    lonely = tmp_path / "Dataset 1" / "010.bmp"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(lonely)
    found = errors(check_dataset(wbc, tmp_path))
    assert any(line.startswith(f"error: {truncated}: unreadable mask") for line in found)
    assert f"error: {small}: mask shape (8, 7) differs from image shape (8, 8) " \
           f"({small.with_suffix('.bmp')})" in found
    assert any(line.startswith(f"error: {orphan}: mask without a matching image (leave it "
                               "out with the card option exclude") for line in found)
    assert any(line.startswith(f"error: {lonely}: no mask found") for line in found)
    assert len(found) == 4


def test_bad_cases_are_skipped_and_listed_when_asked(tmp_path):
    good_case(tmp_path, "0001")
    image, _ = good_case(tmp_path, "0002")
    image.write_bytes(b"\x1f\x8b garbage")
    good_case(tmp_path, "0003")
    card = btcv()
    with pytest.raises(DataError) as raised:
        list(read_flows(card, tmp_path))
    assert raised.value.path == str(image)
    bad: list[DataError] = []
    flows = list(read_flows(card, tmp_path, errors=bad))
    assert [f.id for f in flows] == ["img0001", "img0003"]
    assert [e.path for e in bad] == [str(image)]
    # per-flow loading: the runner's way
    reader = get_reader(card.reader)
    refs = reader.list_flows(card, tmp_path)
    assert [r.id for r in refs] == ["img0001", "img0002", "img0003"]
    with pytest.raises(DataError, match="unreadable"):
        reader.load_flow(card, refs[1])


def test_image_flow_skips_one_bad_image_and_records_it(tmp_path):
    wbc = load_card(CARDS / "wbc.toml")
    _wbc_pair(tmp_path, "001")
    _, bad = _wbc_pair(tmp_path, "002")
    bad.write_bytes(b"not a png")
    _wbc_pair(tmp_path, "003")
    reader = get_reader(wbc.reader)
    (ref,) = reader.list_flows(wbc, tmp_path)
    with pytest.raises(DataError):
        reader.load_flow(wbc, ref)
    skipped: list[DataError] = []
    flow = reader.load_flow(wbc, ref, errors=skipped)
    assert flow.case_ids == ["Dataset 1/001", "Dataset 1/003"]
    assert [e.path for e in skipped] == [str(bad)]
    assert flow.meta["skipped"][0].startswith(str(bad))


def test_check_limit_and_count_line(tmp_path):
    for case in ("0001", "0002", "0003"):
        good_case(tmp_path, case)
    card = revise(btcv(), expected_cases=3)
    problems = check_dataset(card, tmp_path, limit=2)
    assert [str(p) for p in problems] == [f"info: {tmp_path}: 3 cases found, 2 checked, "
                                          "3 expected"]


def test_sliced_card_reports_a_bad_volume_as_one_case(tmp_path):
    kits = load_card(CARDS / "kits23.toml")
    for case in ("00000", "00001"):
        seg = np.zeros((4, 5, 5), np.uint8)
        seg[1, 1:3, 1:3] = 1
        nii(tmp_path / f"case_{case}/imaging.nii.gz", np.zeros(seg.shape, np.int16))
        nii(tmp_path / f"case_{case}/segmentation.nii.gz", seg)
    broken = tmp_path / "case_00001/segmentation.nii.gz"
    broken.write_bytes(broken.read_bytes()[:30])
    bad: list[DataError] = []
    flows = list(read_flows(kits, tmp_path, errors=bad))
    assert [f.case_ids for f in flows] == [["case_00000/s0001"]]
    assert [e.path for e in bad] == [str(broken)] and "unreadable" in bad[0].problem
    (found,) = errors(check_dataset(kits, tmp_path))
    assert found.startswith(f"error: {broken}: unreadable")
