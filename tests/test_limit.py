"""--limit counts cases (images or volumes), records the cut, and the report says so."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.config import load_config
from bench.errors import ConfigError
from bench.plan import make_plan
from bench.readers import Truncation, _limited, card_from_table, read_flow, read_flows
from bench.readers.cases import CaseFlowRef, CaseRef
from bench.rundir import RunDir
from bench.runner import execute

REPO = Path(__file__).resolve().parents[1]


def _flow(name: str, size: int) -> CaseFlowRef:
    return CaseFlowRef(name, tuple(CaseRef(f"{name}{i}", f"{name}{i}") for i in range(size)))


def test_limit_keeps_the_first_cases_in_order_and_cuts_one_flow():
    refs = [_flow("a", 3), _flow("b", 5), _flow("c", 1)]
    kept, cut = _limited(refs, 4)
    assert [r.id for r in kept] == ["a", "b"]
    assert [c.id for r in kept for c in r.cases] == ["a0", "a1", "a2", "b0"]
    assert cut == Truncation(limit=4, cases_listed=9, cases_kept=4, flows_listed=3,
                             flows_kept=2, flow_cut="b")
    assert cut.describe() == ("first 4 of 9 cases in the reader's order (2 of 3 flows; flow "
                              "'b' cut to its first images)")
    kept, cut = _limited(refs, 8)  # whole flows: nothing is cut inside one
    assert [r.size for r in kept] == [3, 5] and cut.flow_cut is None and cut.cases_kept == 8
    assert _limited(refs, 9) == (refs, None) and _limited(refs, None) == (refs, None)
    assert _limited(refs, 0)[0] == []
    with pytest.raises(ConfigError, match="limit must be non-negative"):
        _limited(refs, -1)


def _images(root: Path, count: int) -> object:
    (root / "img").mkdir(parents=True)
    for i in range(count):
        image = np.full((16, 16), i * 10, np.uint8)
        mask = np.zeros((16, 16), np.uint8)
        mask[4:12, 4:12] = 1
        Image.fromarray(image).save(root / "img" / f"c{i:02d}.png")
        Image.fromarray(mask).save(root / "img" / f"c{i:02d}_m.png")
    return card_from_table({"name": "many", "reader": "pairs2d", "kind": "image-flow",
                            "targets": ["t"], "options": {"image": "img/c{id}.png",
                                                          "mask": "img/c{id}_m.png",
                                                          "fields": {"id": r"\d+"},
                                                          "labels": {"t": 1}}}, "many.toml")


def test_one_image_flow_is_limited_by_images(tmp_path):
    card = _images(tmp_path, 12)  # one flow of 12 images, as one flow of 359 was
    cuts: list = []
    [flow] = read_flows(card, tmp_path, limit=5, truncation=cuts)
    assert flow.case_ids == ["00", "01", "02", "03", "04"]
    assert [float(f.mean()) for f in flow.frames] == [0, 10, 20, 30, 40]
    assert cuts == [Truncation(5, 12, 5, 1, 1, "many")]
    again = read_flow(card, tmp_path, "many", 0, limit=5)  # a worker reads the same cut
    assert again.case_ids == flow.case_ids


def test_the_run_records_the_cut_and_the_report_says_it(tmp_path):
    _images(tmp_path / "data", 12)
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "many.toml").write_text(
        'name = "many"\nreader = "pairs2d"\nkind = "image-flow"\ntargets = ["t"]\n'
        '[options]\nimage = "img/c{id}.png"\nmask = "img/c{id}_m.png"\n'
        'fields = { id = "\\\\d+" }\nlabels = { t = 1 }\n')
    config = load_config(REPO / "bench.toml", cards=[tmp_path / "cards"])
    plan = make_plan(config, "one-prompt", models=["full-frame"], datasets=["many"], limit=5,
                     seeds=[0, 1], roots={"many": tmp_path / "data"})
    execute(plan, tmp_path / "run")
    from bench.report import write_report

    write_report(tmp_path / "run")
    entry = RunDir(tmp_path / "run").read_manifest()["datasets"]["many"]
    assert entry["truncated"]["cases_kept"] == 5 and entry["truncated"]["cases_listed"] == 12
    assert entry["flows"][0]["case_ids"] == ["00", "01", "02", "03", "04"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert ("**Truncated by --limit 5:** `many` scored the first 5 of 12 cases in the "
            "reader's order (1 of 1 flows; flow 'many' cut to its first images).") in report


def test_limit_1_on_image_flows_says_nothing_will_be_scored(tmp_path, capsys):
    # One case per image flow is its template, which one-prompt gives and never scores:
    # the run warns before it starts and says why when nothing was scored.
    from bench.cli import main

    code = main(["run", "--suite", "demo", "--datasets", "demo-cells", "--limit", "1",
                 "--models", "full-frame", "--out", str(tmp_path / "run"), "--no-cache"])
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())
    assert code == 1  # a run that measured nothing is a failure (issue 17)
    assert "FAIL: no case was scored" in captured.err
    assert ("--limit 1 leaves each image flow (demo-cells) only its template, which one-prompt "
            "gives rather than scores") in out
    assert "no results: no case was scored; one-prompt gives each flow's template" in out
    code = main(["run", "--suite", "demo", "--datasets", "demo-cells", "--limit", "2",
                 "--models", "full-frame", "--out", str(tmp_path / "run2"), "--no-cache"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0 and "--limit 1 leaves" not in out and "no results" not in out
