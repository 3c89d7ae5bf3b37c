"""Bad inputs and faults around a run, round two (issue 20; issue 17 items 4 and 6).

Each case states its expected outcome: a one-line error naming the file, key or row (exit
2), a failed check (exit 1) with its reason, and no file changed. The workspace (an
ISIC-like folder of three disc masks, a bench.toml with a test adapter) and the clean run
are the fixtures of ``test_bad_inputs_run``; the expectations here are hand-written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import test_bad_inputs_run as round_one
from test_bad_inputs_run import _copy, _error_line

from bench.check import REFERENCE_COLUMNS

# The first round's fixtures: the workspace and its clean run.
ws = round_one.ws
clean = round_one.clean


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: 'no file changed' is equality."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _reference(path: Path, *rows: str) -> Path:
    path.write_text(",".join(REFERENCE_COLUMNS) + "\n" + "".join(r + "\n" for r in rows))
    return path


# ------------------------------------------------------------------ bench merge: code

def _recorded_elsewhere(config: dict, what: str) -> dict:
    """``config`` as if its shard ran other code: another commit, or another version."""
    record = config["provenance"]
    if what == "git commit":
        record["git"] = {"commit": "0" * 40, "dirty": False}
    else:
        record["version"] = "0.0.0-elsewhere"
        record.get("versions", {})["medsam2-bench"] = "0.0.0-elsewhere"
    return config


@pytest.mark.parametrize(("what", "theirs"), [("git commit", "0" * 40),
                                              ("medsam2-bench version", "0.0.0-elsewhere")])
def test_merge_refuses_shards_of_different_code(ws, clean, tmp_path, what, theirs):
    from bench.provenance import package_version

    other = _copy(clean, tmp_path, "other-code")
    config = json.loads((other / "config.json").read_text())
    ours = (config["provenance"].get("git") or {}).get("commit") or "unknown" \
        if what == "git commit" else package_version()
    (other / "config.json").write_text(json.dumps(_recorded_elsewhere(config, what)))
    out = tmp_path / "merged"
    code, _, err = ws.bench("merge", out, clean, other)
    assert code == 2
    assert _error_line(err) == (
        f"error: {other / 'config.json'}: {other} and {clean} ran different code: {what} "
        f"{theirs} in {other}, {ours} in {clean}; rerun the shards with one installation")
    assert not out.exists()


# ------------------------------------------------------------------ bench check: references

@pytest.mark.parametrize(("content", "problem"), [
    (b"", "empty file: not a reference CSV (expected the header "
          + ",".join(REFERENCE_COLUMNS) + " and one row per mean)"),
    (",".join(REFERENCE_COLUMNS).encode() + b"\n",
     "no rows: nothing to compare against (write a reference from a trusted run with bench "
     "check RUN_DIR --write-reference CSV)"),
    (b"\xff\xfe\x00\x01garbage\n", "not a reference CSV (not UTF-8 text)"),
])
def test_a_reference_without_rows_is_refused(ws, tmp_path, content, problem):
    reference = tmp_path / "ref.csv"
    reference.write_bytes(content)
    before = _snapshot(tmp_path)
    code, out, err = ws.bench("check", tmp_path / "no-run-needed", "--against", reference)
    assert code == 2 and not any(line.startswith("OK") for line in out)
    assert _error_line(err) == f"error: {reference}: {problem}"
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(("row", "problem"), [
    ("isic,lesion,full-frame,one-prompt,dice,abc,2,0,0,0",
     "row 2 (isic/lesion/full-frame/one-prompt/dice): mean 'abc' is not a finite number"),
    ("isic,lesion,full-frame,one-prompt,dice,nan,2,0,0,0",
     "row 2 (isic/lesion/full-frame/one-prompt/dice): mean is NaN although n = 2 cases were "
     "scored; nothing could be compared (write the reference again with --write-reference)"),
    ("isic,lesion,full-frame,one-prompt,dice,,2,0,0,0",
     "row 2 (isic/lesion/full-frame/one-prompt/dice): mean is NaN although n = 2 cases were "
     "scored; nothing could be compared (write the reference again with --write-reference)"),
    ("isic,lesion,full-frame,one-prompt,dice,inf,2,0,0,0",
     "row 2 (isic/lesion/full-frame/one-prompt/dice): mean 'inf' is not a finite number"),
    ("isic,lesion,full-frame,one-prompt,dice,0.5,two,0,0,0",
     "row 2 (isic/lesion/full-frame/one-prompt/dice): n 'two' is not a whole number >= 0"),
    ("isic,lesion,full-frame,one-prompt,dice,0.5,2,0,0,-1",
     "row 2 (isic/lesion/full-frame/one-prompt/dice): n_failed '-1' is not a whole number "
     ">= 0"),
    ("isic,lesion,full-frame,one-prompt,dice,0.5,0,0,0,0",
     "row 2 (isic/lesion/full-frame/one-prompt/dice): mean 0.5 of n = 0 scored cases"),
])
def test_a_reference_row_that_compares_nothing_is_named(ws, tmp_path, row, problem):
    # Row 1 is a good row; row 2 is the bad one. The reference is read before the run.
    reference = _reference(tmp_path / "ref.csv",
                           "isic,lesion,full-frame,one-prompt,iou,0.25,2,0,0,0", row)
    code, out, err = ws.bench("check", tmp_path / "no-run-needed", "--against", reference)
    assert code == 2 and not any(line.startswith("OK") for line in out)
    assert _error_line(err) == f"error: {reference}: {problem}"


def test_a_nan_mean_with_no_scored_case_is_compared_by_its_count(ws, clean, tmp_path):
    # NaN with n = 0 is what a reference of a target without a valid case holds; the run
    # scored 2 cases there, so the count changed: a regression, never a silent skip.
    reference = _reference(tmp_path / "ref.csv",
                           "isic,lesion,full-frame,one-prompt,dice,nan,0,0,0,0")
    code, _, err = ws.bench("check", clean, "--against", reference)
    assert code == 1
    assert any(line.startswith("regression: count dice isic/lesion full-frame: reference "
                               "nan") and "n 0 -> 2" in line for line in err), err


def test_an_empty_summary_reference_is_refused(ws, clean, tmp_path):
    summary = json.loads((clean / "summary.json").read_text())
    summary["aggregates"] = []
    reference = tmp_path / "summary.json"
    reference.write_text(json.dumps(summary))
    code, _, err = ws.bench("check", clean, "--against", reference)
    assert code == 2
    assert _error_line(err) == f"error: {reference}: no aggregates: nothing to compare against"


# ------------------------------------------------------------------ bench check: nothing scored

def _unscored(clean: Path, tmp_path: Path) -> Path:
    """A copy of the clean run whose every case failed (as when the model cannot load)."""
    from bench.rundir import RunDir

    run = _copy(clean, tmp_path, "unscored")
    for path in (run / "units").glob("*.json"):
        record = json.loads(path.read_text())
        record["status"] = "error"
        for row in record["rows"]:
            row.update(status="error", value=None)
        path.write_text(json.dumps(record))
    RunDir(run).write_metrics()
    return run


def test_check_fails_a_run_that_scored_nothing(ws, clean, tmp_path):
    run = _unscored(clean, tmp_path)
    # The reference is written from the same run: every row NaN with n = 0, so the means
    # agree with it; still nothing was measured.
    reference = _reference(tmp_path / "ref.csv", *[
        f"isic,lesion,{model},one-prompt,{metric},nan,0,0,0,2"
        for model in ("full-frame", "test-threshold")
        for metric in ("assd", "dice", "hd95", "iou", "nsd")])
    before = _snapshot(run)
    code, out, err = ws.bench("check", run, "--against", reference)
    assert code == 1 and not any(line.startswith("OK") for line in out)
    assert err[-1] == (f"FAIL: {run} measured nothing: no case was scored (4 failed, 0 "
                       "excluded as empty in both masks)")
    assert _snapshot(run) == before


def test_a_reference_is_never_written_from_a_run_that_scored_nothing(ws, clean, tmp_path):
    run = _unscored(clean, tmp_path)
    reference = tmp_path / "ref.csv"
    code, _, err = ws.bench("check", run, "--write-reference", reference)
    assert code == 2
    assert _error_line(err) == (f"error: {run / 'metrics.csv'}: no case was scored (4 failed, "
                                "0 excluded as empty in both masks); a reference from it "
                                "would check nothing")
    assert not reference.exists()


# ------------------------------------------------------------------ bench check --against demo

def test_against_demo_uses_the_packaged_reference_from_any_folder(ws, tmp_path, monkeypatch):
    import bench.check
    from bench.resources import reports_folder

    packaged = reports_folder() / "demo-reference.csv"
    text = packaged.read_text()
    assert text.startswith(",".join(REFERENCE_COLUMNS) + "\n")
    monkeypatch.chdir(tmp_path)  # no reports/ folder here
    # The run's means stand in for a demo run: first the reference's own rows, then the
    # same rows with one Dice lowered by 0.1 (a regression of exactly that row).
    means = pd.read_csv(packaged, dtype={"dataset": str, "target": str, "model": str,
                                         "protocol": str, "metric": str})
    monkeypatch.setattr(bench.check, "run_means", lambda run_dir: means.copy())
    code, out, err = ws.bench("check", tmp_path / "run", "--against", "demo")
    assert code == 0, err
    assert out[-1] == "OK: every mean within tolerance (*=1e-06)"
    first = means.index[means["metric"] == "dice"][0]
    means.loc[first, "mean"] -= 0.1
    code, _, err = ws.bench("check", tmp_path / "run", "--against", "demo")
    row = means.loc[first]
    assert code == 1 and err[0] == "FAIL: 1 regression(s) (tolerance *=1e-06)"
    assert err[1].startswith(f"regression: worse dice {row['dataset']}/{row['target']} "
                             f"{row['model']}: ")
    assert err[1].endswith("difference -0.1 (higher is better)")
    assert packaged.read_text() == text


def test_against_demo_refuses_when_a_local_demo_exists_too(ws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    code, _, err = ws.bench("check", tmp_path / "run", "--against", "demo")
    assert code == 2 and _error_line(err).startswith(
        "error: --against demo: names the built-in reference ")
    assert f"but {tmp_path / 'demo'} exists too" in _error_line(err)


# ------------------------------------------------------------------ tracebacks -> one line

@pytest.mark.parametrize("name", ["bench.toml", "datasets/isic.toml"])
def test_a_toml_file_that_is_not_utf8_is_one_line(ws, tmp_path, name):
    config = ws.folder / name
    text = config.read_bytes()
    config.write_bytes(text + b'\n# caf\xe9 (Latin-1)\n')
    line = text.count(b"\n") + 2
    before = _snapshot(tmp_path)
    code, _, err = ws.run(tmp_path / "run")
    assert code == 2
    assert _error_line(err) == (f"error: {config}: line {line}: not UTF-8 text (byte 0xe9); "
                                "save the file as UTF-8, as TOML requires")
    assert _snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def _set_out(ws, out: str) -> Path:
    config = ws.folder / "bench.toml"
    text = config.read_text()
    assert text.count('\nout = "') == 1
    start = text.index('\nout = "') + 1
    config.write_text(text[:start] + f'out = "{out}"' + text[text.index("\n", start):])
    return config


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
def test_an_output_folder_that_cannot_be_created_is_one_line(ws, tmp_path):
    config = _set_out(ws, "/proc/x")
    before = _snapshot(tmp_path)
    code, _, err = ws.bench("run", "--suite", "one-prompt", "--datasets", "isic", "--root",
                            f"isic={ws.folder / 'isic'}", "--models", "full-frame",
                            "--no-cache")
    line = _error_line(err)
    assert code == 2 and line.startswith("error: cannot create the run folder /proc/x/one-prompt/")
    assert line.endswith(f"(No such file or directory: /proc/x); choose another folder "
                         f"([defaults] out of {config})")
    assert _snapshot(tmp_path) == before and not Path("/proc/x").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize(("command", "written"), [
    (["merge", "/proc/x/merged", "RUN"], None),
    (["check", "RUN", "--write-reference", "/proc/x/ref.csv"], "/proc/x/ref.csv"),
    (["compare", "RUN", "RUN", "--out", "/proc/x/compare.csv"], "/proc/x/compare.csv"),
])
def test_other_outputs_in_a_folder_that_cannot_be_created_are_one_line(ws, clean, tmp_path,
                                                                         command, written):
    before = _snapshot(tmp_path)
    code, _, err = ws.bench(*[str(clean) if part == "RUN" else part for part in command])
    line = _error_line(err)
    assert code == 2 and line.startswith(f"error: cannot write {written or '/proc/x/merged/'}")
    assert line.endswith(": cannot create the folder /proc/x: choose another location (No "
                         "such file or directory)")
    assert _snapshot(tmp_path) == before


def test_an_output_folder_below_a_file_is_one_line(ws, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    before = _snapshot(tmp_path)
    code, _, err = ws.run(blocker / "run" / "deeper")
    assert code == 2
    assert _error_line(err) == (
        f"error: cannot create the run folder {blocker / 'run' / 'deeper'} (Not a directory: "
        f"{blocker / 'run'}); choose another folder (--out)")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("days", ["-1", "nan", "-0.5"])
def test_cache_prune_refuses_negative_days_and_deletes_nothing(ws, tmp_path, days):
    cache = tmp_path / "cache"
    entry = cache / "predictions" / "ab" / ("ab" + "0" * 62 + ".npz")
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"entry")
    code, _, err = ws.bench("cache", "prune", "--dir", cache, "--older-than", days)
    assert code == 2
    shown = f"{float(days):g}"
    assert _error_line(err) == (f"error: --older-than: must not be negative (a number of days "
                                f">= 0), got {shown}")
    assert entry.read_bytes() == b"entry"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_while_writing_predictions_is_one_line_and_nothing_more(ws, tmp_path,
                                                                            monkeypatch):
    """Prediction PNGs are opened on /dev/full, which fails every write with ENOSPC."""
    import builtins
    import gc
    import sys

    from bench.atomic import PARTIAL_MARK

    real_open = builtins.open

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        if "w" in mode and PARTIAL_MARK in str(file) and str(file).endswith(".png"):
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    unraisable = []  # what Python prints as "Exception ignored in ..." after the error
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    monkeypatch.setattr(builtins, "open", open_on_full_disk)
    out = tmp_path / "full"
    code, _, err = ws.run(out, models="full-frame")
    gc.collect()
    monkeypatch.undo()
    line = _error_line(err)
    assert code == 2 and line.startswith(f"error: cannot write {out / 'predictions'}")
    assert line.endswith(".png: no space left on the device; free some space, then rerun "
                         "with --resume (completed units are kept)")
    assert [str(hook.exc_value) for hook in unraisable] == []
    assert not list(out.rglob("*.png"))


class _SystemPayload:
    """Unpickles to ``os.system(command)``; ``os`` is among torch's blocked modules, whose
    refusal is worded apart (and carried torch's advice to retry unsafely)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_a_checkpoint_refused_by_the_safe_loader_says_the_harness_never_unpickles(tmp_path):
    torch = pytest.importorskip("torch")
    import os

    from bench.adapters.checkpoints import CheckpointError, load_state_dict

    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _SystemPayload(f"touch {marker}")},
               path)
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(path)
    text = str(caught.value)
    assert text == (
        f"{path}: refused to load: the file holds objects other than tensors (a pickle that "
        f"could run code; refused global {os.system.__module__}.system); only weights-only "
        "checkpoints are read: this harness never unpickles anything but tensors and plain "
        "containers, since unpickling other objects can run code, so it does not retry with "
        "a full load; save the weights alone, e.g. "
        "torch.save({'model': model.state_dict()}, PATH), and point to that file")
    assert "weights_only" not in text and "\n" not in text
    assert not marker.exists()


