"""``alpnet-protocol`` against an independent port of SSL-ALPNet's evaluation.

The port below follows cheng-01037/Self-supervised-Fewshot-Medical-Image-
Segmentation@a3029d8 line by line, in its own structure: the circular scan
list and fixed fold separators of ``ManualAnnoDatasetv2.get_scanids``, the
part percentages and ``_zlist[int(pct * len(_zlist))]`` of ``get_support``,
the ``part_assign`` of ``common.ValidationDataset`` (a ZeroDivisionError
giving part 0), the ``z_margin`` test of ``validation.py`` and the per-scan
TP/FP/FN sums of ``util/metric.py`` ``get_mDice``. Nothing here calls the
code under test to get an expected value.

The end-to-end runs use a test model, ``support-paste``: in-context, it
predicts each query slice as the mask of the support slice it is given, so
its Dice depends on exactly which support slice serves which query slice.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, Capabilities, create, register

from bench.config import load_config
from bench.errors import ConfigError, DataError
from bench.plan import make_plan
from bench.prompts import alpnet
from bench.prompts.interchange import export_prompts
from bench.prompts.ledger import read_ledger
from bench.readers import read_flows
from bench.readers.cards import load_card
from bench.runner import execute
from bench.types import FlowFrames, Prediction, Prompt

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench.toml"
SHOWN: list[dict] = []


# ---------------------------------------------------------------- the port (upstream's rules)


class CircularList(list):
    """Upstream's scan list: slicing past the end wraps around."""

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i % len(self)] for i in range(index.start, index.stop)]
        return super().__getitem__(index)


def port_fold(scan_names, eval_fold, sep=(0, 6, 12, 18, 24, 30), nsup=1):
    """(queries, support) of one fold: val_ids = pids[sep[f] : sep[f+1] + nsup], support last."""
    pids = CircularList(sorted((re.findall(r"\d+", name)[-1] for name in scan_names), key=int))
    val_ids = pids[sep[eval_fold]: sep[eval_fold + 1] + nsup]
    support = val_ids[-nsup:]
    return [pid for pid in val_ids if pid not in support], support[0]


def port_pcts(npart):
    if npart == 1:
        return [0.5]
    half_part = 1 / (npart * 2)
    part_interval = (1.0 - 1.0 / npart) / (npart - 1)
    return [half_part + part_interval * ii for ii in range(npart)]


def port_support_z(zlist, npart):
    return [zlist[int(pct * len(zlist))] for pct in port_pcts(npart)]


def port_part(z_id, z_min, z_max, npart):
    try:
        part_assign = int((z_id - z_min) // ((z_max - z_min) / npart))
    except ZeroDivisionError:
        part_assign = 0
    if part_assign < 0:
        part_assign = 0
    elif part_assign >= npart:
        part_assign = npart - 1
    return part_assign


def port_scan_dice(pred_by_z, label, z_margin=0):
    """One scan: TP/FP/FN summed over the slices within the class's z-extent; 3D Dice."""
    zlist = [z for z in range(len(label)) if label[z].any()]
    z_min, z_max = min(zlist), max(zlist)
    tp = fp = fn = 0
    for z, pred in pred_by_z.items():
        if z - z_max <= z_margin and z - z_min >= -z_margin:
            tp += int(np.sum(pred & label[z]))
            fp += int(np.sum(pred & ~label[z]))
            fn += int(np.sum(~pred & label[z]))
    return 2 * tp / (2 * tp + fp + fn)


# ---------------------------------------------------------------- rules, one by one


def test_support_volume_of_each_fold_is_upstreams_on_sabs_names():
    # 30 scans with gaps in their numbers, in a shuffled listing: lexicographic order
    # ("img2" after "img10") or listing order would pick other supports
    numbers = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
               33, 34, 35, 36, 37, 38, 39, 40]
    names = [f"img{n}" for n in numbers]
    random.Random(3).shuffle(names)
    mapping = alpnet.support_cases(names, _params())
    for fold in range(5):
        queries, support = port_fold(names, fold)
        for query in queries:
            assert mapping[f"img{int(query)}"] == f"img{int(support)}"
    assert sorted(mapping) == sorted(names)  # every scan is a query once


