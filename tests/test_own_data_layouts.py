"""Your own data, first try: published layouts go through `bench datasets new`, then the
printed `bench run` command, with no edit to the card, and every non-template case is scored.

Each layout is a small synthetic replica of a public set's published layout (names,
folders, formats). The full-frame floor's Dice is known from the ground truth alone,
2|G| / (|G| + HW), so each test checks that every case was scored against its own label
file (not a field-of-view mask, not another case's mask), computed here from the
arrays the test wrote.
"""

import contextlib
import io
import json
import locale
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomllib
from PIL import Image

from bench.cli import main
from bench.console import RunProgress
from bench.progress import FramesDone, UnitsPlanned

# Non-square frames: an axis swap anywhere changes the numbers.
SHAPE = (36, 52)


def _lesion(index: int, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[5 + index % 4:22 + index % 3, 8 + index:30 + 2 * index] = True
    return mask


def _image(mask: np.ndarray, seed: int, rgb: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = (60 + 120 * mask + rng.integers(0, 30, mask.shape)).astype(np.uint8)
    return np.stack([grey, grey // 2, grey], axis=-1) if rgb else grey


def _new_then_run(args: list[str], capsys) -> tuple[list[str], pd.DataFrame, str]:
    """`datasets new ARGS`, then the printed run command verbatim; its run's metrics."""
    assert main(["datasets", "new", *args]) == 0, "\n".join(capsys.readouterr())
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("run it: "))
    command = shlex.split(line.removeprefix("run it: "))
    assert command[:2] == ["bench", "run"]
    assert main(command[1:]) == 0, capsys.readouterr()
    run_out = capsys.readouterr()
    (run_dir,) = Path("runs", "one-prompt").iterdir()
    return command, pd.read_csv(run_dir / "metrics.csv"), out + run_out.out


@contextlib.contextmanager
def _locale_kept():
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _ledger(run_dir: Path) -> list[dict]:
    text = (run_dir / "prompts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _full_frame_dice(metrics: pd.DataFrame) -> dict[str, float]:
    rows = metrics[(metrics["model"] == "full-frame") & (metrics["metric"] == "dice")]
    return dict(zip(rows["case"], rows["value"], strict=True))


def _expected_dice(mask: np.ndarray) -> float:
    return 2 * mask.sum() / (mask.sum() + mask.size)


def test_case_folders_make_one_flow_and_every_other_case_is_scored(tmp_path, monkeypatch,
                                                                     capsys):
    # PH2's layout: one folder per case, 1-bit BMP masks, a root with spaces.
    root = tmp_path / "PH2 Dataset images"
    masks = {}
    for i in range(4):
        case = f"IMD{i + 2:03d}"
        mask = _lesion(i)
        masks[case] = mask
        (root / case / f"{case}_Dermoscopic_Image").mkdir(parents=True)
        (root / case / f"{case}_lesion").mkdir()
        Image.fromarray(_image(mask, i)).save(
            root / case / f"{case}_Dermoscopic_Image" / f"{case}.bmp")
        Image.fromarray(mask).convert("1").save(root / case / f"{case}_lesion" /
                                                f"{case}_lesion.bmp")
    monkeypatch.chdir(tmp_path)
    command, metrics, out = _new_then_run(
        ["ph2", "--images", "PH2 Dataset images/*/*_Dermoscopic_Image/*.bmp", "--masks",
         "PH2 Dataset images/*/*_lesion/*_lesion.bmp", "--prompt-kind", "box"], capsys)
    card = tomllib.loads((tmp_path / "cards" / "ph2.toml").read_text(encoding="utf-8"))
    assert card["one_prompt_kind"] == "box" and "group" not in card["options"]  # one flow
    assert "--cards" not in command  # ./cards is searched
    assert f"ph2={root}" in command  # the root with spaces survives the shell
    dice = _full_frame_dice(metrics)
    # IMD002 is the template (given, not scored); the other three are scored
    assert sorted(dice) == ["IMD003", "IMD004", "IMD005"]  # case folders repeat the id
    for case, value in dice.items():
        assert value == pytest.approx(_expected_dice(masks[case]), abs=1e-9)
    ledger = _ledger(next(Path("runs", "one-prompt").iterdir()))
    assert {row["kind"] for row in ledger} == {"box"}


def _drive(root: Path, field_masks_beside: bool = False) -> dict[str, np.ndarray]:
    """DRIVE's layout: training/ and test/ splits, TIFF images, GIF labels and field-of-view
    masks (in their own mask/ folder, or beside the labels)."""
    labels = {}
    for split, numbers in (("training", (21, 22, 23)), ("test", (1, 2, 3))):
        for n in numbers:
            vessel = _lesion(len(labels))  # each case its own label
            labels[f"{split}/{n:02d}"] = vessel
            fov = np.ones(SHAPE, bool)
            fov[:3] = False
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "1st_manual").mkdir(exist_ok=True)
            folder = root / split / ("1st_manual" if field_masks_beside else "mask")
            folder.mkdir(exist_ok=True)
            Image.fromarray(_image(vessel, n)).save(root / split / "images" /
                                                    f"{n:02d}_{split}.tif")
            Image.fromarray(vessel.astype(np.uint8) * 255).save(
                root / split / "1st_manual" / f"{n:02d}_manual1.gif")
            Image.fromarray(fov.astype(np.uint8) * 255).save(folder /
                                                             f"{n:02d}_{split}_mask.gif")
    return labels


def test_split_folders_pair_names_that_differ_beyond_a_suffix(tmp_path, monkeypatch, capsys):
    labels = _drive(tmp_path / "DRIVE")
    monkeypatch.chdir(tmp_path)
    _, metrics, out = _new_then_run(
        ["drive", "--images", "DRIVE/*/images/*_*.tif", "--masks",
         "DRIVE/*/1st_manual/*_manual1.gif"], capsys)
    card = (tmp_path / "cards" / "drive.toml").read_text(encoding="utf-8")
    options = tomllib.loads(card)["options"]
    assert options["group"] == "{dir1}"  # one flow per split
    assert options["image"] == "{dir1}/images/{id}_{id2}.tif"
    assert options["mask"] == "{dir1}/1st_manual/{id}_manual1.gif"
    dice = _full_frame_dice(metrics)
    # each split's first image is its flow's template
    assert sorted(dice) == ["test/02", "test/03", "training/22", "training/23"]
    assert set(metrics["flow"]) == {"drive/test", "drive/training"}
    for case, value in dice.items():
        assert value == pytest.approx(_expected_dice(labels[case]), abs=1e-9)


def test_field_of_view_masks_beside_the_labels_are_never_labels(tmp_path, monkeypatch, capsys):
    labels = _drive(tmp_path / "DRIVE", field_masks_beside=True)
    monkeypatch.chdir(tmp_path)
    # A mask glob that also takes the field-of-view masks is refused, naming them and the fix
    args = ["drive", "--images", "DRIVE/*/images/*_*.tif", "--masks",
            "DRIVE/*/1st_manual/*.gif"]
    assert main(["datasets", "new", *args]) == 2
    err = capsys.readouterr().err
    assert "6 image(s) have no mask" in err or "mask file(s) have no image" in err
    assert "Traceback" not in err and not (tmp_path / "cards").exists()
    # the labels' own suffix pairs them; the field-of-view masks stay out
    _, metrics, _ = _new_then_run(
        ["drive", "--images", "DRIVE/*/images/*_*.tif", "--masks",
         "DRIVE/*/1st_manual/*_manual1.gif"], capsys)
    dice = _full_frame_dice(metrics)
    assert sorted(dice) == ["test/02", "test/03", "training/22", "training/23"]
    for case, value in dice.items():
        assert value == pytest.approx(_expected_dice(labels[case]), abs=1e-9)


def test_orphan_masks_and_unlabelled_images_name_the_flag_that_fixes_them(
        tmp_path, monkeypatch, capsys):
    labels = _drive(tmp_path / "DRIVE")
    stray = tmp_path / "DRIVE" / "training" / "1st_manual" / "99_manual1.gif"
    Image.fromarray(_lesion(0).astype(np.uint8) * 255).save(stray)  # a label without image
    monkeypatch.chdir(tmp_path)
    args = ["drive", "--images", "DRIVE/*/images/*_*.tif", "--masks",
            "DRIVE/*/1st_manual/*_manual1.gif"]
    assert main(["datasets", "new", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 mask file(s) have no image (training/1st_manual/"
                          "99_manual1.gif): leave them out with --exclude PATTERN")
    assert not (tmp_path / "cards").exists()
    stray.unlink()
    (tmp_path / "DRIVE" / "test" / "1st_manual" / "03_manual1.gif").unlink()
    assert main(["datasets", "new", *args]) == 2
    err = capsys.readouterr().err
    assert "1 image(s) have no mask (test/images/03_test.tif" in err
    assert "--missing-mask skip" in err and not (tmp_path / "cards").exists()
    _, metrics, _ = _new_then_run([*args, "--missing-mask", "skip"], capsys)
    dice = _full_frame_dice(metrics)
    assert sorted(dice) == ["test/02", "training/22", "training/23"]
    for case, value in dice.items():
        assert value == pytest.approx(_expected_dice(labels[case]), abs=1e-9)


def test_ppm_gif_and_tiff_files_are_accepted(tmp_path, monkeypatch, capsys):
    # STARE's layout: PPM images, PPM labels of one rater in their own folder.
    root = tmp_path / "stare"
    (root / "images").mkdir(parents=True)
    (root / "labels-ah").mkdir()  # and GIF images beside: a format new cards must accept
    labels = {}
    for i in range(1, 4):
        vessel = _lesion(i)
        labels[f"im{i:04d}"] = vessel
        Image.fromarray(_image(vessel, i)).save(root / "images" / f"im{i:04d}.ppm")
        Image.fromarray(vessel.astype(np.uint8) * 255).save(root / "labels-ah" /
                                                           f"im{i:04d}.ah.ppm")
    monkeypatch.chdir(tmp_path)
    _, metrics, _ = _new_then_run(["stare-mine", "--images", "stare/images/*.ppm", "--masks",
                                   "stare/labels-ah/*.ah.ppm"], capsys)
    dice = _full_frame_dice(metrics)
    assert sorted(dice) == ["im0002", "im0003"]
    for case, value in dice.items():
        assert value == pytest.approx(_expected_dice(labels[case]), abs=1e-9)


def test_dicom_series_folders_with_nifti_labels(tmp_path, monkeypatch, capsys):
    sitk = pytest.importorskip("SimpleITK")
    truth = {}
    for n in range(2):
        volume = np.zeros((6, 20, 28), np.int16)  # z, y, x
        label = np.zeros((6, 20, 28), np.uint8)
        label[1:5, 4 + n:12, 6:20 - n] = 1
        volume[label > 0] = 300
        truth[f"case{n}"] = label.astype(bool)
        image = sitk.GetImageFromArray(volume)
        image.SetSpacing((0.8, 0.7, 2.5))  # anisotropic
        image.SetOrigin((-10.0, 4.0, 30.0))
        folder = tmp_path / "ct" / f"case{n}"
        folder.mkdir(parents=True)
        for z in range(volume.shape[0]):
            plane = image[:, :, z]
            plane.SetMetaData("0020|0013", str(z + 1))  # instance number
            plane.SetMetaData("0020|0032", "\\".join(
                map(str, image.TransformIndexToPhysicalPoint((0, 0, z)))))
            plane.SetMetaData("0020|0037", "1\\0\\0\\0\\1\\0")
            plane.SetMetaData("0028|0030", "0.7\\0.8")  # row, column spacing
            plane.SetMetaData("0018|0050", "2.5")
            plane.SetMetaData("0008|0060", "CT")
            uid = f"1.2.826.0.1.3680043.2.1125.{n}"
            plane.SetMetaData("0020|000d", f"{uid}.1")  # study
            plane.SetMetaData("0020|000e", f"{uid}.2")  # series: one per volume
            plane.SetMetaData("0008|0018", f"{uid}.3.{z + 1}")  # instance
            writer = sitk.ImageFileWriter()
            writer.KeepOriginalImageUIDOn()  # else each file gets a series of its own
            writer.SetFileName(str(folder / f"IM{z + 1:04d}.dcm"))
            with _locale_kept():  # GDCM's writer sets the C locale (ASCII) for the process
                writer.Execute(plane)
        mask = sitk.GetImageFromArray(label)
        mask.CopyInformation(image)
        (tmp_path / "labels").mkdir(exist_ok=True)
        sitk.WriteImage(mask, str(tmp_path / "labels" / f"case{n}.nii.gz"))
    monkeypatch.chdir(tmp_path)
    _, metrics, _ = _new_then_run(["ct-dicom", "--images", "ct/*", "--masks",
                                   "labels/*.nii.gz", "--modality", "CT"], capsys)
    card = tomllib.loads((tmp_path / "cards" / "ct-dicom.toml").read_text(encoding="utf-8"))
    assert (card["reader"], card["kind"]) == ("volumes", "volume")
    dice = _full_frame_dice(metrics)
    assert sorted(dice) == ["case0", "case1"]  # a volume is one case, scored in 3D
    for case, value in dice.items():
        assert value == pytest.approx(_expected_dice(truth[case]), abs=1e-9)


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "x..y"])
def test_a_card_name_with_a_path_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                       capsys, name):
    _drive(tmp_path / "DRIVE")
    victim = tmp_path / "evil.toml"
    victim.write_text("kept")
    monkeypatch.chdir(tmp_path)
    code = main(["datasets", "new", name, "--images", "DRIVE/*/images/*_*.tif", "--masks",
                 "DRIVE/*/1st_manual/*_manual1.gif", "--out", str(tmp_path / "cards"),
                 "--force"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "card name" in err
    assert victim.read_text(encoding="utf-8") == "kept" and not (tmp_path / "cards").exists()


def test_bad_globs_and_existing_cards_are_one_line_and_write_nothing(tmp_path, monkeypatch,
                                                                     capsys):
    _drive(tmp_path / "DRIVE")
    monkeypatch.chdir(tmp_path)
    base = ["datasets", "new", "drive", "--masks", "DRIVE/*/1st_manual/*_manual1.gif"]
    assert main([*base, "--images", "DRIVE/*/nothing/*.tif"]) == 2
    err = capsys.readouterr().err
    assert "matches no file" in err and err.count("\n") == 1
    assert not (tmp_path / "cards").exists()
    # two images claim one mask: the free * of --images holds more than the split name
    (tmp_path / "DRIVE" / "test" / "images" / "01_test.tif").rename(
        tmp_path / "DRIVE" / "test" / "images" / "01_test_copy.tif")
    Image.fromarray(_image(_lesion(0), 9)).save(tmp_path / "DRIVE" / "test" / "images" /
                                               "01_test.tif")
    assert main([*base, "--images", "DRIVE/*/images/*_*.tif"]) == 2
    err = capsys.readouterr().err
    assert "01_test" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "cards").exists()
    (tmp_path / "DRIVE" / "test" / "images" / "01_test_copy.tif").unlink()
    assert main([*base, "--images", "DRIVE/*/images/*_*.tif"]) == 0
    card = tmp_path / "cards" / "drive.toml"
    before = card.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main([*base, "--images", "DRIVE/*/images/*_*.tif", "--group", "all"]) == 2
    err = capsys.readouterr().err
    assert "exists; pass --force" in err and card.read_text(encoding="utf-8") == before


def test_a_layout_of_one_image_flows_is_refused_by_new_check_and_run(tmp_path, monkeypatch,
                                                                     capsys):
    _drive(tmp_path / "DRIVE")
    monkeypatch.chdir(tmp_path)
    args = ["datasets", "new", "drive", "--images", "DRIVE/*/images/*_*.tif", "--masks",
            "DRIVE/*/1st_manual/*_manual1.gif"]
    assert main([*args, "--group", "{dir1}/{id}"]) == 2
    err = capsys.readouterr().err
    assert "6 flow(s) of one image each" in err and "--group all" in err
    # a card written by hand with one flow per image: check and run refuse it too
    assert main(args) == 0
    card = tmp_path / "cards" / "drive.toml"
    text = card.read_text(encoding="utf-8")
    card.write_text(text.replace('group = "{dir1}"', 'group = "{dir1}/{id}"'))
    capsys.readouterr()
    root = tmp_path / "DRIVE"
    assert main(["datasets", "check", "drive", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "6 flow(s) of one image each" in out and "group" in out
    assert main(["run", "--suite", "one-prompt", "--datasets", "drive", "--root",
                 f"drive={root}", "--models", "full-frame"]) == 2
    err = capsys.readouterr().err
    assert "6 flow(s) of one image each" in err and not Path("runs").exists()


def test_prompt_kind_on_the_command_line_changes_the_scores_and_is_recorded(
        tmp_path, monkeypatch, capsys):
    labels = _drive(tmp_path / "DRIVE")
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "new", "drive", "--images", "DRIVE/*/images/*_*.tif", "--masks",
                 "DRIVE/*/1st_manual/*_manual1.gif"]) == 0
    root = tmp_path / "DRIVE"
    runs = {}
    for kind in ("point", "mask"):
        out = tmp_path / f"run-{kind}"
        assert main(["run", "--suite", "one-prompt", "--datasets", "drive", "--root",
                     f"drive={root}", "--models", "registration", "--out", str(out),
                     "--prompt-kind", kind]) == 0
        runs[kind] = out
        config = json.loads((out / "config.json").read_text(encoding="utf-8"))
        assert config["plan"]["protocol_params"]["prompt_kind"] == kind
        assert {row["kind"] for row in _ledger(out)} == {kind}
        assert f"(prompt_kind = {kind!r}" in (out / "report.md").read_text(encoding="utf-8")
    dice = {kind: pd.read_csv(out / "metrics.csv").query("metric == 'dice'")["value"].mean()
            for kind, out in runs.items()}
    assert dice["point"] != dice["mask"]  # the setting reached the model
    # resume refuses to mix prompt kinds
    assert main(["run", "--suite", "one-prompt", "--datasets", "drive", "--root",
                 f"drive={root}", "--models", "registration", "--out", str(runs["point"]),
                 "--resume", "--prompt-kind", "box"]) == 2
    assert labels


def test_a_run_that_scores_nothing_fails(tmp_path, monkeypatch, capsys):
    _drive(tmp_path / "DRIVE")
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "new", "drive", "--images", "DRIVE/*/images/*_*.tif", "--masks",
                 "DRIVE/*/1st_manual/*_manual1.gif"]) == 0
    capsys.readouterr()
    code = main(["run", "--suite", "one-prompt", "--datasets", "drive", "--root",
                 f"drive={tmp_path / 'DRIVE'}", "--models", "full-frame", "--limit", "1",
                 "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 1 and "no case was scored" in captured.err
    # the skipping line names no dataset the user did not ask for
    assert "Skipping datasets without a root" not in captured.out


def test_frames_inside_a_unit_move_the_progress(tmp_path, monkeypatch):
    from bench.config import load_config
    from bench.plan import make_plan
    from bench.runner import execute

    _drive(tmp_path / "DRIVE")
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "new", "drive", "--images", "DRIVE/*/images/*_*.tif", "--masks",
                 "DRIVE/*/1st_manual/*_manual1.gif", "--group", "all"]) == 0
    plan = make_plan(load_config(), "one-prompt", datasets=["drive"], models=["registration"],
                     roots={"drive": tmp_path / "DRIVE"})
    events = []
    execute(plan, tmp_path / "run", progress=events.append)
    frames = [(e.done, e.total) for e in events if isinstance(e, FramesDone)]
    # one flow of 6 images: registration reports each image of its one unit
    assert frames == [(k, 6) for k in range(1, 7)]
    stream = io.StringIO()
    clock = iter(range(0, 1000, 40))
    with RunProgress(stream, plain=True, clock=lambda: next(clock), heartbeat=False,
                     interval=30) as progress:
        progress.notify(UnitsPlanned(total=1, reused=0, selected=1, all=1, executor="local"))
        progress.notify(FramesDone(3, 6))
    assert "running unit: frame 3/6" in stream.getvalue()


def test_a_run_whose_only_dataset_is_refused_says_so(tmp_path, monkeypatch, capsys):
    _drive(tmp_path / "DRIVE")
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "new", "drive", "--images", "DRIVE/*/images/*_*.tif", "--masks",
                 "DRIVE/*/1st_manual/*_manual1.gif"]) == 0
    image = tmp_path / "DRIVE" / "test" / "images" / "02_test.tif"
    image.write_bytes(image.read_bytes()[:200])  # truncated
    capsys.readouterr()
    code = main(["run", "--suite", "one-prompt", "--datasets", "drive", "--root",
                 f"drive={tmp_path / 'DRIVE'}", "--models", "full-frame", "--out",
                 str(tmp_path / "run")])
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())
    assert code == 1 and "FAIL: no case was scored" in captured.err
    assert "no results: no case was scored; dataset(s) drive refused for unreadable cases" in out
    assert "one-prompt gives each flow's template" not in out
