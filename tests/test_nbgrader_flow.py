"""The stock nbgrader flow, run from the root of a scratch copy of the course, as an instructor would."""
from __future__ import annotations

import csv
import re
import subprocess

import nbformat
import pytest

from autograder import release
from conftest import ROOT, copy_course, env_with_venv, grade_id, read_notebook

ASSIGNMENTS = release.assignments(ROOT)
SEED = "424242"


def nbgrader(course, *args):
    result = subprocess.run(["nbgrader", *args], cwd=course, env=env_with_venv(AUTOGRADER_SEED=SEED, AUTOGRADER_DEVICE="cpu"),
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def strip_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)


def submission(student_version, solutions, filled: set[str]):
    """The student notebook with the named exercises filled in from the reference."""
    answers = {grade_id(c): c.source for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")}
    notebook = nbformat.from_dict(nbformat.reader.reads(nbformat.writes(student_version)))
    for cell in notebook.cells:
        if grade_id(cell) in filled:
            cell.source = strip_markers(answers[grade_id(cell)])
    return notebook


def points(solutions, names) -> float:
    total = 0.0
    for cell in solutions.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution") and any(grade_id(cell).startswith(f"test_{n}") for n in names):
            total += meta["points"]
    return total


@pytest.fixture(scope="module")
def graded_course(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    expected = {}
    for assignment in ASSIGNMENTS:
        nbgrader(course, "generate_assignment", assignment, "--force")
        solutions = read_notebook(course / "solutions" / assignment / f"{assignment}.ipynb")
        student_version = read_notebook(course / "exercises" / assignment / f"{assignment}.ipynb")
        names = [grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")]
        plans = {"correct": set(names), "partial": {names[0]}, "empty": set()}
        for student, filled in plans.items():
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(submission(student_version, solutions, filled), folder / f"{assignment}.ipynb")
            expected[(student, assignment)] = points(solutions, filled)
        nbgrader(course, "autograde", assignment)
        nbgrader(course, "generate_feedback", assignment)
    nbgrader(course, "export")
    return course, expected


def test_exported_scores_are_exact(graded_course):
    course, expected = graded_course
    with open(course / "grades.csv") as handle:
        rows = list(csv.DictReader(handle))
    scores = {(row["student_id"], row["assignment"]): float(row["raw_score"]) for row in rows}
    assert scores == pytest.approx(expected)
    for assignment in ASSIGNMENTS:
        assert expected[("correct", assignment)] > expected[("partial", assignment)] > expected[("empty", assignment)] == 0


def test_untouched_notebook_scores_zero_on_every_graded_cell(graded_course):
    course, _ = graded_course
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for assignment in ASSIGNMENTS:
            submission = gradebook.find_submission_notebook(assignment, assignment, "empty")
            assert submission.grades, "no graded cells found"
            for grade in submission.grades:
                assert grade.score == 0, f"{assignment}/{grade.name} scored {grade.score} on an untouched notebook"


def test_feedback_shows_no_hidden_test(graded_course):
    course, _ = graded_course
    for student in ("correct", "partial", "empty"):
        for assignment in ASSIGNMENTS:
            html = (course / "feedback" / student / assignment / f"{assignment}.html").read_text()
            assert "HIDDEN TESTS" not in html and "check_hidden" not in html
            assert "hidden checks passed" in html or "CheckFailure" in html


def test_failures_in_feedback_are_short_sentences(graded_course):
    course, _ = graded_course
    html = (course / "feedback" / "partial" / "ch04_scaled_dot_product" / "ch04_scaled_dot_product.html").read_text()
    assert "is not written yet" in html
    assert not re.search(r"autograder[/\\]checks\.py", html), "a traceback from inside the autograder reached the feedback"
