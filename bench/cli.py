"""The ``bench`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bench.errors import ConfigError

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2

# Pipes and CI logs get a fixed width wide enough for the results table.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
errors = Console(stderr=True, highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    # sam2 draws a tqdm bar per propagation; the run has its own progress display.
    os.environ.setdefault("TQDM_DISABLE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except (ConfigError, FileNotFoundError, KeyError, ValueError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        errors.print(f"[bold red]error:[/] {escape(str(message))}", markup=True, soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        errors.print("interrupted; rerun with --resume to continue")
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench",
        description="Evaluate promptable medical image segmentation (MedSAM-2 and baselines) "
        "under fixed prompt protocols, and report Dice / IoU / HD95 in paper-style tables.",
    )
    parser.add_argument("--config", type=Path, default=None,
                        help="bench.toml to use (default: ./bench.toml or a parent's, else the "
                        "built-in default, whose paths are relative to the working directory)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run a suite: prompts, models, metrics, report",
        description="Run a benchmark suite. Writes a run directory with the resolved config, "
        "the prompt ledger, predictions, the tidy metrics table, summary.json and report.md. "
        "When no dataset root of the suite is configured in bench.toml, the built-in synthetic "
        "demo data stands in (and the report says so).")
    run.add_argument("--suite", required=True, help="suite name from bench.toml (see `bench "
                     "list suites`)")
    run.add_argument("--models", type=_names, default=None,
                     help="comma-separated models instead of the suite's (see `bench list "
                     "models`)")
    run.add_argument("--datasets", type=_names, default=None,
                     help="comma-separated datasets instead of the suite's (one outside the "
                     "suite's list runs too, and the report says so)")
    run.add_argument("--root", action="append", default=[], metavar="NAME=PATH",
                     help="folder of dataset NAME, instead of its root in bench.toml "
                     "(repeatable)")
    _add_cards_option(run)
    run.add_argument("--limit", type=int, default=None,
                     help="at most N flows per dataset (quick runs)")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None,
                       help="seed of the prompt ledger (default from bench.toml)")
    seeds.add_argument("--seeds", type=_ints, default=None,
                       help="several seeds, e.g. 0,1,2 (each is a separate set of results)")
    run.add_argument("--out", type=Path, default=None,
                     help="run directory (default: OUT/SUITE/TIMESTAMP with OUT from bench.toml)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default=None,
                     help="device for models with weights (default: their bench.toml setting, "
                     "else auto)")
    run.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                     help="checkpoint file of a model, e.g. medsam2=MedSAM2_pretrain.pth "
                     "(repeatable; overrides bench.toml and the environment)")
    run.add_argument("--random-weights", action="store_true",
                     help="run weighted models with random initial weights: smoke tests only, "
                     "every output of the run is stamped meaningless")
    run.add_argument("--skip-bad-cases", action="store_true",
                     help="evaluate a dataset even if some of its cases cannot be read (they are "
                     "skipped and listed); by default such a dataset is refused, since its n "
                     "would differ from the published one")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out (default: the latest run of the suite), "
                     "skipping completed work")
    run.add_argument("--executor", choices=["local", "processes", "ray"], default="local",
                     help="where units run: in this process (default), a pool of --workers "
                     "processes, or Ray (pip install 'medsam2-bench[ray]'); the results do not "
                     "depend on it")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="worker processes (processes) or CPUs of the local Ray instance "
                     "(ray); default: the number of CPUs. Each process builds its own models: "
                     "with GPU models, mind the GPU memory")
    run.add_argument("--ray-address", default=None, metavar="ADDRESS",
                     help="join this Ray cluster (e.g. auto or ray://host:10001) instead of "
                     "starting a local instance; run dir, cache and data must be on a shared "
                     "file system")
    run.add_argument("--shard", default=None, metavar="I/N",
                     help="run only shard I of N (0-based) of the units, chosen by unit key, "
                     "e.g. for a Slurm job array; join the shards with `bench merge`")
    run.add_argument("--retries", type=int, default=2, metavar="N",
                     help="start a unit whose worker process died up to N more times "
                     "(default 2); then it is recorded as failed")
    run.add_argument("--no-cache", action="store_true",
                     help="neither read nor write the prediction cache (default: "
                     "$MEDSAM2_BENCH_CACHE, [defaults] cache_dir, or ~/.cache/medsam2-bench)")
    run.set_defaults(handler=cmd_run)

    merge = commands.add_parser(
        "merge", help="join shard run directories into one run",
        description="Join the run directories of `bench run --shard I/N` into OUT: checks that "
        "they are shards of one run (same plan, adapters, prompt ledger and manifest), copies "
        "units, predictions and logs, lists missing and duplicated units, then writes "
        "metrics.csv, units.csv and the report. Exit status 1 when units are missing.")
    merge.add_argument("out", type=Path, metavar="OUT", help="new run directory to create")
    merge.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                       help="shard run directories")
    merge.set_defaults(handler=cmd_merge)

    cache = commands.add_parser(
        "cache", help="the prediction cache: size, pruning",
        description="The content-addressed prediction cache shared by workers and runs "
        "(folder: $MEDSAM2_BENCH_CACHE, else [defaults] cache_dir in bench.toml, else "
        "~/.cache/medsam2-bench).")
    cache_commands = cache.add_subparsers(title="commands", metavar="COMMAND")
    cache_info = cache_commands.add_parser("info", help="entries and size of the cache")
    cache_info.add_argument("--dir", type=Path, default=None, help="cache folder to inspect")
    cache_info.set_defaults(handler=cmd_cache_info)
    cache_prune = cache_commands.add_parser(
        "prune", help="delete cache entries",
        description="Delete entries not used for --older-than DAYS days, or --all.")
    cache_prune.add_argument("--dir", type=Path, default=None, help="cache folder to prune")
    which = cache_prune.add_mutually_exclusive_group(required=True)
    which.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                       help="entries last used more than DAYS days ago")
    which.add_argument("--all", action="store_true", help="every entry")
    cache_prune.set_defaults(handler=cmd_cache_prune)

    listing = commands.add_parser("list", help="list suites, datasets, models or protocols",
                                  description="List what bench.toml and the registries offer.")
    listing.add_argument("what", choices=["suites", "datasets", "models", "protocols"])
    _add_cards_option(listing)
    listing.set_defaults(handler=cmd_list)

    report = commands.add_parser("report", help="(re)write the report of a run directory",
                                 description="Aggregate metrics.csv of RUN_DIR into "
                                 "summary.json, figures and the report: paper-style tables "
                                 "(Table 1, Table 2, Figure 4 layouts), per-dataset tables with "
                                 "counts and 95 % bootstrap intervals, paired comparisons, a "
                                 "qualitative gallery and, for the paper's datasets, the "
                                 "published numbers beside the reproduced ones.")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.add_argument("--format", default="md", metavar="FORMATS",
                        help="comma-separated: md (report.md), html (report.html, one "
                        "self-contained file), tex (report.tex, booktabs tables); default md")
    report.add_argument("--no-gallery", action="store_true",
                        help="skip the qualitative gallery (it re-reads the cases it shows)")
    _add_cards_option(report)
    report.set_defaults(handler=cmd_report)

    check = commands.add_parser(
        "check", help="check a run's means against a committed reference (regressions)",
        description="Compare every dataset, target, model and metric mean of RUN_DIR with a "
        "reference (a CSV written by --write-reference, a summary.json or a run directory). "
        "Direction-aware: a drop in Dice/IoU/NSD or a rise in HD95/ASSD beyond the tolerance, "
        "a missing row and a changed case count are regressions. Exit status 0: all within "
        "tolerance; 1: regressions (listed); 2: usage error.")
    check.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    check.add_argument("--against", type=Path, default=None, metavar="REFERENCE",
                       help="reference CSV, summary.json or run directory")
    check.add_argument("--tolerance", default=None, metavar="T",
                       help="absolute tolerance on means: a number for every metric, or e.g. "
                       "'0.01,hd95=1.0' (default 1e-6)")
    check.add_argument("--write-reference", type=Path, default=None, metavar="CSV",
                       help="write RUN_DIR's means as a reference CSV instead of checking")
    check.set_defaults(handler=cmd_check)

    compare = commands.add_parser(
        "compare", help="compare two runs side by side, with paired differences",
        description="Means of RUN_A and RUN_B side by side per dataset, target, model and "
        "metric, and the paired difference B - A over the cases both runs scored under "
        "identical prompts (same ledger rows): mean with a 95 % bootstrap interval over "
        "patients and a Wilcoxon signed-rank p-value.")
    compare.add_argument("run_a", type=Path, metavar="RUN_A")
    compare.add_argument("run_b", type=Path, metavar="RUN_B")
    compare.add_argument("--metrics", type=_names, default=None,
                         help="comma-separated metrics (default: all)")
    compare.add_argument("--model-a", default=None, help="model of RUN_A to compare (with "
                         "--model-b); default: every model present in both runs")
    compare.add_argument("--model-b", default=None, help="model of RUN_B to compare")
    compare.add_argument("--out", type=Path, default=None, metavar="CSV",
                         help="also write the full comparison table as CSV")
    compare.set_defaults(handler=cmd_compare)

    data = commands.add_parser("datasets", help="dataset tools (check a download)",
                               description="Tools for datasets on disk.")
    data_commands = data.add_subparsers(title="commands", metavar="COMMAND")
    check_data = data_commands.add_parser(
        "check", help="validate a dataset folder against its card",
        description="Read every case of dataset NAME under --root and report, one line per "
        "problem with the file named: missing pairs, image/mask shape or geometry mismatches, "
        "unknown label values, empty masks, unreadable or truncated files, NaNs, implausible "
        "spacing, and the case count against the card's expected count. Exits 1 when an error "
        "is found.")
    check_data.add_argument("name", metavar="NAME", help="dataset card name (bench list datasets)")
    check_data.add_argument("--root", type=Path, default=None,
                            help="dataset folder (default: its root in bench.toml)")
    check_data.add_argument("--limit", type=int, default=None, help="check only N cases")
    _add_cards_option(check_data)
    check_data.set_defaults(handler=cmd_datasets_check)

    prompts = commands.add_parser(
        "prompts", help="show a run's prompt ledger; draw prompts over a frame",
        description="Print the prompt ledger (prompts.jsonl) of RUN_DIR as a table, optionally "
        "filtered; with --draw, draw the prompts of one flow's frame to a PNG.")
    prompts.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    prompts.add_argument("--dataset", default=None, help="only this dataset")
    prompts.add_argument("--flow", default=None, help="only this flow (the ledger's case)")
    prompts.add_argument("--seed", type=int, default=None, help="only this seed")
    prompts.add_argument("--draw", type=Path, default=None, metavar="PNG",
                         help="draw the prompts of --dataset/--flow on --frame to this PNG")
    prompts.add_argument("--frame", type=int, default=None,
                         help="frame to draw (default: the first prompted frame)")
    _add_cards_option(prompts)
    prompts.set_defaults(handler=cmd_prompts)
    return parser


def _add_cards_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cards", type=Path, action="append", default=[], metavar="DIR",
                        help="folder of dataset cards, searched before datasets/ beside "
                        "bench.toml and the built-in cards (repeatable)")


def _load_config(args: argparse.Namespace):
    """The configuration of --config (or the one found) with --cards; notices printed."""
    from bench.config import load_config

    config = load_config(args.config, cards=getattr(args, "cards", []))
    for notice in config.notices:
        errors.print(f"notice: {notice}", markup=False, highlight=False, soft_wrap=True)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from bench.plan import make_plan, parse_roots
    from bench.report import write_report
    from bench.runner import execute

    config = _load_config(args)
    seeds = args.seeds or ([args.seed] if args.seed is not None else None)
    plan = make_plan(config, args.suite, models=args.models, datasets=args.datasets,
                     seeds=seeds, limit=args.limit, device=args.device,
                     random_weights=args.random_weights,
                     checkpoints=_assignments(args.checkpoint, "--checkpoint"),
                     skip_bad_cases=args.skip_bad_cases, roots=parse_roots(args.root))
    run_dir = _run_dir(args, config, plan.suite)
    names = ", ".join(d.name for d in plan.datasets)
    if plan.demo and plan.unconfigured:
        console.print(f"[yellow]No dataset root configured for suite '{plan.suite}': running on "
                      f"the built-in SYNTHETIC demo data ({names}).[/] Set roots under "
                      "\\[datasets] in bench.toml or pass --root NAME=PATH to run the real "
                      "datasets.")
    elif plan.demo:
        console.print(f"[yellow]Running on the built-in SYNTHETIC demo data ({names}).[/]")
    elif plan.unconfigured:
        skipped = ", ".join(plan.unconfigured)
        console.print(f"[yellow]Skipping datasets without a root:[/] {skipped}")
    for model, reason in plan.skipped_models.items():
        console.print(f"[yellow]model {model} skipped:[/] {escape(reason)}", soft_wrap=True)
    console.print(f"suite [bold]{plan.suite}[/], protocol [bold]{plan.protocol}[/], models "
                  f"{', '.join(plan.models)}, seeds {', '.join(map(str, plan.seeds))} -> {run_dir}")

    if args.ray_address and args.executor != "ray":
        raise ConfigError("--ray-address needs --executor ray")
    cache = None if args.no_cache else _cache_folder(config)
    started = time.perf_counter()
    with _Progress() as progress:
        outcome = execute(plan, run_dir, resume=args.resume, progress=progress.notify,
                          record={"argv": sys.argv[1:]}, executor=args.executor,
                          workers=args.workers, ray_address=args.ray_address, shard=args.shard,
                          retries=args.retries, cache=cache)
    report_path = write_report(run_dir, ("md", "html"), cards=config.cards)
    _print_results(run_dir)
    shard = ""
    if outcome.shard is not None:
        shard = (f"shard {outcome.shard[0]}/{outcome.shard[1]}: {outcome.units_total} of "
                 f"{outcome.units_all} units; join the shards with `bench merge`\n")
    console.print(
        f"{shard}{outcome.units_total} units: {outcome.units_run} run, "
        f"{outcome.units_cached} reused from the prediction cache, {outcome.units_reused} reused "
        f"from an earlier attempt, {outcome.units_failed} failed "
        f"({outcome.cases_failed} cases without a score), {outcome.units_retried} retried "
        f"after a worker died, {outcome.read_failures} read failures; "
        f"{time.perf_counter() - started:.1f} s")
    console.print(f"report: {report_path}")
    return EXIT_FAILURES if outcome.units_failed or outcome.read_failures else EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from bench.report import write_report
    from bench.shard import merge_runs

    outcome = merge_runs(args.out, args.run_dirs)
    for unit in outcome.duplicated:
        console.print(f"[yellow]duplicated[/] {unit['dataset']}/{unit['flow']} {unit['model']} "
                      f"seed {unit['seed']} (same results in {', '.join(unit['runs'])}; kept "
                      "once)", markup=True, highlight=False, soft_wrap=True)
    for unit in outcome.missing:
        errors.print(f"missing: {unit['dataset']}/{unit['flow']} {unit['model']} seed "
                     f"{unit['seed']} (unit {unit['key']})", markup=False, soft_wrap=True)
    cards = None
    if args.config is not None:
        from bench.config import load_config

        cards = load_config(args.config).cards
    report_path = write_report(args.out, ("md", "html"), cards=cards)
    _print_results(args.out)
    console.print(f"merged {len(args.run_dirs)} run(s): {outcome.units_merged} of "
                  f"{outcome.units_expected} units, {len(outcome.missing)} missing, "
                  f"{len(outcome.duplicated)} duplicated -> {args.out}")
    console.print(f"report: {report_path}")
    if outcome.missing:
        errors.print(f"FAIL: {len(outcome.missing)} unit(s) missing: run the shards that hold "
                     "them (bench run ... --shard I/N --resume) and merge again")
        return EXIT_FAILURES
    return EXIT_OK


def cmd_cache_info(args: argparse.Namespace) -> int:
    from bench.cache import PredictionCache

    info = PredictionCache(args.dir or _cache_folder(_load_or_none(args.config))).info()
    console.print(f"prediction cache {info.folder}: {info.entries} entries, "
                  f"{info.bytes / 2**20:.1f} MiB")
    if info.entries:
        console.print(f"last used: oldest {_day(info.oldest)}, newest {_day(info.newest)}")
    return EXIT_OK


def cmd_cache_prune(args: argparse.Namespace) -> int:
    from bench.cache import PredictionCache

    cache = PredictionCache(args.dir or _cache_folder(_load_or_none(args.config)))
    removed, freed = cache.prune(None if args.all else args.older_than)
    console.print(f"removed {removed} entries ({freed / 2**20:.1f} MiB) from {cache.root}")
    return EXIT_OK


def _cache_folder(config) -> Path:
    from bench.cache import cache_dir

    if config is None:
        return cache_dir()
    return cache_dir(str(config.defaults.get("cache_dir") or "") or None, config.folder)


def _load_or_none(path: Path | None):
    """The bench.toml in use, or None when there is none (the cache needs no config)."""
    from bench.config import load_config

    try:
        return load_config(path)
    except ConfigError:
        if path is not None:
            raise
        return None


def _day(timestamp: float | None) -> str:
    return "-" if timestamp is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def cmd_list(args: argparse.Namespace) -> int:
    table = Table(show_header=True, header_style="bold")
    if args.what == "models":
        from adapters import registered

        table.add_column("model")
        table.add_column("prompts")
        table.add_column("flows")
        table.add_column("description")
        for name, cls in registered().items():
            if cls.hidden:
                continue
            caps = cls.capabilities
            table.add_row(name, ",".join(sorted(caps.prompt_kinds)),
                          ",".join(sorted(caps.flow_kinds)), cls.description)
    elif args.what == "protocols":
        from bench.prompts import PROTOCOLS

        table.add_column("protocol")
        table.add_column("description")
        for name, spec in PROTOCOLS.items():
            table.add_row(name, spec.description)
    else:
        config = _load_config(args)
        if args.what == "suites":
            for column in ("suite", "protocol", "datasets", "models", "reproduces"):
                table.add_column(column)
            for suite in config.suites.values():
                table.add_row(suite.name, suite.protocol, ", ".join(suite.datasets),
                              ", ".join(suite.models), suite.reproduces)
        else:
            for column in ("dataset", "kind", "targets", "one-prompt", "root"):
                table.add_column(column)
            for card in config.cards.values():
                root = config.root(card.name)
                where = "built-in (synthetic)" if card.synthetic else (str(root) if root else
                                                                       "not configured")
                table.add_row(card.name, card.kind, ", ".join(card.targets),
                              card.one_prompt_kind, where)
    console.print(table)
    return EXIT_OK


def cmd_datasets_check(args: argparse.Namespace) -> int:
    from bench.readers.check import check_dataset, has_errors

    config = _load_config(args)
    if args.name not in config.cards:
        from difflib import get_close_matches

        hint = get_close_matches(args.name, list(config.cards), n=1)
        raise ConfigError(f"unknown dataset {args.name!r}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    card = config.cards[args.name]
    root = args.root or config.root(card.name)
    if root is None and not card.synthetic:
        raise ConfigError(f"no root for {card.name}: pass --root PATH or set [datasets] "
                          f"{card.name} in {config.path}")
    with console.status(f"checking {card.name} ..."):
        problems = check_dataset(card, root, limit=args.limit)
    styles = {"error": "red", "warning": "yellow", "info": "cyan"}
    for problem in problems:
        style = styles.get(problem.severity, "")
        console.print(f"[{style}]{problem.severity}[/]: {escape(problem.path)}: "
                      f"{escape(problem.message)}",
                      markup=True, highlight=False, soft_wrap=True)
    counts = {s: sum(p.severity == s for p in problems) for s in ("error", "warning")}
    console.print(f"{card.name}: {counts['error']} error(s), {counts['warning']} warning(s)")
    return EXIT_FAILURES if has_errors(problems) else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import REPORT_NAMES, parse_formats, write_report

    formats = parse_formats(args.format)
    cards = None
    if args.config is not None or args.cards:
        cards = _load_config(args).cards
    write_report(args.run_dir, formats, cards=cards, gallery=not args.no_gallery)
    _print_results(args.run_dir)
    for fmt in formats:
        console.print(f"report: {Path(args.run_dir) / REPORT_NAMES[fmt]}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from bench.check import (
        DEFAULT_TOLERANCE,
        check_run,
        findings_table,
        parse_tolerance,
        write_reference,
    )

    if args.write_reference is not None:
        if args.against is not None or args.tolerance is not None:
            raise ConfigError("--write-reference writes a reference; it takes no --against "
                              "or --tolerance")
        path = write_reference(args.run_dir, args.write_reference)
        console.print(f"reference written: {path}")
        return EXIT_OK
    if args.against is None:
        raise ConfigError("bench check needs --against REFERENCE (or --write-reference CSV)")
    tolerance = parse_tolerance(args.tolerance or str(DEFAULT_TOLERANCE))
    findings = check_run(args.run_dir, args.against, tolerance)
    regressions = [f for f in findings if f.is_regression]
    if findings:
        shown = findings_table(findings)
        table = Table(title=f"{len(regressions)} regression(s) against {args.against}",
                      show_header=True, header_style="bold")
        for column in shown.columns:
            table.add_column(str(column))
        for row in shown.itertuples(index=False):
            table.add_row(*map(str, row))
        console.print(table)
    tolerance_text = ", ".join(f"{k}={v:g}" for k, v in tolerance.items())
    if regressions:
        errors.print(f"FAIL: {len(regressions)} regression(s) (tolerance {tolerance_text})")
        for f in regressions:
            errors.print(f"regression: {f.kind} {f.metric} {f.dataset}/{f.target} {f.model}: "
                         f"reference {f.reference:.6g}, now {f.now:.6g}, difference "
                         f"{f.difference:+.6g}" + (f" ({f.detail})" if f.detail else ""),
                         markup=False, soft_wrap=True)
        return EXIT_FAILURES
    console.print(f"OK: every mean within tolerance ({tolerance_text})")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare_runs, format_comparison

    result = compare_runs(args.run_a, args.run_b, model_a=args.model_a, model_b=args.model_b,
                          metrics=args.metrics)
    if args.out is not None:
        from bench import atomic

        with atomic.atomic_path(args.out) as temp:
            result.to_csv(temp, index=False, float_format="%.10g")
    shown = format_comparison(result).drop(columns=["model_a", "model_b", "mean_a", "mean_b"])
    shown = shown.rename(columns={"run_mean_a": "A", "run_mean_b": "B"})
    table = Table(title=f"A = {args.run_a}, B = {args.run_b}: paired B - A where cases and "
                  "prompts match", show_header=True, header_style="bold")
    for column in shown.columns:
        table.add_column(str(column))
    for row in shown.itertuples(index=False):
        table.add_row(*map(str, row))
    console.print(table)
    unmatched = int(result["n_prompts_differ"].sum())
    if unmatched:
        console.print(f"[yellow]{unmatched} case scores not paired: their prompts differ "
                      "between the runs[/]")
    return EXIT_OK


def cmd_prompts(args: argparse.Namespace) -> int:
    from bench.prompts import draw_prompts, ledger

    rows = ledger.read_ledger(Path(args.run_dir) / "prompts.jsonl")
    rows = [r for r in rows
            if (args.dataset is None or r["dataset"] == args.dataset)
            and (args.flow is None or r["case"] == args.flow)
            and (args.seed is None or r["seed"] == args.seed)]
    if args.draw is None:
        console.print(ledger.format_rows(rows), markup=False)
        console.print(f"{len(rows)} prompts")
        return EXIT_OK
    if args.dataset is None or args.flow is None:
        raise ConfigError("--draw needs --dataset and --flow")
    if not rows:
        raise ConfigError(f"no prompts for dataset {args.dataset!r} flow {args.flow!r}")
    flow = _reread_flow(Path(args.run_dir), args.dataset, args.flow, args)
    seed = rows[0]["seed"] if args.seed is None else args.seed
    prompts = ledger.rows_to_prompts([r for r in rows if r["seed"] == seed], flow)
    frame = min(p.frame for p in prompts) if args.frame is None else args.frame
    if not 0 <= frame < len(flow.frames):
        raise ConfigError(f"--frame {frame}: flow {args.flow!r} has {len(flow.frames)} frames")
    shown = [p for p in prompts if p.frame == frame]
    path = draw_prompts(np.asarray(flow.frames[frame]), shown, args.draw,
                        title=f"{args.dataset} / {args.flow} / frame {frame} / seed {seed}")
    console.print(f"{len(shown)} prompts drawn on frame {frame}: {path}")
    return EXIT_OK


def _reread_flow(run_dir: Path, dataset: str, flow_id: str, args: argparse.Namespace):
    """Read one flow of a run again, from the dataset root the run recorded."""
    from bench import atomic
    from bench.readers import read_flow

    plan = atomic.read_json(run_dir / "config.json")["plan"]
    roots = {d["name"]: d["root"] for d in plan["datasets"]}
    if dataset not in roots:
        raise ConfigError(f"dataset {dataset!r} is not part of the run in {run_dir}")
    flows = atomic.read_json(run_dir / "manifest.json")["datasets"][dataset]["flows"]
    position = next((f.get("position", 0) for f in flows if f["id"] == flow_id), None)
    if position is None:
        raise ConfigError(f"flow {flow_id!r} is not part of dataset {dataset!r} in this run")
    card = _load_config(args).cards[dataset]
    root = Path(roots[dataset]) if roots[dataset] else None
    return read_flow(card, root, flow_id, position, plan["limit"])


def _print_results(run_dir: Path) -> None:
    """A compact console table of means and counts (CIs are in the report)."""
    import pandas as pd

    from bench import atomic

    summary = atomic.read_json(Path(run_dir) / "summary.json")
    aggregates = pd.DataFrame(summary["aggregates"])
    if aggregates.empty:
        console.print("no results")
        return
    # summary.json sorts its keys; the plan keeps the suite's metric order.
    metrics = atomic.read_json(Path(run_dir) / "config.json")["plan"]["metrics"]
    keys = ["dataset", "target", "model"]
    means = aggregates.set_index([*keys, "metric"])["mean"].unstack("metric")
    counts = aggregates[aggregates["metric"] == metrics[0]].set_index(keys)
    title = "Mean per dataset, target and model (95 % CIs in report.md)"
    if summary["demo_data"]:
        title += " - SYNTHETIC demo data"
    table = Table(title=title, show_header=True, header_style="bold")
    for column in (*keys, *metrics):
        table.add_column(column, justify="left" if column in keys else "right")
    for header in ("n", "excl", "pen", "fail"):
        table.add_column(header, justify="right")
    for index, row in means.iterrows():
        values = [f"{row[m]:.3f}" if pd.notna(row[m]) else "-" for m in metrics]
        count = counts.loc[index]
        table.add_row(*index, *values, *(str(int(count[c])) for c in
                                         ("n", "n_excluded", "n_penalised", "n_failed")))
    console.print(table)


def _run_dir(args: argparse.Namespace, config, suite: str) -> Path:
    if args.out is not None:
        return args.out
    base = config.folder / str(config.defaults["out"]) / suite
    if args.resume:
        runs = sorted(p for p in base.glob("*") if (p / "config.json").exists())
        if not runs:
            raise ConfigError(f"--resume: no earlier run of suite {suite!r} under {base}")
        return runs[-1]
    return base / time.strftime("%Y%m%d-%H%M%S")


class _RateColumn(ProgressColumn):
    """Throughput in units per second (rich's estimate over the last 30 s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- units/s" if speed is None else f"{speed:.2f} units/s", style="cyan")


class _Progress:
    """One progress bar over all workers, fed by the runner's ``notify(event, **info)``.

    The bar counts the units still to compute (units reused from an earlier
    attempt are reported, not counted, so that throughput and ETA are those
    of the work left); its label tallies cache hits, failures and retries.
    """

    def __init__(self) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), _RateColumn(), TimeElapsedColumn(),
                                  TimeRemainingColumn(), console=console, transient=False)
        self._task = None
        self._counts = {"cached": 0, "failed": 0, "retried": 0}

    def __enter__(self) -> _Progress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def notify(self, event: str, **info: object) -> None:
        if event == "read":
            self._progress.console.print(f"deriving prompts: {info['dataset']}")
        elif event == "refused":
            failures = info["failures"]
            lines = "\n".join(f"  {escape(f['error'])}" for f in failures[:10])
            more = f"\n  ... and {len(failures) - 10} more" if len(failures) > 10 else ""
            self._progress.console.print(
                f"[red]dataset {info['dataset']} refused: {len(failures)} unreadable case(s)"
                f"[/]\n{lines}{more}\n  Fix them (see `bench datasets check "
                f"{info['dataset']} --root ...`) or rerun with --skip-bad-cases.",
                markup=True, highlight=False)
        elif event == "units":
            where = f" ({info['executor']})" if info.get("executor") not in (None, "local") \
                else ""
            if info.get("shard"):
                self._progress.console.print(
                    f"shard {info['shard']}: {info['selected']} of {info['all']} units")
            if info.get("reused"):
                self._progress.console.print(
                    f"{info['reused']} units already complete (reused)")
            self._task = self._progress.add_task(f"units{where}", total=int(info["total"]))
        elif event == "retry":
            self._counts["retried"] += 1
            self._progress.console.print(
                f"[yellow]retrying[/] {info['dataset']}/{info['flow']} {info['model']} seed "
                f"{info['seed']} (attempt {info['attempt']}): {escape(info['reason'])}",
                markup=True, highlight=False)
        elif event == "advance" and self._task is not None:
            self._counts["cached"] += info.get("cache") == "hit"
            self._counts["failed"] += info.get("status") == "error"
            tally = ", ".join(f"{n} {name}" for name, n in self._counts.items() if n)
            self._progress.update(self._task, advance=1,
                                  description=f"{info['dataset']} {info['model']}"
                                  + (f" [{tally}]" if tally else ""))


def _assignments(items: Sequence[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"{option}: expected MODEL=PATH, got {item!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(part) for part in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None


if __name__ == "__main__":
    sys.exit(main())
