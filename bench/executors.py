"""Executors: where the units of a run execute (DESIGN section 3).

The runner derives the prompt ledger, lists the units still to do as
:class:`~bench.units.UnitSpec` records and hands them to an executor, which
runs each on a :class:`~bench.units.UnitWorker`; every finished unit
comes back to the driver (``sink.result``), which stores it under its key. So
no result depends on the executor, the worker count or the completion order.

``local``
    In the driver process, in order (the default). A crash here ends the
    driver: rerun with ``--resume``, which skips the units already stored.
``processes``
    A :class:`concurrent.futures.ProcessPoolExecutor` of ``workers`` spawned
    processes. A worker re-reads each flow from its dataset card and root by
    flow id (flows never cross processes) and builds each adapter once.
``ray``
    One Ray task per unit (``pip install 'medsam2-bench[ray]'``). A local Ray
    instance with ``workers`` CPUs is started unless Ray is already
    initialised or ``address`` names a cluster to join. A unit of an adapter
    that can run on CUDA, set to ``device = "cuda"`` (or ``"auto"`` on a
    cluster with GPUs), asks Ray for one GPU. On a cluster, the run directory,
    the cache folder and the dataset roots must be on a file system that
    every node sees under the same path.

Worker deaths. A unit whose worker process dies (killed, ``os._exit``, a
segfault) is run again, up to ``retries`` more times; a unit that keeps killing
its worker is recorded as failed with the reason. Adapter exceptions are not
retried: the unit is recorded as failed at once, as before (they are
deterministic). When a process pool breaks, every unit in flight is run again,
but only the unit whose worker died is charged a retry: the others' workers
were stopped by the pool (SIGTERM) and they clear their marker files. A unit
records ``attempts`` (1 + the retries it used) and ``restarts`` (how often it
was stopped because another unit's worker died; process pools only).

No orphans: a pool worker exits within a second of its driver's death (even a
SIGKILL, which runs no cleanup), see :func:`_exit_with_parent`, also while it
is still starting (importing the adapters' modules): the watch starts first,
against the driver's process id handed to the worker, so a driver that died
before the worker got this far is noticed at once. With the workers gone,
multiprocessing's resource tracker sees its pipe close and exits too.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, RunError
from bench.rundir import UnitRecord
from bench.units import UnitSpec, UnitWorker, WorkContext

EXECUTORS = ("local", "processes", "ray")


class UnitSink:
    """Receives what an executor learns about units (implemented by the runner)."""

    def result(self, spec: UnitSpec, unit: UnitRecord) -> None:
        """A finished unit (status ok or error), with its ``attempts``."""
        raise NotImplementedError

    def retry(self, spec: UnitSpec, attempt: int, reason: str) -> None:
        """The worker of ``spec`` died; the unit is started again (attempt ``attempt``)."""

    def gave_up(self, spec: UnitSpec, attempts: int, reason: str, restarts: int = 0) -> None:
        """The unit killed its worker more often than the retries allow."""
        raise NotImplementedError


class Executor:
    """Base class: runs unit specs and reports each outcome to a sink."""

    name = ""

    def describe(self) -> dict[str, Any]:
        """What the run record stores about the executor."""
        return {"executor": self.name}

    def run(self, specs: Sequence[UnitSpec], context: WorkContext, sink: UnitSink, *,
            retries: int, local_worker: UnitWorker | None = None) -> None:
        raise NotImplementedError


def make_executor(name: str, workers: int | None = None,
                  ray_address: str | None = None) -> Executor:
    """The executor called ``name`` (``local``, ``processes`` or ``ray``).

    Raises
    ------
    ConfigError
        An unknown name, a worker count below 1, ``workers`` with the local
        executor or ``ray_address`` with another executor than Ray.
    """
    if name not in EXECUTORS:
        raise ConfigError(f"--executor: unknown executor {name!r}; choose from "
                          f"{', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {workers}")
    if ray_address and name != "ray":
        raise ConfigError("--ray-address needs --executor ray")
    if name == "local":
        if workers not in (None, 1):
            raise ConfigError("--workers: the local executor runs in one process; use "
                              "--executor processes or ray")
        return LocalExecutor()
    count = workers or os.cpu_count() or 1
    if name == "processes":
        return ProcessExecutor(count)
    return RayExecutor(count, ray_address or None)


# ------------------------------------------------------------------------------ local


class LocalExecutor(Executor):
    """Runs every unit in the driver process, in the given order."""

    name = "local"

    def run(self, specs: Sequence[UnitSpec], context: WorkContext, sink: UnitSink, *,
            retries: int, local_worker: UnitWorker | None = None) -> None:
        worker = local_worker if local_worker is not None else UnitWorker(context)
        for spec in specs:
            sink.result(spec, worker.run(spec, attempt=1))


def prepare_worker(context: WorkContext) -> None:
    """Make the context's modules importable and import them (in a fresh worker)."""
    for path in context.paths:
        if path not in sys.path:
            sys.path.append(path)
    import importlib

    for module in context.modules:
        if module not in sys.modules:
            importlib.import_module(module)