def test_support_slices_and_parts_match_upstream():
    rng = np.random.default_rng(0)
    for npart in (1, 3, 5, 7):
        for _ in range(200):
            zlist = sorted(rng.choice(120, size=int(rng.integers(1, 40)), replace=False).tolist())
            assert alpnet.support_slices(zlist, npart) == port_support_z(zlist, npart)
            n = int(rng.integers(1, 60))
            z_min = int(rng.integers(0, n))
            z_max = int(rng.integers(z_min, n))
            ranges = alpnet.part_ranges(n, z_min, z_max, npart)
            served = {z: part for part, (low, high) in ranges.items()
                      for z in range(low, high + 1)}
            assert served == {z: port_part(z, z_min, z_max, npart) for z in range(n)}


def test_three_parts_take_one_sixth_half_and_five_sixths():
    # by hand: 12 slices containing the class -> indices int(2.0), int(6.0), int(10.0)
    zlist = list(range(40, 52))
    assert alpnet.support_slices(zlist, 3) == [42, 46, 50]
    # extent 10..19: parts of width 3; 19 -> int(9 // 3) = 3, clipped to 2
    assert [alpnet.query_part(z, 10, 19, 3) for z in (9, 10, 12, 13, 15, 16, 19, 25)] == \
        [0, 0, 0, 1, 1, 2, 2, 2]


def test_explicit_support_case_and_refusals():
    params = _params(support_case="b7")
    assert alpnet.support_cases(["a1", "b7", "c3"], params) == {"a1": "b7", "c3": "b7"}
    with pytest.raises(ValueError, match="support_case 'zz' is not a case"):
        alpnet.support_cases(["a1", "b7"], _params(support_case="zz"))
    with pytest.raises(ValueError, match="at least two volumes"):
        alpnet.support_cases(["a1"], _params())
    # the fold rule needs an order: no number, or one number twice, is refused, not guessed
    with pytest.raises(ValueError, match="case 'beta' has no number"):
        alpnet.support_cases(["a1", "beta", "c3"], _params())
    with pytest.raises(ValueError, match="'a/img7' and 'b/img7' both end in number 7"):
        alpnet.support_cases(["a/img7", "b/img7", "c8"], _params())
    assert alpnet.support_cases(["alpha", "beta"], _params(support_case="alpha")) == \
        {"beta": "alpha"}


def test_even_npart_and_one_fold_are_refused():
    config = load_config(CONFIG)
    with pytest.raises(ConfigError, match="npart.*odd"):
        make_plan(config, "alpnet", models=["full-frame"], protocol_params={"npart": 2})
    with pytest.raises(ConfigError, match="folds"):
        make_plan(config, "alpnet", models=["full-frame"], protocol_params={"folds": 1})


def test_models_that_need_a_prompt_in_the_query_are_refused():
    config = load_config(CONFIG)
    with pytest.raises(ConfigError, match="'registration' cannot run alpnet-protocol.*universeg"):
        make_plan(config, "alpnet", models=["registration"])
    with pytest.raises(ConfigError, match="'demo-cells' holds image flows"):
        make_plan(config, "alpnet", models=["full-frame"], datasets=["demo-cells"])
    with pytest.raises(ConfigError, match="'kidneys' is not a target"):
        make_plan(config, "alpnet", models=["full-frame"],
                  protocol_params={"targets": ["liver", "kidneys"]})


# ---------------------------------------------------------------- end to end


@register
@dataclass
class SupportPaste(Adapter):
    """In-context test model: each query slice is the mask of the support slice serving it."""

    name = "support-paste"
    description = "test: pastes the support mask"
    capabilities = Capabilities(prompt_kinds=frozenset({alpnet.KIND}), in_context=True)
    hidden = True

    def predict(self, flow, prompts):
        masks = {}
        for prompt in prompts:
            SHOWN.append({"flow": flow.id, "target": prompt.target, "source": prompt.source,
                          "frame": prompt.frame, "z_range": prompt.z_range,
                          "image": prompt.image, "mask": prompt.mask})
            target = masks.setdefault(prompt.target,
                                      [np.zeros(f.shape, bool) for f in flow.frames])
            for z in range(prompt.z_range[0], prompt.z_range[1] + 1):
                target[z] = prompt.mask.copy()
        return Prediction(masks=masks)


