"""How long the test suite takes, and where its time goes: wall time, and CPU seconds per test file.

    python tools/bench_tests.py                 # make test's run: every test, pytest -n auto --dist loadgroup
    python tools/bench_tests.py --tier check    # make check's run (no book, browser or full-class grading)
    python tools/bench_tests.py tests/test_x.py # some files only; -n 2 for two workers
    python tools/bench_tests.py --each-file     # each test file alone, with the whole machine's CPU seconds

It prints the run's wall time and, per test file, its tests, CPU seconds and the seconds its
tests ran; then, per xdist worker, the seconds it ran tests and when it ran out of work, and
how many cores the tests kept busy on average (their CPU seconds over the run's wall time). Then the tests that ran
longest (--slowest N). A test's CPU is that of its worker process and of the child processes reaped
while it ran (nbgrader, `python -m autograder grade` and the kernels they waited for); a process
that outlives its test (Chromium, driven by Playwright for the whole session) is not counted.
Figures, not a test: nothing here fails on a slow machine.

So a test's own CPU misses the kernels its worker starts in-process, and it charges a test with
children of earlier tests that happen to be reaped during it. --each-file runs each test file in a pytest of its
own (the book's and the browser's together: they share one build) and reads the whole machine's
CPU seconds from /proc/stat before and after, so it wants a quiet machine; each run also pays its
own pytest start (about 7 CPU s with two workers).

Cores that sit idle while tests run are time a test spends waiting (a submission sleeping out its
cell limit, a server starting) while the other worker has only one core's work. The run reads
/proc/stat once a second, and it lists the tests that were running while cores sat idle, each
charged its share of the idle core-seconds of each second it ran in (--idle N: the N most charged).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIERS = {"all": [], "check": ["-m", "not book and not browser and not grading"]}
LOG = "BENCH_TESTS_LOG"


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """In each pytest process that loads this file as a plugin: one line per test into $BENCH_TESTS_LOG."""
    cpu, wall = _cpu(), time.perf_counter()
    yield
    row = {
        "test": item.nodeid,
        "file": item.nodeid.split("::")[0],
        "cpu": _cpu() - cpu,
        "wall": time.perf_counter() - wall,
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "ended": time.time(),
    }
    with open(os.environ[LOG], "a") as log:
        log.write(json.dumps(row) + "\n")


def _machine_cpu() -> float:
    """CPU seconds the whole machine has spent (user, nice, system, irq, softirq), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class MachineSampler(threading.Thread):
    """The whole machine's busy CPU seconds, read once a second as (time, seconds) until ``stop`` is set."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append((time.time(), _machine_cpu()))
            if self.stop.wait(1.0):
                self.samples.append((time.time(), _machine_cpu()))
                return


def idle_by_test(samples: list[tuple[float, float]], rows: list[dict], cores: int) -> tuple[float, collections.Counter]:
    """Idle core-seconds in all, and each test's share of those of the seconds it ran in."""
    total, charged = 0.0, collections.Counter()
    for (start, busy_start), (end, busy_end) in zip(samples, samples[1:]):
        idle = max(0.0, cores * (end - start) - (busy_end - busy_start))
        total += idle
        middle = (start + end) / 2
        running = [row["test"] for row in rows if row["ended"] - row["wall"] <= middle <= row["ended"]]
        for test in running or ["(between tests)"]:
            charged[test] += idle / max(1, len(running))
    return total, charged


