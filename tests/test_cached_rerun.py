"""A rerun served by the prediction cache: same outputs, nothing read or drawn twice.

The speed itself is measured by ``benchmarks/cached_rerun.py``; these tests pin
what makes it fast without changing a byte: the flows the ledger stage read
are handed to the in-process units (:mod:`bench.flow_memo`), and figures drawn
before from the same content come from the cache folder
(:mod:`bench.report.figure_cache`).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench.units
from bench.cache import PredictionCache
from bench.cli import main
from bench.config import load_config
from bench.flow_memo import FLOWS, FlowMemo, flow_nbytes
from bench.frames import PackedMasks
from bench.plan import make_plan
from bench.report import figure_cache
from bench.runner import execute
from bench.types import Flow

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench.toml"
RUN = ["--config", str(CONFIG), "run", "--suite", "demo", "--datasets", "demo-fundus",
       "--limit", "2", "--models", "registration,full-frame"]


def _files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes()
            for p in sorted((run / "figures").glob("*.png"))}


@pytest.mark.slow
def test_a_cached_rerun_writes_the_same_tables_and_figures(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDSAM2_BENCH_CACHE", str(tmp_path / "cache"))
    assert main([*RUN, "--out", str(tmp_path / "first")]) == 0
    assert main([*RUN, "--out", str(tmp_path / "again")]) == 0
    assert main([*RUN, "--no-cache", "--out", str(tmp_path / "plain")]) == 0
    out = capsys.readouterr().out
    units = pd.read_csv(tmp_path / "again" / "units.csv")
    assert len(units) == 2 and (units["cache"] == "hit").all()
    assert "2 units: 0 run, 2 reused from the prediction cache" in out
    first, again = tmp_path / "first", tmp_path / "again"
    for name in ("metrics.csv", "summary.json", "per_case.csv", "prompts.jsonl"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    # every figure of the first run (bars, per-case boxes, gallery) came back byte for byte,
    # and a run without the cache draws the very same
    drawn = _files(first)
    assert len(drawn) >= 3 and "figures/gallery_demo-fundus.png" in drawn
    assert _files(again) == drawn == _files(tmp_path / "plain")
    # the figures came from the cache: one entry per figure, none drawn twice
    assert len(list((tmp_path / "cache" / "figures").glob("*/*.png"))) == len(drawn)
    # the demo flow was drawn once, into the cache folder (--limit 2: one flow of 2 images)
    assert len(list((tmp_path / "cache" / "demo-flows").glob("*/*.npz"))) == 1


def test_units_take_the_flows_the_ledger_stage_read(tmp_path, monkeypatch):
    """With the memo the in-process units read no flow again; with no room they do."""
    reads = []
    real = bench.units.read_flow
    monkeypatch.setattr(bench.units, "read_flow",
                        lambda *a, **k: reads.append(a[2]) or real(*a, **k))
    plan = make_plan(load_config(CONFIG), "demo", models=["full-frame", "empty"],
                     datasets=["demo-fundus", "demo-cells"], limit=3)
    execute(plan, tmp_path / "memo")
    assert reads == []
    assert len(FLOWS) == 0  # released when the units are done
    monkeypatch.setattr(FLOWS, "budget", 0)
    execute(plan, tmp_path / "read")
    assert sorted(set(reads)) == sorted(
        f["id"] for d in json.loads((tmp_path / "read" / "manifest.json").read_text())[
            "datasets"].values() for f in d["flows"])  # each flow read again, as before
    assert (tmp_path / "memo" / "metrics.csv").read_bytes() == \
        (tmp_path / "read" / "metrics.csv").read_bytes()


def _flow(flow_id: str, height: int = 6, width: int = 10) -> Flow:
    frames = [np.zeros((height, width), np.float32) for _ in range(2)]
    return Flow(flow_id, "d", "image-flow", frames, {"t": [np.ones((height, width), bool)] * 2})


def test_flow_memo_keeps_within_its_budget_and_checks_digests():
    flow = _flow("a")
    # two float32 frames of 6x10 (480 bytes) and two bool masks (120 bytes)
    assert flow_nbytes(flow) == 2 * 6 * 10 * 4 + 2 * 6 * 10
    packed = Flow("p", "d", "image-flow", flow.frames,
                  {"t": PackedMasks([np.ones((6, 10), bool)] * 2)})
    assert flow_nbytes(packed) == 480 + 2 * 8  # 60 bits -> 8 bytes per mask
    memo = FlowMemo(budget=1000)
    assert memo.offer("d", 0, flow, "F", "M")
    assert not memo.offer("d", 1, _flow("b"), "F2", "M2")  # 600 + 600 > 1000
    assert memo.get("d", "a", 0, "F", "M") is flow
    assert memo.get("d", "a", 0, "F", "") is flow  # no masks digest asked: not compared
    assert memo.get("d", "a", 0, "other", "M") is None
    assert memo.get("d", "a", 0, "F", "other") is None
    assert memo.get("d", "a", 1, "F", "M") is None  # another position of the stream
    assert memo.get("e", "a", 0, "F", "M") is None
    memo.clear()
    assert memo.get("d", "a", 0, "F", "M") is None and memo.used == 0


def test_figure_key_follows_every_value(tmp_path):
    table = pd.DataFrame({"model": ["a", "b"], "mean": [0.5, 0.25]})
    key = figure_cache.figure_key("bars", {"data": table, "synthetic": True})
    assert key == figure_cache.figure_key("bars", {"data": table.copy(), "synthetic": True})
    nudged = table.assign(mean=[0.5, np.nextafter(0.25, 1)])  # one ulp
    assert key != figure_cache.figure_key("bars", {"data": nudged, "synthetic": True})
    assert key != figure_cache.figure_key("bars", {"data": table, "synthetic": False})
    assert key != figure_cache.figure_key("lines", {"data": table, "synthetic": True})
    renamed = table.rename(columns={"mean": "median"})
    assert key != figure_cache.figure_key("bars", {"data": renamed, "synthetic": True})
    with pytest.raises(TypeError, match="cannot key a object"):
        figure_cache.figure_key("bars", object())


def test_cached_figure_draws_once_per_content(tmp_path):
    calls = []

    def draw(path: Path, text: str):
        calls.append(text)
        path.write_bytes(text.encode())
        return path

    with figure_cache.figure_cache(tmp_path / "cache"):
        first = figure_cache.cached_figure("k", "x", tmp_path / "1.png",
                                           lambda: draw(tmp_path / "1.png", "x"))
        second = figure_cache.cached_figure("k", "x", tmp_path / "2.png",
                                            lambda: draw(tmp_path / "2.png", "x"))
        figure_cache.cached_figure("k", "y", tmp_path / "3.png",
                                   lambda: draw(tmp_path / "3.png", "y"))
        # a figure left incomplete (keep False) is not stored: drawn again next time
        for _ in range(2):
            figure_cache.cached_figure("k", "z", tmp_path / "4.png",
                                       lambda: draw(tmp_path / "4.png", "z"), keep=lambda: False)
        # nothing drawn is remembered as nothing
        assert figure_cache.cached_figure("k", "none", tmp_path / "5.png", lambda: None) is None
        assert figure_cache.cached_figure("k", "none", tmp_path / "5.png",
                                          lambda: draw(tmp_path / "5.png", "!")) is None
    assert calls == ["x", "y", "z", "z"]
    assert first == tmp_path / "1.png" and second == tmp_path / "2.png"
    assert second.read_bytes() == b"x" and not (tmp_path / "5.png").exists()
    # off outside the block: drawn every time
    figure_cache.cached_figure("k", "x", tmp_path / "6.png", lambda: draw(tmp_path / "6.png", "x"))
    assert calls[-1] == "x" and len(calls) == 5


def _poison_rows(cache: Path) -> int:
    """Set every stored scored row's value to 123.0; the number of files changed."""
    files = sorted((cache / "predictions").glob("*/*-rows-*.json"))
    for path in files:
        rows = json.loads(path.read_text())
        path.write_text(json.dumps([{**row, "value": 123.0} for row in rows]))
    return len(files)


