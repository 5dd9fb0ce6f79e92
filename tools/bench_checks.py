"""Measure how long students and instructors wait: one visible check (passing and failing), the first
check of a fresh kernel, and grading one notebook.

    .venv/bin/python tools/bench_checks.py [--repeats 15] [--gradings 3] [--fresh 5]

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

from autograder import CheckFailure, check, reference  # noqa: E402
from autograder.exercises import EXERCISES  # noqa: E402
from autograder.release import generate_in_course, solved_notebook  # noqa: E402


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}, n={len(times)})"


def time_visible_checks(repeats: int) -> None:
    print(
        "One visible check (reference solution, as a student's passing cell; device "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}):"
    )
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


def time_failing_checks(repeats: int) -> None:
    """A failing check does more than a passing one: it stops at the first wrong case and looks the
    result up in the catalogue of known mistakes. Timed on each exercise's first catalogued mistake."""
    print("One visible check that fails (the first catalogued mistake of each exercise):")
    for name, exercise in sorted(EXERCISES.items()):
        wrong = exercise.mistakes[0].build(reference.load(exercise.assignment))
        times = []
        for _ in range(repeats + 1):  # the first run is a warm-up
            started = time.perf_counter()
            try:
                check(name, wrong)
            except CheckFailure:
                pass
            times.append(time.perf_counter() - started)
        print(f"  {name:32s} {summary(times[1:])}")


FRESH_KERNEL = """
import sys, time
started = time.perf_counter()
import torch
from autograder import CheckFailure, check, reference
ref = reference.load("ch04_scaled_dot_product")
imported = time.perf_counter()
try:
    check("softmax", lambda x, dim=-1: ref.softmax(x, dim) * 1.5 if {fail} else ref.softmax(x, dim))
except CheckFailure:
    pass
print(imported - started, time.perf_counter() - imported, "sympy" in sys.modules)
"""


def time_fresh_first_check(runs: int) -> None:
    """The first check of a fresh kernel pays for lazy imports (torch.unravel_index would import sympy)."""
    print("The first check in a fresh process (softmax; the import of torch and the course not counted):")
    for fail in (False, True):
        imports, firsts, sympy = [], [], set()
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", FRESH_KERNEL.format(fail=fail)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
            ).stdout
            imported, first, loaded = out.splitlines()[-1].split()  # after the pass line
            imports.append(float(imported))
            firsts.append(float(first))
            sympy.add(loaded)
        print(
            f"  {'failing' if fail else 'passing'} first check   {summary(firsts)}; sympy imported: "
            f"{'/'.join(sorted(sympy))}; imports before it: median {statistics.median(imports):.2f} s"
        )


def time_grading(gradings: int, assignment: str = "ch04_scaled_dot_product") -> None:
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        AUTOGRADER_SEED="1",
        AUTOGRADER_DEVICE=os.environ.get("AUTOGRADER_DEVICE", "cpu"),
    )
    with tempfile.TemporaryDirectory() as scratch:
        course = Path(scratch)
        shutil.copytree(ROOT / "solutions", course / "solutions")
        shutil.copy(ROOT / "nbgrader_config.py", course)
        generate_in_course(course, assignment, env)
        student = solved_notebook(course, assignment)
        folder = course / "submitted" / "bench" / assignment
        folder.mkdir(parents=True)
        nbformat.write(student, folder / f"{assignment}.ipynb")
        times = []
        for _ in range(gradings):
            started = time.perf_counter()
            subprocess.run(
                ["nbgrader", "autograde", assignment, "--force"], cwd=course, env=env, check=True, capture_output=True
            )
            times.append(time.perf_counter() - started)
    print(
        f"Grading one {assignment} notebook with `nbgrader autograde` (kernel start, torch import, "
        f"every visible and hidden check):\n  {summary(times)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each visible check")
    parser.add_argument("--gradings", type=int, default=3, help="timed runs of nbgrader autograde")
    parser.add_argument("--fresh", type=int, default=5, help="fresh processes for the first-check figure")
    args = parser.parse_args()
    time_visible_checks(args.repeats)
    time_failing_checks(args.repeats)
    time_fresh_first_check(args.fresh)
    if args.gradings:
        time_grading(args.gradings)


if __name__ == "__main__":
    main()
