"""Sharding for job arrays, and merging shard run directories into one run.

``bench run ... --shard i/n`` runs the units whose key ``k`` (hex) has
``int(k, 16) % n == i``: a deterministic split that needs no coordination, so
``n`` Slurm array tasks can each run one shard. Every shard writes a complete
run directory (config, the full prompt ledger and manifest, which depend only
on data, protocol and seeds, and its own units and predictions).

``bench merge OUT RUN_DIR...`` checks that the shards belong to the same run
(same plan, adapter fingerprints, ledger and manifest bytes, and the same code:
git commit and package version, :func:`code_identity`), copies their
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
from bench.errors import ConfigError, DataError
from bench.provenance import PACKAGE, timestamp
from bench.rundir import LEDGER, MANIFEST, RunDir, UnitRef


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n`` (None stays None).

    Raises
    ------
    ConfigError
        Naming ``--shard``, for anything else.
    """
    if text is None:
        return None
    index, sep, count = str(text).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = -1
    if not sep or n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard: expected I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return i, n


def shard_text(shard: tuple[int, int] | None) -> str | None:
    """``(i, n)`` -> ``"i/n"``, as the run record stores it (None: all units)."""
    return None if shard is None else f"{shard[0]}/{shard[1]}"


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
    missing: list[UnitRef] = field(default_factory=list)
    # Units found in several shards (with the same results): the unit and those shards.
    duplicated: list[tuple[UnitRef, list[str]]] = field(default_factory=list)


def merge_runs(out: Path, run_dirs: Sequence[Path]) -> MergeOutcome:
    """Join shard run directories into the run directory ``out``.

    Raises
    ------
    ConfigError
        No input, ``out`` is not empty or is one of the inputs.
    DataError
        An input is not a run directory; the inputs differ in plan, dataset
        cards, adapter fingerprints, code (git commit or package version),
        ledger or manifest; a unit is not part of
        the plan; a unit present twice has different results; a prediction or
        log file present twice differs.
    """
    target = RunDir(out)
    runs = [RunDir(r) for r in run_dirs]
    if not runs:
        raise ConfigError("bench merge: give at least one RUN_DIR")
    if not target.is_empty():
        raise ConfigError(f"bench merge: {target} is not empty; choose a new OUT folder")
    if any(target.path.resolve() == run.path.resolve() for run in runs):
        raise ConfigError(f"bench merge: OUT {target} is also an input")
    configs = [_read_run(run) for run in runs]
    first, reference = runs[0], configs[0]
    for run, config in zip(runs[1:], configs[1:], strict=True):
        _check_same(first, reference, run, config)

    expected = {unit.key: unit for unit in first.expected_units()}
    found: dict[str, tuple[RunDir, Path]] = {}
    duplicated: list[tuple[UnitRef, list[str]]] = []
    for run in runs:
        for path in run.unit_paths():
            key = path.stem
            if key not in expected:
                raise DataError(path, "not a unit of the plan")
            run.read_unit(path)  # a damaged unit file is named here, before anything is copied
            if key in found:
                owner, kept = found[key]
                if owner.read_unit(kept).result() != run.read_unit(path).result():
                    raise DataError(path, f"unit {key} has different results in {owner} and "
                                    f"{run}")
                duplicated.append((expected[key], [str(owner), str(run)]))
                continue
            found[key] = (run, path)
    missing = [unit for key, unit in expected.items() if key not in found]

    copied: dict[Path, Path] = {}
    for run in runs:
        for source in run.output_files():
            _copy_once(source, target.path / source.relative_to(run.path), copied)
    for key, (_, path) in sorted(found.items()):
        _copy(path, target.unit_path(key))
    for name in (LEDGER, MANIFEST):
        _copy(first.path / name, target.path / name)
    merged = {k: v for k, v in reference.items() if k not in ("resumed", "execution")}
    merged.update(shard=None, merged={
        "time": timestamp(), "units_expected": len(expected), "units_merged": len(found),
        "missing": [u.key for u in missing], "duplicated": [u.key for u, _ in duplicated],
        "from": [{"run_dir": str(run.path.resolve()), "shard": config.get("shard"),
                  "started": config.get("started"), "execution": config.get("execution")}
                 for run, config in zip(runs, configs, strict=True)]})
    target.write_config(merged)
    target.write_metrics()
    target.write_unit_table()
    return MergeOutcome(target.path, len(expected), len(found), missing, duplicated)


def _read_run(run: RunDir) -> dict[str, Any]:
    for path in (run.config_path, run.ledger_path, run.manifest_path):
        if not path.is_file():
            raise DataError(path, f"not found: {run} is not a run directory (or its shard "
                            "has not written its ledger yet)")
    return run.read_config()


def _check_same(first: RunDir, a: dict[str, Any], run: RunDir, b: dict[str, Any]) -> None:
    changed = sorted(k for k in set(a["plan"]) | set(b["plan"])
                     if a["plan"].get(k) != b["plan"].get(k))
    if changed:
        raise DataError(run.config_path, f"another run than {first}: the plan differs in "
                        f"{', '.join(changed)}")
    cards = sorted(c for c in set(a.get("cards", {})) | set(b.get("cards", {}))
                   if a.get("cards", {}).get(c) != b.get("cards", {}).get(c))
    if cards:
        raise DataError(run.config_path, f"another run than {first}: the dataset cards of "
                        f"{', '.join(cards)} differ")
    models = sorted(m for m in set(a.get("adapters", {})) | set(b.get("adapters", {}))
                    if a.get("adapters", {}).get(m) != b.get("adapters", {}).get(m))
    if models:
        raise DataError(run.config_path, f"{run} and {first} ran different adapters "
                        f"(fingerprints of {', '.join(models)} differ: weights, settings, "
                        "device or versions)")
    _check_same_code(first, a, run, b)
    for name in (LEDGER, MANIFEST):
        if (first.path / name).read_bytes() != (run.path / name).read_bytes():
            raise DataError(run.path / name, f"differs from {first.path / name}: the shards "
                            "did not read the same data")


def code_identity(config: dict[str, Any]) -> dict[str, str]:
    """What a run's ``config.json`` says about its code: git commit and package version.

    A value the record lacks (no git checkout, an older record) is ``unknown``.
    """
    record = config.get("provenance") or {}
    git = record.get("git") or {}
    version = record.get("version") or (record.get("versions") or {}).get(PACKAGE)
    return {"git commit": str(git.get("commit") or "unknown"),
            f"{PACKAGE} version": str(version or "unknown")}


def _check_same_code(first: RunDir, a: dict[str, Any], run: RunDir,
                     b: dict[str, Any]) -> None:
    """Refuse shards run with different code: the merged record keeps one provenance."""
    ours, theirs = code_identity(a), code_identity(b)
    for label in ours:
        if ours[label] != theirs[label]:
            raise DataError(run.config_path, f"{run} and {first} ran different code: "
                            f"{label} {theirs[label]} in {run}, {ours[label]} in {first}; "
                            "rerun the shards with one installation")


def _copy_once(source: Path, target: Path, copied: dict[Path, Path]) -> None:
    if target in copied:
        if copied[target].read_bytes() != source.read_bytes():
            raise DataError(source, f"differs from {copied[target]}")
        return
    _copy(source, target)
    copied[target] = source


def _copy(source: Path, target: Path) -> None:
    with atomic.atomic_path(target) as temp:
        shutil.copyfile(source, temp)
