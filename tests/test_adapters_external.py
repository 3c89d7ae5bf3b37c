"""Saved predictions of an external model (bench.adapters.external, model ``predictions``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, create, register
from bench.adapters.external import PredictionFileError
from skimage.io import imsave

from bench.config import load_config
from bench.errors import ConfigError
from bench.plan import make_plan
from bench.runner import execute
from bench.store import image_path, prediction_folder, write_prediction
from bench.types import Flow, Prediction, Prompt

ROOT = Path(__file__).resolve().parents[1]


@register
@dataclass
class _ThresholdModel(Adapter):
    """Test model: pixels brighter than the frame's mean, a different mask per target."""

    name = "test-threshold-model"
    hidden = True

    def predict(self, flow, prompts):
        masks = {}
        for k, target in enumerate(dict.fromkeys(p.target for p in prompts)):
            out = []
            for frame in flow.frames:
                grey = np.asarray(frame, dtype=float)
                grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
                out.append(grey > np.percentile(grey, 30 + 10 * k))
            masks[target] = out
        return Prediction(masks=masks)


def _table(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv", keep_default_na=False, na_values=[""])


def test_scores_a_run_folder_exactly_as_the_run_that_wrote_it(tmp_path):
    config = load_config(ROOT / "bench.toml")
    models = ["test-threshold-model", "full-frame"]
    datasets = ["demo-fundus", "demo-ct"]  # RGB images with two targets, and a volume
    source = execute(make_plan(config, "demo", models=models, datasets=datasets, limit=2),
                     tmp_path / "source")
    assert source.units_failed == 0
    original = _table(tmp_path / "source")
    assert set(original["dataset"]) == set(datasets)
    for model in models:
        config.models["predictions"] = {
            "folder": str(tmp_path / "source" / "predictions" / model / "seed0")}
        plan = make_plan(config, "demo", models=["predictions"], datasets=datasets, limit=2)
        outcome = execute(plan, tmp_path / f"read-{model}")
        assert outcome.units_failed == 0
        read = _table(tmp_path / f"read-{model}")
        expected = original[original["model"] == model].reset_index(drop=True)
        read["model"] = model
        pd.testing.assert_frame_equal(read, expected)
    # The two models' tables differ case by case, so reading the wrong folder would fail.
    dice = original[original["metric"] == "dice"]
    ours = dice[dice["model"] == models[0]]["value"].to_numpy()
    floor = dice[dice["model"] == models[1]]["value"].to_numpy()
    assert np.mean(~np.isclose(ours, floor)) > 0.8


# ----------------------------------------------------------------------------- volumes


def _volume_flow() -> Flow:
    rng = np.random.default_rng(0)
    frames = rng.random((4, 5, 6)).astype(np.float32)  # (slice, row, col)
    a = np.zeros((4, 5, 6), dtype=bool)
    a[1:3, 1:4, 2:5] = True
    b = np.zeros((4, 5, 6), dtype=bool)
    b[0, 0, :] = True
    affine = np.array([[0, 0, -2.0, 10], [0, 1.5, 0, -3], [0.8, 0, 0, 7], [0, 0, 0, 1]])
    # The source file was (col, row, slice): frames.transpose(source_axes) is source order.
    meta = {"source_axes": (2, 1, 0), "affine": affine, "image": "/data/ct.nii.gz"}
    return Flow("case_07", "ds", "volume", frames, {"a": a, "b": b}, meta=meta)


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), str(path))


def test_nnunet_label_maps_in_source_order(tmp_path):
    flow = _volume_flow()
    labels = np.zeros((4, 5, 6), dtype=np.uint8)
    labels[flow.masks["a"]] = 1
    labels[flow.masks["b"]] = 2
    _save_nifti(tmp_path / "ds" / "case_07.nii.gz", labels.transpose(2, 1, 0),
                flow.meta["affine"])
    adapter = create("predictions", {"folder": str(tmp_path), "layout": "nnunet",
                                     "labels": {"a": 1, "b": 2, "ab": [1, 2]}})
    view = flow.view()
    assert "image" not in view.geometry  # source paths never reach an adapter
    pred = adapter.predict(view, [Prompt("a", 1, "box", box=(2, 1, 4, 3))])
    assert np.array_equal(np.stack(pred.masks["a"]), flow.masks["a"])
    # Unprompted targets are read too: an automatic model's output counts everywhere.
    assert np.array_equal(np.stack(pred.masks["b"]), flow.masks["b"])
    assert np.array_equal(np.stack(pred.masks["ab"]), flow.masks["a"] | flow.masks["b"])


