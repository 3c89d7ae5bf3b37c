"""`bench datasets new`: cards inferred from files, checked, then run with --root."""

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tomllib
from PIL import Image

from bench.cli import main
from bench.errors import ConfigError
from bench.readers import load_card
from bench.readers.new_card import mask_options, parse_labels, split_root, to_toml
from bench.readers.reference import card_reference

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
CONFIG = REPO / "bench.toml"


# --- the mask encoding -------------------------------------------------------------------


def test_one_non_zero_value_is_one_binary_target():
    assert mask_options([0, 255], False, None, None) == (["foreground"],
                                                         {"labels": {"foreground": 255}})
    assert mask_options([0, 1], False, {"lesion": 1}, None) == (["lesion"],
                                                                {"labels": {"lesion": 1}})


def test_several_values_ask_for_labels_listing_them():
    with pytest.raises(ConfigError, match=r"^mask values 0, 1, 2 found: pass --labels "
                                          r"target=value,\.\.\. \(e\.g\. --labels "
                                          r"name1=1,name2=2\)$"):
        mask_options([0, 1, 2], False, None, None)
    targets, options = mask_options([0, 1, 2], False, parse_labels("cup=2, disc=1"), None)
    assert targets == ["cup", "disc"] and options == {"labels": {"cup": 2, "disc": 1}}
    with pytest.raises(ConfigError, match=r"mask values \[2\] are not in --labels \(cup=1\)"):
        mask_options([0, 1, 2], False, {"cup": 1}, None)


def test_lossy_or_fractional_masks_need_a_threshold():
    with pytest.raises(ConfigError, match=r"JPEG \(lossy; values found: 0, 3, 250, 255\): "
                                          r"pass --threshold N"):
        mask_options([0, 3, 250, 255], True, None, None)
    with pytest.raises(ConfigError, match="non-integer mask values found"):
        mask_options([0.0, 0.5, 1.0], False, None, None)
    assert mask_options([0, 3, 250, 255], True, None, 128) == (
        ["foreground"], {"threshold": 128.0, "labels": {"foreground": 1}})
    with pytest.raises(ConfigError, match="every mask is empty"):
        mask_options([0], False, None, None)


def test_parse_labels_refuses_what_it_cannot_read():
    assert parse_labels("a=1,b=-2") == {"a": 1, "b": -2}
    for text in ("a", "a=x", "a=1,a=2", "=3"):
        with pytest.raises(ConfigError, match="--labels"):
            parse_labels(text)


def test_root_is_the_shared_literal_folder(tmp_path):
    root, rest = split_root(["data/a/img/*.png", "data/a/seg/*_m.png"], tmp_path)
    assert root == tmp_path / "data" / "a" and rest == ["img/*.png", "seg/*_m.png"]
    root, rest = split_root(["/x/Set */*.bmp", "/x/Set */*.png"], tmp_path)
    assert root == Path("/x") and rest == ["Set */*.bmp", "Set */*.png"]


def test_toml_text_reads_back_as_the_table():
    table = {"name": "n", "targets": ["a b"], "x": 1.5, "flag": True,
             "options": {"image": 'img/{id}.png', "labels": {"a b": 1}, "fields": {"id": "\\d+"}}}
    assert tomllib.loads(to_toml(table)) == table


# --- end to end: new, check, run -----------------------------------------------------------


def _pairs(root: Path, count: int = 5, value: int = 255, jpeg_masks: bool = False) -> None:
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        image = (rng.random((48, 56, 3)) * 255).astype(np.uint8)
        mask = np.zeros((48, 56), np.uint8)
        mask[8 + i:30, 10:40 - i] = value
        Image.fromarray(image).save(root / "images" / f"img{i}.png")
        name = f"img{i}_mask." + ("jpg" if jpeg_masks else "png")
        Image.fromarray(mask).save(root / "masks" / name)


