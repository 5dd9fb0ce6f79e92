"""Where the class's submissions are graded: Dask distributed, on this machine or on a cluster.

By default a ``LocalCluster`` on loopback: one single-threaded worker process per core,
each importing nbgrader and torch once and grading one submission after another. With
``--scheduler tcp://HOST:PORT`` (or ``tls://`` with Dask's TLS settings, see the README)
the same tasks go to an existing cluster started with ``dask scheduler`` and
``dask worker --nthreads 1`` or by ``dask-jobqueue``.

A task is one function call with its arguments (a submission's files travel inside it);
a worker that dies in the middle of one has it rescheduled on another by Dask. Each task
logs an event when it starts, so that the client can tell which ones were retried.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

STARTED = "autograder-started"  # the event topic a task logs to when it starts on a worker

# Dask's own bookkeeping that grading does not use, off or slowed down: the statistical profiler samples
# the running task every 10 ms, the event-loop check runs every 20 ms and the system and memory monitors
# every 500 and 100 ms, in every worker, nanny and scheduler. Together they take a seventh of a core on an
# idle cluster of two workers, a core that grading needs (measured by tools/bench_grading.py's way of
# starting workers). The memory limit of a submission is the sandbox's, not Dask's.
SETTINGS = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def environment() -> dict[str, str]:
    """``SETTINGS`` as the ``DASK_*`` variables that ``dask scheduler`` and ``dask worker`` read."""
    return {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value) for key, value in SETTINGS.items()}


def _exit_now() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class QuickExit(WorkerPlugin):
    """A worker plugin: once its worker has closed, the worker's process ends without tearing down its
    interpreter. With torch and nbgrader loaded that teardown takes a second or more, and a closing
    LocalCluster waits for it (4 s at most, then it kills the process): time at the end of every run
    with nothing left to do (measured by the timeline of tools/bench_grading.py's LocalCluster)."""

    name = "autograder-quick-exit"

    def teardown(self, worker) -> None:
        atexit.register(_exit_now)  # the last registered runs first, after everything Dask closes


def dask_setup(worker) -> None:
    """Run by each worker of the LocalCluster as it starts (its ``preload``): import what grading needs
    (nbgrader, torch, the course's checks) while the instructor's process builds the workers' gradebook,
    rather than in the first submission. An import that fails is left to the submission to report."""
    with contextlib.suppress(Exception):
        from . import grade_class, grading  # noqa: F401


class SchedulerLost(Exception):
    """The connection to the Dask scheduler broke while tasks were still running."""


class ClusterUnfit(Exception):
    """The cluster cannot grade: no workers, or workers that run several tasks at once."""


@contextlib.contextmanager
def connect(scheduler: str | None, workers: int, env: dict[str, str]) -> Iterator[distributed.Client]:  # noqa: F821
    """A client of the given scheduler, or of a new loopback LocalCluster with ``workers`` processes."""
    import dask
    from distributed import Client, LocalCluster

    for name in [n for n in logging.Logger.manager.loggerDict if n.split(".")[0] == "distributed"] + ["distributed"]:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # a lost worker or scheduler is told in our own words
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise SchedulerLost(f"could not reach the Dask scheduler at {scheduler} ({type(error).__name__})") from None
        with client:
            yield client
        return
    with (
        dask.config.set(SETTINGS),  # the nannies hand it on to their workers
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.CRITICAL,
            env=env,
            preload=[__name__],
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(QuickExit())  # on this cluster's own workers only, never on a shared cluster's
        yield client


def check_workers(client) -> int:
    """The number of workers; refuses a cluster with none or with multi-threaded ones.

    One task at a time per worker process is what lets a task stop its own sandboxed kernel
    at the time limit without touching another submission's.
    """
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if not workers:
        try:
            client.wait_for_workers(1, timeout=60)
        except TimeoutError:
            raise ClusterUnfit(
                f"the scheduler at {client.scheduler.address} has had no workers for a minute "
                "(start them with dask worker ADDRESS --nthreads 1)"
            ) from None
        workers = client.scheduler_info(n_workers=-1)["workers"]
    busy = sorted(address for address, worker in workers.items() if worker["nthreads"] != 1)
    if busy:
        raise ClusterUnfit(
            f"worker {busy[0]} runs {workers[busy[0]]['nthreads']} tasks at once; grading needs "
            "single-threaded workers (dask worker --nthreads 1)"
        )
    return len(workers)


def _started(function: Callable, key: str, *args):
    """Run ``function(*args)`` on a worker, first logging that ``key`` started there."""
    from distributed import get_worker

    get_worker().log_event(STARTED, {"key": key})
    return function(*args)


def run(client, function: Callable, jobs: Iterable[tuple[str, tuple]], window: int) -> Iterator[tuple[str, Any, int]]:
    """Run ``function(*args)`` for each ``(key, args)`` of ``jobs``; yield ``(key, result, attempts)`` as each ends.

    At most ``window`` tasks are submitted ahead, so a large class's notebooks are not all held in
    memory at once. ``result`` is the exception when a task failed for good (Dask's
    ``KilledWorker`` after it stopped too many workers). ``attempts`` counts its starts on workers.
    Raises ``SchedulerLost`` when the scheduler goes away.
    """
    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    starts: Counter = Counter()
    client.subscribe_topic(STARTED, lambda event: starts.update([event[1]["key"]]))
    jobs = iter(jobs)
    keys: dict = {}

    def submit(count: int) -> list:
        futures = []
        for key, args in itertools.islice(jobs, count):
            future = client.submit(_started, function, key, *args, key=key, pure=False)
            keys[future] = key
            futures.append(future)
        return futures

    running = as_completed(submit(window))
    try:
        for future in running:
            key = keys.pop(future)
            if future.status == "cancelled":
                raise SchedulerLost("the Dask scheduler went away")
            try:
                result = future.result()
            except Exception as error:  # the task's own failure (KilledWorker, or raised on the worker): recorded
                if future.status != "error" and isinstance(error, (FutureCancelledError, CommClosedError, OSError)):
                    raise SchedulerLost(f"the Dask scheduler went away ({type(error).__name__})") from None
                result = error
            future.release()
            yield key, result, max(1, starts[key])
            running.update(submit(1))
    finally:
        client.unsubscribe_topic(STARTED)


class Loopback:
    """A `dask scheduler` and ``workers`` `dask worker --nthreads 1` processes on loopback TCP, started as the
    README says (with ``environment()``), each in a process group of its own: the cluster that
    ``tools/bench_grading.py`` and the tests grade on with ``--scheduler``."""

    def __init__(self, workers: int, env: dict[str, str], cwd: Path, folder: Path):
        self.env, self.cwd = dict(env, **environment()), cwd
        scheduler_file = folder / "scheduler.json"
        self.scheduler = self._start(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ]
        )
        deadline = time.monotonic() + 120
        while not scheduler_file.is_file():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Dask scheduler did not start (exit status {self.scheduler.returncode})")
            time.sleep(0.2)
        time.sleep(0.5)  # the file is written whole a moment after it appears
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.workers = [
            self._start(["worker", self.address, "--nthreads", "1", "--no-dashboard"]) for _ in range(workers)
        ]

    def _start(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "dask"), *args],
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(count, timeout=120)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """Stop ``process`` and what it started at once (SIGKILL to its process group), as a machine going down would."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=60)

    def stop(self) -> None:
        for process in [*getattr(self, "workers", []), self.scheduler]:
            self.kill(process)
