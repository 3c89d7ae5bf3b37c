"""The real samples in ../shared/data load through their cards.

Skipped when the folder is absent (a fresh clone, CI). Expected values come
from the files themselves, read independently with PIL / nibabel /
SimpleITK, and from the sample README (shapes, spacings, case counts).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_readers_support import revise

from bench.readers import get_reader, load_card
from bench.readers.check import check_dataset, has_errors
from bench.readers.geometry import to_source_order

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BENCH_SHARED_DATA", REPO.parent / "shared" / "data"))

pytestmark = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real sample data not found at {SHARED} (absent on a fresh "
                                "clone; set BENCH_SHARED_DATA to point at it)")


def card(name: str):
    return load_card(REPO / "datasets" / f"{name}.toml")


def list_cases(card, root):
    return get_reader(card.reader).list_cases(card, root)


def list_flows(card, root):
    return get_reader(card.reader).list_flows(card, root)


def load_case(card, ref):
    return get_reader(card.reader).load_case(card, ref)


def load_flow(card, ref):
    return get_reader(card.reader).load_flow(card, ref)


def test_wbc_sample(tmp_path):
    wbc = card("wbc")
    root = SHARED / "wbc"
    flows = list_flows(wbc, root)
    assert [(f.id, len(f.cases)) for f in flows] == [("wbc/Dataset 1", 300),
                                                    ("wbc/Dataset 2", 100)]
    ref = next(r for r in flows[1].cases if r.id == "Dataset 2/050")
    flow = load_case(wbc, ref)
    raw = np.asarray(Image.open(root / "Dataset 2" / "050.png"))
    assert flow.frames[0].shape == (300, 300, 3)
    assert 9 in np.unique(raw) and flow.meta["remapped_values"] == [9]
    np.testing.assert_array_equal(flow.masks["cytoplasm"][0], raw == 128)
    np.testing.assert_array_equal(flow.masks["nucleus"][0], raw == 255)
    first = load_case(wbc, flows[0].cases[0])
    assert first.frames[0].shape == (120, 120, 3)
    np.testing.assert_array_equal(first.frames[0],
                                  np.asarray(Image.open(root / "Dataset 1" / "001.bmp")))
    problems = check_dataset(wbc, root)
    assert not has_errors(problems)
    assert str(problems[-1]) == f"info: {root}: 400 cases found, 400 expected"
    stray = {Path(p.path).name: p.message for p in problems if "remapped" in p.message}
    assert sorted(stray) == ["034.png", "035.png", "047.png", "050.png", "076.png"]
    assert "[9]" in stray["050.png"] and "[2, 7, 25, 42, 44, 45]" in stray["034.png"]


def test_fundus_optic_disc_sample():
    fundus = card("fundus-optic-disc")
    root = SHARED / "fundus-optic-disc"
    (ref,) = list_flows(fundus, root)
    assert len(ref.cases) == 19
    flow = load_flow(fundus, ref)
    raw = np.asarray(Image.open(root / "sample_dataset/groundtruth1/image_091.jpg"))
    assert flow.case_ids[0] == "091" and flow.frames[0].shape == (400, 600, 3)
    np.testing.assert_array_equal(flow.masks["optic disc"][0], raw >= 128)
    assert all(m.any() for m in flow.masks["optic disc"])
    assert not has_errors(check_dataset(fundus, root))


def test_chase_sample_first_observer():
    chase = card("chase-db1")
    root = SHARED / "retina-vessels-chase"
    cases = list_cases(chase, root)
    assert len(cases) == 28 and cases[0].id == "01L"
    flow = load_case(chase, cases[0])
    raw = np.asarray(Image.open(root / "CHASEDB1/Image_01L_1stHO.png"))
    assert flow.frames[0].shape == (960, 999, 3)
    np.testing.assert_array_equal(flow.masks["vessel"][0], raw.astype(bool))


def test_brain_tumour_mr_sample_and_its_nrrd_original():
    brain = card("brain-tumour-mr")
    root = SHARED / "brain-tumour-mr"
    flows = [load_flow(brain, ref) for ref in list_flows(brain, root)]
    assert [f.id for f in flows] == ["brain1", "brain2"]
    assert flows[0].frames.shape == (25, 256, 256) and flows[1].frames.shape == (23, 256, 256)
    assert flows[0].spacing == (6.5, 0.78125, 0.78125)
    label = np.asarray(nib.load(str(root / "brain1_label.nii.gz")).dataobj)
    np.testing.assert_array_equal(to_source_order(flows[0].masks["tumour"], flows[0].meta),
                                  label == 1)
    assert 0.0 <= flows[0].frames.min() and flows[0].frames.max() <= 1.0
    # the NRRD original read through SimpleITK gives the same voxels and geometry
    pytest.importorskip("SimpleITK")
    nrrd = revise(brain, options={"image": "brain{id}_image.nrrd", "mask": "brain{id}_label.nrrd"})
    (other,) = [load_flow(nrrd, ref) for ref in list_flows(nrrd, root)]
    np.testing.assert_array_equal(other.frames, flows[0].frames)
    np.testing.assert_array_equal(other.masks["tumour"], flows[0].masks["tumour"])
    np.testing.assert_allclose(other.meta["affine"], flows[0].meta["affine"], atol=1e-4)
    assert not has_errors(check_dataset(brain, root))


def test_abdomen_ct_sample():
    abdomen = card("abdomen-ct-small")
    root = SHARED / "abdomen-ct-small"
    (flow,) = [load_flow(abdomen, ref) for ref in list_flows(abdomen, root)]
    assert flow.frames.shape == (30, 101, 122) and flow.spacing == (3.0, 3.0, 3.0)
    seg = np.asarray(nib.load(str(root / "example_seg.nii.gz")).dataobj)
    for target, value in (("liver", 5), ("spleen", 1), ("aorta", 52)):
        np.testing.assert_array_equal(to_source_order(flow.masks[target], flow.meta),
                                      seg == value)
    ct = np.asarray(nib.load(str(root / "example_ct_sm.nii.gz")).dataobj).astype(np.float32)
    expected = np.clip((ct + 125) / 400, 0, 1)
    np.testing.assert_allclose(to_source_order(flow.frames, flow.meta), expected, atol=1e-6)
    # The Hounsfield units before the card's window are kept for recipes that start there.
    np.testing.assert_array_equal(to_source_order(flow.source_frames, flow.meta), ct)
    assert flow.view("CT").source_frames is flow.source_frames
    problems = check_dataset(abdomen, root)
    assert not has_errors(problems)
    (unknown,) = [p for p in problems if "not in the card" in p.message]
    assert "117" in unknown.message and unknown.severity == "warning"


def test_every_sample_scores_under_the_registration_baseline(tmp_path):
    """Each real sample runs end to end through its card, the runner, the one-prompt
    protocol and the registration baseline, which beats the full-frame floor on every
    target but the retinal vessels (a pipeline check on real anatomy, not a quality claim)."""
    import shutil

    import pandas as pd

    from bench.config import load_config
    from bench.plan import make_plan
    from bench.rundir import RunDir
    from bench.runner import execute

    shutil.copytree(REPO / "datasets", tmp_path / "datasets")
    for name, size in (("wbc", 4), ("chase-db1", 4), ("fundus-optic-disc", 4)):
        path = tmp_path / "datasets" / f"{name}.toml"  # small flows keep the test short
        text = path.read_text().replace("[options]\n", f"[options]\nchunk_size = {size}\n", 1)
        path.write_text(text)
    roots = {"wbc": "wbc", "chase-db1": "retina-vessels-chase",
             "brain-tumour-mr": "brain-tumour-mr", "abdomen-ct-small": "abdomen-ct-small",
             "fundus-optic-disc": "fundus-optic-disc"}
    (tmp_path / "bench.toml").write_text(
        "[datasets]\n" + "".join(f'{k} = "{SHARED / v}"\n' for k, v in roots.items())
        + '[suites.real]\nprotocol = "one-prompt"\n'
        + f"datasets = {list(roots)!r}\n".replace("'", '"')
        + 'models = ["registration", "full-frame"]\n')
    plan = make_plan(load_config(tmp_path / "bench.toml"), "real", limit=4)  # 4 cases each
    outcome = execute(plan, tmp_path / "run")
    assert outcome.units_failed == 0 and outcome.read_failures == 0
    table = pd.read_csv(tmp_path / "run" / "metrics.csv", dtype={"case": str})
    # --limit counts cases, so both brain volumes are read now; the baseline claim below is
    # made on the first, as before (the registration baseline barely overlaps brain2's tumour)
    brain = RunDir(tmp_path / "run").read_manifest()["datasets"]["brain-tumour-mr"]["flows"]
    table = table[(table["dataset"] != "brain-tumour-mr") | (table["flow"] == brain[0]["id"])]
    dice = table[table["metric"] == "dice"].groupby(["dataset", "target", "model"])["value"]
    means = dice.mean().unstack("model")
    assert set(means.index.get_level_values("dataset")) == set(roots)
    margin = means["registration"] - means["full-frame"]
    # Retinal vessels: once the one-prompt template (given, not predicted) is no longer
    # scored, registration has no margin over the floor (issue 12 item 1); elsewhere it has.
    vessels = ("chase-db1", "vessel")
    assert abs(margin[vessels]) < 0.05, means
    assert (margin.drop(vessels) > 0.1).all(), means
    cases = dice.count().unstack("model")["registration"]
    # --limit 4 reads 4 images per dataset; the template image of each target is not a case
    assert cases["wbc"].tolist() == [3, 3] and cases["fundus-optic-disc"].item() == 3
    assert cases["brain-tumour-mr"].item() == 1 and len(brain) <= 4  # a volume is one case
