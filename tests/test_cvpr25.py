"""cvpr25-interactive: the CVPR 2025 interactive 3D challenge's box, clicks and scores.

The clicks the harness makes are compared, step by step, with an independent
port of the challenge's click loop kept here (written from reading
JunMa11/CVPR-MedSegFMCompetition@748e862 ``CVPR25_iter_eval.py`` and
``get_boxes.py``, in their style: global ``np.random.seed(42)``, ``cc3d`` when
installed, a zero-filled padded crop, skimage ``block_reduce``), on synthetic
multi-class volumes with ties and tiny error components, for the weight-free
models and a scripted model; then through the runner, with resume, shards and
merge.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, create, register
from bench.adapters.base import Capabilities
from scipy import integrate, ndimage

from bench.config import load_config
from bench.errors import ConfigError
from bench.plan import make_plan
from bench.prompts import cvpr25, get_protocol, keyed_stream, ledger, make_prompts
from bench.rundir import RunDir
from bench.runner import execute
from bench.shard import merge_runs
from bench.types import Flow, Prediction, Prompt

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench.toml"
PROTOCOL = "cvpr25-interactive"


# ============================================================ the independent port


def port_box(gt: np.ndarray, shift: int) -> dict[str, int]:
    """get_boxes.py mask3D_to_bbox / mask2D_to_bbox, with the random shift given."""
    z_indices, _, _ = np.where(gt > 0)
    z_min, z_max = z_indices.min(), z_indices.max()
    z_indices = np.unique(z_indices)
    z_middle = z_indices[len(z_indices) // 2]
    gt2d = gt[z_middle]
    y_indices, x_indices = np.where(gt2d > 0)
    x_min, x_max = np.min(x_indices), np.max(x_indices)
    y_min, y_max = np.min(y_indices), np.max(y_indices)
    H, W = gt2d.shape  # noqa: N806 (upstream's names)
    scale_y, scale_x = gt2d.shape
    shift_x, shift_y = int(shift * scale_x / 256), int(shift * scale_y / 256)
    return {"z_min": int(z_min), "z_max": int(z_max), "z_mid": int(z_middle),
            "x_min": int(max(0, x_min - shift_x)), "x_max": int(min(W - 1, x_max + shift_x)),
            "y_min": int(max(0, y_min - shift_y)), "y_max": int(min(H - 1, y_max + shift_y))}


def port_components(error: np.ndarray) -> np.ndarray:
    try:
        import cc3d
    except ImportError:  # scipy numbers 26-connected components in the same (raster) order
        return ndimage.label(error, structure=np.ones((3, 3, 3)))[0]
    return cc3d.connected_components(error, connectivity=26)


def port_edt(error_component: np.ndarray, roi_limit: int = 60000000) -> np.ndarray:
    """CVPR25_iter_eval.py compute_edt (CPU branch)."""
    coords = np.argwhere(error_component)
    min_coords = coords.min(axis=0)
    max_coords = coords.max(axis=0) + 1
    crop_shape = max_coords - min_coords
    padding = np.maximum((crop_shape * 0.25).astype(int), 1)
    center_crop = np.zeros(crop_shape + 2 * padding, dtype=np.uint8)
    center_crop[padding[0]:padding[0] + crop_shape[0], padding[1]:padding[1] + crop_shape[1],
                padding[2]:padding[2] + crop_shape[2]] = error_component[
        min_coords[0]:max_coords[0], min_coords[1]:max_coords[1], min_coords[2]:max_coords[2]]
    large_roi = center_crop.shape[0] * center_crop.shape[1] * center_crop.shape[2] > roi_limit
    if large_roi:
        from skimage.measure import block_reduce
        center_crop = block_reduce(center_crop, block_size=(2, 2, 2), func=np.max)
    edt = ndimage.distance_transform_edt(center_crop)
    if large_roi:
        edt = edt.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    cropped = edt[padding[0]:padding[0] + crop_shape[0], padding[1]:padding[1] + crop_shape[1],
                  padding[2]:padding[2] + crop_shape[2]]
    full = np.zeros_like(error_component, dtype=cropped.dtype)
    full[min_coords[0]:max_coords[0], min_coords[1]:max_coords[1],
         min_coords[2]:max_coords[2]] = cropped
    return full


def port_sample_coord(edt: np.ndarray) -> tuple[int, ...]:
    """sample_coord: the global legacy generator seeded with 42 (state restored after)."""
    # Upstream seeds NumPy's global legacy generator (kept here, as in the original).
    state = np.random.get_state()  # noqa: NPY002
    try:
        np.random.seed(42)  # noqa: NPY002
        max_coords = np.argwhere(edt == edt.max())
        return tuple(int(v) for v in max_coords[np.random.choice(len(max_coords))])  # noqa: NPY002
    finally:
        np.random.set_state(state)  # noqa: NPY002


def port_click(segs_cls: np.ndarray, gts_cls: np.ndarray, roi_limit: int = 60000000):
    """One class's refinement click: ((z, y, x), 'fg' | 'bg') or None."""
    error_mask = (segs_cls != gts_cls).astype(np.uint8)
    if np.sum(error_mask) == 0:
        return None
    errors = port_components(error_mask)
    component_sizes = np.bincount(errors.flat)
    component_sizes[0] = 0
    largest_component = errors == np.argmax(component_sizes)
    edt = port_edt(largest_component, roi_limit)
    edt *= largest_component
    if np.sum(edt) == 0:
        edt = largest_component
    center = port_sample_coord(edt)
    assert largest_component[center]
    if gts_cls[center] == 0:
        assert segs_cls[center] == 1
        return center, "bg"
    assert segs_cls[center] == 0
    return center, "fg"


