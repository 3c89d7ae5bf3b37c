"""Bad data inputs, round two (issue 20; issue 17 item 9): shared and copied masks,
duplicated cases, absurd volume headers, duplicate label values, geometry refusals.

Each case is built here from synthetic files and has one expected outcome, written by
hand: a one-line message naming the file (asserted on its text and, through
``bench.cli.main``, on the exit code: 2 for a refused run or card, 1 for a check that
found errors or a dataset refused for an unreadable case), and never a traceback; or
no report at all where identical files are legitimate (identical empty or tiny masks).
The helpers and the ``wbc``/brain layouts are those of ``test_bad_inputs_data``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_bad_inputs_data import (
    bench_run,
    brain,
    card,
    load_all,
    nii,
    project,
    refusal,
    rgb,
    save,
    volume_card,
)

import bench.readers.files as files
from bench.errors import ConfigError, DataError
from bench.readers.cards import card_from_table
from bench.readers.check import check_dataset, duplicate_contents, layout_problems
from bench.readers.files import read_volume

HUGE = (30000, 30000, 3000)  # int16: 5.4e12 bytes, "5.4 TB"


# --------------------------------------------------------------------------- helpers


def one_line(text: str) -> str:
    """Console output as one line (rich wraps long lines at the terminal's width)."""
    return " ".join(text.split())


def datasets_check(config: Path, name: str, capsys, *extra: str) -> tuple[int, str]:
    from bench.cli import main

    capsys.readouterr()
    code = main(["--config", str(config), "datasets", "check", name, *extra])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    return code, one_line(text)


def run(config: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    code, text = bench_run(config, out, capsys, *extra)
    assert "Traceback" not in text
    return code, text


def big_cell(offset: int) -> np.ndarray:
    """A 24 x 24 WBC mask: a 12 x 12 cytoplasm (128) holding a 4 x 4 nucleus (255):
    144 foreground pixels, above the size at which identical masks are reported."""
    mask = np.zeros((24, 24), np.uint8)
    mask[offset:offset + 12, offset:offset + 12] = 128
    mask[offset + 4:offset + 8, offset + 4:offset + 8] = 255
    return mask


def wbc_set(root: Path, masks: dict[str, np.ndarray]) -> dict[str, tuple[Path, Path]]:
    """A WBC layout, one case per mask, each with its own image; name -> (image, mask)."""
    made = {}
    for i, (name, mask) in enumerate(masks.items(), start=1):
        image = save(root / "Dataset 1" / f"{name}.bmp", np.roll(rgb(24, 24), i, axis=1),
                     format="BMP")
        made[name] = (image, save(root / "Dataset 1" / f"{name}.png", mask))
    return made


def huge_nifti(path: Path, shape=HUGE, dtype=np.int16, compress: bool = True) -> Path:
    """A NIfTI whose header claims ``shape`` but which holds 1000 bytes of data."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_zooms((1.0,) * len(shape))
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + b"\0" * 1000  # 348 + extension flag + data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def brains(root: Path, n: int) -> list[tuple[Path, Path]]:
    """``n`` brain-tumour-mr cases, each its own image, one tumour label of 18 voxels."""
    made = []
    for i in range(1, n + 1):
        label = np.zeros((6, 6, 4), np.uint8)
        label[1:4, 1:4, 1:3] = 1
        image = np.arange(label.size, dtype=np.float32).reshape(label.shape) * i
        made.append((nii(root / f"brain{i}_image.nii.gz", image),
                     nii(root / f"brain{i}_label.nii.gz", label)))
    return made


def card_file(folder: Path, name: str, options: dict) -> Path:
    """A 2D card file ``folder/NAME.toml`` with targets liver and tumour (or options')."""
    targets = options.pop("targets", ["liver", "tumour"])
    lines = [f'name = "{name}"', 'reader = "pairs2d"', 'kind = "image-flow"',
             f"targets = {json.dumps(targets)}", "[options]",
             'image = "img/{id}.png"', 'mask = "seg/{id}.png"']
    for key, value in options.items():
        table = ", ".join(f'"{k}" = {json.dumps(v)}' for k, v in value.items())
        lines.append(f"{key} = {{ {table} }}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- shared masks


def test_symlinked_mask_is_an_error_in_datasets_check(tmp_path, capsys):
    root = tmp_path / "wbc"
    made = wbc_set(root, {"001": big_cell(2), "002": big_cell(6)})
    image3 = save(root / "Dataset 1" / "003.bmp", np.roll(rgb(24, 24), 3, axis=1), format="BMP")
    mask1, mask3 = made["001"][1], root / "Dataset 1" / "003.png"
    os.symlink(mask1, mask3)
    assert image3.exists()
    code, text = datasets_check(project(tmp_path, {"wbc": root}), "wbc", capsys)
    assert code == 1
    assert (f"error: {mask3}: cases 'Dataset 1/001' and 'Dataset 1/003' share one mask file: "
            f"{mask3} and {mask1} are one file ({mask3} is a link to {mask1.resolve()}); each "
            "would be scored against the other's ground truth: give each case its own mask, "
            "or leave one case out with options.exclude") in text
    assert "wbc: 1 error(s), 1 warning(s)" in text  # said once (not also 'same pixels'); count


def test_symlinked_mask_refuses_the_run_before_any_work(tmp_path, capsys):
    root = tmp_path / "wbc"
    made = wbc_set(root, {"001": big_cell(2), "002": big_cell(6)})
    save(root / "Dataset 1" / "003.bmp", np.roll(rgb(24, 24), 3, axis=1), format="BMP")
    os.symlink(made["001"][1], root / "Dataset 1" / "003.png")
    code, text = run(project(tmp_path, {"wbc": root}), tmp_path / "run", capsys)
    assert code == 2 and not (tmp_path / "run").exists()
    assert (f"error: {root / 'Dataset 1' / '003.png'}: dataset 'wbc': cases 'Dataset 1/001' "
            "and 'Dataset 1/003' share one mask file:") in text


def test_symlinked_case_is_one_error_not_three(tmp_path):
    root = tmp_path / "wbc"
    made = wbc_set(root, {"001": big_cell(2), "002": big_cell(6)})
    for source in made["001"]:
        os.symlink(source, source.with_name("003" + source.suffix))
    found = [(p.severity, p.message.split(":")[0]) for p in check_dataset(card("wbc"), root)
             if p.severity != "info"]
    assert found == [("error", "cases 'Dataset 1/001' and 'Dataset 1/003' share one mask file"),
                     ("warning", "cases 'Dataset 1/001' and 'Dataset 1/003' share one image "
                                 "file"),
                     ("warning", "3 cases found, 400 expected")]


def test_hard_linked_mask_is_the_same_file(tmp_path):
    root = tmp_path / "wbc"
    made = wbc_set(root, {"001": big_cell(2), "002": big_cell(6)})
    os.remove(made["002"][1])
    os.link(made["001"][1], made["002"][1])
    (problem,) = [p for p in layout_problems(card("wbc"), root) if p.severity == "error"]
    assert problem.path == str(made["002"][1])
    assert problem.message.startswith(f"cases 'Dataset 1/001' and 'Dataset 1/002' share one "
                                      f"mask file: {made['002'][1]} and {made['001'][1]} are "
                                      "one file; each would be scored")


def test_one_mask_template_for_two_images_is_an_error(tmp_path):
    # a mask template without the image's distinguishing field: both images read one file
    table = {"name": "pair", "reader": "pairs2d", "kind": "image-flow", "targets": ["lesion"],
             "options": {"image": "img/{id}_{view}.png", "mask": "seg/{id}.png",
                         "case_id": "{id}_{view}", "threshold": 128}}
    for view in ("a", "b"):
        save(tmp_path / "img" / f"p1_{view}.png", rgb(8, 8 + (view == "b")))
    lesion = np.zeros((8, 8), np.uint8)
    lesion[2:6, 2:6] = 255
    save(tmp_path / "seg" / "p1.png", lesion)
    errors = [p for p in layout_problems(card_from_table(table, "pair.toml"), tmp_path)
              if p.severity == "error"]
    mask = tmp_path / "seg" / "p1.png"
    assert [(p.path, p.message) for p in errors] == [(str(mask), (
        f"cases 'p1_a' and 'p1_b' share one mask file: both read {mask}; each would be scored "
        "against the other's ground truth: give each case its own mask, or leave one case out "
        "with options.exclude"))]


def test_byte_identical_mask_copy_is_a_warning_naming_both_files(tmp_path, capsys):
    root = tmp_path / "wbc"
    made = wbc_set(root, {"001": big_cell(2), "002": big_cell(6), "003": big_cell(4)})
    mask1, mask3 = made["001"][1], made["003"][1]
    shutil.copyfile(mask1, mask3)  # 003's own image, 001's mask
    code, text = datasets_check(project(tmp_path, {"wbc": root}), "wbc", capsys)
    assert code == 0
    assert (f"warning: {mask3}: mask of case 'Dataset 1/003' holds the same pixels as {mask1} "
            "(case 'Dataset 1/001') though the images differ: a mask copied from another case "
            "is scored as this case's ground truth; check both files") in text
    assert "wbc: 0 error(s), 2 warning(s)" in text  # the copy and the count (3 of 400)


def test_byte_identical_mask_copy_is_recorded_by_the_run(tmp_path, capsys):
    root = tmp_path / "wbc"
    made = wbc_set(root, {"001": big_cell(2), "002": big_cell(6), "003": big_cell(4)})
    shutil.copyfile(made["001"][1], made["003"][1])
    code, text = run(project(tmp_path, {"wbc": root}), tmp_path / "run", capsys)
    assert code == 0
    assert (f"warning: dataset wbc: {made['003'][1]}: mask of case 'Dataset 1/003' holds the "
            f"same pixels as {made['001'][1]} (case 'Dataset 1/001')") in text  # on screen
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text(encoding="utf-8"))
    copies = [p for p in manifest["datasets"]["wbc"]["layout"] if "same pixels" in p["message"]]
    assert copies == [{"severity": "warning", "path": str(made["003"][1]), "message": (
        f"mask of case 'Dataset 1/003' holds the same pixels as {made['001'][1]} (case "
        "'Dataset 1/001') though the images differ: a mask copied from another case is scored "
        "as this case's ground truth; check both files")}]
    report = one_line((tmp_path / "run" / "report.md").read_text(encoding="utf-8"))
    assert "mask of case 'Dataset 1/003' holds the same pixels as" in report


@pytest.mark.parametrize("mask", [
    np.zeros((24, 24), np.uint8),  # identical empty masks: common, never reported
    np.pad(np.full((3, 3), 128, np.uint8), ((5, 16), (5, 16))),  # 9 pixels: alike by chance
], ids=["empty", "tiny"])
def test_identical_empty_or_tiny_masks_are_not_reported(tmp_path, mask):
    root = tmp_path / "wbc"
    wbc_set(root, {"001": mask, "002": mask.copy(), "003": big_cell(4)})
    problems = check_dataset(card("wbc"), root)
    assert not [p for p in problems if p.severity == "error"]
    assert not any("same pixels" in p.message or "share one" in p.message for p in problems)
    assert [p.message for p in problems if p.severity == "warning"][-1] == (
        "3 cases found, 400 expected")


# --------------------------------------------------------------------------- duplicated case


@pytest.mark.parametrize("empty", [False, True], ids=["mask", "empty-mask"])
def test_fully_duplicated_case_is_an_error_in_datasets_check(tmp_path, capsys, empty):
    root = tmp_path / "wbc"
    first = np.zeros((24, 24), np.uint8) if empty else big_cell(2)
    made = wbc_set(root, {"001": first, "002": big_cell(6), "003": big_cell(4)})
    (image1, mask1), (image3, mask3) = made["001"], made["003"]
    shutil.copyfile(image1, image3)
    shutil.copyfile(mask1, mask3)
    code, text = datasets_check(project(tmp_path, {"wbc": root}), "wbc", capsys)
    assert code == 1
    assert (f"error: {image3}: case 'Dataset 1/003' duplicates case 'Dataset 1/001': its image "
            f"and mask ({image3}, {mask3}) hold the same pixels as {image1} and {mask1}; a case "
            "counted twice weighs twice in every mean: remove one, or leave it out with "
            "options.exclude") in text
    assert "wbc: 1 error(s)" in text  # counted once, not also as a copied mask or image


def test_fully_duplicated_case_refuses_the_run(tmp_path, capsys):
    root = tmp_path / "wbc"
    made = wbc_set(root, {"001": big_cell(2), "002": big_cell(6), "003": big_cell(4)})
    for source, copy in zip(made["001"], made["003"], strict=True):
        shutil.copyfile(source, copy)
    code, text = run(project(tmp_path, {"wbc": root}), tmp_path / "run", capsys)
    assert code == 2
    assert (f"error: {made['003'][0]}: dataset 'wbc': case 'Dataset 1/003' duplicates case "
            "'Dataset 1/001': its image and mask") in text
    assert not (tmp_path / "run" / "units").exists() or not any(
        (tmp_path / "run" / "units").iterdir())  # nothing scored


def test_duplicated_volume_case_is_an_error_in_check_and_run(tmp_path, capsys):
    root = tmp_path / "brain"
    (image1, label1), _ = brains(root, 2)
    image3, label3 = root / "brain3_image.nii.gz", root / "brain3_label.nii.gz"
    shutil.copyfile(image1, image3)
    shutil.copyfile(label1, label3)
    config = project(tmp_path, {"brain-tumour-mr": root})
    code, text = datasets_check(config, "brain-tumour-mr", capsys)
    assert code == 1
    assert (f"error: {image3}: case 'brain3' duplicates case 'brain1': its image and mask "
            f"({image3}, {label3}) hold the same pixels as {image1} and {label1};") in text
    code, text = run(config, tmp_path / "run", capsys)
    assert code == 2
    assert f"error: {image3}: dataset 'brain-tumour-mr': case 'brain3' duplicates case" in text


def test_duplicate_contents_orders_error_before_warnings():
    # hand-made digests: the rules alone, without files
    from bench.readers.check import CaseContent

    cases = [CaseContent("a", "a.png", "a_m.png", "I1", "M1", 500),
             CaseContent("b", "b.png", "b_m.png", "I1", "M1", 500),  # a's twin: error only
             CaseContent("c", "c.png", "c_m.png", "I2", "M1", 500),  # a's mask: warning
             CaseContent("d", "d.png", "d_m.png", "I1", "M2", 500),  # a's image: warning
             CaseContent("e", "e.png", "e_m.png", "I3", "M3", 99),
             CaseContent("f", "f.png", "f_m.png", "I4", "M3", 99)]  # tiny twin mask: nothing
    found = [(p.severity, p.path) for p in duplicate_contents(cases)]
    assert found == [("error", "b.png"), ("warning", "c_m.png"), ("warning", "d.png")]


# --------------------------------------------------------------------------- huge headers


def test_huge_header_is_refused_before_reading_in_datasets_check(tmp_path, capsys):
    root = tmp_path / "brain"
    brains(root, 2)
    bad = huge_nifti(root / "brain2_image.nii.gz")
    code, text = datasets_check(project(tmp_path, {"brain-tumour-mr": root}), "brain-tumour-mr",
                                capsys)
    assert code == 1
    assert (f"error: {bad}: header claims shape (30000, 30000, 3000) of int16 (5.4 TB), but a "
            "gzip file of ") in text
    assert "a corrupt header or a truncated file; refused before reading" in text
    assert "brain-tumour-mr: 1 error(s)" in text  # brain1 checked as usual


def test_huge_header_is_one_unreadable_case_of_the_run(tmp_path, capsys):
    root = tmp_path / "brain"
    brains(root, 3)
    bad = huge_nifti(root / "brain2_label.nii.gz")  # the label's header this time
    config = project(tmp_path, {"brain-tumour-mr": root})
    code, text = run(config, tmp_path / "run", capsys)
    assert code == 1
    assert "dataset brain-tumour-mr refused: 1 unreadable case(s)" in text
    assert f"{bad}: header claims shape (30000, 30000, 3000) of int16 (5.4 TB)" in text
    code, text = run(config, tmp_path / "skip", capsys, "--skip-bad-cases")
    assert code == 1  # a read failure still fails the run, but the other cases are scored
    manifest = json.loads((tmp_path / "skip" / "manifest.json").read_text(encoding="utf-8"))
    assert [f["id"] for f in manifest["datasets"]["brain-tumour-mr"]["flows"]] == [
        "brain1", "brain3"]


def test_huge_header_gzip_bound_is_the_deflate_limit(tmp_path):
    bad = huge_nifti(tmp_path / "x.nii.gz")
    size = bad.stat().st_size
    with pytest.raises(DataError) as caught:
        read_volume(bad)
    # 1032 x the file's size, written out by hand for the bytes and kB ranges
    most = 1032 * size
    shown = f"{most / 1000:.1f} kB" if most < 10**6 else f"{most / 10**6:.1f} MB"
    assert str(caught.value) == (
        f"{bad}: header claims shape (30000, 30000, 3000) of int16 (5.4 TB), but a gzip file "
        f"of {size} bytes holds at most {shown}: a corrupt header or a truncated file; "
        "refused before reading")


def test_huge_header_uncompressed_nifti_and_npy(tmp_path):
    bad = huge_nifti(tmp_path / "x.nii", compress=False)
    with pytest.raises(DataError) as caught:
        read_volume(bad)
    assert str(caught.value) == (
        f"{bad}: header claims shape (30000, 30000, 3000) of int16 (5.4 TB), but the file holds "
        "1.0 kB of data: a corrupt header or a truncated file; refused before reading")
    npy = tmp_path / "x.npy"
    with npy.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"shape": HUGE, "fortran_order": False,
                                                      "descr": "<f4"})
        handle.write(b"\0" * 100)
    for path in (npy, tmp_path / "x.npy.gz"):
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(npy.read_bytes()))
        with pytest.raises(DataError) as caught:
            read_volume(path)
        assert str(caught.value) == (
            f"{path}: header claims shape (30000, 30000, 3000) of float32 (10.8 TB), but the "
            "file holds 100 bytes of data: a corrupt header or a truncated file; refused "
            "before reading")


