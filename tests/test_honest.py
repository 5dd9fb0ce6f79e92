"""Honest but unusual submissions score full marks, graded through the real grading paths.

Every file in tests/honest/ changes the reference notebook of the chapters it names (see
tests/honest/README.md). Each chapter's notebooks are one class, graded twice: by stock
`nbgrader autograde` (under our nbgrader_config.py) and by `python -m autograder grade
--workers 2`. Every notebook must score its maximum both times, and none may be listed for
review. Each chapter is one test, so it is graded once whichever worker runs it.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, copy_course, env_with_venv, grade_id, read_notebook

from autograder.release import filled_notebook

VARIANTS = {p.stem: p for p in sorted((ROOT / "tests" / "honest").glob("*.py"))}


def load_variant(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"honest_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODULES = {name: load_variant(path) for name, path in VARIANTS.items()}
SUBMISSIONS = sorted((assignment, name) for name, module in MODULES.items() for assignment in module.ASSIGNMENTS)
CHAPTERS = sorted({assignment for assignment, _ in SUBMISSIONS})


class Kit:
    """Small editing helpers handed to each variant's apply()."""

    def __init__(self, nb, exercises: list[str]):
        self.nb = nb
        self.exercises = exercises  # in notebook order

    def cell(self, gid: str):
        return next(c for c in self.nb.cells if grade_id(c) == gid)

    def source(self, gid: str) -> str:
        return self.cell(gid).source

    def replace(self, gid: str, source: str) -> None:
        self.cell(gid).source = source

    def _insert(self, index: int, source: str) -> None:
        self.nb.cells.insert(index, nbformat.v4.new_code_cell(source))

    def insert_before(self, gid: str, source: str) -> None:
        self._insert(self.nb.cells.index(self.cell(gid)), source)

    def insert_after(self, gid: str, source: str) -> None:
        self._insert(self.nb.cells.index(self.cell(gid)) + 1, source)

    def append(self, source: str) -> None:
        self._insert(len(self.nb.cells), source)


def honest_notebook(course: Path, assignment: str, variant: str) -> nbformat.NotebookNode:
    solutions = read_notebook(course / "solutions" / assignment / f"{assignment}.ipynb")
    released = read_notebook(course / "exercises" / assignment / f"{assignment}.ipynb")
    exercises = [grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")]
    nb = filled_notebook(released, solutions, set(exercises))
    MODULES[variant].apply(nb, Kit(nb, exercises))
    return nb


def _scores(course: Path, assignment: str, students: list[str]) -> dict[str, tuple[float, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {
            s: (gradebook.find_submission(assignment, s).score, gradebook.find_submission(assignment, s).max_score)
            for s in students
        }


def grade_chapter(assignment: str, course: Path) -> types.SimpleNamespace:
    """The chapter's honest notebooks as one class, graded by stock nbgrader autograde, then by ours."""
    course = copy_course(course)
    env = env_with_venv(
        AUTOGRADER_SEED="24680",
        AUTOGRADER_DEVICE="cpu",
        AUTOGRADER_CELL_TIMEOUT="120",
        AUTOGRADER_MEMORY_LIMIT=str(3 * 2**30),
    )
    subprocess.run(
        ["nbgrader", "generate_assignment", assignment, "--force"], cwd=course, env=env, check=True, capture_output=True
    )
    students = [variant for a, variant in SUBMISSIONS if a == assignment]
    for student in students:
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(honest_notebook(course, assignment, student), folder / f"{assignment}.ipynb")
    stock = subprocess.run(
        ["nbgrader", "autograde", assignment, "--force"],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    by_nbgrader = _scores(course, assignment, students)
    feedback = {s: read_notebook(course / "autograded" / s / assignment / f"{assignment}.ipynb") for s in students}
    ours = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", assignment, "--workers", "2", "--timeout", "900"],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    report = json.loads((course / f"grading-report-{assignment}.json").read_text())["students"]
    return types.SimpleNamespace(
        students=students,
        stock=stock,
        by_nbgrader=by_nbgrader,
        feedback=feedback,
        ours=ours,
        report=report,
        by_class=_scores(course, assignment, students),
    )


def _failures(nb: nbformat.NotebookNode) -> list[str]:
    """The verdicts of the test cells that did not pass, as the student's feedback shows them."""
    return [
        f"{grade_id(c)}: {o.get('evalue', '')}"
        for c in nb.cells
        if (grade_id(c) or "").startswith("test_")
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def test_the_corpus_is_large_enough():
    assert len(SUBMISSIONS) >= 30 and len(CHAPTERS) >= 8


@pytest.mark.grading
@pytest.mark.parametrize("assignment", CHAPTERS)
def test_honest_notebooks_score_full_marks(assignment, tmp_path):
    """One test per chapter, so that each chapter is graded once whichever test worker runs it."""
    chapter = grade_chapter(assignment, tmp_path)
    assert chapter.stock.returncode == 0, chapter.stock.stderr[-3000:]
    assert "Traceback" not in chapter.ours.stdout + chapter.ours.stderr, chapter.ours.stdout[-3000:]
    lost = {}
    for variant in chapter.students:
        score, maximum = chapter.by_nbgrader[variant]
        outcome = chapter.report[variant]
        if not (maximum > 0 and score == maximum):
            lost[variant] = f"nbgrader autograde: {score} / {maximum}; {_failures(chapter.feedback[variant])}"
        elif outcome["status"] != "graded" or outcome["review"] or chapter.by_class[variant] != (maximum, maximum):
            lost[variant] = f"autograder grade: {outcome}"
    assert not lost, f"honest notebooks of {assignment} lost points: {lost}"