def test_volume_geometry_is_checked_against_the_frames(tmp_path):
    flow = _volume_flow()
    affine = flow.meta["affine"]
    target = tmp_path / "ds" / "case_07.nii.gz"
    adapter = create("predictions", {"folder": str(tmp_path), "layout": "nnunet",
                                     "labels": {"a": 1}})
    prompts = [Prompt("a", 1, "box", box=(2, 1, 4, 3))]
    target.parent.mkdir()
    with pytest.raises(PredictionFileError, match="case_07.nii.gz: prediction file not found"):
        adapter.predict(flow.view(), prompts)
    _save_nifti(target, np.zeros((4, 5, 6)), affine)  # frame order, not source order
    with pytest.raises(PredictionFileError,
                       match=r"case_07.nii.gz: shape \(4, 5, 6\) does not match.*\(6, 5, 4\)"):
        adapter.predict(flow.view(), prompts)
    _save_nifti(target, np.zeros((6, 5, 4)), np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(PredictionFileError, match="affine differs.*check_affine = false"):
        adapter.predict(flow.view(), prompts)
    lenient = create("predictions", {"folder": str(tmp_path), "layout": "nnunet",
                                     "labels": {"a": 1}, "check_affine": False})
    assert not np.stack(lenient.predict(flow.view(), prompts).masks["a"]).any()


# ------------------------------------------------------------------------------ images


def _image_flow() -> Flow:
    frames = [np.zeros((6, 8, 3), np.uint8), np.zeros((7, 5), np.uint8)]
    disc_ = [np.zeros((6, 8), bool), np.zeros((7, 5), bool)]
    disc_[0][1:4, 2:6] = True
    disc_[1][3:6, 1:3] = True
    cup = [d & np.roll(d, 1, axis=1) for d in disc_]
    return Flow("grp", "fundus", "image-flow", frames, {"disc": disc_, "cup": cup},
                case_ids=["grp/img_a", "grp/img_b"])


def test_bench_layout_pngs_and_extra_targets(tmp_path):
    flow = _image_flow()
    folder = prediction_folder(tmp_path, "other", 0, flow.dataset)
    write_prediction(folder, flow, Prediction(masks={"disc": flow.masks["disc"],
                                                     "cup": flow.masks["cup"]}))
    adapter = create("predictions", {"folder": str(tmp_path / "predictions" / "other" /
                                                   "seed0")})
    pred = adapter.predict(flow.view(), [Prompt("disc", 0, "box", box=(2, 1, 5, 3))])
    for target in ("disc", "cup"):
        for got, want in zip(pred.masks[target], flow.masks[target], strict=True):
            assert np.array_equal(got, want)
    # A mask whose shape differs from its image is refused, naming the file.
    bad = image_path(folder, "disc", "grp/img_b")
    assert bad.name.startswith("grp_img_b~")  # distinct from a case named grp_img_b
    imsave(bad, np.zeros((5, 7), np.uint8), check_contrast=False)
    with pytest.raises(PredictionFileError,
                       match=r"grp_img_b~[0-9a-f]{8}.png: mask shape \(5, 7\) differs from "
                             r"the image's \(7, 5\)"):
        adapter.predict(flow.view(), [Prompt("disc", 0, "box", box=(2, 1, 5, 3))])


def test_nnunet_pngs_named_like_the_case_and_dataset_placeholder(tmp_path):
    flow = _image_flow()
    for case, d, c in zip(flow.case_ids, flow.masks["disc"], flow.masks["cup"], strict=True):
        path = tmp_path / "out" / "fundus" / f"{case}.png"  # the case id as a relative path
        path.parent.mkdir(parents=True, exist_ok=True)
        imsave(path, (d.astype(np.uint8) + c.astype(np.uint8)), check_contrast=False)
    adapter = create("predictions", {"folder": str(tmp_path / "out" / "{dataset}"),
                                     "layout": "nnunet", "labels": {"disc": [1, 2], "cup": 2}})
    pred = adapter.predict(flow.view(), [Prompt("cup", 1, "box", box=(1, 3, 2, 5))])
    for target in ("disc", "cup"):
        for got, want in zip(pred.masks[target], flow.masks[target], strict=True):
            assert np.array_equal(got, want)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match=r"\[models.predictions\].folder: set it"):
        create("predictions", {"folder": ""})
    with pytest.raises(ConfigError, match=r"\[models.predictions\].layout: expected 'bench' or "
                                          r"'nnunet' \(got 'nnUNet'\)"):
        create("predictions", {"folder": "x", "layout": "nnUNet"})
    with pytest.raises(ConfigError, match="labels: the 'nnunet' layout needs"):
        create("predictions", {"folder": "x", "layout": "nnunet"})
    with pytest.raises(ConfigError, match=r"labels.cup: expected an integer or a list"):
        create("predictions", {"folder": "x", "layout": "nnunet", "labels": {"cup": "2"}})
    with pytest.raises(ConfigError, match="labels: only used with layout = 'nnunet'"):
        create("predictions", {"folder": "x", "labels": {"cup": 2}})
    with pytest.raises(PredictionFileError, match="no predictions folder for dataset 'fundus'"):
        create("predictions", {"folder": "/nonexistent"}).predict(
            _image_flow().view(), [Prompt("cup", 0, "box", box=(0, 0, 1, 1))])


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 30])
def test_a_damaged_prediction_file_is_refused_naming_it(tmp_path, data):
    # Empty, foreign and truncated files: whatever the image library raises, one line
    # naming the file (never a traceback, never an empty mask).
    from bench.adapters.external import read_mask_nifti, read_mask_png

    png, nifti = tmp_path / "case.png", tmp_path / "case.nii.gz"
    png.write_bytes(data)
    nifti.write_bytes(data)
    with pytest.raises(PredictionFileError, match=r"case\.png: cannot read image"):
        read_mask_png(png)
    with pytest.raises(PredictionFileError, match=r"case\.nii\.gz: cannot read NIfTI"):
        read_mask_nifti(nifti)