def test_huge_itk_header_is_refused_by_memory(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    path = tmp_path / "x.mha"
    sitk.WriteImage(sitk.Image([4, 5, 6], sitk.sitkInt16), str(path))
    assert read_volume(path).array.shape == (4, 5, 6)
    path.write_bytes(path.read_bytes().replace(b"DimSize = 4 5 6", b"DimSize = 40000 50000 6000"))
    with pytest.raises(DataError) as caught:
        read_volume(path)
    assert str(caught.value).startswith(f"{path}: header claims shape (40000, 50000, 6000) of "
                                        "int16 (24.0 TB), more than this machine's memory (")


def test_a_volume_beyond_memory_is_refused_naming_the_limit(tmp_path, monkeypatch):
    image, _ = brain(tmp_path)  # (6, 6, 4) float32: 576 bytes
    monkeypatch.setattr(files, "memory_bytes", lambda: 500)
    assert refusal(volume_card(), tmp_path) == (
        f"{image}: header claims shape (6, 6, 4) of float32 (576 bytes), more than this "
        "machine's memory (500 bytes): a corrupt header, or a volume too large to read here; "
        "refused before reading")
    monkeypatch.setattr(files, "memory_bytes", lambda: 576)  # exactly fits: read
    (flow,) = load_all(volume_card(), tmp_path)
    assert int(flow.masks["tumour"].sum()) == 18


def test_memory_limit_is_a_containers_when_lower(tmp_path, monkeypatch):
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = tmp_path / "memory.max"
    monkeypatch.setattr(files, "CGROUP_LIMITS", (limit,))
    limit.write_text("max\n")  # cgroup v2 without a limit
    assert files.memory_bytes() == physical
    limit.write_text("123456789\n")
    assert files.memory_bytes() == 123456789
    limit.write_text(f"{physical * 4}\n")  # a limit above the machine's memory
    assert files.memory_bytes() == physical


def test_memory_error_while_reading_is_one_bad_case(tmp_path, monkeypatch, capsys):
    root = tmp_path / "brain"
    brains(root, 3)
    real = files._read_nifti

    def starved(path, role):
        if path.name == "brain2_image.nii.gz":
            raise MemoryError
        return real(path, role)

    monkeypatch.setattr(files, "_read_nifti", starved)
    bad = root / "brain2_image.nii.gz"
    problems = check_dataset(card("brain-tumour-mr"), root)
    assert [(p.path, p.message) for p in problems if p.severity == "error"] == [
        (str(bad), "too large to read: out of memory (MemoryError) while reading it")]
    code, text = run(project(tmp_path, {"brain-tumour-mr": root}), tmp_path / "run", capsys,
                     "--skip-bad-cases")
    assert code == 1
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text(encoding="utf-8"))
    entry = manifest["datasets"]["brain-tumour-mr"]
    assert [f["id"] for f in entry["flows"]] == ["brain1", "brain3"]
    (failure,) = entry["failures"]
    assert failure["error"] == (f"DataError: {bad}: too large to read: out of memory "
                                "(MemoryError) while reading it")