def test_a_cache_hit_takes_its_scored_rows_only_under_the_same_scoring(tmp_path, monkeypatch):
    """A hit's rows come from the cache, keyed by the ground truth and every scoring
    setting: a changed masks digest or empty policy scores the cached masks again."""
    import dataclasses

    import bench.derive
    import bench.rundir

    scored = []
    real = bench.units.score_flow
    monkeypatch.setattr(bench.units, "score_flow",
                        lambda *a, **k: scored.append(1) or real(*a, **k))
    cache = tmp_path / "cache"
    plan = make_plan(load_config(CONFIG), "demo", models=["full-frame", "empty"],
                     datasets=["demo-fundus"], limit=2)

    def run(name: str, the_plan=plan) -> pd.DataFrame:
        scored.clear()
        execute(the_plan, tmp_path / name, cache=cache)
        units = pd.read_csv(tmp_path / name / "units.csv")
        assert (units["cache"] == ("miss" if name == "first" else "hit")).all(), name
        return pd.read_csv(tmp_path / name / "metrics.csv")

    first = run("first")
    assert len(scored) == 2  # two units scored, their rows stored beside the entries
    again = run("again")
    assert scored == []  # the hits' rows came from the cache ...
    assert (tmp_path / "first" / "metrics.csv").read_bytes() == \
        (tmp_path / "again" / "metrics.csv").read_bytes()  # ... byte for byte
    assert _poison_rows(cache) == 2
    assert (run("poisoned")["value"].dropna() == 123.0).all()  # they are what is served
    # another empty policy: the same masks (hits), scored again
    other = dataclasses.replace(plan, empty_policy="one" if plan.empty_policy == "exclude"
                                else "exclude")
    policy = run("policy", other)
    assert len(scored) == 2 and not (policy["value"] == 123.0).any()
    # other ground truth (its masks digest) under the same prediction key: scored again
    digest = bench.cache.masks_digest
    for module in (bench.derive, bench.rundir):
        monkeypatch.setattr(module, "masks_digest", lambda masks: "gt2" + digest(masks))
    truth = run("truth")
    assert len(scored) == 2 and not (truth["value"] == 123.0).any()
    assert truth["value"].equals(first["value"]) and len(again) == len(first)