CARD = """name = "alp-ct"
title = "alpnet test volumes"
reader = "demo"
kind = "volume"
modality = "CT (synthetic)"
targets = ["liver", "spleen", "kidney_left", "kidney_right", "aorta"]
synthetic = true
expected_cases = 11

[options]
generator = "ct"
flows = 11
frames = 20
size = 64
seed = 0
spacing = [4.0, 2.0, 1.5]
window = [-160, 240]
"""
# The fold rule by hand for ct-v0 .. ct-v10 sorted by number, 5 folds: bounds 0, 2, 4, 6, 8, 11.
SUPPORT_OF = {"ct-v0": "ct-v2", "ct-v1": "ct-v2", "ct-v2": "ct-v4", "ct-v3": "ct-v4",
              "ct-v4": "ct-v6", "ct-v5": "ct-v6", "ct-v6": "ct-v8", "ct-v7": "ct-v8",
              "ct-v8": "ct-v0", "ct-v9": "ct-v0", "ct-v10": "ct-v0"}
CLASSES = ["liver", "spleen", "kidney_left", "kidney_right"]


def _params(**given):
    from bench.prompts import get_protocol

    return get_protocol(alpnet.PROTOCOL).settings(given)


def _config(tmp: Path, predictions: Path | None = None):
    cards = tmp / "cards"
    cards.mkdir(exist_ok=True)
    (cards / "alp-ct.toml").write_text(CARD)
    text = CONFIG.read_text()
    if predictions is not None:
        text = text.replace('folder = ""                    # required when the model is run',
                            f'folder = "{predictions.as_posix()}"')
        assert str(predictions.as_posix()) in text
    path = tmp / "bench.toml"
    path.write_text(text)
    return load_config(path, cards=[cards])


def _run(tmp: Path, name: str, models, predictions=None, **params):
    config = _config(tmp, predictions)
    plan = make_plan(config, "alpnet", models=models, datasets=["alp-ct"],
                     protocol_params=params or None)
    execute(plan, tmp / name)
    return tmp / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alpnet")
    SHOWN.clear()
    three = _run(tmp, "npart3", ["support-paste", "full-frame"])
    shown = list(SHOWN)
    one = _run(tmp, "npart1", ["support-paste"], npart=1)
    saved = _run(tmp, "saved", ["predictions"],
                 predictions=three / "predictions" / "support-paste" / "seed0")
    flows = {f.id: f for f in read_flows(load_card(tmp / "cards" / "alp-ct.toml"))}
    return {"three": three, "one": one, "saved": saved, "shown": shown, "flows": flows}


def _dice(run: Path, model: str) -> dict[tuple[str, str], float]:
    table = pd.read_csv(run / "metrics.csv")
    rows = table[(table.model == model) & (table.metric == "dice") & (table.status == "ok")]
    return {(r.case, r.target): float(r.value) for r in rows.itertuples()}


def _expected(flows, npart):
    """The port: support-paste's Dice per (query, class), as upstream would score it."""
    expected = {}
    for query, source in SUPPORT_OF.items():
        for target in CLASSES:
            label = np.asarray(flows[query].masks[target], bool)
            support = np.asarray(flows[source].masks[target], bool)
            zq = [z for z in range(len(label)) if label[z].any()]
            zs = [z for z in range(len(support)) if support[z].any()]
            if not zq or not zs:
                continue
            slices = port_support_z(zs, npart)
            pred = {z: support[slices[port_part(z, min(zq), max(zq), npart)]]
                    for z in range(len(label))}
            expected[(query, target)] = port_scan_dice(pred, label)
    return expected


@pytest.mark.parametrize(("name", "npart"), [("three", 3), ("one", 1)])
def test_scores_equal_the_port(runs, name, npart):
    got = _dice(runs[name], "support-paste")
    expected = _expected(runs["flows"], npart)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_npart_changes_the_scores(runs):
    three, one = _dice(runs["three"], "support-paste"), _dice(runs["one"], "support-paste")
    assert sum(abs(three[k] - one[k]) > 1e-6 for k in three) >= 10