def test_a_run_with_a_refused_checkpoint_is_that_one_line(ws, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": _SystemPayload(f"touch {marker}")},
               path)
    code, _, err = ws.run(tmp_path / "run", "--checkpoint", f"medsam2={path}", models="medsam2")
    line = _error_line(err)
    assert code == 2 and line.startswith(f"error: {path}: refused to load: ")
    assert "this harness never unpickles anything but tensors" in line
    assert "weights_only" not in line and not marker.exists()


# ------------------------------------------------------------------ leak: workers starting

SLOW_START = '''
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.adapters import Adapter, register
from bench.settings import Settings

if multiprocessing.parent_process() is not None:
    # A pool worker importing the adapter's module (as torch takes seconds to import):
    # it says who it is, then is still starting when the driver is killed.
    (Path(os.environ["SLOW_START_PIDS"]) / str(os.getpid())).write_text("starting")
    time.sleep(120)


@register
@dataclass
class SlowStart(Adapter):
    name = "test-slow-start"
    hidden = True

    class Options(Settings):
        pass

    def predict(self, flow, prompts):
        raise RuntimeError("never reached")
'''

STARTING_DRIVER = '''
import sys

if __name__ == "__main__":  # workers do not import the adapter here, but while starting
    sys.path.insert(0, sys.argv[1])
    import slow_start  # noqa: F401  registers test-slow-start
    from bench.config import load_config
    from bench.plan import make_plan
    from bench.runner import execute

    plan = make_plan(load_config(sys.argv[2]), "demo", models=["test-slow-start"], limit=1)
    execute(plan, sys.argv[3], executor="processes", workers=2)
'''


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (Linux)")
def test_killing_the_driver_while_workers_start_leaves_no_process(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "slow_start.py").write_text(SLOW_START)
    (tmp_path / "driver.py").write_text(STARTING_DRIVER)
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "SLOW_START_PIDS": str(pids),
           "PYTHONPATH": os.pathsep.join([str(round_one.ROOT), os.environ.get("PYTHONPATH",
                                                                            "")])}
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(tmp_path),
                               str(round_one.ROOT / "bench.toml"), str(tmp_path / "run")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    tracker: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
            assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
            time.sleep(0.1)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2 and all(round_one._alive(pid) for pid in workers)
        tracker = [pid for pid in _children(driver.pid) if "resource_tracker" in _cmdline(pid)]
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 5
    while any(round_one._alive(pid) for pid in workers + tracker) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers + tracker if round_one._alive(pid)]
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert left == []
    assert len(tracker) == 1  # multiprocessing's resource tracker, checked above as well


