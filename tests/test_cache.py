"""The content-addressed prediction cache: keys, entries, pruning, and reuse across runs."""

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, Capabilities, create, register

from bench.cache import (
    PredictionCache,
    adapter_identity,
    cache_dir,
    frames_digest,
    prediction_key,
)
from bench.cli import main
from bench.config import load_config
from bench.plan import make_plan
from bench.prompts import ledger
from bench.runner import execute
from bench.settings import Settings
from bench.types import FlowFrames, Prediction, Prompt

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench.toml"


class _CountingOptions(Settings):
    log: str = ""


class _WeightedOptions(Settings):
    weights_digest: str = ""
    device: str = ""
    meaningless: bool = False


@register
@dataclass
class _Counting(Adapter):
    """Test adapter: full-frame masks; appends a line to ``settings["log"]`` per call."""

    name = "test-counting"
    Options = _CountingOptions
    hidden = True

    def predict(self, flow, prompts):
        with open(self.settings["log"], "a") as log:
            log.write(f"{flow.dataset}/{flow.id}\n")
        full = [np.ones(np.shape(frame)[:2], dtype=bool) for frame in flow.frames]
        return Prediction(masks={prompt.target: full for prompt in prompts})


@register
@dataclass
class _Weighted(Adapter):
    """Test adapter with weights; its fingerprint is its settings."""

    name = "test-weighted"
    hidden = True
    capabilities = Capabilities(needs_weights=True)
    Options = _WeightedOptions

    def fingerprint(self):
        return {"adapter": self.name, **self.settings}


def _flow(value: int = 0, flow_id: str = "f0") -> FlowFrames:
    frames = [np.full((4, 5), value, dtype=np.uint8), np.arange(12, dtype=np.uint8).reshape(3, 4)]
    return FlowFrames(flow_id, "demo-x", "image-flow", frames, None,
                      (f"{flow_id}/0", f"{flow_id}/1"))


def _rows(seed: int, point=(1, 2), flow_id: str = "f0"):
    prompts = [Prompt("lesion", 0, "point", points=(point,), labels=(1,)),
               Prompt("lesion", 1, "box", box=(0, 0, 2, 1))]
    return ledger.prompt_rows(prompts, dataset="demo-x", case=flow_id, protocol="one-prompt",
                              seed=seed)


def test_an_entry_round_trips_masks_shapes_and_scores(tmp_path):
    rng = np.random.default_rng(0)
    masks = {"disc": [rng.random((5, 7)) > 0.5, rng.random((3, 4)) > 0.5],
             "cup": list(rng.random((2, 6, 6)) > 0.5)}  # a volume's slices
    scores = {"disc": [0.25, None], "cup": [float("nan"), 1.0]}
    cache = PredictionCache(tmp_path)
    assert cache.get("ab" * 32) is None
    path = cache.put("ab" * 32, Prediction(masks=masks, scores=scores))
    assert path == tmp_path / "predictions" / "ab" / f"{'ab' * 32}.npz"
    back = cache.get("ab" * 32)
    assert list(back.masks) == ["disc", "cup"]
    for target, expected in masks.items():
        assert len(back.masks[target]) == len(expected)
        for got, want in zip(back.masks[target], expected, strict=True):
            assert got.dtype == bool and np.array_equal(got, want)
    assert back.scores["disc"] == [0.25, None]
    assert np.isnan(back.scores["cup"][0]) and back.scores["cup"][1] == 1.0
    path.write_bytes(path.read_bytes()[:40])  # a truncated entry is a miss, not an error
    assert cache.get("ab" * 32) is None


def test_flow_digest_covers_the_intensities_before_the_window():
    from bench.cache import flow_frames_digest

    frames = np.zeros((2, 3, 4), np.float32)
    hu = np.full((2, 3, 4), -1000, np.int16)
    assert flow_frames_digest(frames) == frames_digest(frames)
    changed = hu.copy()
    changed[1, 2, 3] = -990  # outside the window: the frames are the same, the HU are not
    assert flow_frames_digest(frames, hu) != flow_frames_digest(frames, changed)
    assert flow_frames_digest(frames, hu) != flow_frames_digest(frames)


def test_frames_digest_depends_on_bytes_dtype_and_shape_only():
    volume = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    assert frames_digest(volume) == frames_digest([volume[0], volume[1]])
    assert frames_digest(volume) != frames_digest(volume.astype(np.int32))
    assert frames_digest(volume) != frames_digest(volume.reshape(2, 4, 3))
    changed = volume.copy()
    changed[1, 2, 3] += 1
    assert frames_digest(volume) != frames_digest(changed)


def test_the_key_follows_what_the_adapter_sees_and_nothing_else(tmp_path):
    full = adapter_identity(create("full-frame"))
    flow = _flow()

    def key(identity=full, view=flow, rows=None):
        return prediction_key(identity, view, frames_digest(view.frames), rows or _rows(0))

    base = key()
    # Same prompts under another seed: the adapter sees the same input.
    assert key(rows=_rows(1)) == base
    assert _rows(1)[0]["hash"] != _rows(0)[0]["hash"]
    assert key(rows=_rows(0, point=(2, 2))) != base
    assert key(view=_flow(value=1)) != base
    assert key(view=_flow(flow_id="f1"), rows=_rows(0, flow_id="f1")) != base
    assert key(identity=adapter_identity(create("empty"))) != base
    weighted = adapter_identity(create("test-weighted", {"weights_digest": "a"}))
    other_weights = adapter_identity(create("test-weighted", {"weights_digest": "b"}))
    assert key(identity=weighted) != key(identity=other_weights)