def test_each_query_is_shown_its_supports_slices(runs):
    flows = runs["flows"]
    seen = {(s["flow"], s["target"], s["z_range"]): s for s in runs["shown"]}
    for (query, target, _), shown in seen.items():
        source = flows[SUPPORT_OF[query]]
        assert shown["source"] == source.id
        assert np.array_equal(shown["image"], source.frames[shown["frame"]])
        assert np.array_equal(shown["mask"], np.asarray(source.masks[target][shown["frame"]]))
    # every slice of every query is served once per class it is scored for
    for query in SUPPORT_OF:
        for target in CLASSES:
            ranges = sorted(z for (q, t, z) in seen if q == query and t == target)
            if ranges:
                covered = [z for low, high in ranges for z in range(low, high + 1)]
                assert covered == list(range(len(flows[query].frames)))


def test_full_frame_is_scored_on_the_class_extent_only(runs):
    flows = runs["flows"]
    got = _dice(runs["three"], "full-frame")
    for (query, target), value in got.items():
        label = np.asarray(flows[query].masks[target], bool)
        zlist = [z for z in range(len(label)) if label[z].any()]
        slab_pixels = (max(zlist) - min(zlist) + 1) * label[0].size
        # by hand: 2|G| / (|G| + every pixel of the slab); metrics.csv keeps 10 decimals
        assert value == pytest.approx(2 * label.sum() / (label.sum() + slab_pixels), abs=1e-9)


def test_classes_without_support_or_query_are_not_scored_and_say_why(runs):
    table = pd.read_csv(runs["three"] / "metrics.csv")
    spleen = table[(table.target == "spleen") & (table.metric == "dice")
                   & (table.model == "support-paste")]
    reasons = {r.case: r.message for r in spleen.itertuples() if r.status == "not_scored"}
    # ct-v4 and ct-v5 have no spleen; ct-v4 is the support of ct-v2 and ct-v3
    assert set(reasons) == {"ct-v2", "ct-v3", "ct-v4", "ct-v5"}
    assert "absent from the support volume (ct-v4)" in reasons["ct-v2"]
    assert "absent from this volume" in reasons["ct-v5"]
    assert "aorta" not in set(table.target)  # not among the suite's classes


def test_saved_predictions_score_as_the_model_did(runs):
    assert _dice(runs["saved"], "predictions") == _dice(runs["three"], "support-paste")


def test_ledgers_are_byte_identical_and_not_exportable(runs):
    first = (runs["three"] / "prompts.jsonl").read_bytes()
    assert first == (runs["saved"] / "prompts.jsonl").read_bytes()
    rows = read_ledger(runs["three"] / "prompts.jsonl")
    assert {r["kind"] for r in rows} == {alpnet.KIND}
    assert {r["case"]: r["source"] for r in rows} == SUPPORT_OF
    with pytest.raises(ConfigError, match="support-volume rows"):
        export_prompts(rows, "one-prompt-json", runs["three"] / "out.json")


def test_a_lone_volume_or_an_unknown_support_case_is_refused(tmp_path):
    with pytest.raises(DataError, match="at least two volumes"):
        execute(make_plan(_config(tmp_path), "alpnet", models=["full-frame"],
                          datasets=["alp-ct"], limit=1), tmp_path / "lone")
    (tmp_path / "given").mkdir()
    with pytest.raises(DataError, match="support_case 'ct-v99'"):
        execute(make_plan(_config(tmp_path), "alpnet", models=["full-frame"],
                          datasets=["alp-ct"], limit=3,
                          protocol_params={"support_case": "ct-v99"}), tmp_path / "given")
    # refused before any unit: no record left to demand --resume; a folder the user made stays
    assert not (tmp_path / "lone").exists()
    assert list((tmp_path / "given").iterdir()) == []


def test_the_support_case_itself_is_not_scored(tmp_path):
    run = _run(tmp_path, "fixed", ["support-paste"], support_case="ct-v1")
    table = pd.read_csv(run / "metrics.csv")
    own = table[table.case == "ct-v1"]
    assert set(own.status) == {"not_scored"}
    assert own.message.str.contains("the support volume").all()
    assert set(own.target) == set(CLASSES)  # the suite's classes only, as for every query
    rows = read_ledger(run / "prompts.jsonl")
    assert {r["source"] for r in rows} == {"ct-v1"}
    assert "ct-v1" not in {r["case"] for r in rows}


# ---------------------------------------------------------------- universeg


