"""``--random-weights`` stamps every output of a run (issue 20, "Random-weights stamp").

A run with random initial weights gives numbers that look like results and mean nothing.
The stamp must survive wherever the numbers go: ``metrics.csv`` (a ``random_weights``
column), ``summary.json`` (``random_weights``: the models), the console's results table
(a banner line and its title) and the report (a note). A run without the flag carries none of
it, and the readers of ``metrics.csv`` (check, compare, merge, resume, report) take the
column, or a table written before it existed.

The weighted model is a test adapter (``needs_weights``, no torch): ``--random-weights``
reaches it through the plan exactly as it reaches SAM or MedSAM-2. ``full-frame`` runs beside
it and uses no weights, so its rows are never stamped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench.adapters import Adapter, register
from bench.adapters.base import Capabilities

from bench.cli import main
from bench.settings import Settings
from bench.types import Prediction

ROOT = Path(__file__).resolve().parents[1]
WEIGHTED = "test-weighted-stamp"
BANNER = "RANDOM WEIGHTS (--random-weights)"
NOTE = f"**Meaningless results for {WEIGHTED}:**"


@register
@dataclass
class _Weighted(Adapter):
    """Test adapter with (pretend) weights: every pixel brighter than the frame's mean."""

    name = WEIGHTED
    hidden = True
    capabilities = Capabilities(needs_weights=True)

    class Options(Settings):
        random_weights: bool = False
        device: str = "auto"

    def predict(self, flow, prompts):
        grey = [np.asarray(f, dtype=float).mean(axis=-1) if np.ndim(f) == 3 else
                np.asarray(f, dtype=float) for f in flow.frames]
        masks = [g > g.mean() for g in grey]
        return Prediction(masks={p.target: masks for p in prompts})