# --------------------------------------------------------------------------- label values


def test_duplicate_label_values_refuse_the_card_in_check_and_run(tmp_path, capsys):
    cards = tmp_path / "cards"
    path = card_file(cards, "organs", {"labels": {"liver": 1, "tumour": 1}})
    expected = (f"error: {path}.options.labels: 'liver' and 'tumour' both have label value 1: "
                "each name needs its own value (to score several values as one target, use "
                "options.regions)")
    root = tmp_path / "data"
    root.mkdir()
    config = project(tmp_path, {"organs": root})
    code, text = datasets_check(config, "organs", capsys, "--cards", str(cards), "--root",
                                str(root))
    assert code == 2 and text == expected
    code, text = run(config, tmp_path / "run", capsys, "--cards", str(cards))
    assert code == 2 and expected in text and not (tmp_path / "run").exists()


def test_two_targets_of_the_same_values_refuse_the_card(tmp_path):
    path = card_file(tmp_path, "organs", {"targets": ["liver", "whole liver"],
                                          "labels": {"liver": 1, "tumour": 2},
                                          "regions": {"whole liver": ["liver"]}})
    from bench.readers import load_card

    with pytest.raises(ConfigError) as caught:
        load_card(path)
    assert str(caught.value) == (
        f"{path}.options: targets 'liver' and 'whole liver' are both label value 1, so they "
        "would score identically: give each target its own value in options.labels or "
        "options.regions")
    # the fix its message names: the region takes both values
    path = card_file(tmp_path, "organs", {"targets": ["liver", "whole liver"],
                                          "labels": {"liver": 1, "tumour": 2},
                                          "regions": {"whole liver": ["liver", "tumour"]}})
    assert load_card(path).targets == ("liver", "whole liver")


