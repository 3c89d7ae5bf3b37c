"""Speed-up of 2 workers over 1 on the weight-free baselines, measured in the same run.

Runs one suite (default: the demo suite, ``--limit 2`` flows per dataset) with
the weight-free baselines (full-frame, empty, registration, random-walker),
prediction cache off, three times into temporary run directories:

- ``local``: in-process (no worker start-up), for reference;
- ``--executor`` (``processes`` by default, or ``ray``) with 1 worker;
- the same executor with 2 workers;

and reports, for each, the wall time of the whole run (ledger, units, tables),
the time of the units phase alone (first unit handed out to last unit back,
from the runner's progress events) and its throughput, then the speed-up of 2
workers over 1 on both. It checks that the three ``metrics.csv`` files are
byte-identical. With ``--executor ray`` both times include starting the local
Ray instance (a few seconds). The units phase of 2 workers is bounded by the slowest unit
(the demo CT volume under registration) and by the cores actually free: on a
shared 2-core machine expect well under 2x.

Usage::

    python benchmarks/executor_speedup.py [--executor processes|ray] [--limit 2]
        [--models full-frame,empty,registration,random-walker] [--suite demo]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.config import load_config
from bench.plan import make_plan
from bench.runner import execute

REPO = Path(__file__).resolve().parents[1]
BASELINES = "full-frame,empty,registration,random-walker"


def timed_run(plan, run_dir: Path, executor: str, workers: int | None) -> dict[str, float]:
    """Run ``plan``; return wall time, units-phase time and unit count."""
    marks: dict[str, float] = {}

    def progress(event: str, **info: object) -> None:
        now = time.perf_counter()
        if event == "units":
            marks["units_start"] = now
        elif event == "advance":
            marks["units_end"] = now

    started = time.perf_counter()
    outcome = execute(plan, run_dir, executor=executor, workers=workers, progress=progress)
    wall = time.perf_counter() - started
    if outcome.units_failed:
        raise RuntimeError(f"{outcome.units_failed} units failed in {run_dir}")
    units = marks.get("units_end", marks["units_start"]) - marks["units_start"]
    return {"wall": wall, "units": units, "count": outcome.units_run}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--executor", choices=["processes", "ray"], default="processes")
    parser.add_argument("--suite", default="demo")
    parser.add_argument("--limit", type=int, default=2, help="flows per dataset")
    parser.add_argument("--models", default=BASELINES)
    args = parser.parse_args()

    config = load_config(REPO / "bench.toml")
    plan = make_plan(config, args.suite, models=args.models.split(","), limit=args.limit)
    print(f"suite {plan.suite}: {', '.join(d.name for d in plan.datasets)}; models "
          f"{', '.join(plan.models)}; limit {args.limit}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-speedup-") as folder:
        base = Path(folder)
        runs = {"local": timed_run(plan, base / "local", "local", None),
                f"{args.executor} x1": timed_run(plan, base / "one", args.executor, 1),
                f"{args.executor} x2": timed_run(plan, base / "two", args.executor, 2)}
        tables = {(base / name / "metrics.csv").read_bytes() for name in ("local", "one", "two")}
    print(f"{'run':<16}{'units':>6}{'wall s':>9}{'units s':>9}{'units/s':>9}")
    for name, run in runs.items():
        print(f"{name:<16}{run['count']:>6}{run['wall']:>9.2f}{run['units']:>9.2f}"
              f"{run['count'] / run['units']:>9.2f}")
    one, two = runs[f"{args.executor} x1"], runs[f"{args.executor} x2"]
    print(f"speed-up of 2 workers over 1 ({args.executor}): units phase "
          f"{one['units'] / two['units']:.2f}x, whole run {one['wall'] / two['wall']:.2f}x")
    print("metrics.csv identical across the three runs:", "yes" if len(tables) == 1 else "NO")
    if len(tables) != 1:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
