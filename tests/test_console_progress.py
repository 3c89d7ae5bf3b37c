"""Without a terminal the run prints plain progress lines: per dataset and every 30 s."""

import io
import time

from bench.console import RunProgress
from bench.progress import DatasetReading, UnitFinished, UnitsPlanned


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _finished(dataset: str, model: str = "m", cache: str = "off") -> UnitFinished:
    return UnitFinished(dataset=dataset, flow="f", model=model, seed=0, status="ok",
                        cache=cache, attempts=1, seconds=1.0)


def test_plain_lines_per_dataset_and_every_interval():
    stream, clock = io.StringIO(), FakeClock()
    with RunProgress(stream, plain=True, clock=clock, heartbeat=False) as progress:
        progress.notify(DatasetReading("a"))
        progress.notify(UnitsPlanned(total=4, reused=0, selected=4, all=4, executor="local",
                                     shard=None))
        clock.now += 10
        progress.notify(_finished("a"))  # first unit of dataset a: a line
        clock.now += 10
        progress.notify(_finished("a", cache="hit"))  # same dataset, 10 s later: quiet
        progress.tick()  # nothing new for 10 s only: quiet
        clock.now += 25
        progress.tick()  # 35 s since the last line while a unit runs: a line
        clock.now += 5
        progress.notify(_finished("b"))  # a new dataset: a line
        progress.notify(_finished("b"))
    assert stream.getvalue().splitlines() == [
        "deriving prompts: a",
        "units: 4 to run",
        "units 1/4 after 0:00:10, ETA 0:00:30, last: a m",
        "units 2/4 after 0:00:45, ETA 0:00:45, last: a m [1 cached]",
        "units 3/4 after 0:00:50, ETA 0:00:17, last: b m [1 cached]",
        "units done: 4/4 [1 cached]",
    ]


def test_the_heartbeat_thread_prints_while_a_long_unit_runs():
    stream = io.StringIO()
    with RunProgress(stream, plain=True, interval=0.05) as progress:
        progress.notify(UnitsPlanned(total=1, reused=0, selected=1, all=1, executor="local",
                                     shard=None))
        time.sleep(0.3)  # a long unit: the heartbeat speaks meanwhile
    lines = stream.getvalue().splitlines()
    assert lines[0] == "units: 1 to run" and len(lines) >= 2
    assert all(line.startswith("units 0/1 after 0:00:0") for line in lines[1:])
