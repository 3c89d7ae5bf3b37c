"""What the command line shows: the consoles, the run's progress (a bar in a terminal,
plain lines in logs), result tables."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TextIO

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

from bench.aggregate import aggregates_frame
from bench.progress import (
    DatasetReading,
    DatasetRefused,
    DatasetWarnings,
    Event,
    FramesDone,
    UnitFinished,
    UnitRetrying,
    UnitsPlanned,
)
from bench.report.tables import results_table
from bench.rundir import RunDir, random_weight_models

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


def _why_nothing(rundir: RunDir) -> str:
    """Why a run scored no case: refused datasets, failed units, or one-prompt templates."""
    manifest = rundir.read_manifest() if rundir.manifest_path.exists() else {"datasets": {}}
    refused = [name for name, entry in manifest.get("datasets", {}).items()
               if entry.get("refused")]
    if refused:
        return (f"dataset(s) {', '.join(refused)} refused for unreadable cases (listed above; "
                "--skip-bad-cases evaluates the rest)")
    units = rundir.read_unit_table()
    if units is not None and not units.empty and (units["status"] == "error").all():
        return "every unit failed (reasons below and in report.md)"
    if rundir.read_plan().get("protocol") == "one-prompt":
        return ("one-prompt gives each flow's template rather than scoring it, so a flow needs "
                "2 or more cases (with --limit: 2 or more)")
    return "see the failures above and report.md"


def print_results(run_dir: Path) -> None:
    """The report's results table without intervals (they are in the report)."""
    rundir = RunDir(run_dir)
    summary = rundir.read_summary()
    stamped = random_weights_of(rundir, summary)
    if stamped:
        console.print(random_weights_banner(stamped), style="bold red", markup=False)
    aggregates = aggregates_frame(summary["aggregates"])
    if aggregates.empty:
        console.print(f"no results: no case was scored; {_why_nothing(rundir)}")
        return
    # summary.json sorts its keys; the plan keeps the suite's metric order.
    metrics = rundir.read_plan()["metrics"]
    shown = results_table(aggregates, metrics, intervals=False)
    title = "Mean per dataset, target and model (95 % CIs in report.md)"
    if summary["demo_data"]:
        title += " - SYNTHETIC demo data"
    if stamped:
        title += " - RANDOM WEIGHTS (meaningless)"
    console.print(frame_table(shown, title, headers=_COUNT_HEADERS,
                              right=[*metrics, *_COUNT_HEADERS]))


def random_weights_of(rundir: RunDir, summary: dict) -> list[str]:
    """The models of a run stamped as run with random weights (summary, else run record)."""
    if "random_weights" in summary:
        return list(summary["random_weights"])
    return random_weight_models(rundir.read_config()) if rundir.config_path.exists() else []


def random_weights_banner(models: Collection[str]) -> str:
    """The console line above the results of a run with random weights."""
    return (f"RANDOM WEIGHTS (--random-weights): results of {', '.join(models)} are "
            "MEANINGLESS (smoke test only; metrics.csv: random_weights=True)")


