"""Prompt interchange (issue 18 item 5): export a run's prompts, import them, refuse bad files."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.errors import ConfigError, DataError
from bench.prompts import ledger, make_prompts
from bench.prompts.interchange import export_prompts, read_prompt_file
from bench.types import Flow

ROOT = Path(__file__).resolve().parents[1]


def _flow(name: str = "v1") -> Flow:
    """A 4 x 7 x 11 volume (non-square frames) with two targets, one touching the edges."""
    liver = np.zeros((4, 7, 11), bool)
    liver[1:3, 2:5, 3:8] = True
    rim = np.zeros_like(liver)
    rim[2, 4:7, 8:11] = True  # reaches the last row and column
    return Flow(name, "demo", "volume", np.zeros((4, 7, 11), np.float32),
                {"liver": liver, "rim": rim}, spacing=(2.0, 0.9, 0.7))


def _rows(flow: Flow, protocol: str, seed: int = 0, **params) -> list[dict]:
    kind = params.pop("prompt_kind", None)
    prompts = make_prompts(flow, protocol, seed=seed, prompt_kind=kind, params=params)
    return ledger.prompt_rows(prompts, dataset="demo", case=flow.id, protocol=protocol,
                              seed=seed)


def _round_trip(tmp_path, rows, flow, protocol, fmt, seed=0):
    out = tmp_path / ("p.npz" if fmt == "cvpr25-npz" else "p.json")
    export_prompts(rows, fmt, out)
    imported = read_prompt_file(out)
    prompts = imported.prompts_for("demo", flow, seed, protocol, lambda: [])
    imported.check_all_used([seed])
    return ledger.prompt_rows(prompts, dataset="demo", case=flow.id, protocol=protocol,
                              seed=seed)


CASES = [("one-prompt", {"prompt_kind": "box-jitter"}), ("one-prompt", {"prompt_kind": "point"}),
         ("every-frame", {"prompt_kind": "point-random"}), ("paper-random", {}),
         ("medsam-box", {}), ("sam-med3d-clicks", {}), ("interactive", {}),
         ("cvpr25-interactive", {})]


@pytest.mark.parametrize(("protocol", "params"), CASES)
@pytest.mark.parametrize("fmt", ["one-prompt-json", "cvpr25-npz"])
def test_export_then_import_gives_the_same_ledger_bytes(tmp_path, protocol, params, fmt):
    flow = _flow()
    rows = _rows(flow, protocol, **dict(params))
    if fmt == "cvpr25-npz" and protocol in ("paper-random", "medsam-box"):
        # mask prompts (paper-random) and a box per slice (medsam-box) do not fit the format
        with pytest.raises(ConfigError, match="cvpr25-npz holds"):
            export_prompts(rows, fmt, tmp_path / "p.npz")
        assert not (tmp_path / "p.npz").exists()
        return
    again = _round_trip(tmp_path, rows, flow, protocol, fmt)
    assert ledger.dumps_ledger(again) == ledger.dumps_ledger(rows)


def test_cvpr25_npz_keys_follow_the_challenge(tmp_path):
    flow = _flow()
    rows = _rows(flow, "one-prompt", prompt_kind="box")
    rows += _rows(_flow("v2"), "interactive")
    export_prompts(rows, "cvpr25-npz", tmp_path / "p.npz")
    data = np.load(tmp_path / "p.npz", allow_pickle=True)
    assert list(data["cases"]) == ["v1", "v2"]
    liver_box = data["boxes"][0][0]  # case v1, first target (liver): tight box on frame 1
    assert liver_box == {"z_min": 1, "z_max": 1, "z_mid": 1, "z_mid_x_min": 3,
                         "z_mid_y_min": 2, "z_mid_x_max": 7, "z_mid_y_max": 4}
    # interactive's first clicks: one per frame containing the target, [z, y, x], fg
    clicks = data["clicks"][1][0]
    assert clicks["bg"] == [] and [c[0] for c in clicks["fg"]] == [1, 2]
    assert all(flow.masks["liver"][z][y, x] for z, y, x in clicks["fg"])
    assert data["clicks_order"][1][0] == ["fg", "fg"]


def test_a_challenge_file_without_bench_kinds_reads_boxes_as_box3d(tmp_path):
    flow = _flow()
    box = {"z_min": 1, "z_max": 2, "z_mid": 2, "z_mid_x_min": 2, "z_mid_y_min": 1,
           "z_mid_x_max": 8, "z_mid_y_max": 5}
    boxes, clicks = np.empty(1, dtype=object), np.empty(1, dtype=object)
    boxes[0] = [box, None]
    clicks[0] = [{"fg": [[1, 3, 4]], "bg": [[1, 0, 0]]}, {"fg": [], "bg": []}]
    buffer = io.BytesIO()
    np.savez(buffer, datasets=np.asarray(["demo"]), cases=np.asarray(["v1"]),
             targets=np.asarray([json.dumps(["liver", "rim"])]), boxes=boxes, clicks=clicks)
    path = tmp_path / "challenge.npz"
    path.write_bytes(buffer.getvalue())
    prompts = read_prompt_file(path).prompts_for("demo", flow, 0, "cvpr25-interactive",
                                                 lambda: [])
    assert [(p.target, p.frame, p.kind, p.box, p.z_range, p.points, p.labels)
            for p in prompts] == [("liver", 1, "point", None, None, ((4, 3), (0, 0)), (1, 0)),
                                  ("liver", 2, "box3d", (2, 1, 8, 5), (1, 2), (), ())]


def _json_file(tmp_path, entries) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(entries))
    return path


def _entry(**content):
    base = {"target": "liver", "frame": 1, "points": [[4, 3]], "labels": [1], "box": None}
    base.update(content)
    return {"DATASET_NAME": "demo", "SAMPLE_INDEX": "v1", "PROMPT_TYPE": "point",
            "PROMPT_CONTENT": base}


def _refusal(tmp_path, entries, protocol="one-prompt", seeds=(0,)) -> str:
    flow = _flow()
    with pytest.raises(DataError) as caught:
        imported = read_prompt_file(_json_file(tmp_path, entries))
        for seed in seeds:
            imported.prompts_for("demo", flow, seed, protocol, lambda: [1])
        imported.check_all_used(seeds)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(str(tmp_path / "bad.json"))
    return text


@pytest.mark.parametrize(("entries", "expected"), [
    ([_entry(), {**_entry(), "SAMPLE_INDEX": "v9"}],
     "entry 1 (demo/v9) target 'liver' frame 1: unknown case: dataset 'demo' case 'v9'"),
    ([_entry(points=[[4, 3, 1]])], "entry 0 (demo/v1) target 'liver' frame 1: points must be"),
    ([_entry(labels=[1, 0])], "labels must be one 0 or 1 per point (1 points)"),
    ([{**_entry(box=[1, 2, 3]), "PROMPT_TYPE": "box"}], "box must be [x0, y0, x1, y1]"),
    ([_entry(points=[[11, 3]])], "point (11, 3) is outside the 11 x 7 frame"),
    ([_entry(points=[[4, -1]])], "point (4, -1) is outside the 11 x 7 frame"),
    ([{**_entry(points=[], labels=[], box=[0, 0, 11, 6]), "PROMPT_TYPE": "box"}],
     "box [0, 0, 11, 6] is outside the 11 x 7 frame"),
    ([_entry(target="spleen")], "case 'v1' has no target 'spleen'"),
    ([_entry(frame=4)], "case 'v1' has 4 frames"),
    ([_entry(protocol="medsam-box")], "written for protocol 'medsam-box', this run's is "
     "'one-prompt'"),
    ([_entry(seed=3)], "case 'v1' (seed 0), which protocol 'one-prompt' prompts: the file "
     "must hold every case of the run (it holds this case for seeds [3] only)"),
    ([_entry(), _entry()], "entry 1 (demo/v1) target 'liver' frame 1: a second prompt"),
    ([{**_entry(), "PROMPT_TYPE": "scribble"}], "unknown prompt type 'scribble'"),
    ([{**_entry(), "EXTRA": 1}], "entry 0: expected an object with exactly the keys"),
    ([{**_entry(mask_sha256="0" * 64, mask_shape=[7, 11]), "PROMPT_TYPE": "mask"}],
     "the mask prompt's sha256 does not match the ground truth"),
    ([{**_entry(mask_sha256="0" * 64, mask_shape=[11, 7]), "PROMPT_TYPE": "mask"}],
     "mask_shape [11, 7] is not the frame's [7, 11]"),
])
def test_bad_entries_are_refused_naming_the_entry(tmp_path, entries, expected):
    assert expected in _refusal(tmp_path, entries)


def test_an_entry_for_another_seed_is_refused(tmp_path):
    text = _refusal(tmp_path, [_entry(seed=0), _entry(seed=3)])
    assert "entry 1 (demo/v1) target 'liver' frame 1: seed 3 is not a seed of this run ([0])" \
        in text


def test_medsam_box_boxes_may_reach_width_and_height_but_not_beyond(tmp_path):
    flow = _flow()
    edge = {**_entry(points=[], labels=[], box=[0, 0, 11, 7]), "PROMPT_TYPE": "box-jitter"}
    imported = read_prompt_file(_json_file(tmp_path, [edge]))
    (prompt,) = imported.prompts_for("demo", flow, 0, "medsam-box", lambda: [])
    assert prompt.box == (0, 0, 11, 7)
    beyond = {**_entry(points=[], labels=[], box=[0, 0, 12, 7]), "PROMPT_TYPE": "box-jitter"}
    assert "box [0, 0, 12, 7] is outside the 11 x 7 frame" in _refusal(
        tmp_path, [beyond], protocol="medsam-box")


def test_a_case_left_without_prompts_is_refused(tmp_path):
    flow = _flow()
    imported = read_prompt_file(_json_file(tmp_path, []))
    with pytest.raises(DataError, match="no prompt for dataset 'demo' case 'v1' \\(seed 0\\)"):
        imported.prompts_for("demo", flow, 0, "one-prompt", lambda: [1])
    assert imported.prompts_for("demo", flow, 0, "one-prompt", lambda: []) == []


def test_not_json_and_bad_npz_are_one_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[{")
    with pytest.raises(DataError, match="not one-prompt JSON"):
        read_prompt_file(path)
    buffer = io.BytesIO()
    np.savez(buffer, cases=np.asarray(["v1"]))
    path.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match=r"cvpr25-npz: missing keys \['datasets', 'targets', "
                       r"'clicks'\]"):
        read_prompt_file(path)


class _Evil:
    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-folder-of-this-test",))


def test_npz_pickles_build_nothing_but_data(tmp_path):
    header = io.BytesIO()
    array = np.empty(1, dtype=object)
    array[0] = [_Evil()]
    np.lib.format.write_array(header, array, allow_pickle=True)
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("clicks.npy", header.getvalue())
        for name in ("datasets", "cases", "targets"):
            inner = io.BytesIO()
            np.lib.format.write_array(inner, np.asarray(["x"]))
            archive.writestr(f"{name}.npy", inner.getvalue())
    with pytest.raises(DataError, match="refused to build shutil.rmtree"):
        read_prompt_file(path)
    assert pickle  # the module under test uses pickle only through its restricted unpickler


@pytest.mark.slow
def test_cli_export_and_import_give_identical_ledger_and_metrics(tmp_path, capsys):
    shutil.copytree(ROOT / "datasets", tmp_path / "datasets")
    shutil.copy(ROOT / "bench.toml", tmp_path / "bench.toml")
    base = ["--config", str(tmp_path / "bench.toml"), "run", "--suite", "demo", "--datasets",
            "demo-fundus,demo-ct", "--models", "empty,full-frame", "--limit", "2",
            "--no-cache"]
    assert main([*base, "--out", str(tmp_path / "r0")]) == 0
    for fmt, name in (("one-prompt-json", "p.json"), ("cvpr25-npz", "p.npz")):
        assert main(["prompts", "export", str(tmp_path / "r0"), "--format", fmt, "--out",
                     str(tmp_path / name)]) == 0
        out = tmp_path / f"r-{fmt}"
        assert main([*base, "--out", str(out), "--prompts", str(tmp_path / name)]) == 0
        for file in ("prompts.jsonl", "metrics.csv"):
            assert (out / file).read_bytes() == (tmp_path / "r0" / file).read_bytes(), file
        record = json.loads((out / "config.json").read_text())["prompts_file"]
        assert record["format"] == fmt
    # a mismatched file: one line, exit 2
    entries = json.loads((tmp_path / "p.json").read_text())
    entries[0]["SAMPLE_INDEX"] = "no-such-case"
    (tmp_path / "bad.json").write_text(json.dumps(entries))
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "bad"), "--prompts",
                 str(tmp_path / "bad.json")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "entry 0 (demo-ct/no-such-case)" in err[0] \
        and "unknown case" in err[0]


@pytest.mark.parametrize("fmt", ["one-prompt-json", "cvpr25-npz"])
def test_several_seeds_round_trip_apart(tmp_path, fmt):
    flow = _flow()
    rows = _rows(flow, "one-prompt", seed=0, template="random", prompt_kind="box-jitter")
    rows += _rows(flow, "one-prompt", seed=1, template="random", prompt_kind="box-jitter")
    assert ledger.dumps_ledger(rows[:2]) != ledger.dumps_ledger(rows[2:])  # the seeds differ
    out = tmp_path / "p.bin"
    export_prompts(rows, fmt, out)
    imported = read_prompt_file(out)
    again = []
    for seed in (0, 1):
        prompts = imported.prompts_for("demo", flow, seed, "one-prompt", lambda: [])
        again += ledger.prompt_rows(prompts, dataset="demo", case=flow.id,
                                    protocol="one-prompt", seed=seed)
    imported.check_all_used([0, 1])
    assert ledger.dumps_ledger(again) == ledger.dumps_ledger(rows)


def test_prompts_command_words_and_options_are_checked(tmp_path, capsys):
    assert main(["prompts", "export", str(tmp_path), "--format", "cvpr25-npz"]) == 2
    assert main(["prompts", "a", "b", "c"]) == 2
    assert main(["prompts", str(tmp_path), "--out", str(tmp_path / "x.json")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 3 and all(line.startswith("error:") for line in err)
    assert "--format (one-prompt-json or cvpr25-npz) and --out FILE are required" in err[0]
    assert "expected RUN_DIR or 'export RUN_DIR', got 'a b c'" in err[1]
    assert "--format and --out belong to `bench prompts export RUN_DIR`" in err[2]
