"""The stock nbgrader flow, run from the root of a scratch copy of the course, as an instructor would.

For each assignment: generate the student version, autograde a correct, a partly correct and an
empty submission, generate feedback, export, and check every score. The assignments are dealt
into two scratch courses (so that they spread over two test workers), and each nbgrader command
runs once per course over all its assignments (`nbgrader autograde "*"`), as an instructor may run
it at the end of a term: its gradebook, export and feedback hold every assignment, and each test
reads its own.

The honest corpus (tests/honest/) joins the class of each chapter it names: every honest but
unusual notebook must score its maximum by that same `nbgrader autograde`, and again by
`python -m autograder grade --workers 1` of those students (which must end without a
traceback; the cluster tests grade with several workers), and none may be listed for review.
A course's tests share one xdist group, so its classes are graded once, on one worker.
"""

from __future__ import annotations

import csv
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, autograder_grade, copy_course, env_with_venv, grade_id, read_notebook
from graded_class import Grading
from honest_corpus import CHAPTERS, honest_notebook, honest_students

from autograder import conventions, release

ASSIGNMENTS = release.assignments(ROOT)
ENV = env_with_venv(AUTOGRADER_SEED="424242", AUTOGRADER_DEVICE="cpu")
PLANS = ("correct", "partial", "empty")  # the students every assignment's class has, by what they filled in


# Two courses of alternate assignments: each holds about half of the notebooks to grade, ch12's training included in one.
COURSES = {f"flow_{index}": ASSIGNMENTS[index::2] for index in range(2)}
COURSE_OF = {assignment: name for name, assignments in COURSES.items() for assignment in assignments}


def one_worker(assignments: list[str]) -> list:
    """The assignments as parameters whose tests share a worker, the one that grades their course."""
    return [pytest.param(a, marks=pytest.mark.xdist_group(COURSE_OF[a])) for a in assignments]


