"""Sharding for job arrays, and merging shard run directories into one run.

``bench run ... --shard i/n`` runs the units whose key ``k`` (hex) has
``int(k, 16) % n == i``: a deterministic split that needs no coordination, so
``n`` Slurm array tasks can each run one shard. Every shard writes a complete
run directory (config, the full prompt ledger and manifest, which depend only
on data, protocol and seeds, and its own units and predictions).

``bench merge OUT RUN_DIR...`` checks that the shards belong to the same run
(same plan, adapter fingerprints, ledger and manifest bytes), copies their
units, predictions and logs into ``OUT``, reports units that are missing or
present in several shards (duplicates must agree on their results; timings may
differ), and writes ``metrics.csv`` and ``units.csv``. The merged table is
byte for byte the table of the same run done in one go.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import atomic

# The parts of a unit record that are its result; the rest (timings, memory,
# worker, attempts, cache use) may differ between two runs of the same unit.
RESULT_FIELDS = ("key", "dataset", "flow", "model", "protocol", "seed", "status", "message",
                 "scores", "rows")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ValueError naming ``--shard`` otherwise."""
    index, sep, count = str(text).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = -1
    if not sep or n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard: expected I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return i, n


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """Whether the unit ``key`` belongs to ``shard`` ``(i, n)`` (every unit when None)."""
    if shard is None:
        return True
    index, count = shard
    return int(key, 16) % count == index


@dataclass
class MergeOutcome:
    out: Path
    units_expected: int
    units_merged: int
    missing: list[dict[str, Any]] = field(default_factory=list)
    duplicated: list[dict[str, Any]] = field(default_factory=list)


def merge_runs(out: Path, run_dirs: Sequence[Path]) -> MergeOutcome:
    """Join shard run directories into the run directory ``out``.

    Raises
    ------
    ValueError
        ``out`` is not empty or is one of the inputs; an input is not a run
        directory; the inputs differ in plan, adapter fingerprints, ledger or
        manifest; a unit is not part of the plan; a unit present twice has
        different results; a prediction or log file present twice differs.
    """
    from bench.runner import expected_units, write_metrics, write_unit_summary

    out = Path(out)
    runs = [Path(r) for r in run_dirs]
    if not runs:
        raise ValueError("bench merge: give at least one RUN_DIR")
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"bench merge: {out} is not empty; choose a new OUT folder")
    if any(out.resolve() == run.resolve() for run in runs):
        raise ValueError(f"bench merge: OUT {out} is also an input")
    configs = [_read_run(run) for run in runs]
    first, reference = runs[0], configs[0]
    for run, config in zip(runs[1:], configs[1:], strict=True):
        _check_same(first, reference, run, config)

    plan, manifest = reference["plan"], atomic.read_json(first / "manifest.json")
    expected = {unit["key"]: unit for unit in expected_units(plan, manifest)}
    found: dict[str, Path] = {}
    duplicated: list[dict[str, Any]] = []
    for run in runs:
        for path in sorted((run / "units").glob("*.json")):
            key = path.stem
            if key not in expected:
                raise ValueError(f"bench merge: {path} is not a unit of the plan")
            if key in found:
                if _result(atomic.read_json(found[key])) != _result(atomic.read_json(path)):
                    raise ValueError(f"bench merge: unit {key} has different results in "
                                     f"{found[key].parents[1]} and {run}")
                duplicated.append({**expected[key], "runs": [str(found[key].parents[1]),
                                                             str(run)]})
                continue
            found[key] = path
    missing = [unit for key, unit in expected.items() if key not in found]

    copied: dict[Path, Path] = {}
    for run in runs:
        for folder in ("predictions", "logs"):
            for source in sorted((run / folder).rglob("*")):
                if source.is_file() and atomic.PARTIAL_MARK not in source.name:
                    _copy_once(source, out / source.relative_to(run), copied)
    for key, path in sorted(found.items()):
        _copy(path, out / "units" / f"{key}.json")
    for name in ("prompts.jsonl", "manifest.json"):
        _copy(first / name, out / name)
    merged = {k: v for k, v in reference.items() if k not in ("resumed", "execution")}
    merged.update(shard=None, merged={
        "time": _now(), "units_expected": len(expected), "units_merged": len(found),
        "missing": [u["key"] for u in missing], "duplicated": [u["key"] for u in duplicated],
        "from": [{"run_dir": str(run.resolve()), "shard": config.get("shard"),
                  "started": config.get("started"), "execution": config.get("execution")}
                 for run, config in zip(runs, configs, strict=True)]})
    atomic.write_json(out / "config.json", merged)
    write_metrics(out)
    write_unit_summary(out)
    return MergeOutcome(out, len(expected), len(found), missing, duplicated)


def _read_run(run: Path) -> dict[str, Any]:
    for name in ("config.json", "prompts.jsonl", "manifest.json"):
        if not (run / name).is_file():
            raise ValueError(f"bench merge: {run} has no {name}: not a run directory (or "
                             "its shard has not written its ledger yet)")
    return atomic.read_json(run / "config.json")


def _check_same(first: Path, a: dict[str, Any], run: Path, b: dict[str, Any]) -> None:
    changed = sorted(k for k in set(a["plan"]) | set(b["plan"])
                     if a["plan"].get(k) != b["plan"].get(k))
    if changed:
        raise ValueError(f"bench merge: {run} is another run than {first}: the plan differs in "
                         f"{', '.join(changed)}")
    models = sorted(m for m in set(a.get("adapters", {})) | set(b.get("adapters", {}))
                    if a.get("adapters", {}).get(m) != b.get("adapters", {}).get(m))
    if models:
        raise ValueError(f"bench merge: {run} and {first} ran different adapters (fingerprints "
                         f"of {', '.join(models)} differ: weights, settings, device or versions)")
    for name in ("prompts.jsonl", "manifest.json"):
        if (first / name).read_bytes() != (run / name).read_bytes():
            raise ValueError(f"bench merge: {run / name} differs from {first / name}: the shards "
                             "did not read the same data")


def _result(unit: dict[str, Any]) -> str:
    import json

    return json.dumps({k: unit.get(k) for k in RESULT_FIELDS}, sort_keys=True)


def _copy_once(source: Path, target: Path, copied: dict[Path, Path]) -> None:
    if target in copied:
        if copied[target].read_bytes() != source.read_bytes():
            raise ValueError(f"bench merge: {source} differs from {copied[target]}")
        return
    _copy(source, target)
    copied[target] = source


def _copy(source: Path, target: Path) -> None:
    with atomic.atomic_path(target) as temp:
        shutil.copyfile(source, temp)


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
