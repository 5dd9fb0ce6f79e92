"""The stock nbgrader flow, run from the root of a scratch copy of the course, as an instructor would.

One test per assignment (so they spread over the test workers): generate the student
version, autograde a correct, a partly correct and an empty submission, generate feedback,
export, and check every score. The assignments share one scratch course per test worker, as
one instructor's course holds them all: its gradebook, export and feedback hold every
assignment graded so far, and each test reads its own.
"""

from __future__ import annotations

import csv
import re
import subprocess

import nbformat
import pytest
from conftest import ROOT, copy_course, env_with_venv, grade_id, read_notebook

from autograder import conventions, release

ASSIGNMENTS = release.assignments(ROOT)
SEED = "424242"


def nbgrader(course, *args):
    result = subprocess.run(
        ["nbgrader", *args],
        cwd=course,
        env=env_with_venv(AUTOGRADER_SEED=SEED, AUTOGRADER_DEVICE="cpu"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def points(solutions, names) -> float:
    """The points of the test cells, visible and hidden, of the exercises `names`."""
    return sum(
        conventions.metadata(cell)["points"] for cell in solutions.cells if conventions.test_of(cell, names) is not None
    )


@pytest.fixture(scope="session")
def course(tmp_path_factory):
    return copy_course(tmp_path_factory.mktemp("course"))


@pytest.mark.grading
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_stock_nbgrader_flow(assignment, course):
    nbgrader(course, "generate_assignment", assignment, "--force")
    solutions = read_notebook(course / "solutions" / assignment / f"{assignment}.ipynb")
    student_version = read_notebook(course / "exercises" / assignment / f"{assignment}.ipynb")
    names = [grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")]
    plans = {"correct": set(names), "partial": {names[0]}, "empty": set()}
    expected = {}
    for student, filled in plans.items():
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(release.filled_notebook(student_version, solutions, filled), folder / f"{assignment}.ipynb")
        expected[student] = points(solutions, filled)
    nbgrader(course, "autograde", assignment)
    nbgrader(course, "generate_feedback", assignment)
    nbgrader(course, "export")

    with open(course / "grades.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["assignment"] == assignment]
    scores = {row["student_id"]: float(row["raw_score"]) for row in rows}
    assert len(rows) == len(plans), rows
    assert scores == pytest.approx(expected)
    assert expected["correct"] > expected["partial"] > expected["empty"] == 0

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        untouched = gradebook.find_submission_notebook(assignment, assignment, "empty")
        assert untouched.grades, "no graded cells found"
        assert all(grade.score == 0 for grade in untouched.grades), "an untouched notebook earned points"

    for student in plans:
        html = (course / "feedback" / student / assignment / f"{assignment}.html").read_text()
        assert "HIDDEN TESTS" not in html and "check_hidden" not in html, "feedback shows a hidden test"
        assert not re.search(r"autograder[/\\]\w+\.py", html), (
            "a traceback from inside the autograder reached the feedback"
        )
    partial = (course / "feedback" / "partial" / assignment / f"{assignment}.html").read_text()
    assert "is not written yet" in partial