def _run(tmp_path: Path, name: str, root: Path, cards: Path) -> pd.DataFrame:
    out = tmp_path / f"run-{name}"
    code = main(["--config", str(CONFIG), "run", "--suite", "one-prompt", "--datasets", name,
                 "--root", f"{name}={root}", "--cards", str(cards), "--models",
                 "registration,full-frame", "--out", str(out), "--no-cache"])
    assert code == 0
    metrics = pd.read_csv(out / "metrics.csv")
    return metrics[(metrics["metric"] == "dice") & (metrics["model"] == "registration")]


def test_image_pairs_end_to_end(tmp_path, monkeypatch, capsys):
    _pairs(tmp_path / "skin")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", str(CONFIG), "datasets", "new", "skin", "--images",
                 "skin/images/*.png", "--masks", "skin/masks/*_mask.png", "--out",
                 "cards"]) == 0
    out = capsys.readouterr().out
    assert "5 cases found" in out and "skin: 0 error(s), 0 warning(s)" in out
    card = load_card(tmp_path / "cards" / "skin.toml")
    assert (card.reader, card.kind, list(card.targets)) == ("pairs2d", "image-flow",
                                                            ["foreground"])
    assert card.options.image == "images/{id}.png" and card.options.mask == "masks/{id}_mask.png"
    assert card.options.labels == {"foreground": 255}
    scored = _run(tmp_path, "skin", tmp_path / "skin", tmp_path / "cards")
    # img0 is the one-prompt template: given, not predicted, so not scored
    assert sorted(scored["case"]) == [f"img{i}" for i in range(1, 5)]
    # a second `new` does not overwrite the card
    assert main(["datasets", "new", "skin", "--images", "skin/images/*.png", "--masks",
                 "skin/masks/*_mask.png", "--out", "cards"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err


def test_masks_beside_the_images_are_excluded_from_the_images(tmp_path, monkeypatch):
    _pairs(tmp_path / "d")
    for mask in (tmp_path / "d" / "masks").iterdir():
        mask.rename(tmp_path / "d" / "images" / mask.name)
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "new", "d", "--images", "d/images/*.png", "--masks",
                 "d/images/*_mask.png", "--out", "cards"]) == 0
    card = load_card(tmp_path / "cards" / "d.toml")
    assert card.options.fields == {"id": "[^/]+?(?<!_mask)"}  # 'img0_mask' is no image id


def test_3d_nnunet_folder_card(tmp_path, capsys):
    root = tmp_path / "Dataset002_Heart"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(2):
        label = np.zeros((16, 16, 8), np.uint8)
        label[4:10, 4:10, 2:6] = 1
        nib.save(nib.Nifti1Image(np.full((16, 16, 8), i + 1, np.float32), np.eye(4)),
                 root / "imagesTr" / f"la_{i:03d}_0000.nii.gz")  # two cases, not one twice
        nib.save(nib.Nifti1Image(label, np.eye(4)), root / "labelsTr" / f"la_{i:03d}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": {"background": 0, "left atrium": 1},
        "numTraining": 2, "file_ending": ".nii.gz"}))
    assert main(["datasets", "new", "heart", "--nnunet", str(root), "--out",
                 str(tmp_path / "cards")]) == 0
    assert "2 cases found" in capsys.readouterr().out
    card = load_card(tmp_path / "cards" / "heart.toml")
    assert (card.reader, card.kind, card.modality, list(card.targets)) == ("nnunet", "volume",
                                                                          "MRI", [])


def test_jpeg_masks_are_refused_without_a_threshold(tmp_path, monkeypatch, capsys):
    _pairs(tmp_path / "d", jpeg_masks=True)
    monkeypatch.chdir(tmp_path)
    args = ["datasets", "new", "d", "--images", "d/images/*.png", "--masks",
            "d/masks/*_mask.jpg", "--out", "cards"]
    assert main(args) == 2
    assert "masks are JPEG (lossy" in capsys.readouterr().err
    assert not (tmp_path / "cards" / "d.toml").exists()
    assert main([*args, "--threshold", "128"]) == 0
    assert load_card(tmp_path / "cards" / "d.toml").options.threshold == 128


