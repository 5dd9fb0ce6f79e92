"""Grade one synthetic class two ways and compare: stock sequential `nbgrader autograde` vs `python -m autograder grade`.

    .venv/bin/python tools/bench_grading.py [--students 40] [--workers 2]

The class mixes correct, partial, empty and tampered ch04 submissions. Both ways use the
course's nbgrader_config.py (sandboxed kernels, verdicts outside them), so the difference is
the parallel workers and the per-submission overhead. Prints seconds per notebook, their
ratio, and the floor: starting Python and importing torch, measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder.release import filled_notebook  # noqa: E402

ASSIGNMENT = "ch04_scaled_dot_product"
TAMPER = "import torch\ntorch.allclose = lambda *a, **k: True\ndef softmax(x, dim=-1):\n    return x\n"


def make_class(course: Path, students: int, env: dict) -> None:
    shutil.copytree(ROOT / "solutions", course / "solutions")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    subprocess.run(["nbgrader", "generate_assignment", ASSIGNMENT, "--force"], cwd=course, env=env, check=True,
                   capture_output=True)
    solutions = nbformat.read(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    released = nbformat.read(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    names = [c.metadata["nbgrader"]["grade_id"] for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")]
    kinds = ["correct", "partial", "empty", "tampered"]
    for i in range(students):
        kind = kinds[i % len(kinds)]
        filled = {"correct": set(names), "partial": set(names[:2]), "empty": set(), "tampered": set(names)}[kind]
        notebook = filled_notebook(released, solutions, filled)
        if kind == "tampered":
            next(c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax").source = TAMPER
        folder = course / "submitted" / f"{kind}{i:03d}" / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(notebook, folder / f"{ASSIGNMENT}.ipynb")


def timed(command: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=False, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               AUTOGRADER_SEED="1", AUTOGRADER_DEVICE=os.environ.get("AUTOGRADER_DEVICE", "cpu"))
    floor = statistics.median(timed([sys.executable, "-c", "import torch"], ROOT, env) for _ in range(3))
    with tempfile.TemporaryDirectory() as scratch:
        stock, ours = Path(scratch) / "stock", Path(scratch) / "ours"
        for course in (stock, ours):
            course.mkdir()
            make_class(course, args.students, env)
        sequential = timed(["nbgrader", "autograde", ASSIGNMENT], stock, env)
        parallel = timed([sys.executable, "-m", "autograder", "grade", ASSIGNMENT, "--workers", str(args.workers)], ours, env)
    n = args.students
    print(f"{n} submissions of {ASSIGNMENT} (correct, partial, empty, tampered), on {os.cpu_count()} cores")
    print(f"  stock nbgrader autograde, sequential : {sequential:7.1f} s  = {sequential / n:5.2f} s per notebook")
    print(f"  python -m autograder grade, {args.workers} workers: {parallel:7.1f} s  = {parallel / n:5.2f} s per notebook")
    print(f"  speed-up                             : {sequential / parallel:5.2f}x")
    print(f"  floor: python -c 'import torch'      : {floor:5.2f} s; per-notebook cost per worker = "
          f"{parallel * args.workers / n:5.2f} s ({parallel * args.workers / n / floor:4.1f}x the floor)")


if __name__ == "__main__":
    main()
