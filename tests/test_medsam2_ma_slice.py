"""``medsam2-ma`` under ``namesakes``: the prompted slice and the CT window (issue 20).

Ma et al. prompt the key slice of each lesion (``medsam2_infer_3D_CT.py``) or, where no key
slice is annotated, the middle slice of the lesion ("simulate a box prompt on middle slice",
bowang-lab/MedSAM2@332f30d README); the ``namesakes`` suite prompts the middle slice of each
target's z-extent (``template = "middle"``, one ledger for every model). Their window comes
from the data (each lesion's DICOM window); here the dataset card's window, or an explicit
``window_level`` / ``window_width`` (their LUNA25 script's -750 / 1500, say). The expected
slices and grey levels below are computed by hand or with plain NumPy, never with the
functions under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import medsam2_ma as ma
from bench.adapters.sam2.adapter import SAM2Adapter

from bench.config import load_config
from bench.errors import ConfigError
from bench.prompts import ledger
from bench.prompts.protocols import make_prompts
from bench.readers.geometry import window_intensities
from bench.types import Flow, FlowFrames, Prediction, Prompt

ROOT = Path(__file__).resolve().parents[1]

# -------------------------------------------------------------- the prompted slice


def _namesakes_params() -> dict:
    """The namesakes suite's protocol parameters, as bench.toml sets them."""
    suite = load_config(ROOT / "bench.toml").settings.suites["namesakes"]
    assert suite.protocol == "one-prompt"
    return dict(suite.protocol_params)


def _anisotropic_flow() -> Flow:
    """9 slices of 13 x 6 pixels, spacing (4.0, 0.7, 1.3) mm, three targets.

    ``organ`` fills slices 2-7 (six slices: the middle pair is 4 and 5);
    ``split`` is on slices 1, 2, 7, 8 (its centre, 4, is empty; slice 2 is
    nearer than 7); ``tie`` is on slices 0, 1, 5, 6 (centre 3, slices 1 and 5
    both 2 away). Each slice's mask has a different box, so a box taken from
    the wrong slice shows.
    """
    shape = (9, 13, 6)
    rng = np.random.default_rng(3)
    frames = rng.normal(0.0, 1.0, shape).astype(np.float32)
    masks = {name: np.zeros(shape, dtype=bool) for name in ("organ", "split", "tie")}
    for z in range(2, 8):
        masks["organ"][z, z:z + 4, 1:1 + z % 3 + 2] = True
    for z in (1, 2, 7, 8):
        masks["split"][z, 8:8 + z % 4 + 1, 3:5] = True
    for z in (0, 1, 5, 6):
        masks["tie"][z, 0:2, z % 5:z % 5 + 1] = True
    return Flow("vol", "synthetic", "volume", frames, masks, spacing=(4.0, 0.7, 1.3))


def _expected_slice(mask: np.ndarray) -> int:
    """Middle of the z-extent; if the target is absent there, the nearest slice holding it
    (the lower one on a tie). Written out with plain NumPy, independently of the protocol."""
    present = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    centre = (int(present.min()) + int(present.max())) // 2
    if centre in present:
        return centre
    distance = np.abs(present - centre)
    return int(present[distance == distance.min()].min())


def _box(mask2d: np.ndarray) -> list[int]:
    rows, cols = np.nonzero(mask2d)
    return [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]


def test_namesakes_prompts_the_middle_slice_of_each_targets_z_extent():
    params = _namesakes_params()
    assert params["template"] == "middle" and params["prompt_kind"] == "box"
    flow = _anisotropic_flow()
    prompts = make_prompts(flow, "one-prompt", seed=0, params=params)
    rows = ledger.prompt_rows(prompts, dataset=flow.dataset, case=flow.id,
                              protocol="one-prompt", seed=0)
    by_target = {row["target"]: row for row in rows}
    assert set(by_target) == {"organ", "split", "tie"}
    # Hand-derived slices (see _anisotropic_flow), and the same from the masks.
    assert {t: row["frame"] for t, row in by_target.items()} == {"organ": 4, "split": 2,
                                                                 "tie": 1}
    for target, row in by_target.items():
        mask = flow.masks[target]
        assert row["frame"] == _expected_slice(mask)
        assert row["kind"] == "box" and row["box"] == _box(mask[row["frame"]])


def test_the_middle_slice_does_not_depend_on_the_seed():
    params = _namesakes_params()
    flow = _anisotropic_flow()
    frames = {seed: [p.frame for p in make_prompts(flow, "one-prompt", seed=seed,
                                                   params=params)] for seed in (0, 1, 7)}
    assert frames[0] == frames[1] == frames[7] == [4, 2, 1]  # organ, split, tie


def test_namesakes_demo_ledger_prompts_the_middle_slices(tmp_path):
    # End to end: the ledger a namesakes run writes on demo-ct (24 x 128 x 128, spacing
    # (5, 3, 3) mm) holds, for every volume and target, the middle slice of its z-extent.
    from bench.cli import main
    from bench.rundir import RunDir

    out = tmp_path / "run"
    assert main(["run", "--suite", "namesakes", "--datasets", "demo-ct", "--limit", "1",
                 "--models", "full-frame", "--out", str(out), "--no-cache"]) == 0
    rows = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert rows and {row["dataset"] for row in rows} == {"demo-ct"}
    flows = {}
    for row in rows:
        flow = flows.setdefault(row["case"], RunDir(out).read_flow("demo-ct", row["case"]))
        mask = np.stack([np.asarray(m, dtype=bool) for m in flow.masks[row["target"]]])
        assert mask.shape[0] == 24 and mask.shape[1:] == (128, 128)
        assert row["frame"] == _expected_slice(mask), row["target"]
        assert row["box"] == _box(mask[row["frame"]])
    # The targets of demo-ct do not all start on one slice: "first" would differ somewhere.
    firsts = [int(np.flatnonzero(np.stack([np.asarray(m) for m in
                                           flows[row["case"]].masks[row["target"]]])
                                 .reshape(24, -1).any(axis=1))[0]) for row in rows]
    assert firsts != [row["frame"] for row in rows]
    assert (pd.read_csv(out / "metrics.csv")["status"] == "ok").any()