def test_ambiguous_masks_ask_for_labels(tmp_path, monkeypatch, capsys):
    _pairs(tmp_path / "d")
    mask = np.array(Image.open(tmp_path / "d" / "masks" / "img0_mask.png"))
    mask[:4, :4] = 128
    Image.fromarray(mask).save(tmp_path / "d" / "masks" / "img0_mask.png")
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "new", "d", "--images", "d/images/*.png", "--masks",
                 "d/masks/*_mask.png", "--out", "cards"]) == 2
    err = capsys.readouterr().err
    assert "mask values 0, 128, 255 found: pass --labels" in err and len(err.splitlines()) == 1


def test_nifti_pairs_end_to_end(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(2)
    for folder in ("ct/imagesTr", "ct/labelsTr"):
        (tmp_path / folder).mkdir(parents=True)
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    for i in range(3):
        image = rng.normal(0, 50, (32, 32, 12)).astype(np.float32)
        label = np.zeros((32, 32, 12), np.uint8)
        label[10:20 + i, 8:22, 3:9] = 1
        image[label > 0] += 200
        nib.save(nib.Nifti1Image(image, affine), tmp_path / "ct/imagesTr" / f"vol{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, affine), tmp_path / "ct/labelsTr" / f"vol{i}.nii.gz")
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "new", "ct", "--images", "ct/imagesTr/*.nii.gz", "--masks",
                 "ct/labelsTr/*.nii.gz", "--labels", "tumour=1", "--out", "cards"]) == 0
    assert "ct: 0 error(s), 0 warning(s)" in capsys.readouterr().out
    card = load_card(tmp_path / "cards" / "ct.toml")
    assert (card.reader, card.kind, list(card.targets)) == ("volumes", "volume", ["tumour"])
    assert card.modality == ""  # never guessed from NIfTI files
    assert main(["datasets", "new", "ct", "--images", "ct/imagesTr/*.nii.gz", "--masks",
                 "ct/labelsTr/*.nii.gz", "--labels", "tumour=1", "--out", "cards", "--force",
                 "--modality", " CT "]) == 0
    assert load_card(tmp_path / "cards" / "ct.toml").modality == "CT"
    assert main(["datasets", "new", "ct", "--images", "ct/imagesTr/*.nii.gz", "--masks",
                 "ct/labelsTr/*.nii.gz", "--labels", "tumour=1", "--out", "cards", "--force",
                 "--modality", " "]) == 2
    assert "--modality: give the modality, e.g. CT" in capsys.readouterr().err
    scored = _run(tmp_path, "ct", tmp_path / "ct", tmp_path / "cards")
    assert sorted(set(scored["flow"])) == ["vol0", "vol1", "vol2"]
    # the same volumes as 2D slices: kind image-flow slices them
    assert main(["datasets", "new", "ct2d", "--images", "ct/imagesTr/*.nii.gz", "--masks",
                 "ct/labelsTr/*.nii.gz", "--labels", "tumour=1", "--kind", "image-flow",
                 "--out", "cards"]) == 0
    sliced = load_card(tmp_path / "cards" / "ct2d.toml")
    assert (sliced.kind, sliced.options.as_image_flow) == ("image-flow", True)
    assert main(["datasets", "new", "bad2d", "--images", "cards/*.toml", "--masks",
                 "ct/labelsTr/*.nii.gz", "--out", "cards"]) == 2
    assert "--images: ct2d.toml is neither a volume" in capsys.readouterr().err