def _same(a, b) -> bool:
    """Equal values, dtypes, shapes and containers (lists, dicts in order, None)."""
    if isinstance(a, np.ndarray):
        return (type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b))
    if isinstance(a, list):
        return type(b) is list and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return a is None and b is None


def test_stored_demo_flows_come_back_as_drawn_and_follow_the_options(tmp_path):
    from bench.readers.demo.reader import DemoOptions, generate_flow
    from bench.readers.demo.store import stored_flows

    cards = [DemoOptions(generator="dermoscopy", flows=2, frames=3, size=64,
                         aspect_jitter=0.5),  # widths vary within the flow
             DemoOptions(generator="ct", flows=1, frames=8, size=64, window=(-160, 240))]
    generate_flow(cards[0], 1)  # outside the block nothing is stored
    assert not (tmp_path / "demo-flows").exists()
    for options in cards:
        drawn = generate_flow(options, 0, dataset="d")
        for _ in range(2):  # stored, then loaded
            with stored_flows(tmp_path):
                flow = generate_flow(options, 0, dataset="d")
            assert _same(flow.frames, drawn.frames) and _same(flow.masks, drawn.masks)
            assert _same(flow.source_frames, drawn.source_frames)
            assert (flow.case_ids, flow.patient_ids, flow.meta, flow.spacing) == \
                (drawn.case_ids, drawn.patient_ids, drawn.meta, drawn.spacing)
    assert drawn.source_frames is not None and len({f.shape for f in flow.frames}) == 1
    entries = sorted((tmp_path / "demo-flows").glob("*/*.npz"))
    assert len(entries) == 2
    # another seed or flow index is another flow, never the stored one
    with stored_flows(tmp_path):
        other = generate_flow(cards[0].model_copy(update={"seed": 1}), 0)
        second = generate_flow(cards[0], 1)
    assert not _same(other.frames, generate_flow(cards[0], 0).frames)
    assert _same(second.frames, generate_flow(cards[0], 1).frames)
    assert len(list((tmp_path / "demo-flows").glob("*/*.npz"))) == 4
    # a damaged entry is drawn again
    for path in entries:
        path.write_bytes(b"not a zip")
    with stored_flows(tmp_path):
        again = generate_flow(cards[1], 0, dataset="d")
    assert _same(again.frames, drawn.frames) and _same(again.masks, drawn.masks)
    PredictionCache(tmp_path).prune(older_than_days=1)  # all used just now: kept
    assert len(list((tmp_path / "demo-flows").glob("*/*.npz"))) == 4
    PredictionCache(tmp_path).prune()
    assert not list((tmp_path / "demo-flows").glob("*/*.npz"))