def each_file(command: list[str], env: dict, paths: list[str]) -> int:
    """Run each test file alone; print its machine CPU seconds, wall seconds and pytest's last line."""
    files = paths or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py"))
    shared = ["tests/test_book.py", "tests/test_browser.py"]
    runs = [[f] for f in files if f not in shared] + [[f for f in shared if f in files]]
    print(f"{'test file':52} {'machine CPU s':>14} {'wall s':>8}  pytest")
    worst, total = 0, 0.0
    for run in (r for r in runs if r):
        cpu, started = _machine_cpu(), time.time()
        done = subprocess.run([*command, *run], cwd=ROOT, env=env, capture_output=True, text=True)
        cpu, wall = _machine_cpu() - cpu, time.time() - started
        total += cpu
        last = (done.stdout.strip().splitlines() or [""])[-1]
        print(f"{' + '.join(run):52} {cpu:14.1f} {wall:8.1f}  {last}")
        worst = worst or done.returncode
    print(f"{'all':52} {total:14.1f}")
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="test files or folders (default: the whole suite)")
    parser.add_argument("--tier", choices=sorted(TIERS), default="all")
    parser.add_argument("-n", default="auto", help="pytest-xdist workers (default: auto)")
    parser.add_argument("--slowest", type=int, default=20, metavar="N", help="list the N tests that ran longest")
    parser.add_argument(
        "--idle", type=int, default=10, metavar="N", help="list the N tests most charged with idle cores"
    )
    parser.add_argument("--each-file", action="store_true", help="run each test file alone; machine-wide CPU")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "tests.jsonl"
        env = dict(os.environ, **{LOG: str(log)})
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # as make puts it
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tools"), str(ROOT), env.get("PYTHONPATH", "")])
        command = [sys.executable, "-m", "pytest", "-p", "bench_tests", "-p", "no:cacheprovider", "-q"]
        command += ["-n", args.n, "--dist", "loadgroup", *TIERS[args.tier]]
        if args.each_file:
            return each_file(command, env, args.paths)
        command += args.paths
        sampler = MachineSampler()
        machine, started = _machine_cpu(), time.time()
        sampler.start()
        run = subprocess.run(command, cwd=ROOT, env=env)
        wall, machine = time.time() - started, _machine_cpu() - machine
        sampler.stop.set()
        sampler.join()
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    files = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for row in rows:
        files[row["file"]][0] += 1
        files[row["file"]][1] += row["cpu"]
        files[row["file"]][2] += row["wall"]
    print(f"\n{'test file':44} {'tests':>6} {'CPU s':>8} {'test s':>8}")
    for name, (count, cpu, seconds) in sorted(files.items(), key=lambda item: -item[1][1]):
        print(f"{name:44} {count:6d} {cpu:8.1f} {seconds:8.1f}")
    if args.slowest:
        print(f"\n{'slowest tests':96} {'CPU s':>8} {'test s':>8}")
        for row in sorted(rows, key=lambda row: -row["wall"])[: args.slowest]:
            print(f"{row['test'][:96]:96} {row['cpu']:8.1f} {row['wall']:8.1f}")
    total_cpu = sum(cpu for _, cpu, _ in files.values())
    print(f"{'all':44} {len(rows):6d} {total_cpu:8.1f}")
    workers = collections.defaultdict(lambda: [0.0, 0.0])
    for row in rows:
        workers[row["worker"]][0] += row["wall"]
        workers[row["worker"]][1] = max(workers[row["worker"]][1], row["ended"] - started)
    for name, (busy, done) in sorted(workers.items()):
        print(f"worker {name}: ran tests for {busy:.0f} s, out of work {done:.0f} s after the start")
    print(f"cores kept busy by the tests: {total_cpu / wall:.2f} on average")
    print(f"cores kept busy on the whole machine: {machine / wall:.2f} on average ({machine:.0f} CPU s, /proc/stat)")
    idle, charged = idle_by_test(sampler.samples, rows, os.cpu_count() or 1)
    print(f"idle core-seconds while the suite ran: {idle:.0f}")
    if args.idle:
        print(f"\n{'tests running while cores sat idle':96} {'idle s':>8}")
        for test, seconds in charged.most_common(args.idle):
            print(f"{test[:96]:96} {seconds:8.1f}")
    print(
        f"tier {args.tier}: {len(rows)} tests in {wall:.0f} s wall ({wall / 60:.1f} min), pytest exit status {run.returncode}"
    )
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