def port_dice(gt: np.ndarray, seg: np.ndarray) -> float:
    return 2 * np.logical_and(gt, seg).sum() / (gt.sum() + seg.sum())


def port_auc(values: list[float]) -> float:
    return float(integrate.cumulative_trapezoid(np.array(values[-5:]), np.arange(5))[-1])


def port_prompts(boxes: dict[str, dict], clicks: dict[str, list], caps: Capabilities
                 ) -> list[Prompt]:
    """The model's input at one step, from the challenge's boxes and clicks, as Prompts."""
    prompts = []
    for target in sorted(boxes):
        b = boxes[target]
        flat = (b["x_min"], b["y_min"], b["x_max"], b["y_max"])
        if "box3d" in caps.prompt_kinds:
            prompts.append(Prompt(target, b["z_mid"], "box3d", box=flat,
                                  z_range=(b["z_min"], b["z_max"])))
        elif "box" in caps.prompt_kinds:
            prompts.append(Prompt(target, b["z_mid"], "box", box=flat))
        kept = [(c, s) for c, s in clicks[target] if caps.negative_clicks or s == "fg"]
        if not caps.several_clicks:
            kept = kept[-1:]
        for z in sorted({c[0] for c, _ in kept}):
            here = [(c, s) for c, s in kept if c[0] == z]
            prompts.append(Prompt(target, z, "point", points=tuple((c[2], c[1]) for c, _ in here),
                                  labels=tuple(int(s == "fg") for _, s in here)))
    return prompts


def port_session(flow: Flow, shifts: dict[str, int], adapter: Adapter, roi_limit=60000000):
    """The challenge's loop (box step + 5 click steps) against ``adapter``."""
    gts = {t: np.asarray(m, dtype=bool) for t, m in flow.masks.items() if np.any(m)}
    boxes = {t: port_box(gt, shifts[t]) for t, gt in gts.items()}
    clicks = {t: [] for t in gts}
    trace = {"boxes": boxes, "clicks": [], "dice": {t: [] for t in gts}}
    segs, view = None, flow.view()
    for it in range(6):
        if it:
            for target in sorted(gts):
                click = port_click(segs[target], gts[target], roi_limit)
                if click is not None:
                    clicks[target].append(click)
                trace["clicks"].append((target, it, click))
        previous = None
        if adapter.capabilities.previous_mask and segs is not None:
            previous = Prediction(masks={t: list(segs[t]) for t in segs})
        answer = adapter.predict_step(view, port_prompts(boxes, clicks, adapter.capabilities),
                                      previous)
        segs = {t: np.stack([np.asarray(m, dtype=bool) for m in answer.masks[t]]) for t in gts}
        for target in gts:
            trace["dice"][target].append(float(port_dice(gts[target], segs[target])))
    return trace


