"""Regression check: a run's means against a committed reference.

The reference is a small CSV (:data:`REFERENCE_COLUMNS`), one row per
dataset, target, model, protocol and metric with its mean and counts, written
from a trusted run by :func:`write_reference` (``bench check RUN_DIR
--write-reference reports/demo-reference.csv``). A ``summary.json`` or a run
directory can also serve as the reference.

Direction matters: Dice, IoU and NSD are better when higher, HD95,
HD95-max and ASSD when lower (:data:`HIGHER_IS_BETTER`); a metric not listed
there is checked in both directions. A finding is a regression when:

- ``worse``: the mean moved in the bad direction by more than the tolerance;
- ``missing``: a reference row has no counterpart now, or its mean became
  NaN (no valid case left);
- ``count``: the number of scored cases ``n`` changed, or more cases failed
  (``n_failed``) than in the reference: the mean no longer rests on the
  same cases.

Improvements beyond the tolerance and rows that are new are reported as
notes, not regressions (update the reference when they are intended).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import atomic
from bench.aggregate import aggregates_frame, is_excluded, is_scored, per_case
from bench.compare import check_metric_names
from bench.errors import ConfigError, DataError
from bench.rundir import RunDir

KEYS = ["dataset", "target", "model", "protocol", "metric"]
REFERENCE_COLUMNS = [*KEYS, "mean", "n", "n_excluded", "n_penalised", "n_failed"]
HIGHER_IS_BETTER: dict[str, bool] = {"dice": True, "iou": True, "nsd": True,
                                     "hd95": False, "hd95_max": False, "assd": False}
DEFAULT_TOLERANCE = 1e-6
# Floating-point slack so that a change of exactly the tolerance passes.
_EPS = 1e-12


@dataclass(frozen=True)
class Finding:
    """One difference between a run and the reference.

    ``kind`` is ``worse``, ``missing`` or ``count`` (regressions) or
    ``improved`` or ``new`` (notes). ``difference`` is now - reference.
    """

    kind: str
    dataset: str
    target: str
    model: str
    protocol: str
    metric: str
    reference: float
    now: float
    difference: float
    detail: str = ""

    @property
    def is_regression(self) -> bool:
        return self.kind in ("worse", "missing", "count")


def run_means(run_dir: Path) -> pd.DataFrame:
    """Means and counts per dataset, target, model, protocol and metric of a run.

    Computed from ``metrics.csv`` with the aggregate's rule: ``ok`` and
    ``penalised`` cases enter the mean, ``both_empty`` are excluded and
    ``error`` cases are counted as failed.
    """
    return means_of_table(RunDir(run_dir).read_metrics())


def means_of_table(table: pd.DataFrame) -> pd.DataFrame:
    """:data:`REFERENCE_COLUMNS` from a tidy per-case table."""
    records = []
    for key, group in per_case(table).groupby(KEYS, sort=True):
        valid = group[is_scored(group)]
        records.append({
            **dict(zip(KEYS, key, strict=True)),
            "mean": float(valid["value"].mean()) if len(valid) else float("nan"),
            "n": int(len(valid)),
            "n_excluded": int(is_excluded(group).sum()),
            "n_penalised": int((group["status"] == "penalised").sum()),
            "n_failed": int((group["status"] == "error").sum()),
        })
    return pd.DataFrame.from_records(records, columns=REFERENCE_COLUMNS)


def write_reference(run_dir: Path, path: Path) -> Path:
    """Write the means of ``run_dir`` as a reference CSV at ``path`` (atomically)."""
    means = run_means(run_dir)
    if means.empty:
        raise DataError(RunDir(run_dir).metrics_path, "no metrics to write as a reference")
    with atomic.atomic_path(Path(path)) as temp:
        means.to_csv(temp, index=False, float_format="%.10g")
    return Path(path)


def load_reference(path: Path) -> pd.DataFrame:
    """A reference: a CSV of :data:`REFERENCE_COLUMNS`, a ``summary.json`` or a run directory."""
    path = Path(path)
    if path.is_dir():
        run = RunDir(path)
        if run.metrics_path.is_file():
            return run_means(path)
        path = run.summary_path
    if not path.is_file():
        raise DataError(path, "reference not found")
    if path.suffix == ".json":
        frame = _summary_aggregates(path)
        if frame.empty:
            return pd.DataFrame(columns=REFERENCE_COLUMNS)
    else:
        # Only the mean may be NaN; names such as "NA" stay names.
        frame = pd.read_csv(path, keep_default_na=False,
                            na_values={"mean": ["", "nan", "NaN"]}, dtype={k: str for k in KEYS})
    missing = [c for c in REFERENCE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(path, f"reference lacks column(s) {', '.join(missing)}; expected "
                        f"{', '.join(REFERENCE_COLUMNS)}")
    frame = frame[REFERENCE_COLUMNS].copy()
    duplicated = frame.duplicated(KEYS)
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise DataError(path, f"two reference rows for "
                        f"{'/'.join(str(first[k]) for k in KEYS)}")
    return frame


def _summary_aggregates(path: Path) -> pd.DataFrame:
    """The ``aggregates`` of a ``summary.json`` as a frame."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("aggregates"), list):
        raise DataError(path, "not a summary.json: no 'aggregates' list")
    try:
        return aggregates_frame(summary["aggregates"])
    except (TypeError, ValueError) as err:  # e.g. a mean that is text
        raise DataError(path, f"not a summary.json: aggregates {err}") from None