def test_nnunet_2d_png_folder_end_to_end(tmp_path, monkeypatch, capsys):
    root = tmp_path / "Dataset501_Disc"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        image = (rng.random((40, 40)) * 100).astype(np.uint8)
        label = np.zeros((40, 40), np.uint8)
        label[8:30, 8:30] = 2  # disc
        label[14:22 + i, 14:22] = 1  # cup
        image[label > 0] += 100
        Image.fromarray(image).save(root / "imagesTr" / f"eye_{i:03d}_0000.png")
        Image.fromarray(label).save(root / "labelsTr" / f"eye_{i:03d}.png")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "fundus photograph"}, "labels": {"background": 0, "cup": 1,
                                                                "disc": 2},
        "numTraining": 4, "file_ending": ".png", "name": "Disc"}))
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "new", "disc", "--nnunet", str(root), "--out", "cards"]) == 0
    assert "4 cases found" in capsys.readouterr().out
    card = load_card(tmp_path / "cards" / "disc.toml")
    assert (card.reader, card.kind, card.modality) == ("nnunet-2d", "image-flow",
                                                       "fundus photograph")
    scored = _run(tmp_path, "disc", root, tmp_path / "cards")
    assert len(scored) == 6  # 4 images x 2 targets (cup, disc), less each target's template
    assert sorted(set(scored["target"])) == ["cup", "disc"]


def test_the_3d_nnunet_reader_names_the_2d_one(tmp_path):
    from bench.readers import card_from_table
    from bench.readers.check import check_dataset

    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1},
                                                       "file_ending": ".png"}))
    card = card_from_table({"name": "x", "reader": "nnunet", "kind": "volume", "targets": []},
                           "x.toml")
    [problem] = check_dataset(card, tmp_path)
    assert problem.message == ("x.reader: the dataset's file_ending is '.png'; use reader = "
                               "'nnunet-2d' "
                               "and kind = 'image-flow'")


@pytest.mark.skipif(not (SHARED / "wbc" / "Dataset 1").is_dir(), reason="no shared WBC data")
def test_real_wbc_copy_end_to_end(tmp_path, monkeypatch, capsys):
    root = tmp_path / "wbc"
    (root / "Dataset 1").mkdir(parents=True)
    for number in range(1, 7):
        for ext in ("bmp", "png"):
            shutil.copy(SHARED / "wbc" / "Dataset 1" / f"{number:03d}.{ext}", root / "Dataset 1")
    monkeypatch.chdir(tmp_path)
    args = ["datasets", "new", "cells", "--images", "wbc/Dataset */*.bmp", "--masks",
            "wbc/Dataset */*.png", "--out", "cards"]
    assert main(args) == 2  # three grey levels: which is which is not guessed
    assert "mask values 0, 128, 255 found" in capsys.readouterr().err
    assert main([*args, "--labels", "cytoplasm=128,nucleus=255"]) == 0
    card = load_card(tmp_path / "cards" / "cells.toml")
    assert card.options.case_id == "{dir1}/{id}" and card.options.group == "{dir1}"
    scored = _run(tmp_path, "cells", root, tmp_path / "cards")
    # 6 images x 2 targets, less each target's template image
    assert len(scored) == 10 and set(scored["flow"]) == {"cells/1"}


def test_hf_card_is_written_and_validated_not_loaded(tmp_path, capsys):
    assert main(["datasets", "new", "polyps", "--hf", "someone/polyps", "--image-column",
                 "img", "--mask-column", "seg", "--labels", "polyp=255", "--out",
                 str(tmp_path)]) == 0
    assert "not checked" in capsys.readouterr().out
    card = load_card(tmp_path / "polyps.toml")
    assert (card.reader, card.options.hub_id, card.options.image_column,
            card.options.mask_column, card.options.labels) == (
        "hf", "someone/polyps", "img", "seg", {"polyp": 255})
    assert main(["datasets", "new", "p2", "--hf", "x/y", "--out", str(tmp_path)]) == 2
    assert "--hf: the masks cannot be read here" in capsys.readouterr().err


# --- the options reference -------------------------------------------------------------------


def test_options_command_lists_every_option_of_every_reader(capsys):
    assert main(["datasets", "options"]) == 0
    out = capsys.readouterr().out
    for key in ("expected_cases", "threshold", "hub_id", "as_image_flow", "sources[].image",
                "dataset_json"):
        assert f"  {key}: " in out


def test_committed_docs_page_is_the_generated_one():
    page = (REPO / "docs" / "card-options.md").read_text()
    assert page == card_reference(markdown=True), (
        "docs/card-options.md is stale: run `bench datasets options --markdown > "
        "docs/card-options.md`")