def as_port_clicks(records: list[dict]) -> list[tuple]:
    """The harness's click records in the port's form."""
    out = []
    for r in records:
        click = None if r["z"] is None else ((r["z"], r["y"], r["x"]),
                                             "fg" if r["label"] else "bg")
        out.append((r["target"], r["step"], click))
    return sorted(out, key=lambda c: (c[1], c[0]))


# ============================================================ synthetic volumes and models


def _flow(name: str, masks: dict[str, np.ndarray], spacing=(2.5, 0.9, 1.3)) -> Flow:
    shape = next(iter(masks.values())).shape
    rng = np.random.default_rng(len(name))
    frames = rng.random(shape).astype(np.float32)
    for value, mask in enumerate(masks.values(), start=2):  # give registration some texture
        frames[mask] += value
    return Flow(name, "synthetic", "volume", frames, {t: m.astype(bool) for t, m in masks.items()},
                spacing=spacing)


def volume_ties() -> Flow:
    """Two equal cubes (equal error components) and even-sided cubes (tied EDT maxima)."""
    a = np.zeros((9, 14, 17), bool)
    a[1:5, 2:6, 2:6] = True      # 4x4x4: 8 voxels share the maximum distance
    a[1:5, 8:12, 11:15] = True   # an equal cube elsewhere: equal components
    b = np.zeros_like(a)
    b[6:8, 5:7, 7:9] = True      # 2x2x2: every voxel at distance 1
    return _flow("ties", {"alpha": a, "beta": b})


def volume_tiny() -> Flow:
    """A one-voxel target, a two-voxel diagonal target (26-connected), a larger one."""
    a = np.zeros((7, 11, 13), bool)
    a[3, 5, 6] = True
    b = np.zeros_like(a)
    b[1, 1, 1] = b[2, 2, 2] = True
    c = np.zeros_like(a)
    c[2:6, 4:9, 7:12] = True
    return _flow("tiny", {"dot": a, "pair": b, "slab": c}, spacing=(3.0, 0.7, 0.7))


def volume_border() -> Flow:
    """Targets touching the image border (the padded EDT counts beyond it as outside)."""
    a = np.zeros((6, 10, 21), bool)
    a[0:4, 0:6, 15:21] = True
    b = np.zeros_like(a)
    b[2:6, 6:10, 0:9] = True
    return _flow("border", {"corner": a, "edge": b}, spacing=(5.0, 1.0, 0.6))


def volume_random(seed: int) -> Flow:
    """Three smoothed random blobs, anisotropic, non-cubic; one target absent."""
    rng = np.random.default_rng(seed)
    shape = (8, 19, 26)
    masks = {}
    for i, target in enumerate(("liver", "kidney", "spleen")):
        field = ndimage.gaussian_filter(rng.random(shape), sigma=(1.0, 2.0, 2.0))
        masks[target] = field > np.quantile(field, 0.85 + 0.04 * i)
    masks["absent"] = np.zeros(shape, bool)
    return _flow(f"random{seed}", masks, spacing=(4.0, 0.8, 1.1))


VOLUMES = [volume_ties, volume_tiny, volume_border, lambda: volume_random(1),
           lambda: volume_random(7)]


def _cube(shape, centre, radius):
    region = np.zeros(shape, bool)
    region[tuple(slice(max(0, c - radius), c + radius + 1) for c in centre)] = True
    return region


@register
@dataclass
class _Scripted(Adapter):
    """Test model: the 3D box region at step 0; then, on top of its previous prediction,
    a 3x3x3 cube added at each positive click and removed at each negative one, and one
    stray voxel in the far corner (a tiny error component)."""

    name = "test-cvpr25-scripted"
    hidden = True
    capabilities = Capabilities(prompt_kinds=frozenset({"box3d", "point"}), previous_mask=True)

    def predict(self, flow, prompts):
        return self.predict_step(flow, prompts, None)

    def predict_step(self, flow, prompts, previous):
        shape = np.shape(flow.frames)
        masks = {}
        for target in dict.fromkeys(p.target for p in prompts):
            mine = [p for p in prompts if p.target == target]
            if previous is not None:
                mask = np.stack([np.asarray(m, bool) for m in previous.masks[target]])
            else:
                mask = np.zeros(shape, bool)
                for p in mine:
                    if p.kind == "box3d":
                        x0, y0, x1, y1 = p.box
                        mask[p.z_range[0]:p.z_range[1] + 1, y0:y1 + 1, x0:x1 + 1] = True
                mask[-1, -1, -1] = True
            for p in mine:
                if p.kind != "point":
                    continue
                for (x, y), label in zip(p.points, p.labels, strict=True):
                    cube = _cube(shape, (p.frame, y, x), 1)
                    mask = mask | cube if label else mask & ~cube
            masks[target] = list(mask)
        return Prediction(masks=masks)


