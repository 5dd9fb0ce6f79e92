"""Measure how long students and instructors wait: one visible check, and grading one notebook.

    .venv/bin/python tools/bench_checks.py [--repeats 15] [--gradings 3]

Prints the median (and min/max) of each; nothing here is a pass/fail test.
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
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autograder import check, reference  # noqa: E402
from autograder.exercises import EXERCISES  # noqa: E402


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}, n={len(times)})"


def time_visible_checks(repeats: int) -> None:
    print("One visible check (reference solution, as a student's passing cell; device "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}):")
    for name, exercise in sorted(EXERCISES.items()):
        impl = getattr(reference.load(exercise.assignment), name)
        with open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                check(name, impl)  # warm-up: fixture loading, first kernel launches
                times = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    check(name, impl)
                    times.append(time.perf_counter() - started)
            finally:
                sys.stdout = stdout
        print(f"  {name:32s} {summary(times)}")


def time_grading(gradings: int, assignment: str = "ch04_scaled_dot_product") -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               AUTOGRADER_SEED="1", AUTOGRADER_DEVICE=os.environ.get("AUTOGRADER_DEVICE", "cpu"))
    with tempfile.TemporaryDirectory() as scratch:
        course = Path(scratch)
        shutil.copytree(ROOT / "solutions", course / "solutions")
        shutil.copy(ROOT / "nbgrader_config.py", course)
        subprocess.run(["nbgrader", "generate_assignment", assignment, "--force"], cwd=course, env=env,
                       check=True, capture_output=True)
        solutions = nbformat.read(course / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
        answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solutions.cells
                   if c.metadata.get("nbgrader", {}).get("solution")}
        student = nbformat.read(course / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
        for cell in student.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in answers:
                cell.source = answers[gid]
        folder = course / "submitted" / "bench" / assignment
        folder.mkdir(parents=True)
        nbformat.write(student, folder / f"{assignment}.ipynb")
        times = []
        for _ in range(gradings):
            started = time.perf_counter()
            subprocess.run(["nbgrader", "autograde", assignment, "--force"], cwd=course, env=env,
                           check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    print(f"Grading one {assignment} notebook with `nbgrader autograde` (kernel start, torch import, "
          f"every visible and hidden check):\n  {summary(times)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each visible check")
    parser.add_argument("--gradings", type=int, default=3, help="timed runs of nbgrader autograde")
    args = parser.parse_args()
    time_visible_checks(args.repeats)
    time_grading(args.gradings)


if __name__ == "__main__":
    main()
