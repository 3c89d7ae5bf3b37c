"""Best-of-n timing shared by the surface-metric benchmarks (hd95_speed, nsd_speed)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def best_of(fn: Callable[[], float], repeat: int) -> tuple[float, float, float]:
    """Best wall seconds and best CPU seconds of ``repeat`` calls, and the last value.

    CPU time (all threads of this process) is reported beside wall time
    because on a shared machine wall time also measures the neighbours.
    """
    wall, cpu, value = np.inf, np.inf, np.nan
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, value
