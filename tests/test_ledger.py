"""The prompt ledger: canonical, keyed, byte-identical, round-tripping (issue 3)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from bench.prompts import PROTOCOLS, draw_prompts, ledger, make_prompts
from bench.prompts.kinds import mask_sha256
from bench.types import Flow, Prompt

KIND_FOR = {"one-prompt": "box", "paper-random": "mask", "every-frame": "box-jitter",
            "official-code": None, "interactive": None, "cvpr25-interactive": None,
            "medsam-box": None, "sam-med3d-clicks": None}
VOLUME_ONLY = {"cvpr25-interactive"}  # refuses image flows


def make_volume(name: str, offset: int, reverse_targets: bool = False) -> Flow:
    n = 24
    masks = {}
    for i, target in enumerate(["liver", "kidney", "spleen"]):
        mask = np.zeros((n, 12, 12), bool)
        start = (offset + 3 * i) % 8
        for f in range(start, start + 10 + i):
            mask[f, 2 + i:6 + i, 3:7 + f % 3] = True
        masks[target] = mask
    if reverse_targets:
        masks = dict(reversed(list(masks.items())))
    return Flow(name, "demo-ct", "volume", np.zeros((n, 12, 12), np.float32), masks)


def make_image_flow(name: str) -> Flow:
    shapes = [(10 + i % 2, 9) for i in range(11)]
    cup = [np.zeros(s, bool) for s in shapes]
    disc = [np.zeros(s, bool) for s in shapes]
    for i, (c, d) in enumerate(zip(cup, disc, strict=True)):
        d[2:8, 1:7] = True
        if i % 4 != 1:
            c[3:6, 2 + i % 3:5] = True
    return Flow(name, "demo-fundus", "image-flow", [np.zeros(s) for s in shapes],
                {"disc": disc, "cup": cup})


def all_flows(reverse_targets: bool = False) -> list[Flow]:
    return [make_volume("v01", 0, reverse_targets), make_volume("v02", 3, reverse_targets),
            make_image_flow("f01"), make_volume("v03", 5, reverse_targets)]


def ledger_rows(flows, seeds=(0, 1), protocols=tuple(KIND_FOR)):
    rows = []
    for flow in flows:
        for protocol in protocols:
            if protocol in VOLUME_ONLY and flow.kind != "volume":
                continue
            for seed in seeds:
                prompts = make_prompts(flow, protocol, seed=seed,
                                       prompt_kind=KIND_FOR[protocol], params={})
                rows.extend(ledger.prompt_rows(prompts, dataset=flow.dataset, case=flow.id,
                                               protocol=protocol, seed=seed))
    return rows


@pytest.fixture(scope="module")
def full_rows():
    return ledger_rows(all_flows())


def test_every_protocol_is_in_the_ledger(full_rows):
    # alpnet-protocol derives a flow's rows from another flow: tests/test_alpnet.py
    assert {row["protocol"] for row in full_rows} == set(PROTOCOLS) - {"alpnet-protocol"}
    with pytest.raises(ValueError, match="from another flow"):
        make_prompts(all_flows()[0], "alpnet-protocol", seed=0)
    assert {row["kind"] for row in full_rows} >= {"box", "mask", "box-jitter", "point",
                                                 "point-random", "empty-mask"}


def test_rerun_writes_a_byte_identical_file(tmp_path, full_rows):
    ledger.write_ledger(tmp_path / "a.jsonl", full_rows)
    ledger.write_ledger(tmp_path / "b.jsonl", ledger_rows(all_flows()))
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_processing_order_does_not_change_the_file(tmp_path, full_rows):
    reordered = []
    for flow in reversed(all_flows(reverse_targets=True)):
        reordered.extend(ledger_rows([flow], seeds=(1, 0),
                                     protocols=tuple(reversed(list(KIND_FOR)))))
    ledger.write_ledger(tmp_path / "a.jsonl", full_rows)
    ledger.write_ledger(tmp_path / "b.jsonl", reversed(reordered))
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_limit_gives_the_same_lines_for_the_flows_it_keeps(tmp_path, full_rows):
    ledger.write_ledger(tmp_path / "full.jsonl", full_rows)
    ledger.write_ledger(tmp_path / "limit.jsonl", ledger_rows(all_flows()[:2]))
    full_lines = (tmp_path / "full.jsonl").read_text().splitlines()
    kept = [line for line in full_lines if json.loads(line)["case"] in ("v01", "v02")]
    assert (tmp_path / "limit.jsonl").read_text().splitlines() == kept
    assert len(kept) > 0


def test_file_is_canonical_and_rows_carry_their_own_hash(tmp_path, full_rows):
    path = tmp_path / "prompts.jsonl"
    ledger.write_ledger(path, full_rows)
    data = path.read_bytes()
    assert data.endswith(b"\n") and data.isascii()
    rows = [json.loads(line) for line in data.decode().splitlines()]
    for line, row in zip(data.decode().splitlines(), rows, strict=True):
        assert line == json.dumps(row, sort_keys=True, separators=(",", ":"))
        body = {k: v for k, v in row.items() if k != "hash"}
        expected = hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        assert row["hash"] == expected
    keys = [(r["dataset"], r["case"], r["protocol"], r["seed"], r["target"], r["frame"])
            for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"]  # no temp left


def strip_seed(rows):
    return [{k: v for k, v in r.items() if k not in ("seed", "hash")} for r in rows]


def test_seed_changes_random_protocols_and_leaves_point_and_box(tmp_path):
    flows = all_flows()
    for protocol, kind in (("one-prompt", "point"), ("one-prompt", "box"),
                           ("every-frame", "box"), ("every-frame", "point")):
        rows = {}
        for seed in (0, 7):
            rows[seed] = []
            for flow in flows:
                prompts = make_prompts(flow, protocol, seed=seed, prompt_kind=kind, params={})
                rows[seed] += ledger.prompt_rows(prompts, dataset=flow.dataset, case=flow.id,
                                                 protocol=protocol, seed=seed)
        assert strip_seed(rows[0]) == strip_seed(rows[7])
    for protocol, kind, params in (("paper-random", "point", {}),
                                   ("one-prompt", "point", {"template": "random"}),
                                   ("one-prompt", "point-random", {}),
                                   ("every-frame", "box-jitter", {}),
                                   ("official-code", None, {"prompt": "click"})):
        per_seed = []
        for seed in (0, 7):
            rows = []
            for flow in flows:
                prompts = make_prompts(flow, protocol, seed=seed, prompt_kind=kind, params=params)
                rows += ledger.prompt_rows(prompts, dataset=flow.dataset, case=flow.id,
                                           protocol=protocol, seed=seed)
            per_seed.append(strip_seed(rows))
        assert per_seed[0] != per_seed[1], (protocol, kind, params)


def test_ledger_round_trips(tmp_path, full_rows):
    path = tmp_path / "prompts.jsonl"
    ledger.write_ledger(path, full_rows)
    rows = ledger.read_ledger(path)
    assert sorted(rows, key=ledger.sort_key) == sorted(full_rows, key=ledger.sort_key)
    groups = ledger.group_rows(rows)
    checked_masks = 0
    for flow in all_flows():
        for protocol in KIND_FOR:
            if protocol in VOLUME_ONLY and flow.kind != "volume":
                continue
            for seed in (0, 1):
                written = make_prompts(flow, protocol, seed=seed,
                                       prompt_kind=KIND_FOR[protocol], params={})
                read = ledger.rows_to_prompts(groups[(flow.dataset, flow.id, protocol, seed)],
                                              flow)
                assert read == written
                for a, b in zip(read, written, strict=True):
                    assert (a.mask is None) == (b.mask is None)
                    if a.mask is not None:
                        assert np.array_equal(a.mask, b.mask)
                        checked_masks += 1
    assert checked_masks > 0


def test_mask_prompts_are_checked_against_the_ground_truth(tmp_path):
    flow = make_volume("v01", 0)
    prompts = make_prompts(flow, "one-prompt", seed=0, prompt_kind="mask", params={})
    rows = ledger.prompt_rows(prompts, dataset=flow.dataset, case=flow.id,
                              protocol="one-prompt", seed=0)
    assert rows[0]["mask_sha256"] == mask_sha256(flow.masks[rows[0]["target"]][rows[0]["frame"]])
    assert rows[0]["mask_shape"] == [12, 12] and rows[0]["box"] is None
    changed = make_volume("v01", 0)
    changed.masks[rows[0]["target"]][rows[0]["frame"], 0, 0] ^= True
    with pytest.raises(ValueError, match="sha256 does not match"):
        ledger.rows_to_prompts(rows, changed)
    with pytest.raises(ValueError, match="does not belong"):
        ledger.rows_to_prompts(rows, make_volume("v02", 0))


def test_tampered_row_is_detected(tmp_path, full_rows):
    path = tmp_path / "prompts.jsonl"
    ledger.write_ledger(path, full_rows[:5])
    lines = path.read_text().splitlines()
    row = json.loads(lines[2])
    row["frame"] += 1
    lines[2] = json.dumps(row, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"prompts.jsonl:3: hash mismatch"):
        ledger.read_ledger(path)


def test_failed_write_leaves_the_old_file(tmp_path, full_rows):
    path = tmp_path / "prompts.jsonl"
    ledger.write_ledger(path, full_rows[:3])
    before = path.read_bytes()
    with pytest.raises(ValueError, match="two prompts"):
        ledger.write_ledger(path, full_rows[:3] + full_rows[:1])
    bad = dict(full_rows[0], frame=99)
    with pytest.raises(ValueError, match="hash mismatch"):
        ledger.write_ledger(path, [bad])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl"]


def test_format_rows_hand_case():
    prompts = [Prompt("cup", 5, "point-random", points=((3, 4),), labels=(0,)),
               Prompt("disc", 0, "box", box=(1, 2, 6, 7))]
    rows = ledger.prompt_rows(prompts, dataset="refuge", case="img1", protocol="official-code",
                              seed=2)
    text = ledger.format_rows(rows).splitlines()
    assert text[0].split() == ["dataset", "case", "protocol", "seed", "target", "frame", "kind",
                               "prompt", "hash"]
    assert text[1].split()[:8] == ["refuge", "img1", "official-code", "2", "cup", "5",
                                   "point-random", "-(3,4)"]
    assert text[2].split()[4:8] == ["disc", "0", "box", "box[1,2,6,7]"]
    assert text[2].split()[8] == rows[1]["hash"][:12]


def test_draw_prompts_writes_a_png(tmp_path):
    import matplotlib.image

    flow = make_volume("v01", 0)
    prompts = [p for p in make_prompts(flow, "official-code", seed=0, params={})
               if p.frame == 0] + make_prompts(flow, "one-prompt", seed=0, prompt_kind="mask",
                                               params={})[:1]
    prompts.append(Prompt("liver", 0, "point", points=((4, 3), (8, 8)), labels=(1, 0)))
    path = draw_prompts(np.random.default_rng(0).random((12, 12)), prompts,
                               tmp_path / "view" / "frame0.png", title="v01 frame 0")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert sorted(p.name for p in path.parent.iterdir()) == ["frame0.png"]