class _RateColumn(ProgressColumn):
    """Throughput in units per second (rich's estimate over the last 30 s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- units/s" if speed is None else f"{speed:.2f} units/s", style="cyan")


# Without a terminal, a progress line at least this often (seconds) while units run.
PLAIN_INTERVAL_S = 30.0


class RunProgress:
    """The run's progress, fed the run's events (:mod:`bench.progress`).

    In a terminal: one rich progress bar over all workers. It counts the
    units still to compute (units reused from an earlier attempt are
    reported, not counted, so that throughput and ETA are those of the work
    left); its label tallies cache hits, failures and retries.

    Frames (:class:`~bench.progress.FramesDone`, units run in this process):
    a second bar for the running unit's frames, or the frame count in the
    plain lines, so that a dataset of one long flow visibly moves.

    Without one (CI logs, ``nohup``, pipes): plain lines, a bar would print
    nothing until the end. A line when a dataset's units start, then one when
    ``interval`` seconds have passed since the last, at the next finished unit
    or, while a long unit runs, from a heartbeat thread (:meth:`tick`); so a
    long run never stays silent for much more than ``interval``.

    Parameters
    ----------
    stream : file, optional
        Where plain lines go (default: standard output).
    plain : bool, optional
        Force plain lines (True) or the bar (False); default: plain unless
        standard output is a terminal.
    clock : callable
        Seconds, monotonic (tests pass a fake).
    interval : float
        Seconds between plain lines.
    heartbeat : bool
        Start the thread that calls :meth:`tick` (plain mode only).
    """

    def __init__(self, stream: TextIO | None = None, *, plain: bool | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 interval: float = PLAIN_INTERVAL_S, heartbeat: bool = True) -> None:
        self._plain = not console.is_terminal if plain is None else plain
        self._stream = stream
        self._clock = clock
        self._interval = interval
        self._heartbeat = heartbeat and self._plain
        self._progress = None if self._plain else Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self._task = None
        self._counts = {"cached": 0, "failed": 0, "retried": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._total = self._done = 0
        self._started = self._last = 0.0
        self._dataset: str | None = None  # of the last plain line
        self._current = ""
        self._frames: tuple[int, int] | None = None  # (done, total) of the running unit
        self._frames_task = None

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.__enter__()
        if self._heartbeat:
            self._thread = threading.Thread(target=self._beat, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self._progress is not None:
            self._progress.__exit__(*exc)
        elif self._total and self._done:
            self._line(f"units done: {self._done}/{self._total}" + self._tally())

    def notify(self, event: Event) -> None:
        with self._lock:
            self._notify(event)

    def tick(self) -> None:
        """Plain mode: a line if units are running and none was printed for ``interval`` s."""
        with self._lock:
            if (self._plain and self._total and self._done < self._total
                    and self._clock() - self._last >= self._interval):
                self._status()

    def _beat(self) -> None:
        while not self._stop.wait(min(self._interval, 5.0)):
            self.tick()

    def _notify(self, event: Event) -> None:
        if isinstance(event, DatasetReading):
            self._show(f"deriving prompts: {event.dataset}")
        elif isinstance(event, DatasetRefused):
            failures = event.failures
            lines = "\n".join(f"  {escape(f['error'])}" for f in failures[:10])
            more = f"\n  ... and {len(failures) - 10} more" if len(failures) > 10 else ""
            self._show(f"[red]dataset {event.dataset} refused: {len(failures)} unreadable "
                       f"case(s)[/]\n{lines}{more}\n  Fix them (see `bench datasets check "
                       f"{event.dataset} --root ...`) or rerun with --skip-bad-cases.")
        elif isinstance(event, DatasetWarnings):
            for line in event.lines:
                self._show(f"[yellow]warning[/]: dataset {event.dataset}: {escape(line)}")
        elif isinstance(event, UnitsPlanned):
            where = f" ({event.executor})" if event.executor != "local" else ""
            if event.shard:
                self._show(f"shard {event.shard}: {event.selected} of {event.all} units")
            if event.reused:
                self._show(f"{event.reused} units already complete (reused)")
            self._total, self._started = event.total, self._clock()
            if self._progress is not None:
                self._task = self._progress.add_task(f"units{where}", total=event.total)
            else:
                self._line(f"units{where}: {event.total} to run")
        elif isinstance(event, UnitRetrying):
            self._counts["retried"] += 1
            self._show(f"[yellow]retrying[/] {event.dataset}/{event.flow} {event.model} seed "
                       f"{event.seed} (attempt {event.attempt}): {escape(event.reason)}")
        elif isinstance(event, FramesDone):
            self._frames = (event.done, event.total)
            if self._progress is not None:
                if self._frames_task is None:
                    self._frames_task = self._progress.add_task("  frames of this unit",
                                                                total=event.total)
                self._progress.update(self._frames_task, completed=event.done,
                                      total=event.total)
            elif self._plain and self._clock() - self._last >= self._interval:
                self._status()
        elif isinstance(event, UnitFinished):
            self._frames = None
            if self._frames_task is not None:
                self._progress.update(self._frames_task, completed=0)
            self._counts["cached"] += event.cache == "hit"
            self._counts["failed"] += event.status == "error"
            self._done += 1
            self._current = f"{event.dataset} {event.model}"
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, advance=1,
                                      description=self._current + self._tally())
            elif self._plain and (event.dataset != self._dataset
                                  or self._clock() - self._last >= self._interval):
                self._dataset = event.dataset
                self._status()

    def _tally(self) -> str:
        tally = ", ".join(f"{n} {name}" for name, n in self._counts.items() if n)
        return f" [{tally}]" if tally else ""

    def _status(self) -> None:
        elapsed = self._clock() - self._started
        rate = self._done / elapsed if elapsed > 0 else 0.0
        eta = f", ETA {_clock_text((self._total - self._done) / rate)}" if rate > 0 else ""
        last = f", last: {self._current}" if self._current else ""
        frames = (f", running unit: frame {self._frames[0]}/{self._frames[1]}"
                  if self._frames else "")
        self._line(f"units {self._done}/{self._total} after {_clock_text(elapsed)}{eta}{last}"
                   f"{frames}" + self._tally())

    def _show(self, markup: str) -> None:
        if self._progress is not None:
            self._progress.console.print(markup, markup=True, highlight=False)
        else:
            self._line(Text.from_markup(markup).plain)

    def _line(self, text: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(text + "\n")
        stream.flush()
        self._last = self._clock()


def _clock_text(seconds: float) -> str:
    """``h:mm:ss`` of a duration."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
