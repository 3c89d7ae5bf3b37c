"""Cost of a rerun whose units all come from the prediction cache, against the uncached run.

Runs ``bench run --suite demo`` twice in fresh processes with
``MEDSAM2_BENCH_CACHE`` pointing at a new, empty cache folder:

1. uncached: every unit runs its model and fills the cache;
2. cached: the same run again into a new run directory; every unit is a hit,
   its scored rows come from beside its cache entry and the demo flows' arrays
   from ``CACHE/demo-flows`` (both stored by the first run).

It prints both wall times (process start to exit, imports included) and their
ratio (the issue's goal: <= 0.15), and checks that the two runs'
``metrics.csv`` and ``summary.json`` are byte-identical. With ``--profile`` it
then runs the cached run once more, in a fresh process, with every stage timed
(exclusive wall time: a stage nested in another is taken out of the outer one)
and prints the breakdown, the slowest imports (``python -X importtime``) and,
with ``--cprofile N``, the top N functions of a cProfile of
``bench.cli.main(["run", ...])``.

On a shared machine quote only the ratio of one invocation: both runs see the
same load.

Usage::

    python benchmarks/cached_rerun.py [--suite demo] [--profile] [--cprofile 25]
        [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Stage -> functions (module, qualified name) whose wall time counts for it.
#: Wrapped in the profiled process; a call nested in another stage's is
#: subtracted from the outer stage, so the stages add up to the run.
STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "reading/digests": (("bench.derive", "_read_dataset"),
                        ("bench.derive", "check_layouts"),
                        ("bench.cache", "flow_frames_digest"),
                        ("bench.cache", "masks_digest")),
    "prompts/ledger": (("bench.derive", "make_prompts"),
                       ("bench.rundir", "RunDir.keep_ledger"),
                       ("bench.rundir", "RunDir.write_manifest")),
    "units": (("bench.units", "UnitWorker.run"),),
    "units: reading the flow again": (("bench.units", "UnitWorker._read"),),
    "units: scoring": (("bench.units", "score_flow"),),
    "units: scored rows from the cache": (("bench.cache", "PredictionCache.get_rows"),),
    "reading: demo arrays (drawn or loaded)": (("bench.readers.demo.store",
                                                "stored_arrays"),),
    "units: writing masks": (("bench.units", "write_prediction"),),
    "metrics/aggregate": (("bench.rundir", "RunDir.write_metrics"),
                          ("bench.rundir", "RunDir.write_unit_table"),
                          ("bench.report", "build_summary")),
    "report": (("bench.report", "write_report"),),
    "figures": (("bench.report.figures", "save_figure"),),
    "gallery": (("bench.report.build", "build_gallery"),),
    "console table": (("bench.commands", "print_results"),),
}


def bench_run(suite: str, out: Path, cache: Path, extra: list[str]) -> float:
    """Wall seconds of ``bench run --suite SUITE --out OUT`` in a fresh process."""
    env = {**os.environ, "MEDSAM2_BENCH_CACHE": str(cache)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--suite", suite,
                           "--out", str(out), *extra], env=env, cwd=REPO,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench run failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                 f"{done.stderr[-3000:]}")
    return seconds


def cached_units(run_dir: Path) -> tuple[int, int]:
    """(cache hits, units) of a run, from its ``units.csv``."""
    import pandas as pd

    units = pd.read_csv(run_dir / "units.csv")
    return int((units["cache"] == "hit").sum()), len(units)


def same_outputs(first: Path, second: Path) -> list[str]:
    """Names of the files that differ between two runs (metrics.csv, summary.json)."""
    return [name for name in ("metrics.csv", "summary.json")
            if (first / name).read_bytes() != (second / name).read_bytes()]


# -- the profiled process -----------------------------------------------------------------

def _profiled_child(argv: list[str], cprofile: int) -> None:
    """Run ``bench.cli.main(argv)`` with the stages timed; print the breakdown as JSON."""
    started = time.perf_counter()
    import bench.cli  # noqa: F401  (the eager imports)
    imported = time.perf_counter() - started
    totals: dict[str, float] = {"imports (bench.cli)": imported}
    stack: list[list[float]] = []  # [start, time of nested stages]

    def wrap(stage: str, function):
        def timed(*args, **kwargs):
            stack.append([time.perf_counter(), 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                begun, nested = stack.pop()
                spent = time.perf_counter() - begun
                totals[stage] = totals.get(stage, 0.0) + spent - nested
                if stack:
                    stack[-1][1] += spent
        return timed

    import importlib
    for stage, targets in STAGES.items():
        for module_name, qualname in targets:
            module = importlib.import_module(module_name)
            owner, _, name = qualname.rpartition(".")
            holder = getattr(module, owner) if owner else module
            original = getattr(holder, name)
            wrapper = wrap(stage, original)
            setattr(holder, name, wrapper)
            if not owner:  # also where ``from module import name`` bound it
                for other in list(sys.modules.values()):
                    if getattr(other, "__name__", "").startswith("bench") and \
                            getattr(other, name, None) is original:
                        setattr(other, name, wrapper)
    from bench.cli import main

    profile = None
    if cprofile:
        import cProfile
        profile = cProfile.Profile()
        profile.enable()
    run_started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        stdout, sys.stdout = sys.stdout, sink
        try:
            code = main(argv)
        finally:
            sys.stdout = stdout
    run_seconds = time.perf_counter() - run_started
    if profile is not None:
        profile.disable()
    totals["other (plan, record, console, ...)"] = run_seconds - sum(
        v for k, v in totals.items() if not k.startswith("imports"))
    print(json.dumps({"code": code, "total": imported + run_seconds, "stages": totals}))
    if profile is not None:
        import pstats
        stats = pstats.Stats(profile, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(cprofile)


def profile_cached(suite: str, out: Path, cache: Path, extra: list[str],
                   cprofile: int) -> dict:
    """Stage breakdown of a cached run, in a fresh process."""
    env = {**os.environ, "MEDSAM2_BENCH_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    argv = ["run", "--suite", suite, "--out", str(out), *extra]
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(argv),
                           "--cprofile", str(cprofile)], env=env, cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"profiled run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    if cprofile:
        print(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def slowest_imports(count: int = 12) -> list[tuple[float, str]]:
    """The ``count`` packages (and their first-level modules) that ``import bench.cli``
    spends the most cumulative time in, from ``python -X importtime``; the chain
    ``bench.cli`` -> ``bench.commands`` -> ``bench.console`` that pulls them in is left out."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import bench.cli"],
                          cwd=REPO, capture_output=True, text=True)
    chain = {"bench.cli", "bench.commands", "bench.console", "site"}
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if name.count(".") <= 1 and name not in chain and not name.startswith("_"):
            rows.append((int(parts[1]) / 1e6, name))
    return sorted(rows, reverse=True)[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="demo")
    parser.add_argument("--profile", action="store_true",
                        help="also time the stages of a cached run in a fresh process")
    parser.add_argument("--cprofile", type=int, default=0,
                        help="with --profile: print the top N functions of a cProfile")
    parser.add_argument("--keep", type=Path, default=None,
                        help="folder for the runs and the cache (default: a temporary one)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.child is not None:
        _profiled_child(json.loads(args.child), args.cprofile)
        return 0

    work = args.keep or Path(tempfile.mkdtemp(prefix="cached-rerun-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    for name in ("uncached", "cached", "profiled"):
        shutil.rmtree(work / name, ignore_errors=True)
    uncached = bench_run(args.suite, work / "uncached", cache, extra)
    cached = bench_run(args.suite, work / "cached", cache, extra)
    hits, total = cached_units(work / "cached")
    differ = same_outputs(work / "uncached", work / "cached")
    print(f"suite {args.suite}: {total} units")
    print(f"uncached run (fresh cache folder): {uncached:6.2f} s")
    print(f"cached rerun ({hits} of {total} units cache hits): {cached:6.2f} s")
    print(f"ratio cached / uncached: {cached / uncached:.3f} (goal <= 0.15)")
    print("metrics.csv and summary.json " + ("byte-identical" if not differ else
                                             f"DIFFER: {', '.join(differ)}"))
    if args.profile:
        result = profile_cached(args.suite, work / "profiled", cache, extra, args.cprofile)
        print(f"\ncached run, stages (exclusive wall seconds; total {result['total']:.2f} s):")
        for stage, seconds in sorted(result["stages"].items(), key=lambda kv: -kv[1]):
            print(f"  {stage:40s} {seconds:6.2f}")
        print("\nslowest imports under bench.cli (cumulative s, -X importtime):")
        for seconds, name in slowest_imports():
            print(f"  {seconds:6.3f}  {name}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if differ or hits != total else 0


if __name__ == "__main__":
    raise SystemExit(main())
