"""Grade one synthetic class four ways and compare them, all in one run.

    .venv/bin/python tools/bench_grading.py [--students 40] [--workers 2] [--rounds 2]

1. stock sequential `nbgrader autograde` (one process, one submission after another);
2. the old engine: the hand-made multiprocessing pool this course used before Dask (fetched from
   git history, commit d0aac9e, into a temporary module: it is not part of the package);
3. `python -m autograder grade` on its default LocalCluster of ``--workers`` processes;
4. `python -m autograder grade --scheduler tcp://127.0.0.1:PORT` on a `dask scheduler` and
   ``--workers`` `dask worker` processes started here on loopback (started before the clock runs,
   as a cluster is; their first submission still pays for importing torch).

The class mixes correct, partial, empty and tampered ch04 submissions; every way uses the
course's nbgrader_config.py (sandboxed kernels, verdicts outside them) and grades its own copy.
The ways run ``--rounds`` times, in turn, the order reversed every other round (stock, pool,
LocalCluster, TCP; then TCP, LocalCluster, pool, stock): this machine's speed drifts within minutes,
and one pass in a fixed order would charge the drift to whichever way ran last. Prints each round,
then the medians: seconds per notebook, the ratios, the floor (starting Python and importing
torch, in the same run) and notebooks per core-hour, for the README's capacity table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder import cluster  # noqa: E402
from autograder.release import filled_notebook  # noqa: E402
from autograder.sandbox import process_tree  # noqa: E402

ASSIGNMENT = "ch04_scaled_dot_product"
TAMPER = "import torch\ntorch.allclose = lambda *a, **k: True\ndef softmax(x, dim=-1):\n    return x\n"
OLD_ENGINE = "d0aac9e"  # the last commit with the multiprocessing pool


def make_class(course: Path, students: int, env: dict) -> None:
    shutil.copytree(ROOT / "solutions", course / "solutions")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    subprocess.run(
        ["nbgrader", "generate_assignment", ASSIGNMENT, "--force"], cwd=course, env=env, check=True, capture_output=True
    )
    solutions = nbformat.read(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    released = nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    names = [
        c.metadata["nbgrader"]["grade_id"] for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")
    ]
    kinds = ["correct", "partial", "empty", "tampered"]
    for i in range(students):
        kind = kinds[i % len(kinds)]
        filled = {"correct": set(names), "partial": set(names[:2]), "empty": set(), "tampered": set(names)}[kind]
        notebook = filled_notebook(released, solutions, filled)
        if kind == "tampered":
            next(
                c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax"
            ).source = TAMPER
        folder = course / "submitted" / f"{kind}{i:03d}" / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(notebook, folder / f"{ASSIGNMENT}.ipynb")


class CpuMeter(threading.Thread):
    """CPU seconds (user + system) that processes and everything below them spend while it runs.

    ``getrusage(RUSAGE_CHILDREN)`` would miss the sandboxed kernels (nobody here waits for the
    process that bubblewrap starts in the kernel's own process namespace), so it looks at
    ``/proc/PID/stat`` of each process of the trees every 20 ms and keeps each one's last figure:
    what a process spends in its last 20 ms is missed.
    """

    def __init__(self, roots: list[int]):
        super().__init__(daemon=True)
        self.roots, self.stop = roots, threading.Event()
        self.first: dict[tuple[int, str], float] = {}  # (pid, start time) -> CPU seconds when first seen
        self.last: dict[tuple[int, str], float] = {}
        self._look(baseline=True)  # what processes already running spent before (a cluster started earlier)

    def _look(self, baseline: bool = False) -> None:
        for root in self.roots:
            for pid in process_tree(root):
                try:
                    with open(f"/proc/{pid}/stat") as stat:
                        fields = stat.read().rpartition(")")[2].split()
                except OSError:
                    continue
                key = (pid, fields[19])  # field 22 of stat(5): when the process started
                seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
                self.first.setdefault(key, seconds if baseline else 0.0)
                self.last[key] = seconds

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self._look()

    def seconds(self) -> float:
        self.stop.set()
        self.join()
        return sum(self.last[key] - self.first[key] for key in self.last)


def timed(command: list[str], cwd: Path, env: dict, also: list[int] = ()) -> tuple[float, float]:
    """Wall seconds of ``command``, and CPU seconds of it and of the processes ``also`` (a cluster) meanwhile."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    meter = CpuMeter([process.pid, *also])
    meter.start()
    said, _ = process.communicate()
    wall, cpu = time.perf_counter() - started, meter.seconds()
    if process.returncode not in (0, 1):  # 1: some submissions failed their checks' way, which is expected here
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{said[-3000:]}")
    return wall, cpu


def old_engine(folder: Path) -> Path:
    """The old grade_class.py from git history, as a stand-alone module in ``folder``."""
    source = subprocess.run(
        ["git", "show", f"{OLD_ENGINE}:autograder/grade_class.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    (folder / "old_grade_class.py").write_text(source.replace("from .config import", "from autograder.config import"))
    return folder


def graded_count(course: Path) -> int:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return len(gradebook.assignment_submissions(ASSIGNMENT))


def run_way(way: str, course: Path, env: dict, old_env: dict, grade: list[str], workers: int, scratch: Path):
    """(wall seconds, CPU seconds) of grading ``course`` one ``way``; the TCP cluster is started before the clock."""
    if way == "stock":
        return timed(["nbgrader", "autograde", ASSIGNMENT], course, env)
    if way == "old pool":
        return timed(
            [
                sys.executable,
                "-c",
                f"import sys, old_grade_class; sys.exit(old_grade_class.main({ASSIGNMENT!r}, {workers}, 1800, False, []))",
            ],
            course,
            old_env,
        )
    if way == "LocalCluster":
        return timed([*grade, "--workers", str(workers)], course, env)
    folder = Path(tempfile.mkdtemp(dir=scratch))
    tcp = cluster.Loopback(workers, dict(env, AUTOGRADER_COURSE_ROOT=str(ROOT)), ROOT, folder)
    try:
        tcp.wait_for_workers(workers)
        return timed([*grade, "--scheduler", tcp.address], course, env, [p.pid for p in (tcp.scheduler, *tcp.workers)])
    finally:
        tcp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=2, help="runs of every way, in alternating order")
    args = parser.parse_args()
    n, workers = args.students, args.workers
    cores = min(workers, os.cpu_count() or 1)
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        AUTOGRADER_SEED="1",
        AUTOGRADER_DEVICE=os.environ.get("AUTOGRADER_DEVICE", "cpu"),
    )
    floor = statistics.median(timed([sys.executable, "-c", "import torch"], ROOT, env)[0] for _ in range(3))
    grade = [sys.executable, "-m", "autograder", "grade", ASSIGNMENT]
    ways = ["stock", "old pool", "LocalCluster", "TCP cluster"]
    runs: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}  # (wall, CPU) of each round
    graded: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        old_env = dict(env, PYTHONPATH=os.pathsep.join([str(old_engine(scratch)), str(ROOT)]))
        for round_ in range(args.rounds):
            for way in ways if round_ % 2 == 0 else ways[::-1]:
                course = scratch / f"{way.replace(' ', '_')}-{round_}"
                course.mkdir()
                make_class(course, n, env)
                runs[way].append(run_way(way, course, env, old_env, grade, workers, scratch))
                graded[way] = min(graded.get(way, n), graded_count(course))
                print(f"  round {round_ + 1}, {way:<13}: {runs[way][-1][0] / n:5.2f} s per notebook", flush=True)
    seconds = {way: statistics.median(wall for wall, _ in runs[way]) for way in ways}
    cpu = {way: statistics.median(used for _, used in runs[way]) for way in ways}
    print(
        f"{n} submissions of {ASSIGNMENT} (correct, partial, empty, tampered), on {os.cpu_count()} cores, "
        f"{workers} workers for the parallel ways; medians of {args.rounds} rounds"
    )
    for way in ways:
        print(
            f"  {way:<13}: {seconds[way]:7.1f} s = {seconds[way] / n:5.2f} s per notebook, "
            f"{seconds['stock'] / seconds[way]:5.2f}x stock, CPU {cpu[way] / n:5.2f} s per notebook, "
            f"{graded[way]} graded"
        )
    print(
        f"  TCP cluster / LocalCluster time: {seconds['TCP cluster'] / seconds['LocalCluster']:5.2f} "
        "(target: at most 1.10)"
    )
    print(f"  LocalCluster vs stock: {seconds['stock'] / seconds['LocalCluster']:5.2f}x (target: at least 1.8x)")
    ceiling = cores * seconds["stock"] / cpu["stock"]
    print(
        f"  ceiling on {cores} cores: {ceiling:5.2f}x stock ({cores} x stock's {seconds['stock'] / n:.2f} s per "
        f"notebook / the {cpu['stock'] / n:.2f} s of CPU each costs it, nbgrader and its kernels)"
    )
    per_core_hour = n * 3600 / (seconds["LocalCluster"] * workers)
    print(
        f"  floor: python -c 'import torch': {floor:5.2f} s; LocalCluster cost per notebook per worker = "
        f"{seconds['LocalCluster'] * workers / n:5.2f} s ({seconds['LocalCluster'] * workers / n / floor:4.1f}x the floor)"
    )
    print(
        f"  capacity: {per_core_hour:6.0f} notebooks per core-hour; 10,000 students x 15 notebooks in one hour "
        f"needs {-(-150_000 // int(per_core_hour))} cores"
    )


if __name__ == "__main__":
    main()
