"""A small synthetic run directory for the report, check and compare tests.

Not a test module by itself: ``make_run`` writes a run directory the way
``bench run`` does (config.json with the dataset cards, manifest.json,
prompts.jsonl through the real ledger writer, predictions through ``bench.store``, metrics.csv from
``bench.scoring``), for two datasets read by a test reader registered here:
``fake-cells`` (image flows, several images per patient) and ``fake-ct``
(volumes with two organs). Model ``good`` predicts the truth shifted by 1
pixel, ``poor`` by 4 pixels, ``broken`` raises on one flow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from bench import atomic
from bench.cache import DIGEST_VERSION, flow_frames_digest
from bench.metrics import EmptyPolicy
from bench.prompts import ledger
from bench.readers import FlowRef, Reader, register_reader
from bench.readers.cards import Card
from bench.rundir import TIDY_COLUMNS, RunDir, card_record
from bench.scoring import failure_rows, score_flow
from bench.store import write_prediction
from bench.types import Flow, Prediction, Prompt

READER = "test-report-synthetic"
CARDS = {
    "fake-cells": Card(name="fake-cells", reader=READER, kind="image-flow", targets=("cell",),
                       one_prompt_kind="point", synthetic=True),
    "fake-ct": Card(name="fake-ct", reader=READER, kind="volume",
                    targets=("liver", "spleen"), one_prompt_kind="box", synthetic=True),
}
SHIFTS = {"good": 1, "poor": 4, "broken": 0}


def _disc(shape, centre, radius):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def read_fake(card: Card, root: Path | None, limit: int | None,
              errors: list | None = None) -> Iterator[Flow]:
    rng = np.random.default_rng(sum(map(ord, card.name)))
    count = 3 if card.kind == "image-flow" else 2
    for index in range(count if limit is None else min(limit, count)):
        if card.kind == "image-flow":
            frames, masks, cases, patients = [], [], [], []
            for image in range(4):
                centre = (int(rng.integers(18, 30)), int(rng.integers(18, 30)))
                mask = _disc((48, 48), centre, int(rng.integers(6, 11)))
                frames.append((mask * 120 + rng.normal(60, 15, mask.shape)).astype(np.float32))
                masks.append(mask)
                cases.append(f"flow{index}/img{image}")
                patients.append(f"patient{index}-{image // 2}")
            yield Flow(id=f"flow{index}", dataset=card.name, kind="image-flow", frames=frames,
                       masks={"cell": masks}, case_ids=cases, patient_ids=patients)
        else:
            depth = 6
            liver = np.zeros((depth, 40, 40), bool)
            spleen = np.zeros((depth, 40, 40), bool)
            for z in range(1, depth - 1):
                liver[z] = _disc((40, 40), (14 + index, 14), 7)
                spleen[z] = _disc((40, 40), (26, 27 - index), 4 + (z % 2))
            frames = (liver * 100 + spleen * 160 + rng.normal(20, 5, liver.shape)).astype(
                np.float32)
            yield Flow(id=f"vol{index}", dataset=card.name, kind="volume", frames=frames,
                       masks={"liver": liver, "spleen": spleen}, spacing=(2.0, 1.0, 1.0))


@register_reader(READER)
class FakeReader(Reader):
    """The fake datasets' reader: :func:`read_fake` behind the reader interface."""

    def list_flows(self, card: Card, root: Path | None) -> list[FlowRef]:
        return [FlowRef(flow.id) for flow in read_fake(card, root, None)]

    def load_flow(self, card: Card, ref: FlowRef, errors: list | None = None) -> Flow:
        return next(flow for flow in read_fake(card, None, None) if flow.id == ref.id)


def _prompts(flow: Flow, kind: str) -> list[Prompt]:
    prompts = []
    for target, masks in flow.masks.items():
        frame = next(i for i, m in enumerate(masks) if np.any(m))
        rows, cols = np.nonzero(masks[frame])
        if kind == "point":
            prompts.append(Prompt(target, frame, "point",
                                  points=((int(np.median(cols)), int(np.median(rows))),),
                                  labels=(1,)))
        else:
            prompts.append(Prompt(target, frame, "box", box=(int(cols.min()), int(rows.min()),
                                                             int(cols.max()), int(rows.max()))))
    return prompts