@register
@dataclass
class _Stingy(_Scripted):
    """The scripted model declaring that it takes one positive click and no previous mask."""

    name = "test-cvpr25-stingy"
    hidden = True
    capabilities = Capabilities(prompt_kinds=frozenset({"box", "point"}), several_clicks=False,
                                negative_clicks=False, previous_mask=False)

    def predict_step(self, flow, prompts, previous):
        assert previous is None
        assert all(p.kind in ("box", "point") for p in prompts)
        assert all(label == 1 for p in prompts for label in p.labels)
        assert sum(len(p.points) for p in prompts if p.kind == "point") <= len(
            {p.target for p in prompts})
        shape = np.shape(flow.frames)
        masks = {}
        for target in dict.fromkeys(p.target for p in prompts):
            mask = np.zeros(shape, bool)
            for p in prompts:
                if p.target == target and p.kind == "box":
                    x0, y0, x1, y1 = p.box
                    mask[p.frame, y0:y1 + 1, x0:x1 + 1] = True
                elif p.target == target:
                    for x, y in p.points:
                        mask |= _cube(shape, (p.frame, y, x), 1)
            masks[target] = list(mask)
        return Prediction(masks=masks)


def _models():
    registration = create("registration", {"size": 32})
    return [create("empty"), create("full-frame"), registration, create("test-cvpr25-scripted"),
            create("test-cvpr25-stingy")]


def _ledger_boxes(flow: Flow, seed: int = 0) -> list[Prompt]:
    """The box prompts through the ledger (written and read back)."""
    prompts = make_prompts(flow, PROTOCOL, seed=seed)
    rows = ledger.prompt_rows(prompts, dataset=flow.dataset, case=flow.id, protocol=PROTOCOL,
                              seed=seed)
    return ledger.rows_to_prompts(json.loads(json.dumps(rows)), flow)


def _shifts(flow: Flow, seed: int = 0) -> dict[str, int]:
    # The documented stream of the box shift: one integer in 0..5.
    return {t: keyed_stream(seed, flow.dataset, flow.id, t, None, PROTOCOL, "box-shift")
            .integer(6) for t in flow.targets}


# ============================================================ unit checks by hand


def test_tie_break_is_upstreams_seed_42_choice():
    for n in range(1, 70):
        np.random.seed(42)  # noqa: NPY002 (upstream's global legacy generator)
        expected = np.random.choice(n)  # noqa: NPY002
        np.random.seed(7)  # noqa: NPY002
        before = np.random.get_state()[1].copy()  # noqa: NPY002
        assert cvpr25.tie_break(n) == expected
        assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002 (untouched)


def test_auc_is_the_trapezoid_over_the_click_steps_only():
    # steps 0..5; the box step (0.9) is left out: (0 + 1)/2 + 1 + 1 + 1 = 3.5
    assert cvpr25.click_auc([0.9, 0.0, 1.0, 1.0, 1.0, 1.0]) == 3.5
    values = [0.3, 0.1, 0.4, 0.45, 0.8, 0.7]
    assert cvpr25.click_auc(values) == pytest.approx(port_auc(values), abs=1e-12)
    assert cvpr25.click_auc([1.0] * 6) == 4.0