@pytest.mark.parametrize(("mean", "problem"), [
    ("abc", "mean 'abc' is not a finite number"),
    ("0.5", "mean '0.5' is not a finite number"),  # JSON text, not a number
    (True, "mean 'True' is not a finite number"),
])
def test_a_summary_reference_with_a_mean_that_is_not_a_number_names_it(ws, clean, tmp_path,
                                                                       mean, problem):
    summary = json.loads((clean / "summary.json").read_text())
    record = summary["aggregates"][1]
    record["mean"] = mean
    reference = tmp_path / "summary.json"
    reference.write_text(json.dumps(summary))
    key = "/".join(record[k] for k in ("dataset", "target", "model", "protocol", "metric"))
    code, _, err = ws.bench("check", clean, "--against", reference)
    assert code == 2
    assert _error_line(err) == f"error: {reference}: aggregates[1] ({key}): {problem}"


def test_a_summary_reference_that_is_not_utf8_is_one_line(ws, tmp_path):
    reference = tmp_path / "summary.json"
    reference.write_bytes(b'{"aggregates": ["\xff"]}')
    code, _, err = ws.bench("check", tmp_path / "no-run-needed", "--against", reference)
    assert code == 2
    assert _error_line(err) == f"error: {reference}: invalid JSON (not UTF-8 text)"