# -------------------------------------------------------------------------- processes

_PROCESS: dict[str, Any] = {"worker": None, "markers": None, "current": None}
_STARTED = "started-"


def _init_process_worker(context: WorkContext, markers: str, parent: int | None) -> None:
    """Pool initializer: the driver watch, imports, marker folder and the SIGTERM handler.

    ``parent`` is the driver's process id, taken in the driver: a worker's own
    ``os.getppid()`` may already name its new parent. None for ``forkserver``,
    whose workers are children of the fork server (it ends with the driver).
    """
    # First: importing the adapters' modules (torch, sam2) takes seconds.
    _exit_with_parent(os.getppid() if parent is None else parent)
    prepare_worker(context)
    _PROCESS.update(context=context, markers=markers, worker=None, current=None)
    # Tells the driver that workers can start at all (see ProcessExecutor.run).
    with open(os.path.join(markers, f"{_STARTED}{os.getpid()}"), "w") as handle:
        handle.write("started")
    # The pool stops the surviving workers of a broken pool with SIGTERM. Their
    # units are innocent: clear the marker so that no retry is charged to them.
    signal.signal(signal.SIGTERM, _stopped_by_pool)


def _exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Exit this worker soon after its driver dies (no orphans after a SIGKILL).

    A daemon thread polls ``os.getppid()``: once the driver is gone the worker
    is re-parented and the id differs from ``parent`` (at once, when the
    driver died before the watch started). (``PR_SET_PDEATHSIG`` would be faster
    but fires when the *thread* that spawned the worker ends, which for a
    process pool may be a short-lived one.)
    """
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(128 + signal.SIGKILL)

    threading.Thread(target=watch, name="driver-watch", daemon=True).start()


def _stopped_by_pool(signum: int, frame: Any) -> None:
    current = _PROCESS.get("current")
    if current is not None:
        try:
            os.unlink(current)
        except OSError:
            pass
    os._exit(128 + signum)


def _process_run_unit(spec: UnitSpec, attempt: int) -> UnitRecord:
    """Run one unit in a pool worker; a marker file names it while it runs."""
    if _PROCESS["worker"] is None:
        _PROCESS["worker"] = UnitWorker(_PROCESS["context"])
    marker = os.path.join(_PROCESS["markers"], spec.key)
    with open(marker, "w") as handle:
        handle.write(str(os.getpid()))
    _PROCESS["current"] = marker
    try:
        return _PROCESS["worker"].run(spec, attempt=attempt)
    finally:
        os.unlink(marker)
        _PROCESS["current"] = None


class ProcessExecutor(Executor):
    """A pool of ``workers`` spawned processes; a broken pool is recreated.

    At most ``workers`` units are in flight, so that a unit is handed to a
    worker only when one is free and a broken pool stops as little work as
    possible. ``start_method`` is ``spawn`` by default: forking a driver that
    holds CUDA state or the progress display's thread is unsafe.
    """

    name = "processes"

    def __init__(self, workers: int, start_method: str = "spawn") -> None:
        if workers < 1:
            raise ConfigError(f"--workers: must be at least 1, got {workers}")
        self.workers = workers
        self.start_method = start_method

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers,
                "start_method": self.start_method}

    def run(self, specs: Sequence[UnitSpec], context: WorkContext, sink: UnitSink, *,
            retries: int, local_worker: UnitWorker | None = None) -> None:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        queue = deque(specs)
        starts: dict[str, int] = {}
        crashes: dict[str, int] = {}
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as markers:
            while queue:
                pool = ProcessPoolExecutor(
                    max_workers=min(self.workers, len(queue)),
                    mp_context=multiprocessing.get_context(self.start_method),
                    initializer=_init_process_worker,
                    initargs=(context, markers, None if self.start_method == "forkserver"
                              else os.getpid()))
                in_flight: dict[Any, UnitSpec] = {}
                suspects: list[UnitSpec] = []
                cause = ""
                try:
                    while queue or in_flight:
                        while queue and len(in_flight) < self.workers and not suspects:
                            spec = queue.popleft()
                            attempt = crashes.get(spec.key, 0) + 1
                            try:
                                future = pool.submit(_process_run_unit, spec, attempt)
                            except BrokenProcessPool as err:
                                queue.appendleft(spec)
                                cause = str(err)
                                break
                            starts[spec.key] = starts.get(spec.key, 0) + 1
                            in_flight[future] = spec
                        if not in_flight:
                            break
                        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                        for future in done:
                            spec = in_flight.pop(future)
                            try:
                                unit = future.result()
                            except BrokenProcessPool as err:
                                suspects.append(spec)
                                cause = str(err)
                                continue
                            sink.result(spec, _restarts(unit, starts[spec.key]))
                        if suspects:
                            # The pool is broken: every unit still in flight ends too.
                            for future, spec in list(in_flight.items()):
                                try:
                                    unit = future.result()
                                except BrokenProcessPool:
                                    suspects.append(spec)
                                else:
                                    sink.result(spec, _restarts(unit, starts[spec.key]))
                            in_flight.clear()
                            break
                finally:
                    pool.shutdown(wait=True, cancel_futures=True)
                if cause and ("initializer" in cause or not any(
                        name.startswith(_STARTED) for name in os.listdir(markers))):
                    raise RunError(
                        "worker processes cannot start (see the messages above; a script that "
                        "runs units must guard its entry point with if __name__ == "
                        f"'__main__'): {cause}")
                self._charge(suspects, markers, queue, starts, crashes, retries, sink)

    @staticmethod
    def _charge(suspects: list[UnitSpec], markers: str, queue: deque, starts: dict[str, int],
                crashes: dict[str, int], retries: int, sink: UnitSink) -> None:
        """Charge a crash to the units whose workers died; queue the rest again."""
        left = {spec.key for spec in suspects if os.path.exists(os.path.join(markers, spec.key))}
        # No marker left (e.g. a worker killed between units): the culprit is
        # unknown, so every suspect is charged, which bounds the retries.
        culprits = left or {spec.key for spec in suspects}
        for spec in reversed(suspects):
            marker = os.path.join(markers, spec.key)
            if os.path.exists(marker):
                os.unlink(marker)
            if spec.key not in culprits:
                queue.appendleft(spec)
                continue
            crashes[spec.key] = crashes.get(spec.key, 0) + 1
            reason = "the worker process died while running this unit"
            if crashes[spec.key] > retries:
                sink.gave_up(spec, crashes[spec.key], f"{reason} ({crashes[spec.key]} times)",
                             restarts=starts[spec.key] - crashes[spec.key])
            else:
                sink.retry(spec, crashes[spec.key] + 1, reason)
                queue.appendleft(spec)


def _restarts(unit: UnitRecord, starts: int) -> UnitRecord:
    """Record how often the unit was stopped because another unit's worker died."""
    return dataclasses.replace(unit, restarts=starts - unit.attempts)


