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

Nothing is ever compared in silence: a reference without rows, a mean that
is not a number, or a NaN mean beside scored cases (``n > 0``) is refused
naming the file and row, and a run that scored no case at all fails the
check (:func:`unscored_reason`). ``--against demo`` names the reference of
the ``demo`` suite shipped with the package (:data:`BUILTIN_REFERENCES`).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping
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
COUNT_COLUMNS = REFERENCE_COLUMNS[6:]
# --against NAME: references shipped as package data (bench.resources.reports_folder()).
BUILTIN_REFERENCES = {"demo": "demo-reference.csv"}
HIGHER_IS_BETTER: dict[str, bool] = {"dice": True, "iou": True, "nsd": True, "nsd_deepmind": True,
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


def unscored_reason(means: pd.DataFrame) -> str | None:
    """Why a run whose means are ``means`` measured nothing; None when a case was scored.

    ``means`` is a :data:`REFERENCE_COLUMNS` frame (:func:`run_means`). The
    counts are those of one metric (each case has a row per metric).
    """
    if means.empty:
        return "its metrics table has no rows"
    if int(means["n"].sum()) > 0:
        return None
    one = means[means["metric"] == sorted(means["metric"].unique())[0]]
    failed, excluded = int(one["n_failed"].sum()), int(one["n_excluded"].sum())
    return (f"no case was scored ({failed} failed, {excluded} excluded as empty in both "
            "masks)")


def write_reference(run_dir: Path, path: Path) -> Path:
    """Write the means of ``run_dir`` as a reference CSV at ``path`` (atomically).

    Raises
    ------
    DataError
        The run scored no case: such a reference would check nothing.
    """
    means = run_means(run_dir)
    reason = unscored_reason(means)
    if reason is not None:
        raise DataError(RunDir(run_dir).metrics_path, f"{reason}; a reference from it would "
                        "check nothing")
    with atomic.atomic_path(Path(path)) as temp:
        means.to_csv(temp, index=False, float_format="%.10g")
    return Path(path)


def reference_path(against: Path) -> Path:
    """The reference file that ``--against`` names: a path, or a built-in name (``demo``).

    Raises
    ------
    ConfigError
        A built-in name that is also a file or folder here (ambiguous).
    """
    against = Path(against)
    name = str(against)
    if name not in BUILTIN_REFERENCES:
        return against
    from bench.resources import reports_folder

    builtin = reports_folder() / BUILTIN_REFERENCES[name]
    if against.exists():
        raise ConfigError(f"--against {name}: names the built-in reference {builtin}, but "
                          f"{against.resolve()} exists too; give the full path of the one "
                          "you mean")
    return builtin


def load_reference(path: Path) -> pd.DataFrame:
    """A reference: a CSV of :data:`REFERENCE_COLUMNS`, a ``summary.json`` or a run directory.

    Raises
    ------
    DataError
        Naming the file (and the row): not found, not a CSV, missing columns,
        no rows, a mean that is not a number, a NaN mean of scored cases, a
        count that is not a whole number, or two rows for one key.
    """
    path = Path(path)
    if path.is_dir():
        run = RunDir(path)
        if run.metrics_path.is_file():
            return _not_empty(path, run_means(path))
        path = run.summary_path
    if not path.is_file():
        raise DataError(path, "reference not found")
    if path.suffix == ".json":
        frame = _summary_aggregates(path)
        if frame.empty:
            raise DataError(path, "no aggregates: nothing to compare against")
        where = "aggregates[{}]".format
    else:
        frame = _read_reference_csv(path)
        where = "row {}".format  # data rows from 1 (blank lines are skipped)
    missing = [c for c in REFERENCE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(path, f"reference lacks column(s) {', '.join(missing)}; expected "
                        f"{', '.join(REFERENCE_COLUMNS)}")
    offset = 0 if path.suffix == ".json" else 1
    frame = _checked_rows(path, _not_empty(path, frame[REFERENCE_COLUMNS]),
                          lambda position: where(position + offset))
    duplicated = frame.duplicated(KEYS)
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise DataError(path, f"two reference rows for "
                        f"{'/'.join(str(first[k]) for k in KEYS)}")
    return frame


def _read_reference_csv(path: Path) -> pd.DataFrame:
    """The CSV as text columns (the mean's NaN spellings aside), or one line on a bad file."""
    try:
        # Only the mean may be NaN; names such as "NA" stay names.
        return pd.read_csv(path, keep_default_na=False, na_values={"mean": ["", "nan", "NaN"]},
                           dtype={k: str for k in KEYS})
    except pd.errors.EmptyDataError:
        raise DataError(path, "empty file: not a reference CSV (expected the header "
                        f"{','.join(REFERENCE_COLUMNS)} and one row per mean)") from None
    except UnicodeDecodeError:
        raise DataError(path, "not a reference CSV (not UTF-8 text)") from None
    except pd.errors.ParserError as err:
        raise DataError(path, f"not a reference CSV ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _not_empty(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        raise DataError(path, "no rows: nothing to compare against (write a reference from a "
                        "trusted run with bench check RUN_DIR --write-reference CSV)")
    return frame


def _checked_rows(path: Path, frame: pd.DataFrame,
                  where: Callable[[int], str]) -> pd.DataFrame:
    """The rows with a float mean and integer counts, or a DataError naming the row.

    A NaN mean is a row without a scored case, so it needs ``n == 0``; a
    number needs ``n > 0``. Anything else would compare nothing in silence.
    """
    rows = []
    for position, record in enumerate(frame.to_dict("records")):
        place = f"{where(position)} ({'/'.join(str(record[k]) for k in KEYS)})"
        mean = _number(record["mean"])
        if mean is None or math.isinf(mean):
            raise DataError(path, f"{place}: mean '{record['mean']}' is not a finite number")
        counts = {column: _count(record[column]) for column in COUNT_COLUMNS}
        for column, count in counts.items():
            if count is None:
                raise DataError(path, f"{place}: {column} '{record[column]}' is not a whole "
                                "number >= 0")
        if math.isnan(mean) and counts["n"] > 0:
            raise DataError(path, f"{place}: mean is NaN although n = {counts['n']} cases "
                            "were scored; nothing could be compared (write the reference "
                            "again with --write-reference)")
        if not math.isnan(mean) and counts["n"] == 0:
            raise DataError(path, f"{place}: mean {mean:g} of n = 0 scored cases")
        rows.append({**{k: str(record[k]) for k in KEYS}, "mean": mean, **counts})
    return pd.DataFrame.from_records(rows, columns=REFERENCE_COLUMNS)


def _number(value: object) -> float | None:
    """``value`` as a float (NaN included), or None when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _count(value: object) -> int | None:
    """``value`` as a whole number >= 0, or None."""
    number = _number(value)
    if number is None or not math.isfinite(number) or not number.is_integer() or number < 0:
        return None
    return int(number)


def _summary_aggregates(path: Path) -> pd.DataFrame:
    """The ``aggregates`` of a ``summary.json`` as a frame."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(path, f"invalid JSON ({err.msg}, line {err.lineno})") from None
    except UnicodeDecodeError:
        raise DataError(path, "invalid JSON (not UTF-8 text)") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("aggregates"), list):
        raise DataError(path, "not a summary.json: no 'aggregates' list")
    for index, record in enumerate(summary["aggregates"]):
        if not isinstance(record, dict):
            raise DataError(path, f"aggregates[{index}]: not an object")
        mean = record.get("mean")  # null is NaN (strict JSON)
        if mean is not None and (isinstance(mean, str) or _number(mean) is None):
            key = "/".join(str(record.get(k)) for k in KEYS)
            raise DataError(path, f"aggregates[{index}] ({key}): mean '{mean}' is not a "
                            "finite number")
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
    """:func:`compare_means` of ``run_dir`` against the reference at ``reference``.

    ``reference`` may be a built-in name (:func:`reference_path`).
    """
    expected = load_reference(reference_path(reference))  # a bad reference is named first
    return compare_means(run_means(run_dir), expected, tolerance)


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