def _bench(capsys, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--config", str(ROOT / "bench.toml"), *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _run(capsys, out: Path, *extra: str) -> tuple[int, str, str]:
    return _bench(capsys, "run", "--suite", "one-prompt", "--datasets", "demo-fundus",
                  "--limit", "3", "--models", f"full-frame,{WEIGHTED}", "--no-cache",
                  "--out", out, *extra)


def _metrics(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv", dtype={"case": str})


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """A run with --random-weights and one without (exit 0), with their console output."""
    # capsys is function-scoped: capture the module's two runs by hand.
    import contextlib
    import io

    made = {}
    for name, extra in (("random", ("--random-weights",)), ("plain", ())):
        out = tmp_path_factory.mktemp(name) / "run"
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["--config", str(ROOT / "bench.toml"), "run", "--suite", "one-prompt",
                         "--datasets", "demo-fundus", "--limit", "3", "--models",
                         f"full-frame,{WEIGHTED}", "--no-cache", "--out", str(out), *extra])
        assert code == 0, stderr.getvalue()
        made[name] = (out, stdout.getvalue())
    return made


def test_metrics_csv_stamps_exactly_the_rows_of_the_weighted_model(runs):
    run, _ = runs["random"]
    table = _metrics(run)
    assert list(table.columns)[-1] == "random_weights"
    assert set(table["model"]) == {"full-frame", WEIGHTED}
    stamped = table.groupby("model")["random_weights"].agg(set).to_dict()
    assert stamped == {"full-frame": {False}, WEIGHTED: {True}}


def test_per_case_csv_stamps_exactly_the_rows_of_the_weighted_model(runs):
    for name, expected in (("random", {"full-frame": {False}, WEIGHTED: {True}}),
                           ("plain", {"full-frame": {False}, WEIGHTED: {False}})):
        run, _ = runs[name]
        table = pd.read_csv(run / "per_case.csv", dtype={"case": str})
        assert table.groupby("model")["random_weights"].agg(set).to_dict() == expected


def test_a_run_without_the_flag_stamps_no_row(runs):
    run, _ = runs["plain"]
    table = _metrics(run)
    assert table["random_weights"].tolist() == [False] * len(table)
    assert json.loads((run / "summary.json").read_text())["random_weights"] == []


def test_summary_json_names_the_models(runs):
    run, _ = runs["random"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["random_weights"] == [WEIGHTED]
    settings = json.loads((run / "config.json").read_text())["plan"]["model_settings"]
    assert settings[WEIGHTED]["random_weights"] is True
    assert "random_weights" not in settings["full-frame"]  # no weights, nothing to stamp


def test_console_results_carry_a_banner_only_with_the_flag(runs):
    _, random_out = runs["random"]
    _, plain_out = runs["plain"]
    banner = [line for line in random_out.splitlines() if line.startswith(BANNER)]
    assert len(banner) == 1 and WEIGHTED in banner[0] and "MEANINGLESS" in banner[0]
    words = " ".join(random_out.split())  # rich wraps a long title
    assert "- RANDOM WEIGHTS (meaningless)" in words  # the table's title
    assert "RANDOM WEIGHTS" not in plain_out
    # The banner comes before the results table, where nobody can miss it.
    assert random_out.index(BANNER) < random_out.index("Mean per dataset")


def test_report_notes_only_the_stamped_run(runs):
    random_run, _ = runs["random"]
    plain_run, _ = runs["plain"]
    assert NOTE in (random_run / "report.md").read_text()
    assert "Meaningless results" not in (plain_run / "report.md").read_text()


def test_check_and_compare_read_the_stamped_table(runs, capsys, tmp_path):
    random_run, _ = runs["random"]
    plain_run, _ = runs["plain"]
    code, _, err = _bench(capsys, "check", random_run, "--against", random_run)
    assert code == 0, err
    code, _, err = _bench(capsys, "check", random_run, "--against", plain_run)
    assert code == 0, err  # the same predictions: the stamp is no regression
    table = tmp_path / "compare.csv"
    code, _, err = _bench(capsys, "compare", plain_run, random_run, "--out", table)
    assert code == 0, err
    compared = pd.read_csv(table)
    both = compared[(compared["model"] == WEIGHTED) & (compared["metric"] == "dice")]
    assert len(both) == 2 and (both["difference"] == 0).all()  # same adapter, same numbers


def test_resume_of_a_finished_stamped_run_keeps_the_table(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(runs["random"][0], run)
    before = (run / "metrics.csv").read_bytes()
    code, out, err = _run(capsys, run, "--random-weights", "--resume")
    assert code == 0, err
    assert (run / "metrics.csv").read_bytes() == before
    assert BANNER in out


def test_a_table_written_before_the_column_is_still_read_and_stamped(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "old"
    shutil.copytree(runs["random"][0], run)
    table = _metrics(run).drop(columns="random_weights")
    table.to_csv(run / "metrics.csv", index=False, float_format="%.10g")
    code, _, err = _bench(capsys, "report", run)
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["random_weights"] == [WEIGHTED]
    assert NOTE in (run / "report.md").read_text()
    # An edited stamp is an edited table: refused like any other edit.
    stamped = _metrics(runs["random"][0])
    stamped["random_weights"] = False
    stamped.to_csv(run / "metrics.csv", index=False, float_format="%.10g")
    code, _, err = _bench(capsys, "report", run)
    assert code == 2 and "does not match" in err and "Traceback" not in err


def test_merged_shards_keep_the_stamp(tmp_path, capsys):
    shards = [tmp_path / f"shard{i}" for i in range(2)]
    for i, out in enumerate(shards):
        code, _, err = _run(capsys, out, "--random-weights", "--shard", f"{i}/2")
        assert code == 0, err
    merged = tmp_path / "merged"
    code, out, err = _bench(capsys, "merge", merged, *shards)
    assert code == 0, err
    table = _metrics(merged)
    assert table.groupby("model")["random_weights"].agg(set).to_dict() == {
        "full-frame": {False}, WEIGHTED: {True}}
    assert json.loads((merged / "summary.json").read_text())["random_weights"] == [WEIGHTED]