def test_per_target_mask_files_may_share_value_1():
    # one file per target, each binarised to 1: not one label map's values
    table = {"name": "t", "reader": "pairs2d", "kind": "image-flow", "targets": ["a", "b"],
             "options": {"image": "img/{id}.png",
                         "target_masks": {"a": "a/{id}.png", "b": "b/{id}.png"}}}
    assert card_from_table(table, "t.toml").targets == ("a", "b")


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(("geometry", "difference"), [
    ({"origin": (0.0, 0.0, 0.5)}, "origin (0, 0, 0.5) mm vs the image's (0, 0, 0) mm"),
    ({"zooms": (1.0, 1.0, 2.5)}, "spacing (1, 1, 2.5) mm vs the image's (1, 1, 2) mm"),
    ({"zooms": (-1.0, 1.0, 2.0)}, "direction ((-1, 0, 0), (0, 1, 0), (0, 0, 1)) [LAS] vs the "
                                  "image's ((1, 0, 0), (0, 1, 0), (0, 0, 1)) [RAS]"),
    ({"zooms": (1.0, 1.0, 2.5), "origin": (0.0, 3.0, 0.0)},
     "origin (0, 3, 0) mm vs the image's (0, 0, 0) mm; spacing (1, 1, 2.5) mm vs the image's "
     "(1, 1, 2) mm"),
], ids=["origin-0.5mm", "spacing", "direction", "origin-and-spacing"])
def test_geometry_refusal_names_what_differs(tmp_path, geometry, difference):
    image, label = brain(tmp_path, **geometry)  # the image: diag(1, 1, 2), origin 0
    assert refusal(volume_card(), tmp_path) == (
        f"{label}: geometry differs from the image {image} (affine: {difference}, beyond 1e-3 "
        "mm; options.check_geometry = false accepts it)")


def test_origin_shift_of_half_a_millimetre_in_datasets_check(tmp_path, capsys):
    root = tmp_path / "brain"
    (image, label), _ = brains(root, 2)
    data = np.asarray(nib.load(str(label)).dataobj)
    nii(label, data, origin=(0.0, 0.0, 0.5))
    code, text = datasets_check(project(tmp_path, {"brain-tumour-mr": root}), "brain-tumour-mr",
                                capsys)
    assert code == 1
    assert (f"error: {label}: geometry differs from the image {image} (affine: origin (0, 0, "
            "0.5) mm vs the image's (0, 0, 0) mm, beyond 1e-3 mm;") in text
    assert "diag(" not in text
