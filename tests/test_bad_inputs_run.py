"""What the harness refuses around a run (issue 11 items 4-8, 10): a corpus of bad inputs.

Each case states its expected outcome: a one-line error (exit 2) that names the file or key,
or a correct number (equal to a clean run's). The data is a small ISIC-like folder made
here (three 0/255 disc masks); the clean run scores it with ``full-frame``, whose Dice is
known in closed form, and with ``test-threshold``, a test adapter whose "checkpoint" is a
text file holding a grey-level threshold (its fingerprint carries the file's sha256).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, register
from PIL import Image

import bench.atomic
import bench.units
from bench.cli import main
from bench.errors import DataError
from bench.settings import Settings
from bench.store import file_stem, image_path, read_image, safe_name, write_prediction
from bench.types import Flow, Prediction

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (40, 56)


@register
@dataclass
class _Threshold(Adapter):
    """Test adapter: pixels brighter than the number in its checkpoint file (or darker,
    with ``invert``)."""

    name = "test-threshold"
    hidden = True
    class Options(Settings):
        checkpoint: str
        invert: bool = False


    def fingerprint(self):
        path = Path(self.options.checkpoint)
        return {**super().fingerprint(), "checkpoint": str(path),
                "checkpoint_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}

    def predict(self, flow, prompts):
        level = float(Path(self.options.checkpoint).read_text())
        grey = [np.asarray(f, dtype=float).mean(axis=-1) if np.ndim(f) == 3 else
                np.asarray(f, dtype=float) for f in flow.frames]
        masks = [(g < level) if self.options.invert else (g > level) for g in grey]
        return Prediction(masks={p.target: masks for p in prompts})


@register
@dataclass
class _FailsOnce(Adapter):
    """Test adapter: raises the first time (marker file absent), then predicts all pixels."""

    name = "test-fails-once"
    hidden = True
    class Options(Settings):
        marker: str
        always: bool = False

    def predict(self, flow, prompts):
        marker = Path(self.options.marker)
        if self.options.always or not marker.exists():
            marker.write_text("failed here")
            raise RuntimeError("boom")
        full = [np.ones(np.shape(frame)[:2], dtype=bool) for frame in flow.frames]
        return Prediction(masks={p.target: full for p in prompts})


# ----------------------------------------------------------------------------- helpers

def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _disc(radius: int) -> np.ndarray:
    rows, cols = np.mgrid[:SHAPE[0], :SHAPE[1]]
    return (rows - SHAPE[0] // 2) ** 2 + (cols - SHAPE[1] // 2) ** 2 <= radius ** 2


def _write_case(folder: Path, index: int, radius: int, *, mask_radius: int | None = None,
                bright: int = 200) -> None:
    case = f"ISIC_{index:07d}"
    disc = _disc(radius)
    image = np.stack([np.where(disc, bright, 60)] * 3, axis=-1).astype(np.uint8)
    Image.fromarray(image).save(folder / f"{case}.png")
    mask = _disc(radius if mask_radius is None else mask_radius)
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{case}_segmentation.png")


class Workspace:
    """A bench.toml (with the test adapter's table), the ISIC-like data and CLI calls."""

    def __init__(self, folder: Path, capsys) -> None:
        self.folder, self.capsys = folder, capsys
        shutil.copytree(ROOT / "datasets", folder / "datasets")
        (folder / "datasets" / "isic.toml").write_text(
            (ROOT / "datasets" / "isic.toml").read_text().replace("ISIC_{id}.jpg",
                                                                  "ISIC_{id}.png"))
        self.data = folder / "isic" / "train"
        self.data.mkdir(parents=True)
        for index, radius in enumerate((6, 9, 12), start=1):
            _write_case(self.data, index, radius)
        self.checkpoint = folder / "threshold.txt"
        self.checkpoint.write_text("100")
        self.settings()

    def settings(self, checkpoint: Path | None = None, invert: bool = False) -> None:
        base = (ROOT / "bench.toml").read_text()
        extra = (f'\n[models.test-threshold]\ncheckpoint = "{checkpoint or self.checkpoint}"\n'
                 f"invert = {'true' if invert else 'false'}\n")
        (self.folder / "bench.toml").write_text(base + extra)

    def bench(self, *args: str) -> tuple[int, list[str], list[str]]:
        self.capsys.readouterr()
        code = main(["--config", str(self.folder / "bench.toml"), *map(str, args)])
        captured = self.capsys.readouterr()
        return code, _lines(captured.out), _lines(captured.err)

    def run(self, out: Path, *extra: str, models: str = "full-frame,test-threshold"):
        return self.bench("run", "--suite", "one-prompt", "--datasets", "isic", "--root",
                          f"isic={self.folder / 'isic'}", "--models", models, "--no-cache",
                          "--out", out, *extra)


@pytest.fixture
def ws(tmp_path, capsys):
    return Workspace(tmp_path, capsys)


@pytest.fixture
def clean(ws, tmp_path):
    """A finished clean run (exit 0) of both models."""
    out = tmp_path / "clean"
    code, _, err = ws.run(out)
    assert code == 0, err
    return out


def _error_line(err: list[str]) -> str:
    # The notice that the test's isic card shadows the built-in one is expected.
    err = [line for line in err if not line.startswith("notice: dataset card ")]
    assert len(err) == 1, err
    assert err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def _dice(run: Path, model: str) -> dict[str, float]:
    table = pd.read_csv(run / "metrics.csv", dtype={"case": str})
    rows = table[(table["metric"] == "dice") & (table["model"] == model)]
    return rows.set_index("case")["value"].to_dict()


def _resumed(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["resumed"][-1]


# ------------------------------------------------------------------ a correct clean run

def test_clean_run_scores_full_frame_exactly(clean):
    pixels = SHAPE[0] * SHAPE[1]
    # ISIC_0000001 is the one-prompt template: given, not predicted, so not scored
    expected = {f"ISIC_{i:07d}": 2 * _disc(r).sum() / (_disc(r).sum() + pixels)
                for i, r in enumerate((6, 9, 12), start=1) if i > 1}
    assert _dice(clean, "full-frame") == pytest.approx(expected, abs=1e-9)
    assert set(_dice(clean, "test-threshold").values()) == {1.0}  # 200 > 100 > 60: the disc
    config = json.loads((clean / "config.json").read_text())
    sha = hashlib.sha256(b"100").hexdigest()
    assert config["adapters_history"]["test-threshold"][0]["checkpoint_sha256"] == sha


# ------------------------------------------------------------------ config and CLI names

@pytest.mark.parametrize(("args", "expected"), [
    (["check", "RUN", "--against", "RUN", "--tolerance", "hd59=0.5"],
     "error: --tolerance: unknown metric 'hd59' (did you mean 'hd95'?)"),
    (["check", "RUN", "--against", "RUN", "--tolerance", "0.01,dcie=0.1"],
     "error: --tolerance: unknown metric 'dcie' (did you mean 'dice'?)"),
    (["check", "RUN", "--against", "RUN", "--tolerance", "dice=-1"],
     "error: --tolerance: 'dice=-1' must be a finite number >= 0"),
    (["compare", "RUN", "RUN", "--metrics", "dice,iuo"],
     "error: --metrics: unknown metric 'iuo' (did you mean 'iou'?)"),
    (["report", "RUN", "--format", "pdf"],
     "error: --format: unknown format(s) pdf; choose from md, html, tex"),
])
def test_unknown_names_are_refused_before_any_work(ws, tmp_path, args, expected):
    run = tmp_path / "no-run-needed"
    code, _, err = ws.bench(*[str(run) if a == "RUN" else a for a in args])
    assert code == 2 and _error_line(err) == expected


def test_config_pointing_at_a_folder(ws, tmp_path):
    code = main(["--config", str(tmp_path), "list", "suites"])
    err = _lines(ws.capsys.readouterr().err)
    assert code == 2 and _error_line(err) == f"error: {tmp_path}: is a folder, not a TOML file"


def test_out_pointing_at_a_file(ws, tmp_path):
    (tmp_path / "file.txt").write_text("x")
    code, _, err = ws.run(tmp_path / "file.txt")
    assert code == 2
    assert _error_line(err) == (f"error: {tmp_path / 'file.txt'}: --out is a file, not a "
                                "folder; name a new or empty folder")


def test_a_non_empty_out_needs_resume(ws, clean):
    code, _, err = ws.run(clean)
    assert code == 2 and "is not empty: pass --resume to continue it" in _error_line(err)


# ------------------------------------------------------------- damaged run directories

def _copy(run: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(run, copy)
    return copy


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("command", ["report", "check", "compare"])
def test_a_truncated_metrics_table_is_refused_and_summary_kept(ws, clean, tmp_path, command):
    run = _copy(clean, tmp_path, "damaged")
    summary = (run / "summary.json").read_bytes()
    _truncate(run / "metrics.csv")
    args = {"report": ["report", run], "check": ["check", run, "--against", clean],
            "compare": ["compare", clean, run]}[command]
    code, _, err = ws.bench(*args)
    line = _error_line(err)
    assert code == 2 and line.startswith(f"error: {run / 'metrics.csv'}: does not match the 2 "
                                         "unit file(s) in units/")
    assert "rerun `bench run --resume" in line
    assert (run / "summary.json").read_bytes() == summary  # never rebuilt from a partial table


def test_an_edited_number_in_the_metrics_table_is_refused(ws, clean, tmp_path):
    run = _copy(clean, tmp_path, "edited")
    text = (run / "metrics.csv").read_text()
    (run / "metrics.csv").write_text(text.replace(",dice,1,ok", ",dice,0.99,ok", 1))
    assert text != (run / "metrics.csv").read_text()
    code, _, err = ws.bench("report", run)
    assert code == 2 and f"{run / 'metrics.csv'}: does not match" in _error_line(err)


def test_a_missing_metrics_table(ws, clean, tmp_path):
    run = _copy(clean, tmp_path, "missing")
    (run / "metrics.csv").unlink()
    code, _, err = ws.bench("check", run, "--against", clean)
    assert code == 2
    assert _error_line(err) == (f"error: {run / 'metrics.csv'}: no metrics table; is {run} a "
                                "finished run?")


@pytest.mark.parametrize(("name", "damage", "problem"), [
    ("config.json", b"{\"plan\": ", "invalid JSON (Expecting value, line 1)"),
    ("manifest.json", b"[1, 2", "invalid JSON (Expecting ',' delimiter, line 1)"),
    ("config.json", b"\xff\xfe\x00garbage", "invalid JSON (not UTF-8 text)"),
    ("unit", b"{\"key\": 1", "invalid JSON (Expecting ',' delimiter, line 1)"),
    ("unit", b"[]", "not a unit record (expected a JSON object)"),
])
def test_a_damaged_json_file_is_named(ws, clean, tmp_path, name, damage, problem):
    run = _copy(clean, tmp_path, "json")
    path = sorted((run / "units").glob("*.json"))[0] if name == "unit" else run / name
    path.write_bytes(damage)
    code, _, err = ws.bench("report", run)
    assert code == 2 and _error_line(err) == f"error: {path}: {problem}"


def test_a_unit_file_under_another_key_is_refused(ws, clean, tmp_path):
    run = _copy(clean, tmp_path, "renamed")
    first, second = sorted((run / "units").glob("*.json"))
    second.write_bytes(first.read_bytes())  # two files, one unit
    code, _, err = ws.bench("report", run)
    assert code == 2
    assert _error_line(err) == (f"error: {second}: holds unit {first.stem}, not the unit its "
                                "name says")


def test_a_unit_file_foreign_to_the_plan_is_refused(ws, clean, tmp_path):
    run = _copy(clean, tmp_path, "foreign")
    first = sorted((run / "units").glob("*.json"))[0]
    record = json.loads(first.read_text())
    record["key"] = "f" * 20
    (run / "units" / f"{'f' * 20}.json").write_text(json.dumps(record))
    code, _, err = ws.bench("report", run)
    assert code == 2 and _error_line(err) == (
        f"error: {run / 'units' / ('f' * 20 + '.json')}: not a unit of this run's plan and "
        "manifest")


def test_a_report_of_an_incomplete_run_says_so(ws, clean, tmp_path):
    from bench.rundir import RunDir

    run = _copy(clean, tmp_path, "incomplete")
    sorted((run / "units").glob("*.json"))[0].unlink()  # as if killed before that unit
    RunDir(run).write_metrics()
    code, _, err = ws.bench("report", run, "--no-gallery")
    assert code == 0, err
    assert ("**Incomplete run:** 1 unit(s) of the plan have no result; resume it with "
            "`bench run --resume`.") in (run / "report.md").read_text()
    assert "Incomplete run" not in (clean / "report.md").read_text()


def test_merge_names_a_damaged_unit_file(ws, clean, tmp_path):
    run = _copy(clean, tmp_path, "shard")
    path = sorted((run / "units").glob("*.json"))[0]
    path.write_text("{")
    code, _, err = ws.bench("merge", tmp_path / "merged", run)
    assert code == 2 and _error_line(err).startswith(f"error: {path}: invalid JSON")


# ------------------------------------------------------------------ environment faults

def _failing_replace(error: OSError, where: str):
    real = os.replace

    def replace(source, target):
        if where in str(target):
            raise error
        return real(source, target)

    return replace


def test_a_full_disk_stops_the_run_in_one_line_and_resume_finishes_it(ws, clean, tmp_path,
                                                                       monkeypatch):
    out = tmp_path / "full"
    monkeypatch.setattr(bench.atomic.os, "replace", _failing_replace(
        OSError(errno.ENOSPC, "No space left on device"), f"{os.sep}units{os.sep}"))
    code, _, err = ws.run(out)
    line = _error_line(err)
    assert code == 2 and line.startswith(f"error: cannot write {out / 'units'}")
    assert line.endswith("no space left on the device; free some space, then rerun with "
                         "--resume (completed units are kept)")
    monkeypatch.undo()  # space freed
    code, _, err = ws.run(out, "--resume")
    assert code == 0, err
    assert (out / "metrics.csv").read_bytes() == (clean / "metrics.csv").read_bytes()
    assert not list(out.rglob(f"{bench.atomic.PARTIAL_MARK}*"))


@pytest.mark.parametrize(("error", "expected"), [
    (OSError(errno.EROFS, "Read-only file system"),
     "the file system is read-only; choose another --out folder"),
    (PermissionError(errno.EACCES, "Permission denied"),
     "permission denied; choose a folder you may write to"),
])
def test_a_read_only_output_folder_is_one_line(ws, tmp_path, monkeypatch, error, expected):
    out = tmp_path / "ro"
    monkeypatch.setattr(bench.atomic.os, "replace", _failing_replace(error, "config.json"))
    code, _, err = ws.run(out)
    assert code == 2
    assert _error_line(err) == f"error: cannot write {out / 'config.json'}: {expected}"


def test_a_full_cache_disk_costs_speed_never_the_run(ws, clean, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEDSAM2_BENCH_CACHE", str(cache))
    monkeypatch.setattr(bench.atomic.os, "replace", _failing_replace(
        OSError(errno.ENOSPC, "No space left on device"), str(cache) + os.sep))
    out = tmp_path / "cached"
    code, _, err = ws.bench("run", "--suite", "one-prompt", "--datasets", "isic", "--root",
                            f"isic={ws.folder / 'isic'}", "--models",
                            "full-frame,test-threshold", "--out", out)
    assert code == 0, err
    assert not list(cache.rglob("*.npz"))  # nothing stored ...
    assert (out / "metrics.csv").read_bytes() == (clean / "metrics.csv").read_bytes()  # same


# ------------------------------------------------------------- resume never mixes inputs

def test_resume_after_a_checkpoint_change_recomputes_that_model_only(ws, clean, tmp_path):
    run = _copy(clean, tmp_path, "resumed")
    ws.checkpoint.write_text("30")  # every pixel is brighter than 30: the whole frame
    code, out, err = ws.run(run, "--resume")
    assert code == 0, err
    assert "resumed: 1 stored unit(s) recomputed (1 adapter changed)" in out
    assert _resumed(run)["recomputed"] == {"units": 1, "reasons": {"adapter changed": 1}}
    fresh = tmp_path / "fresh"
    assert ws.run(fresh)[0] == 0
    assert (run / "metrics.csv").read_bytes() == (fresh / "metrics.csv").read_bytes()
    assert _dice(run, "test-threshold") == _dice(run, "full-frame")
    history = json.loads((run / "config.json").read_text())["adapters_history"]
    assert [fp["checkpoint_sha256"] for fp in history["test-threshold"]] == [
        hashlib.sha256(b"100").hexdigest(), hashlib.sha256(b"30").hexdigest()]


def test_a_moved_checkpoint_with_the_same_bytes_is_the_same_model(ws, clean, tmp_path):
    moved = tmp_path / "elsewhere" / "weights.txt"
    moved.parent.mkdir()
    shutil.copyfile(ws.checkpoint, moved)
    ws.settings(checkpoint=moved)
    run = _copy(clean, tmp_path, "moved")
    code, out, err = ws.run(run, "--resume")
    assert code == 0, err
    assert not any("recomputed" in line for line in out)
    assert _resumed(run)["recomputed"] == {"units": 0, "reasons": {}}
    assert (run / "metrics.csv").read_bytes() == (clean / "metrics.csv").read_bytes()


def test_resume_after_an_adapter_option_change_recomputes(ws, clean, tmp_path):
    run = _copy(clean, tmp_path, "option")
    ws.settings(invert=True)  # now the dark background: Dice 0
    code, out, err = ws.run(run, "--resume")
    assert code == 0, err
    assert "resumed: 1 stored unit(s) recomputed (1 adapter changed)" in out
    assert set(_dice(run, "test-threshold").values()) == {0.0}
    fresh = tmp_path / "fresh"
    assert ws.run(fresh)[0] == 0
    assert (run / "metrics.csv").read_bytes() == (fresh / "metrics.csv").read_bytes()
    plan = json.loads((run / "config.json").read_text())["plan"]
    assert plan["model_settings"]["test-threshold"]["invert"] is True
    assert _resumed(run)["model_settings_before"]["test-threshold"]["invert"] is False


def test_resume_after_a_mask_change_recomputes_the_flow(ws, clean, tmp_path):
    run = _copy(clean, tmp_path, "mask")
    # The third mask grows; the template (first case) and so the prompts stay the same.
    _write_case(ws.data, 3, 12, mask_radius=14)
    code, out, err = ws.run(run, "--resume")
    assert code == 0, err
    assert "resumed: 2 stored unit(s) recomputed (2 masks changed)" in out
    fresh = tmp_path / "fresh"
    assert ws.run(fresh)[0] == 0
    assert (run / "metrics.csv").read_bytes() == (fresh / "metrics.csv").read_bytes()
    assert _dice(run, "test-threshold")["ISIC_0000003"] == pytest.approx(
        2 * _disc(12).sum() / (_disc(12).sum() + _disc(14).sum()), abs=1e-9)


def test_resume_after_a_frame_change_recomputes_the_flow(ws, clean, tmp_path):
    run = _copy(clean, tmp_path, "frame")
    _write_case(ws.data, 2, 9, bright=90)  # darker than the threshold: test-threshold misses it
    code, out, err = ws.run(run, "--resume")
    assert code == 0, err
    assert "resumed: 2 stored unit(s) recomputed (2 frames changed)" in out
    assert _dice(run, "test-threshold")["ISIC_0000002"] == 0.0


def test_resume_refuses_when_the_prompts_would_change(ws, clean, tmp_path):
    run = _copy(clean, tmp_path, "template")
    _write_case(ws.data, 1, 6, mask_radius=8)  # the template's mask: its box moves
    code, _, err = ws.run(run, "--resume")
    assert code == 2
    assert _error_line(err) == (f"error: {run / 'prompts.jsonl'} differs from the prompts "
                                "derived now; the data or the protocol changed since the run "
                                "started: start a new run")


def test_resume_after_a_metrics_version_change_recomputes_everything(ws, clean, tmp_path,
                                                                       monkeypatch):
    run = _copy(clean, tmp_path, "version")
    monkeypatch.setattr(bench.units, "METRICS_VERSION", bench.units.METRICS_VERSION + 1)
    code, out, err = ws.run(run, "--resume")
    assert code == 0, err
    assert "resumed: 2 stored unit(s) recomputed (2 metrics_version changed)" in out
    assert (run / "metrics.csv").read_bytes() == (clean / "metrics.csv").read_bytes()


def test_failed_units_are_retried_on_resume(ws, tmp_path):
    out = tmp_path / "retry"
    marker = tmp_path / "marker"
    base = (ws.folder / "bench.toml").read_text()
    (ws.folder / "bench.toml").write_text(base + f'\n[models.test-fails-once]\nmarker = '
                                                 f'"{marker}"\n')
    code, _, _ = ws.run(out, models="test-fails-once")
    assert code == 1 and json.loads(next((out / "units").glob("*.json")).read_text())[
        "status"] == "error"
    code, lines, err = ws.run(out, "--resume", models="test-fails-once")
    assert code == 0, err
    assert "resumed: 1 stored unit(s) recomputed (1 failed earlier)" in lines
    pixels = SHAPE[0] * SHAPE[1]  # the retry predicts every pixel
    assert _dice(out, "test-fails-once") == pytest.approx(
        {f"ISIC_{i:07d}": 2 * _disc(r).sum() / (_disc(r).sum() + pixels)
         for i, r in enumerate((6, 9, 12), start=1) if i > 1}, abs=1e-9)
    table = pd.read_csv(out / "metrics.csv")
    assert (table["status"] != "error").all()


def test_a_resumed_run_exits_1_while_a_failure_remains(ws, tmp_path):
    out = tmp_path / "still"
    base = (ws.folder / "bench.toml").read_text()
    (ws.folder / "bench.toml").write_text(base + f'\n[models.test-fails-once]\nmarker = '
                                                 f'"{tmp_path / "m"}"\nalways = true\n')
    assert ws.run(out, models="test-fails-once,full-frame")[0] == 1
    code, _, _ = ws.run(out, "--resume", models="test-fails-once,full-frame")
    assert code == 1
    assert _resumed(out)["recomputed"]["reasons"] == {"failed earlier": 1}


# ------------------------------------------------------------- no two outputs share a file

def test_one_case_id_in_two_flows_is_refused_before_any_unit():
    from types import SimpleNamespace

    from bench.derive import _check_case_ids

    frames = [np.zeros((4, 5), np.uint8)] * 2
    masks = {"t": [np.zeros((4, 5), bool)] * 2}
    dataset = SimpleNamespace(name="d", root=Path("/data/d"))
    owners: dict[str, str] = {}
    _check_case_ids(dataset, Flow("train", "d", "image-flow", frames, masks,
                                  case_ids=["c1", "c2"]), owners)
    with pytest.raises(DataError) as caught:
        _check_case_ids(dataset, Flow("val", "d", "image-flow", frames, masks,
                                      case_ids=["c3", "c1"]), owners)
    assert str(caught.value) == (
        f"{Path('/data/d')}: case id 'c1' is in flows 'train' and 'val' of dataset 'd'; their "
        "prediction files would collide: make the card's case_id distinct (e.g. include "
        "{parent})")


def test_case_ids_that_collapse_get_distinct_prediction_files(tmp_path):
    ids = ["a b", "a_b", "a&b", "a/b"]
    frames = [np.zeros((4, 5), np.uint8) for _ in ids]
    masks = [np.eye(4, 5, k, dtype=bool) for k in range(len(ids))]
    flow = Flow("f", "d", "image-flow", frames, {"t": masks}, case_ids=ids)
    paths = write_prediction(tmp_path, flow, Prediction(masks={"t": masks}))
    assert len(set(paths)) == 4
    assert {safe_name(i) for i in ids} == {"a_b"}  # what used to collide
    assert image_path(tmp_path, "t", "a_b").name == "a_b.png"  # safe ids keep their name
    assert file_stem("a b") == "a_b~" + hashlib.sha256(b"a b").hexdigest()[:8]
    for case, mask in zip(ids, masks, strict=True):
        assert np.array_equal(read_image(image_path(tmp_path, "t", case)), mask)


def test_a_repeated_case_id_is_an_error_not_an_overwrite(tmp_path):
    frames = [np.zeros((4, 5), np.uint8)] * 2
    masks = [np.eye(4, 5, dtype=bool), np.zeros((4, 5), bool)]
    flow = Flow("f", "d", "image-flow", frames, {"t": masks}, case_ids=["x", "x"])
    with pytest.raises(DataError, match=r"x\.png: prediction file of 'x' target 't' and of "
                                        r"'x' target 't' of flow 'f'"):
        write_prediction(tmp_path, flow, Prediction(masks={"t": masks}))
    assert not (tmp_path / "t").exists()


# ------------------------------------------------------------------ no orphan workers

SLOW_ADAPTER = '''
import os, time
from dataclasses import dataclass
from pathlib import Path
from bench.adapters import Adapter, register
from bench.settings import Settings


@register
@dataclass
class Slow(Adapter):
    name = "test-slow"
    hidden = True
    class Options(Settings):
        pids: str = ""

    def predict(self, flow, prompts):
        (Path(self.options.pids) / str(os.getpid())).write_text("running")
        time.sleep(300)
'''

DRIVER = '''
import sys
sys.path.insert(0, sys.argv[1])
import slow_adapter  # noqa: F401  registers test-slow
from bench.config import load_config
from bench.plan import make_plan
from bench.runner import execute

if __name__ == "__main__":
    plan = make_plan(load_config(sys.argv[2]), "demo", models=["test-slow"], limit=1)
    plan.model_settings["test-slow"] = {"pids": sys.argv[3]}
    execute(plan, sys.argv[4], executor="processes", workers=2)
'''


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_killing_the_driver_leaves_no_pool_worker(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "slow_adapter.py").write_text(SLOW_ADAPTER)
    (tmp_path / "driver.py").write_text(DRIVER)
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(tmp_path),
                               str(ROOT / "bench.toml"), str(pids), str(tmp_path / "run")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
            assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert left == []


# ------------------------------------------------------------------ reports fit the suite

def _report_headings(ws, clean, tmp_path, reproduces: str) -> list[str]:
    run = _copy(clean, tmp_path, f"layout-{reproduces[-1]}")
    config = json.loads((run / "config.json").read_text())
    config["plan"]["reproduces"] = reproduces
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = ws.bench("report", run, "--no-gallery")
    assert code == 0, err
    return [line for line in (run / "report.md").read_text().splitlines()
            if line.startswith("#")]


def test_a_one_prompt_report_leads_with_figure_4_and_prints_no_table_layouts(ws, clean,
                                                                            tmp_path):
    headings = _report_headings(ws, clean, tmp_path, "Figure 4")
    layouts = [h for h in headings if "layout" in h]
    assert layouts[0] == "## Paper layouts (Figure 4 reproduced)"
    assert layouts[1:] == ["### Figure 4 layout"]
    assert headings.index(layouts[0]) < headings.index("## Results")
    # The template (prompted case) of the flow is named.
    text = (tmp_path / "layout-4" / "report.md").read_text()
    assert "| isic | isic/train | 0 | lesion | 0 | ISIC_0000001 |" in text


@pytest.mark.parametrize(("reproduces", "first"), [
    ("Table 1", "### Table 1 layout: fake-ct"), ("Table 2", "### Table 2 layout")])
def test_a_universal_report_leads_with_its_table(tmp_path, reproduces, first):
    from test_report_support import make_run

    from bench.report import write_report

    run = make_run(tmp_path / "run", models=("good",), datasets=("fake-cells", "fake-ct"))
    config = json.loads((run / "config.json").read_text())
    config["plan"]["reproduces"] = reproduces
    (run / "config.json").write_text(json.dumps(config))
    write_report(run, "md", gallery=False)
    headings = [line for line in (run / "report.md").read_text().splitlines()
                if line.startswith("#")]
    layouts = [h for h in headings if "layout" in h]
    assert layouts == [f"## Paper layouts ({reproduces} reproduced)", first,
                       *(["### Table 2 layout"] if reproduces == "Table 1" else
                         ["### Table 1 layout: fake-ct"]), "### Figure 4 layout"]
    assert headings.index(layouts[0]) < headings.index("## Results")


def test_bench_prompts_names_each_template(ws, clean):
    code, out, err = ws.bench("prompts", clean)
    assert code == 0, err
    row = next(line for line in out if "ISIC_0000001" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "isic", "isic/train", "0", "lesion", "0", "ISIC_0000001"]