def test_box_by_hand_on_a_non_square_slice():
    mask = np.zeros((9, 300, 600), bool)
    mask[2, 100:110, 200:220] = True
    mask[3, 90:95, 250:260] = True   # labelled slices 2, 3, 7: the middle one is 3
    mask[7, 120:130, 300:301] = True
    box = cvpr25.challenge_box(mask, 5)
    # int(5 * 600 / 256) = 11 px in x, int(5 * 300 / 256) = 5 px in y
    assert box == cvpr25.ChallengeBox(z_min=2, z_max=7, z_mid=3, x_min=239, y_min=85,
                                      x_max=270, y_max=99)
    edge = np.zeros((4, 20, 30), bool)
    edge[1, 0:3, 27:30] = True
    assert cvpr25.challenge_box(edge, 5) == cvpr25.ChallengeBox(1, 1, 1, 27, 0, 29, 2)
    for shift in range(6):
        for make in VOLUMES:
            flow = make()
            for m in flow.masks.values():
                if m.any():
                    got = dataclasses.asdict(cvpr25.challenge_box(m, shift))
                    assert got == port_box(m, shift)


def test_box_shift_draws_cover_0_to_5_from_the_keyed_stream():
    draws = [cvpr25.box_shift(keyed_stream(0, "d", f"c{i}", "t", None, PROTOCOL, "box-shift"))
             for i in range(300)]
    assert set(draws) == set(range(6))


def test_click_by_hand_ties_and_border():
    ref = np.zeros((5, 6, 7), bool)
    ref[1:3, 1:3, 1:3] = True   # 2x2x2: all 8 voxels at distance 1 -> seed-42 choice among 8
    pred = np.zeros_like(ref)
    candidates = np.argwhere(ref)
    np.random.seed(42)  # noqa: NPY002 (upstream's global legacy generator)
    expected = tuple(int(v) for v in candidates[np.random.choice(8)])  # noqa: NPY002
    assert cvpr25.corrective_click(pred, ref) == (*expected, True)
    # Two equal error components: the first in raster order wins.
    ref2 = np.zeros((4, 8, 8), bool)
    ref2[1, 5, 5] = True
    ref2[2, 1, 1] = True
    assert cvpr25.corrective_click(np.zeros_like(ref2), ref2) == (1, 5, 5, True)
    # False foreground touching the border: a negative click, distance 1 from the border.
    pred3 = np.zeros((3, 4, 9), bool)
    pred3[:, :, 6:9] = True
    click = cvpr25.corrective_click(pred3, np.zeros_like(pred3))
    assert click is not None and click[3] is False and pred3[click[:3]]
    assert cvpr25.corrective_click(ref, ref) is None


def test_large_roi_branch_matches_upstreams_block_reduce():
    rng = np.random.default_rng(3)
    for _ in range(12):
        shape = tuple(int(n) for n in rng.integers(5, 16, 3))
        field = ndimage.gaussian_filter(rng.random(shape), 1.5)
        component = field > np.quantile(field, 0.7)
        labels, _ = ndimage.label(component, np.ones((3, 3, 3)))
        component = labels == 1
        ours = cvpr25.padded_edt(component, large_roi=10)
        theirs = port_edt(component, roi_limit=10)
        assert np.array_equal(ours, theirs)
        assert np.array_equal(cvpr25.padded_edt(component), port_edt(component))
        got = cvpr25.corrective_click(np.zeros(shape, bool), component, large_roi=10)
        want = port_click(np.zeros(shape, np.uint8), component.astype(np.uint8), roi_limit=10)
        assert got[:3] == want[0] and got[3] == (want[1] == "fg")


def test_step_prompts_give_a_model_only_what_it_accepts():
    box = Prompt("t", 4, "box3d", box=(1, 2, 3, 4), z_range=(2, 6))
    clicks = {"t": [(3, 5, 6, True), (5, 1, 1, False), (3, 7, 8, True)]}
    full = cvpr25.Accepts(True, True, True, True, True)
    got = cvpr25.step_prompts([box], clicks, full)
    assert got == [box, Prompt("t", 3, "point", points=((6, 5), (8, 7)), labels=(1, 1)),
                   Prompt("t", 5, "point", points=((1, 1),), labels=(0,))]
    flat = cvpr25.Accepts(False, True, False, False, False)
    assert cvpr25.step_prompts([box], clicks, flat) == [
        Prompt("t", 4, "box", box=(1, 2, 3, 4)),
        Prompt("t", 3, "point", points=((8, 7),), labels=(1,))]
    none = cvpr25.Accepts(False, False, True, False, False)
    assert cvpr25.step_prompts([box], {"t": [(5, 1, 1, False)]}, none) == []
    assert "previous prediction" in full.describe() and "no z range" in flat.describe()