def make_run(run_dir: Path, *, models=("good", "poor"), seeds=(0,), demo: bool = True,
             datasets=("fake-cells", "fake-ct"), extra_shift: dict | None = None) -> Path:
    """Write a complete synthetic run directory and return it.

    ``extra_shift`` maps (model, seed) to an additional pixel shift, so that
    seeds differ.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = {"suite": "fake", "protocol": "one-prompt", "protocol_params": {"template": "first"},
            "datasets": [{"name": d, "root": None} for d in datasets], "models": list(models),
            "model_settings": {}, "seeds": list(seeds), "metrics": ["dice", "iou", "hd95"],
            "empty_policy": "exclude", "nsd_tolerance_mm": 2.0, "limit": None,
            "description": "", "reproduces": "", "demo": demo, "unconfigured": []}
    atomic.write_json(run_dir / "config.json", {
        "plan": plan, "cards": {d: card_record(CARDS[d]) for d in datasets},
        "provenance": {"versions": {"python": "3"}, "git": {"commit": "abc"}},
        "adapters": {m: {"description": f"test model {m}"} for m in models}})
    manifest = {"digest_version": DIGEST_VERSION, "datasets": {}}
    ledger_rows, tidy = [], []
    policy = EmptyPolicy(both_empty="exclude")
    for name in datasets:
        card = CARDS[name]
        manifest["datasets"][name] = {"root": None, "synthetic": card.synthetic, "flows": [],
                                      "failures": [], "refused": False}
        for position, flow in enumerate(read_fake(card, None, None)):
            manifest["datasets"][name]["flows"].append(
                {"id": flow.id, "frames": len(flow.frames), "cases": len(flow.case_ids),
                 "targets": flow.targets, "position": position,
                 "case_ids": list(flow.case_ids), "patient_ids": list(flow.patient_ids),
                 "frames_sha256": flow_frames_digest(flow.frames, flow.source_frames)})
            for seed in seeds:
                prompts = _prompts(flow, card.one_prompt_kind)
                ledger_rows += ledger.prompt_rows(prompts, dataset=name, case=flow.id,
                                                  protocol="one-prompt", seed=seed)
                for model in models:
                    shift = SHIFTS[model] + (extra_shift or {}).get((model, seed), 0)
                    if model == "broken" and flow.id.endswith("1"):
                        rows = failure_rows(flow.targets, flow.case_ids, flow.patient_ids,
                                            plan["metrics"], "RuntimeError: boom")
                    else:
                        masks = {t: [np.roll(np.asarray(m), shift, axis=-1) for m in flow.masks[t]]
                                 for t in flow.targets}
                        prediction = Prediction(masks=masks)
                        rows = score_flow(flow, prediction,
                                          metrics=plan["metrics"], policy=policy,
                                          nsd_tolerance_mm=2.0)
                        write_prediction(RunDir(run_dir).prediction_folder(model, seed, name),
                                         flow, prediction)
                    for row in rows:
                        row.update(dataset=name, flow=flow.id, model=model,
                                   protocol="one-prompt", seed=seed)
                        row.setdefault("message", "")
                    tidy += rows
    ledger.write_ledger(run_dir / "prompts.jsonl", ledger_rows)
    atomic.write_json(run_dir / "manifest.json", manifest)
    table = pd.DataFrame(tidy, columns=TIDY_COLUMNS)
    table.to_csv(run_dir / "metrics.csv", index=False, float_format="%.10g")
    return run_dir


def read_table(run_dir: Path) -> pd.DataFrame:
    return RunDir(run_dir).read_metrics()


def write_table(run_dir: Path, table: pd.DataFrame) -> None:
    table.to_csv(Path(run_dir) / "metrics.csv", index=False, float_format="%.10g")


def summary_of(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "summary.json").read_text())
