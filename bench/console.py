"""What the command line shows: the consoles, the run's progress bar, result tables."""

from __future__ import annotations

import sys
from collections.abc import Collection
from pathlib import Path

import pandas as pd
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

from bench.progress import (
    DatasetReading,
    DatasetRefused,
    Event,
    UnitFinished,
    UnitRetrying,
    UnitsPlanned,
)
from bench.report.tables import results_table
from bench.rundir import RunDir

# Pipes and CI logs get a fixed width wide enough for the results table.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
errors = Console(stderr=True, highlight=False)


def frame_table(frame: pd.DataFrame, title: str, *, headers: dict[str, str] | None = None,
                right: Collection[str] = ()) -> Table:
    """A rich table of a frame of display strings (columns in ``right`` right-aligned)."""
    table = Table(title=title, show_header=True, header_style="bold")
    for column in frame.columns:
        table.add_column((headers or {}).get(str(column), str(column)),
                         justify="right" if column in right else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*map(str, row))
    return table


# Console headers of the count columns of the results table (narrower than the report's).
_COUNT_HEADERS = {"n": "n", "n_excluded": "excl", "n_penalised": "pen", "n_failed": "fail"}


def print_results(run_dir: Path) -> None:
    """The report's results table without intervals (they are in the report)."""
    rundir = RunDir(run_dir)
    summary = rundir.read_summary()
    aggregates = pd.DataFrame(summary["aggregates"])
    if aggregates.empty:
        console.print("no results")
        return
    # summary.json sorts its keys; the plan keeps the suite's metric order.
    metrics = rundir.read_plan()["metrics"]
    shown = results_table(aggregates, metrics, intervals=False)
    title = "Mean per dataset, target and model (95 % CIs in report.md)"
    if summary["demo_data"]:
        title += " - SYNTHETIC demo data"
    console.print(frame_table(shown, title, headers=_COUNT_HEADERS,
                              right=[*metrics, *_COUNT_HEADERS]))


class _RateColumn(ProgressColumn):
    """Throughput in units per second (rich's estimate over the last 30 s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- units/s" if speed is None else f"{speed:.2f} units/s", style="cyan")


class RunProgress:
    """One progress bar over all workers, fed the run's events (:mod:`bench.progress`).

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

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def notify(self, event: Event) -> None:
        show = self._progress.console.print
        if isinstance(event, DatasetReading):
            show(f"deriving prompts: {event.dataset}")
        elif isinstance(event, DatasetRefused):
            failures = event.failures
            lines = "\n".join(f"  {escape(f['error'])}" for f in failures[:10])
            more = f"\n  ... and {len(failures) - 10} more" if len(failures) > 10 else ""
            show(f"[red]dataset {event.dataset} refused: {len(failures)} unreadable case(s)"
                 f"[/]\n{lines}{more}\n  Fix them (see `bench datasets check "
                 f"{event.dataset} --root ...`) or rerun with --skip-bad-cases.",
                 markup=True, highlight=False)
        elif isinstance(event, UnitsPlanned):
            where = f" ({event.executor})" if event.executor != "local" else ""
            if event.shard:
                show(f"shard {event.shard}: {event.selected} of {event.all} units")
            if event.reused:
                show(f"{event.reused} units already complete (reused)")
            self._task = self._progress.add_task(f"units{where}", total=event.total)
        elif isinstance(event, UnitRetrying):
            self._counts["retried"] += 1
            show(f"[yellow]retrying[/] {event.dataset}/{event.flow} {event.model} seed "
                 f"{event.seed} (attempt {event.attempt}): {escape(event.reason)}",
                 markup=True, highlight=False)
        elif isinstance(event, UnitFinished) and self._task is not None:
            self._counts["cached"] += event.cache == "hit"
            self._counts["failed"] += event.status == "error"
            tally = ", ".join(f"{n} {name}" for name, n in self._counts.items() if n)
            self._progress.update(self._task, advance=1,
                                  description=f"{event.dataset} {event.model}"
                                  + (f" [{tally}]" if tally else ""))