def test_image_flows_are_refused_in_one_line():
    flow = Flow("f", "demo-fundus", "image-flow", [np.zeros((4, 5))], {"disc": [np.ones((4, 5))]})
    with pytest.raises(ConfigError, match="needs volumes"):
        make_prompts(flow, PROTOCOL, seed=0)


def test_listed_with_its_card():
    spec = get_protocol(PROTOCOL)
    assert "748e862" in spec.card() and spec.default_kind == "box3d"


# ============================================================ the proof: harness == port


@pytest.mark.parametrize("make", VOLUMES, ids=["ties", "tiny", "border", "random1", "random7"])
def test_sessions_equal_the_port_step_by_step(make):
    flow = make()
    boxes = _ledger_boxes(flow)
    shifts = _shifts(flow)
    present = sorted(t for t, m in flow.masks.items() if np.any(m))
    assert [b.target for b in boxes] == present  # absent targets get no box
    for model in _models():
        accepts = cvpr25.Accepts.of(model.capabilities)
        session = cvpr25.run_session(
            flow, boxes, lambda given, previous, m=model: m.predict_step(flow.view(), given,
                                                                       previous),
            accepts, nsd=None)
        port = port_session(flow, shifts, model)
        for b in boxes:  # step 0: the ledger's box is the challenge's
            want = port["boxes"][b.target]
            assert b.kind == "box3d" and b.frame == want["z_mid"]
            assert b.z_range == (want["z_min"], want["z_max"])
            assert b.box == (want["x_min"], want["y_min"], want["x_max"], want["y_max"])
        assert as_port_clicks(session.clicks) == sorted(port["clicks"],
                                                        key=lambda c: (c[1], c[0])), model.name
        rows = pd.DataFrame(session.rows)
        for target in present:
            dice = rows[(rows.target == target) & (rows.metric == "dice")].sort_values("step")
            assert dice["step"].tolist() == list(range(6))
            assert np.allclose(dice["value"], port["dice"][target], atol=1e-12)
            case = rows[(rows.target == target) & rows["step"].isna()].set_index("metric")
            assert case.loc["dice_auc", "value"] == pytest.approx(port_auc(port["dice"][target]))
            assert case.loc["dice_final", "value"] == pytest.approx(port["dice"][target][-1])
            assert case.loc["nsd_auc", "status"] == "unavailable"  # nsd=None here
        assert len(session.seconds) == 6


def test_the_proof_exercises_ties_tiny_components_and_negative_clicks():
    flow = volume_ties()
    session = cvpr25.run_session(flow, _ledger_boxes(flow),
                                 lambda g, p: create("empty").predict(flow.view(), g),
                                 cvpr25.Accepts.of(create("empty").capabilities), nsd=None)
    first = {c["target"]: c for c in session.clicks if c["step"] == 1}
    # alpha: two equal cubes, the first in raster order; its 8 central voxels tie
    assert (first["alpha"]["z"], first["alpha"]["y"], first["alpha"]["x"]) in {
        (z, y, x) for z in (2, 3) for y in (3, 4) for x in (3, 4)}
    labels = {c["label"] for c in cvpr25.run_session(
        flow, _ledger_boxes(flow), lambda g, p: create("full-frame").predict(flow.view(), g),
        cvpr25.Accepts.of(create("full-frame").capabilities), nsd=None).clicks}
    assert labels == {0}  # full-frame: over-segmentation only -> negative clicks
    scripted = create("test-cvpr25-scripted")
    tiny = volume_tiny()
    session = cvpr25.run_session(tiny, _ledger_boxes(tiny),
                                 lambda g, p: scripted.predict_step(tiny.view(), g, p),
                                 cvpr25.Accepts.of(scripted.capabilities), nsd=None)
    assert {c["label"] for c in session.clicks} >= {0, 1}