# -------------------------------------------------------------------------------- ray

_RAY_WORKERS: dict[str, Any] = {}


def _ray_run_unit(context: WorkContext, spec: UnitSpec, attempt: int) -> UnitRecord:
    """Body of the Ray task: one worker object per run and worker process."""
    worker = _RAY_WORKERS.get(context.token)
    if worker is None:
        prepare_worker(context)
        _RAY_WORKERS.clear()  # a worker process serves one run at a time
        worker = _RAY_WORKERS[context.token] = UnitWorker(context)
    return worker.run(spec, attempt=attempt)


def require_ray() -> Any:
    """Import Ray, or explain how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'medsam2-bench[ray]' "
                           "(or pip install 'ray[default]')") from None
    return ray


class RayExecutor(Executor):
    """One Ray task per unit; worker deaths are retried here (``max_retries=0``)."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"--workers: must be at least 1, got {workers}")
        self.workers = workers
        self.address = address

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers, "address": self.address}

    def run(self, specs: Sequence[UnitSpec], context: WorkContext, sink: UnitSink, *,
            retries: int, local_worker: UnitWorker | None = None) -> None:
        ray = require_ray()
        started_here = not ray.is_initialized()
        if started_here:
            if self.address:
                ray.init(address=self.address, include_dashboard=False)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False)
        try:
            self._run(ray, specs, context, sink, retries)
        finally:
            if started_here:
                ray.shutdown()

    def _run(self, ray: Any, specs: Sequence[UnitSpec], context: WorkContext, sink: UnitSink,
             retries: int) -> None:
        from ray.exceptions import RayError, RayTaskError

        task = ray.remote(_ray_run_unit)
        gpus = ray.cluster_resources().get("GPU", 0)
        options = {model: {"num_cpus": 1, "max_retries": 0,
                           "num_gpus": 1 if wants_gpu(model, context.plan, gpus) else 0}
                   for model in context.plan.models}
        shared = ray.put(context)
        limit = max(self.workers, int(ray.cluster_resources().get("CPU", 1))) * 2
        queue = deque(specs)
        starts: dict[str, int] = {}
        crashes: dict[str, int] = {}
        in_flight: dict[Any, UnitSpec] = {}
        while queue or in_flight:
            while queue and len(in_flight) < limit:
                spec = queue.popleft()
                starts[spec.key] = starts.get(spec.key, 0) + 1
                ref = task.options(**options[spec.model]).remote(shared, spec, starts[spec.key])
                in_flight[ref] = spec
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                spec = in_flight.pop(ref)
                try:
                    sink.result(spec, ray.get(ref))
                except RayTaskError:
                    # A unit's own failure never raises (bench.units): this is a harness
                    # bug outside the unit's guard, shown with its remote traceback.
                    raise
                except RayError as err:  # the worker (or its node) died: Ray knows which unit
                    crashes[spec.key] = crashes.get(spec.key, 0) + 1
                    reason = f"the worker process died ({type(err).__name__})"
                    if crashes[spec.key] > retries:
                        sink.gave_up(spec, starts[spec.key],
                                     f"{reason} ({crashes[spec.key]} times)")
                    else:
                        sink.retry(spec, starts[spec.key] + 1, reason)
                        queue.appendleft(spec)


def wants_gpu(model: str, plan: Any, cluster_gpus: float) -> bool:
    """Whether a unit of ``model`` asks Ray for a GPU.

    True for adapters whose ``capabilities.devices`` include ``cuda`` when
    their ``device`` setting is ``cuda``, or ``auto`` (the default) and the
    cluster has GPUs.
    """
    from bench.adapters import registered

    cls = registered().get(model)
    if cls is None or "cuda" not in cls.capabilities.devices:
        return False
    device = str(plan.model_settings.get(model, {}).get("device", "auto"))
    return device == "cuda" or (device == "auto" and cluster_gpus > 0)


def module_paths(modules: Sequence[str]) -> tuple[str, ...]:
    """Folders to put on ``sys.path`` so that a fresh process can import ``modules``."""
    paths: list[str] = []
    for name in modules:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if not file:
            continue
        folder = Path(file).resolve().parent
        for _ in range(name.count(".") + (1 if Path(file).name == "__init__.py" else 0)):
            folder = folder.parent
        if str(folder) not in paths:
            paths.append(str(folder))
    return tuple(paths)
