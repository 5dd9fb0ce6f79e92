"""A class graded in the tests: set up on a scratch copy of the course, and what one grading of it left."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import copy_course, env_with_venv

from autograder.release import generate_in_course


def scratch_class(
    destination: Path, assignments: list[str], seed: str, cell_timeout: int, memory_limit: int | None = 3 * 2**30
) -> tuple[Path, dict]:
    """(a scratch copy of the course at ``destination`` with ``assignments`` generated, the environment its
    graders run in: the seed, the CPU, the time limit of a cell and the kernel's memory limit)."""
    course = copy_course(destination)
    env = env_with_venv(AUTOGRADER_SEED=seed, AUTOGRADER_DEVICE="cpu", AUTOGRADER_CELL_TIMEOUT=str(cell_timeout))
    if memory_limit:
        env["AUTOGRADER_MEMORY_LIMIT"] = str(memory_limit)
    for assignment in assignments:
        generate_in_course(course, assignment, env)
    return course, env


@dataclass
class Grading:
    """One grading of a class by `python -m autograder grade`, as the tests look at it."""

    course: Path
    run: subprocess.CompletedProcess  # what the grader printed and its exit status
    report: dict[str, dict]  # each student's outcome in the grading report (status, score, detail, review...)
    scores: dict  # the gradebook's scores, in the form the test compares them

    @classmethod
    def read(cls, course: Path, assignment: str, run: subprocess.CompletedProcess, scores: dict, **more):
        """The grading ``run`` of ``assignment`` in ``course``: reads the report it wrote there (before the next
        grading of the course writes it again). ``more``: the fields of a subclass."""
        report = json.loads((course / f"grading-report-{assignment}.json").read_text())["students"]
        return cls(course, run, report, scores, **more)