def test_universeg_segments_each_part_from_its_own_slice():
    """A query slice's prediction equals the k = 1 prediction from that part's slice alone."""
    rng = np.random.default_rng(5)
    query = rng.random((6, 40, 56)).astype(np.float32)  # non-square slices
    support_images = rng.random((3, 40, 56)).astype(np.float32)
    support_masks = rng.random((3, 40, 56)) > 0.6
    ranges = [(0, 1), (2, 3), (4, 5)]
    adapter = create("universeg", {"device": "cpu", "random_weights": True})
    flow = FlowFrames("q", "d", "volume", query)
    prompts = [Prompt("organ", 10 + i, alpnet.KIND, mask=support_masks[i], z_range=ranges[i],
                      source="s", image=support_images[i]) for i in range(3)]
    got = adapter.predict(flow, prompts).masks["organ"]
    for part, (low, high) in enumerate(ranges):
        # the already-verified in-flow path: support image as frame 0, mask prompt there
        frames = np.concatenate([support_images[part:part + 1], query[low:high + 1]])
        single = adapter.predict(FlowFrames("p", "d", "volume", frames),
                                 [Prompt("organ", 0, "mask", mask=support_masks[part])])
        for offset, z in enumerate(range(low, high + 1)):
            assert np.array_equal(got[z], single.masks["organ"][offset + 1]), (part, z)


# ---------------------------------------------------------------- ledger rows


def test_support_volume_rows_are_checked_when_read(runs, tmp_path):
    import json

    from bench.prompts.ledger import rows_to_prompts, write_ledger

    rows = read_ledger(runs["three"] / "prompts.jsonl")
    flows = runs["flows"]
    row = next(r for r in rows if r["case"] == "ct-v0" and r["target"] == "liver")
    prompts = rows_to_prompts([row], flows["ct-v0"], {"ct-v2": flows["ct-v2"]})
    assert prompts[0].source == "ct-v2" and tuple(row["z_range"]) == prompts[0].z_range
    with pytest.raises(DataError, match="support volume 'ct-v2' was not read"):
        rows_to_prompts([row], flows["ct-v0"], {})
    # the support volume's ground truth changed since the ledger was written
    with pytest.raises(DataError, match="sha256 does not match"):
        rows_to_prompts([row], flows["ct-v0"], {"ct-v2": _renamed(flows["ct-v3"], "ct-v2")})
    # a row without its source, or with its served range edited, is refused on reading
    path = tmp_path / "prompts.jsonl"
    write_ledger(path, rows)
    for edit in ({"source": None}, {"z_range": [0, 99]}):
        changed = dict(row)
        changed.update(edit)
        if changed["source"] is None:
            del changed["source"]
        lines = path.read_text().splitlines()
        line = json.dumps(row, sort_keys=True, separators=(",", ":"))
        bad = tmp_path / "bad.jsonl"
        bad.write_text("\n".join(json.dumps(changed, sort_keys=True, separators=(",", ":"))
                                 if x == line else x for x in lines) + "\n")
        with pytest.raises(DataError, match="missing|hash mismatch"):
            read_ledger(bad)


def _renamed(flow, new_id):
    from dataclasses import replace

    return replace(flow, id=new_id, case_ids=[new_id], patient_ids=[new_id])


def test_support_volume_digests_are_unit_inputs_and_in_the_cache_key(runs):
    from bench.cache import AdapterIdentity, prediction_key
    from bench.prompts.ledger import group_rows
    from bench.rundir import RunDir
    from bench.units import unit_specs

    rundir = RunDir(runs["three"])
    manifest = rundir.read_manifest()
    specs = unit_specs(rundir.expected_units(), manifest, group_rows(rundir.read_ledger()),
                       alpnet.PROTOCOL)
    spec = next(s for s in specs if s.flow == "ct-v0")
    entry = next(f for f in manifest["datasets"]["alp-ct"]["flows"] if f["id"] == "ct-v2")
    assert [source["id"] for source in spec.sources] == ["ct-v2"]
    assert spec.inputs["sources"] == {"ct-v2": [entry["frames_sha256"], entry["masks_sha256"]]}
    # a resumed run re-runs the unit, and the cache misses, when only the support changed
    identity = AdapterIdentity(True, "digest")
    view = runs["flows"]["ct-v0"].view()
    same = prediction_key(identity, view, spec.frames_sha256, spec.rows, spec.inputs["sources"])
    other = prediction_key(identity, view, spec.frames_sha256, spec.rows,
                           {"ct-v2": ["0" * 64, entry["masks_sha256"]]})
    assert same != other