def test_ground_truth_external_files_and_unknown_weights_are_not_cached(tmp_path):
    assert adapter_identity(create("full-frame")).cacheable
    oracle = adapter_identity(create("oracle"))
    assert not oracle.cacheable and oracle.reason == "sees ground truth"
    external = adapter_identity(create("predictions", {"folder": str(tmp_path)}))
    assert not external.cacheable and "saved predictions" in external.reason
    unnamed = adapter_identity(create("test-weighted", {"device": "cpu"}))
    assert not unnamed.cacheable and "no weights digest" in unnamed.reason
    # random_weights: seeded initialisation, named by the digest of its state dict.
    random = adapter_identity(create("test-weighted", {"meaningless": True,
                                                       "weights_digest": "d1"}))
    assert random.cacheable and random.digest


def test_info_and_prune_by_last_use(tmp_path):
    cache = PredictionCache(tmp_path)
    prediction = Prediction(masks={"t": [np.ones((8, 8), dtype=bool)]})
    paths = [cache.put(f"{i:02d}" + "0" * 62, prediction) for i in range(3)]
    week_ago = time.time() - 7 * 86400
    os.utime(paths[0], (week_ago, week_ago))
    info = cache.info()
    assert info.entries == 3 and info.bytes == sum(p.stat().st_size for p in paths)
    assert info.oldest == pytest.approx(week_ago)
    size = paths[0].stat().st_size
    assert cache.prune(older_than_days=3) == (1, size)
    assert not paths[0].exists() and paths[1].exists()
    cache.get("01" + "0" * 62)  # a hit refreshes the entry's last use
    assert paths[1].stat().st_mtime > week_ago
    rest = sum(p.stat().st_size for p in paths[1:])
    assert cache.prune() == (2, rest)
    assert cache.info().entries == 0
    with pytest.raises(ValueError, match="--older-than: must not be negative"):
        cache.prune(older_than_days=-1)


def test_cache_folder_env_then_config_then_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSAM2_BENCH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "medsam2-bench"
    assert cache_dir("preds", base=tmp_path) == tmp_path / "preds"
    monkeypatch.setenv("MEDSAM2_BENCH_CACHE", str(tmp_path / "env"))
    assert cache_dir("preds", base=tmp_path) == tmp_path / "env"


def _content(rows):
    """Each prompt's visible content (an independent restatement of the key's prompt part)."""
    return sorted(json.dumps([r["target"], r["frame"], r["kind"], r["points"], r["labels"],
                              r["box"], r["mask_sha256"]]) for r in rows)


def test_adding_a_seed_computes_only_the_units_whose_prompts_are_new(tmp_path):
    config = load_config(CONFIG)
    log = tmp_path / "calls.txt"

    def plan(seeds):
        made = make_plan(config, "demo", models=["test-counting", "full-frame"],
                         datasets=["demo-fundus", "demo-cells"], limit=6, seeds=seeds,
                         protocol_params={"template": "random"})
        return dataclasses.replace(made, model_settings={**made.model_settings,
                                                         "test-counting": {"log": str(log)}})

    first = execute(plan([0]), tmp_path / "one", cache=tmp_path / "cache")
    assert (first.units_run, first.units_cached) == (4, 0)
    assert len(log.read_text().splitlines()) == 2

    second = execute(plan([0, 1]), tmp_path / "two", cache=tmp_path / "cache",
                     executor="processes", workers=2)
    rows = ledger.group_rows(ledger.read_ledger(tmp_path / "two" / "prompts.jsonl"))
    flows = {(d, c) for d, c, _, _ in rows}
    new = sum(_content(rows[(d, c, "one-prompt", 1)]) != _content(rows[(d, c, "one-prompt", 0)])
              for d, c in flows)
    assert new > 0  # the seeded random template frame moved
    assert second.units_total == 4 * len(flows)
    assert second.units_cached == second.units_total - 2 * new
    assert second.units_run == 2 * new
    assert len(log.read_text().splitlines()) == len(flows) + new
    units = pd.read_csv(tmp_path / "two" / "units.csv")
    assert set(units["cache"]) == {"hit", "miss"}
    # Seed 0 scored from the cache equals seed 0 computed.
    a = pd.read_csv(tmp_path / "one" / "metrics.csv")
    b = pd.read_csv(tmp_path / "two" / "metrics.csv")
    assert a.equals(b[b["seed"] == 0].reset_index(drop=True))


def test_the_cli_says_how_many_units_the_cache_served(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDSAM2_BENCH_CACHE", str(tmp_path / "cache"))
    base = ["--config", str(CONFIG), "run", "--suite", "demo", "--datasets", "demo-fundus",
            "--limit", "2"]
    assert main([*base, "--models", "full-frame", "--out", str(tmp_path / "a")]) == 0
    assert "1 units: 1 run, 0 reused from the prediction cache" in capsys.readouterr().out
    # Adding a model and a seed: the prompts do not depend on the seed here (a box on
    # the first frame), so only the new model's seed-0 unit is computed; its seed-1
    # unit has the same input and comes from the entry just written.
    assert main([*base, "--models", "full-frame,empty", "--seeds", "0,1",
                 "--out", str(tmp_path / "b")]) == 0
    assert "4 units: 1 run, 3 reused from the prediction cache" in capsys.readouterr().out
    assert main(["cache", "info"]) == 0
    assert "2 entries" in capsys.readouterr().out
    assert main(["cache", "prune", "--all"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert main([*base, "--models", "full-frame", "--no-cache", "--out",
                 str(tmp_path / "c")]) == 0
    assert "1 units: 1 run, 0 reused from the prediction cache" in capsys.readouterr().out
    assert PredictionCache(tmp_path / "cache").info().entries == 0