def nbgrader(course, *args):
    result = subprocess.run(["nbgrader", *args], cwd=course, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def points(solutions, names) -> float:
    """The points of the test cells, visible and hidden, of the exercises `names`."""
    return sum(
        conventions.metadata(cell)["points"] for cell in solutions.cells if conventions.test_of(cell, names) is not None
    )


@dataclass
class Graded:
    """One assignment's class after the stock flow: what each student was expected to score and what the export,
    the gradebook and the feedback say."""

    expected: dict[str, float]  # the points of what each of PLANS filled in
    honest: list[str]  # the students of the honest corpus
    rows: list[dict]  # grades.csv's rows of the assignment
    feedback: dict[str, str]  # each student's feedback page (HTML)
    autograded: dict[str, nbformat.NotebookNode]  # each honest student's notebook as nbgrader autograde left it


def run_flow(course: Path, assignments: list[str]) -> dict[str, Graded]:
    """The stock flow over every assignment of ``course``, each nbgrader command once for them all."""
    nbgrader(course, "generate_assignment", "*", "--force")
    plans, honest = {}, {}
    for assignment in assignments:
        solutions = read_notebook(course / "solutions" / assignment / f"{assignment}.ipynb")
        student_version = read_notebook(course / "exercises" / assignment / f"{assignment}.ipynb")
        names = [grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")]
        filled = plans[assignment] = dict(zip(PLANS, (set(names), {names[0]}, set())))
        notebooks = {s: release.filled_notebook(student_version, solutions, filled[s]) for s in PLANS}
        honest[assignment] = honest_students(assignment)
        notebooks |= {s: honest_notebook(course, assignment, s) for s in honest[assignment]}
        for student, nb in notebooks.items():
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{assignment}.ipynb")
    nbgrader(course, "autograde", "*")
    nbgrader(course, "generate_feedback", "*")
    nbgrader(course, "export")
    with open(course / "grades.csv") as handle:
        rows = list(csv.DictReader(handle))
    graded = {}
    for assignment in assignments:
        solutions = read_notebook(course / "solutions" / assignment / f"{assignment}.ipynb")
        students = [*PLANS, *honest[assignment]]
        graded[assignment] = Graded(
            expected={s: points(solutions, plans[assignment][s]) for s in PLANS},
            honest=honest[assignment],
            rows=[row for row in rows if row["assignment"] == assignment],
            feedback={s: (course / "feedback" / s / assignment / f"{assignment}.html").read_text() for s in students},
            autograded={
                s: read_notebook(course / "autograded" / s / assignment / f"{assignment}.ipynb")
                for s in honest[assignment]
            },
        )
    return graded


_GRADED: dict[str, Graded] = {}  # this worker's classes, by assignment, each course graded once
_COURSES: dict[str, Path] = {}  # this worker's courses, by name


@pytest.fixture
def course(tmp_path_factory, assignment) -> Path:
    name = COURSE_OF[assignment]
    if name not in _COURSES:
        _COURSES[name] = copy_course(tmp_path_factory.mktemp(name), COURSES[name])
    return _COURSES[name]


@pytest.fixture
def graded(course, assignment) -> Graded:
    if assignment not in _GRADED:
        _GRADED.update(run_flow(course, COURSES[COURSE_OF[assignment]]))
    return _GRADED[assignment]


@pytest.mark.grading
@pytest.mark.parametrize("assignment", one_worker(ASSIGNMENTS))
def test_stock_nbgrader_flow(assignment, course, graded):
    scores = {row["student_id"]: float(row["raw_score"]) for row in graded.rows}
    assert len(scores) == len(graded.rows), f"the export lists a student twice: {graded.rows}"
    assert {s: scores.get(s) for s in PLANS} == pytest.approx(graded.expected)
    assert graded.expected["correct"] > graded.expected["partial"] > graded.expected["empty"] == 0

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert set(scores) == {s.id for s in gradebook.students}, "the export does not list every student once"
        untouched = gradebook.find_submission_notebook(assignment, assignment, "empty")
        assert untouched.grades, "no graded cells found"
        assert all(grade.score == 0 for grade in untouched.grades), "an untouched notebook earned points"

    for student, html in graded.feedback.items():
        assert "HIDDEN TESTS" not in html, f"{student}'s feedback shows a hidden test"
        # A hidden test cell calls check_hidden; an honest `%who` (tests/honest/magics.md) prints the name too.
        if student in PLANS:
            assert "check_hidden" not in html, f"{student}'s feedback shows a hidden test"
        assert not re.search(r"autograder[/\\]\w+\.py", html), (
            f"a traceback from inside the autograder reached {student}'s feedback"
        )
    assert "is not written yet" in graded.feedback["partial"]


def _failures(nb: nbformat.NotebookNode) -> list[str]:
    """The verdicts of the test cells that did not pass, as the student's feedback shows them."""
    return [
        f"{grade_id(c)}: {o.get('evalue', '')}"
        for c in nb.cells
        if (grade_id(c) or "").startswith("test_")
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def _scores(course: Path, assignment: str, students: list[str]) -> dict[str, tuple[float, float]]:
    """Each student's (score, max score) in the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        found = {s: gradebook.find_submission(assignment, s) for s in students}
        return {s: (submission.score, submission.max_score) for s, submission in found.items()}


@pytest.mark.grading
@pytest.mark.parametrize("assignment", one_worker(CHAPTERS))
def test_honest_notebooks_score_full_marks(assignment, course, graded):
    lost = {}
    for student, (score, maximum) in _scores(course, assignment, graded.honest).items():
        if not (maximum > 0 and score == maximum):
            lost[student] = f"nbgrader autograde: {score} / {maximum}; {_failures(graded.autograded[student])}"
    assert not lost, f"honest notebooks of {assignment} lost points: {lost}"

    run = autograder_grade(course, assignment, ENV, timeout=900, workers=1, students=graded.honest)
    ours = Grading.read(course, assignment, run, _scores(course, assignment, graded.honest))
    assert set(ours.report) >= set(graded.honest), ours.run.stdout[-3000:]
    for student in graded.honest:
        outcome, (score, maximum) = ours.report[student], ours.scores[student]
        if outcome["status"] != "graded" or outcome["review"] or score != maximum:
            lost[student] = f"autograder grade: {outcome}"
    assert not lost, f"honest notebooks of {assignment} lost points: {lost}"
