"""The ``bench`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from bench.validate import ConfigError

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2

console = Console(stderr=False, highlight=False)
errors = Console(stderr=True, highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except (ConfigError, FileNotFoundError, KeyError, ValueError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        errors.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
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
                        "project's own)")
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
                     help="comma-separated subset of the suite's datasets")
    run.add_argument("--limit", type=int, default=None,
                     help="at most N flows per dataset (quick runs)")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=None,
                       help="seed of the prompt ledger (default from bench.toml)")
    seeds.add_argument("--seeds", type=_ints, default=None,
                       help="several seeds, e.g. 0,1,2 (each is a separate set of results)")
    run.add_argument("--out", type=Path, default=None,
                     help="run directory (default: OUT/SUITE/TIMESTAMP with OUT from bench.toml)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out (default: the latest run of the suite), "
                     "skipping completed work")
    run.set_defaults(handler=cmd_run)

    listing = commands.add_parser("list", help="list suites, datasets, models or protocols",
                                  description="List what bench.toml and the registries offer.")
    listing.add_argument("what", choices=["suites", "datasets", "models", "protocols"])
    listing.set_defaults(handler=cmd_list)

    report = commands.add_parser("report", help="(re)write the report of a run directory",
                                 description="Aggregate metrics.csv of RUN_DIR into "
                                 "summary.json, figures and report.md.")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.set_defaults(handler=cmd_report)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import load_config
    from bench.plan import make_plan
    from bench.report import write_report
    from bench.runner import execute

    config = load_config(args.config)
    seeds = args.seeds or ([args.seed] if args.seed is not None else None)
    plan = make_plan(config, args.suite, models=args.models, datasets=args.datasets,
                     seeds=seeds, limit=args.limit)
    run_dir = _run_dir(args, config, plan.suite)
    if plan.demo:
        console.print(f"[yellow]No dataset root configured for suite '{plan.suite}': running on "
                      f"the built-in SYNTHETIC demo data ({', '.join(d.name for d in plan.datasets)}"
                      ").[/] Set roots under [datasets] in bench.toml to run the real datasets.")
    elif plan.unconfigured:
        console.print(f"[yellow]Skipping datasets without a root:[/] {', '.join(plan.unconfigured)}")
    console.print(f"suite [bold]{plan.suite}[/], protocol [bold]{plan.protocol}[/], models "
                  f"{', '.join(plan.models)}, seeds {', '.join(map(str, plan.seeds))} -> {run_dir}")

    started = time.perf_counter()
    with _Progress() as progress:
        outcome = execute(plan, run_dir, resume=args.resume, progress=progress.notify,
                          record={"argv": sys.argv[1:]})
    report_path = write_report(run_dir)
    _print_results(run_dir)
    console.print(
        f"{outcome.units_total} units: {outcome.units_run} run, {outcome.units_reused} reused "
        f"from an earlier attempt, {outcome.units_failed} failed "
        f"({outcome.cases_failed} cases without a score), "
        f"{outcome.read_failures} read failures; {time.perf_counter() - started:.1f} s")
    console.print(f"report: {report_path}")
    return EXIT_FAILURES if outcome.units_failed or outcome.read_failures else EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from bench.config import load_config

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
        config = load_config(args.config)
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


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    path = write_report(args.run_dir)
    _print_results(args.run_dir)
    console.print(f"report: {path}")
    return EXIT_OK


def _print_results(run_dir: Path) -> None:
    import pandas as pd

    from bench import io
    from bench.report.markdown import results_table

    summary = io.read_json(Path(run_dir) / "summary.json")
    aggregates = pd.DataFrame(summary["aggregates"])
    if aggregates.empty:
        console.print("no results")
        return
    wide = results_table(aggregates, list(summary["metric_definitions"]))
    title = "Results (mean [95 % CI])" + (" - SYNTHETIC demo data" if summary["demo_data"]
                                         else "")
    table = Table(title=title, show_header=True, header_style="bold")
    for column in wide.columns:
        table.add_column(str(column), justify="right" if column.startswith("n") else "left")
    for row in wide.itertuples(index=False):
        table.add_row(*map(str, row))
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


class _Progress:
    """Rich progress bars fed by the runner's ``notify(event, **info)`` callback."""

    def __init__(self) -> None:
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  TimeRemainingColumn(), console=console, transient=False)
        self._task = None

    def __enter__(self) -> _Progress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def notify(self, event: str, **info: object) -> None:
        if event == "read":
            self._progress.console.print(f"deriving prompts: {info['dataset']}")
        elif event == "units":
            self._task = self._progress.add_task("units", total=int(info["total"]))
        elif event == "advance" and self._task is not None:
            self._progress.update(self._task, advance=1,
                                  description=f"{info['dataset']} {info['model']}")


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