# ------------------------------------------------------------------------ the window

# Hounsfield units on a non-square 2 x 2 x 3 volume; the hand-computed grey levels below.
HU = np.array([[[-1000.0, -125.0, -25.0], [75.0, 175.0, 275.0]],
               [[1000.0, 0.0, 75.0], [-125.0, -25.0, 175.0]]])
# Card window [-125, 275]: clip, then (x + 125) / 400 * 255 of the clipped volume's own
# range (here the window's, both ends occur), truncated:
# -125 -> 0, -25 -> 63.75, 0 -> 79.6875, 75 -> 127.5, 175 -> 191.25, 275 -> 255.
CARD_EXPECTED = np.array([[[0, 0, 63], [127, 191, 255]],
                          [[255, 79, 127], [0, 63, 191]]], dtype=np.uint8)


def _carded(hu: np.ndarray) -> FlowFrames:
    """A CT flow as a volume reader gives it with the card's window [-125, 275]."""
    windowed, window = window_intensities(hu.astype(np.float32), [-125, 275], None, "card")
    assert window == [-125.0, 275.0]
    return FlowFrames("vol", "synthetic", "volume", windowed, spacing=(5.0, 0.8, 0.8),
                      modality="CT", source_frames=hu.astype(np.float32))


def _mapped_by_adapter(flow: FlowFrames, monkeypatch, **settings) -> np.ndarray:
    """The frames the adapter hands to SAM 2 after its intensity step (no model run)."""
    seen = {}

    def capture(self, mapped, prompts):
        seen["frames"] = np.asarray(mapped.frames)
        empty = [np.zeros(np.shape(f)[:2], dtype=bool) for f in mapped.frames]
        return Prediction(masks={p.target: empty for p in prompts})

    monkeypatch.setattr(SAM2Adapter, "predict", capture)
    adapter = ma.MedSAM2MaAdapter(settings={"device": "cpu", **settings})
    adapter.predict(flow, [Prompt("t", 0, "box", box=(0, 0, 2, 1))])
    return seen["frames"]


def test_default_window_is_the_cards_window_not_40_400(monkeypatch):
    mapped = _mapped_by_adapter(_carded(HU), monkeypatch)
    assert mapped.dtype == np.uint8
    np.testing.assert_array_equal(mapped, CARD_EXPECTED)
    # The old default, 40 / 400 ([-160, 240]), maps -25 HU to 86, not 63.
    assert int((-25 + 160) / 400 * 255) == 86 != CARD_EXPECTED[0, 0, 2]


def test_an_explicit_window_starts_from_hounsfield_units(monkeypatch):
    # Their LUNA25 script's lung window: level -750, width 1500 -> [-1500, 0]; both ends
    # occur, so x -> (x + 1500) / 1500 * 255, truncated. The card's window must not
    # stand in for it: the source HU are windowed, not the card's [0, 1] frames.
    hu = np.array([[[-2000.0, -1500.0, -1125.0], [-750.0, -375.0, 0.0]],
                   [[40.0, -1125.0, -750.0], [-375.0, 1000.0, -1500.0]]])
    expected = np.array([[[0, 0, 63], [127, 191, 255]],
                         [[255, 63, 127], [191, 255, 0]]], dtype=np.uint8)
    mapped = _mapped_by_adapter(_carded(hu), monkeypatch, window_level=-750.0,
                                window_width=1500.0)
    np.testing.assert_array_equal(mapped, expected)


def test_a_card_without_a_window_is_refused_in_one_line(monkeypatch):
    raw = FlowFrames("vol", "nowindow", "volume", HU.astype(np.float32), modality="CT")
    with pytest.raises(ConfigError) as caught:
        _mapped_by_adapter(raw, monkeypatch)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("[models.medsam2-ma]: ")
    assert "dataset 'nowindow'" in message and "window = [low, high]" in message
    assert "window_level and window_width" in message
    # With a window set, the same volume runs: 40 / 400 clips to [-160, 240], whose ends
    # occur (-1000 and 1000), so x -> (x + 160) / 400 * 255: -25 -> 86.0625, 0 -> 102.
    mapped = _mapped_by_adapter(raw, monkeypatch, window_level=40.0, window_width=400.0)
    assert mapped[0, 0, 2] == 86 and mapped[1, 0, 1] == 102


@pytest.mark.parametrize(("settings", "named"), [
    ({"window_level": -750.0}, "window_level without window_width"),
    ({"window_width": 1500.0}, "window_width without window_level"),
])
def test_half_a_window_is_refused(settings, named):
    with pytest.raises(ConfigError, match=rf"^\[models.medsam2-ma\]: {named}: give both"):
        ma.MedSAM2MaAdapter(settings=settings)


def test_bench_toml_sets_no_window_for_medsam2_ma():
    table = load_config(ROOT / "bench.toml").models["medsam2-ma"]
    assert "window_level" not in table and "window_width" not in table
    options = ma.MedSAM2MaAdapter(settings=table).options
    assert options.window_level is None and options.window_width is None