def parse_tolerance(text: str) -> dict[str, float]:
    """``"0.01"`` or ``"0.01,hd95=1.5"`` -> ``{"*": 0.01, "hd95": 1.5}``.

    A bare number is the default for every metric; ``metric=value`` items
    override it. Raises ConfigError naming ``--tolerance`` on bad input (an
    unknown metric name included, with a did-you-mean).
    """
    tolerance: dict[str, float] = {}
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        name, _, value = item.rpartition("=")
        name = name.strip() or "*"
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"--tolerance: {item!r} is not a number or metric=number") \
                from None
        if not math.isfinite(number) or number < 0:
            raise ConfigError(f"--tolerance: {item!r} must be a finite number >= 0")
        if name != "*":
            check_metric_names([name], "--tolerance")
        if name in tolerance:
            raise ConfigError(f"--tolerance: {name!r} given twice")
        tolerance[name] = number
    if not tolerance:
        raise ConfigError("--tolerance: empty")
    tolerance.setdefault("*", DEFAULT_TOLERANCE)
    return tolerance


def compare_means(now: pd.DataFrame, reference: pd.DataFrame,
                  tolerance: Mapping[str, float] | float = DEFAULT_TOLERANCE) -> list[Finding]:
    """Every finding of ``now`` against ``reference`` (both :data:`REFERENCE_COLUMNS` frames)."""
    if not isinstance(tolerance, Mapping):
        tolerance = {"*": float(tolerance)}
    current = {tuple(str(v) for v in row[:5]): row
               for row in now[REFERENCE_COLUMNS].itertuples(index=False, name=None)}
    seen = set()
    findings: list[Finding] = []
    for row in reference[REFERENCE_COLUMNS].itertuples(index=False, name=None):
        key = tuple(str(v) for v in row[:5])
        seen.add(key)
        ref_mean, ref_n, ref_failed = float(row[5]), int(row[6]), int(row[9])
        metric = key[4]
        if key not in current:
            findings.append(Finding("missing", *key, ref_mean, math.nan, math.nan,
                                    "no such row in the run"))
            continue
        new = current[key]
        new_mean, new_n, new_failed = float(new[5]), int(new[6]), int(new[9])
        difference = new_mean - ref_mean
        if math.isnan(new_mean) and not math.isnan(ref_mean):
            findings.append(Finding("missing", *key, ref_mean, new_mean, math.nan,
                                    "no valid case now"))
            continue
        if new_n != ref_n or new_failed > ref_failed:
            findings.append(Finding("count", *key, ref_mean, new_mean, difference,
                                    f"n {ref_n} -> {new_n}, failed {ref_failed} -> {new_failed}"))
        if math.isnan(ref_mean):
            continue
        limit = float(tolerance.get(metric, tolerance.get("*", DEFAULT_TOLERANCE)))
        worse = _worse_by(metric, difference)
        if worse > limit + _EPS:
            findings.append(Finding("worse", *key, ref_mean, new_mean, difference,
                                    _direction(metric)))
        elif -worse > limit + _EPS and metric in HIGHER_IS_BETTER:
            findings.append(Finding("improved", *key, ref_mean, new_mean, difference,
                                    _direction(metric)))
    for key, new in current.items():
        if key not in seen:
            findings.append(Finding("new", *key, math.nan, float(new[5]), math.nan,
                                    "not in the reference"))
    return findings


def _worse_by(metric: str, difference: float) -> float:
    """How much worse ``difference`` (now - reference) is; negative when better."""
    if metric not in HIGHER_IS_BETTER:
        return abs(difference)  # unknown direction: any change counts
    return -difference if HIGHER_IS_BETTER[metric] else difference


def _direction(metric: str) -> str:
    if metric not in HIGHER_IS_BETTER:
        return "direction unknown: any change"
    return "higher is better" if HIGHER_IS_BETTER[metric] else "lower is better"


def check_run(run_dir: Path, reference: Path,
              tolerance: Mapping[str, float] | float = DEFAULT_TOLERANCE) -> list[Finding]:
    """:func:`compare_means` of ``run_dir`` against the reference at ``reference``."""
    return compare_means(run_means(run_dir), load_reference(reference), tolerance)


def findings_table(findings: list[Finding]) -> pd.DataFrame:
    """Findings as a table for printing: regressions first."""
    rows = sorted(findings, key=lambda f: (not f.is_regression, f.kind, f.dataset, f.target,
                                           f.model, f.metric))
    return pd.DataFrame([{
        "kind": f.kind, "metric": f.metric, "dataset": f.dataset, "target": f.target,
        "model": f.model, "protocol": f.protocol, "reference": _fmt(f.reference),
        "now": _fmt(f.now), "difference": _fmt(f.difference, signed=True), "detail": f.detail,
    } for f in rows])


def _fmt(value: float, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"