def test_nsd_rows_follow_the_challenge_gate():
    nsd = cvpr25.load_nsd()
    if nsd is None:
        pytest.skip("bench.surface_dice (nsd_deepmind) is not there yet")
    sd = pytest.importorskip("surface_distance")
    flow = volume_random(7)
    model = create("test-cvpr25-scripted")
    session = cvpr25.run_session(flow, _ledger_boxes(flow),
                                 lambda g, p: model.predict_step(flow.view(), g, p),
                                 cvpr25.Accepts.of(model.capabilities), nsd=nsd)
    rows = pd.DataFrame(session.rows)
    steps = rows[rows["step"].notna()]
    compared = gated = 0
    for step, group in steps.groupby("step"):
        dice = group[group.metric == "dice"].set_index("target")["value"]
        for target, value in group[group.metric == "nsd_deepmind"].set_index("target")[
                "value"].items():
            if dice.mean() <= 0.2:
                assert value == 0.0
                gated += 1
                continue
            pred = np.stack(session.prediction.masks[target]) if step == 5 else None
            if pred is not None:
                ref = flow.masks[target]
                dist = sd.compute_surface_distances(ref, pred, flow.spacing)
                assert value == pytest.approx(sd.compute_surface_dice_at_tolerance(dist, 2.0),
                                              abs=1e-6)
                compared += 1
    assert compared == 3 and gated > 0  # both branches of the rule ran
    # A model below the gate: every NSD of the case is 0, whatever its own Dice.
    empty = cvpr25.run_session(flow, _ledger_boxes(flow),
                               lambda g, p: create("full-frame").predict(flow.view(), g),
                               cvpr25.Accepts.of(create("full-frame").capabilities), nsd=nsd)
    values = [r for r in empty.rows if r["metric"] == "nsd_deepmind"]
    assert values and all(r["value"] == 0.0 and "challenge rule" in r["message"] for r in values)


# ============================================================ through the runner


def _plan(models=("empty", "test-cvpr25-scripted")):
    plan = make_plan(load_config(CONFIG), "cvpr25", models=list(models), limit=1)
    registration = {**plan.model_settings.get("registration", {}), "size": 32}
    return dataclasses.replace(plan, model_settings={**plan.model_settings,
                                                     "registration": registration})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("cvpr25")
    plan = _plan()
    outcome = execute(plan, base / "whole")
    assert outcome.units_failed == 0
    return base, plan


def test_runner_clicks_and_scores_equal_the_port_on_demo_ct(run):
    from bench.readers import load_card, read_flows

    base, _ = run
    rundir = RunDir(base / "whole")
    flow = next(read_flows(load_card(ROOT / "datasets" / "demo-ct.toml"), None, 1))
    rows = rundir.read_ledger()
    assert {r["kind"] for r in rows} == {"box3d"} and all("z_range" in r for r in rows)
    table = rundir.read_metrics()
    assert "step" in table.columns
    for path in rundir.unit_paths():
        unit = rundir.read_unit(path)
        model = create(unit.model)
        port = port_session(flow, _shifts(flow), model)
        assert as_port_clicks(unit.clicks) == sorted(port["clicks"], key=lambda c: (c[1], c[0]))
        assert len(unit.step_seconds) == 6
        assert unit.notes["cvpr25_given"] == cvpr25.Accepts.of(model.capabilities).describe()
        mine = table[(table.model == unit.model) & (table.metric == "dice")
                     & table["step"].notna()]
        for target, values in port["dice"].items():
            got = mine[mine.target == target].sort_values("step")["value"].to_numpy()
            assert np.allclose(got, values, atol=1e-9)
    # other rows: no step; the aggregates never mix per-step rows in
    summary = json.loads((base / "whole" / "summary.json").read_text()) if (
        base / "whole" / "summary.json").exists() else None
    if summary is not None:
        assert {a["metric"] for a in summary["aggregates"]} >= {"dice_auc", "dice_final"}


@pytest.mark.slow
def test_runner_full_frame_and_registration_clicks_equal_the_port(tmp_path):
    from bench.readers import load_card, read_flows

    plan = _plan(("full-frame", "registration"))
    assert execute(plan, tmp_path / "run").units_failed == 0
    rundir = RunDir(tmp_path / "run")
    flow = next(read_flows(load_card(ROOT / "datasets" / "demo-ct.toml"), None, 1))
    units = {u.model: u for u in (rundir.read_unit(p) for p in rundir.unit_paths())}
    for model in (create("full-frame"), create("registration", {"size": 32})):
        port = port_session(flow, _shifts(flow), model)
        assert as_port_clicks(units[model.name].clicks) == sorted(
            port["clicks"], key=lambda c: (c[1], c[0])), model.name


def test_report_shows_the_step_curves(run):
    from bench.report import write_report

    base, _ = run
    write_report(base / "whole", ("md",), gallery=False)
    text = (base / "whole" / "report.md").read_text(encoding="utf-8")
    assert "## Dice and NSD against the interaction step" in text
    assert (base / "whole" / "figures" / "dice_nsd_vs_step.png").exists()
    assert "test-cvpr25-scripted: the 3D box" in text and "empty: the middle-slice 2D box" in text
    steps = json.loads((base / "whole" / "summary.json").read_text())["steps"]
    dice = [r for r in steps["curve"] if r["metric"] == "dice" and r["model"] == "empty"]
    assert [r["step"] for r in dice] == list(range(6)) and all(r["mean"] == 0 for r in dice)
    assert {r["model"] for r in steps["seconds_per_step"]} == {"empty", "test-cvpr25-scripted"}


def test_resume_rebuilds_the_same_step_rows(run, tmp_path):
    base, plan = run
    copy = tmp_path / "resumed"
    shutil.copytree(base / "whole", copy)
    victim = sorted((copy / "units").glob("*.json"))[0]
    victim.unlink()
    (copy / "metrics.csv").unlink()
    outcome = execute(plan, copy, resume=True)
    assert outcome.units_run == 1 and outcome.units_failed == 0
    assert (copy / "metrics.csv").read_bytes() == (base / "whole" / "metrics.csv").read_bytes()
    RunDir(copy).check_metrics()


def test_shards_merge_to_the_same_step_rows(run, tmp_path):
    base, plan = run
    for i in range(2):
        execute(plan, tmp_path / f"shard{i}", shard=f"{i}/2")
    outcome = merge_runs(tmp_path / "merged", [tmp_path / f"shard{i}" for i in range(2)])
    assert outcome.missing == [] and outcome.units_merged == 2
    merged = (tmp_path / "merged" / "metrics.csv").read_bytes()
    assert merged == (base / "whole" / "metrics.csv").read_bytes()
    table = RunDir(tmp_path / "merged").read_metrics()
    assert table["step"].notna().sum() == 2 * 2 * 5 * 6  # models x metrics x targets x steps
    clicks = {p.name: json.loads(p.read_text())["clicks"]
              for p in (tmp_path / "merged" / "units").glob("*.json")}
    assert clicks == {p.name: json.loads(p.read_text())["clicks"]
                      for p in (base / "whole" / "units").glob("*.json")}


def test_check_and_compare_read_step_tables(run, tmp_path):
    from bench.check import run_means
    from bench.compare import compare_runs

    base, _ = run
    means = run_means(base / "whole")
    assert {"dice_auc", "nsd_auc", "dice_final", "dice"} <= set(means["metric"])
    dice = means[(means.metric == "dice") & (means.model == "empty")]
    assert (dice["n"] == 1).all()  # one case per target: the step rows are not cases
    result = compare_runs(base / "whole", base / "whole")
    dice = result[result.metric == "dice"]
    # One pair per case and target (6 step rows each would pair 36 times without the filter).
    assert len(dice) == 2 * 5 and (dice["n_pairs"] == 1).all() and (dice["difference"] == 0).all()
    assert {"dice_auc", "nsd_auc"} <= set(result["metric"])
    # the case metrics are metric names of `bench compare --metrics` (refused before)
    from bench.cli import main

    out = tmp_path / "compare.csv"
    assert main(["compare", str(base / "whole"), str(base / "whole"), "--model-a", "empty",
                 "--model-b", "test-cvpr25-scripted", "--metrics", "dice_auc",
                 "--out", str(out)]) == 0
    table = RunDir(base / "whole").read_metrics()
    compared = pd.read_csv(out)
    assert set(compared.metric) == {"dice_auc"}
    for row in compared.itertuples():
        own = table[(table.metric == "dice_auc") & (table.target == row.target)]
        # by hand: the paired difference of one case is the difference of its two rows
        expected = (own[own.model == "test-cvpr25-scripted"].value.mean()
                    - own[own.model == "empty"].value.mean())
        assert row.difference == pytest.approx(expected, abs=1e-9)
