"""exercises/ is exactly what nbgrader makes from solutions/, and keeps the contract's structure."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, grade_id, read_notebook

from autograder import release
from autograder.exercises import of_assignment

ASSIGNMENTS = release.assignments(ROOT)


def _comparable(path):
    notebook = json.loads(path.read_text())
    return notebook


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release")
    release.generate(ASSIGNMENTS, folder, root=ROOT)
    return folder


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_exercises_are_generated_from_solutions(assignment, fresh_release):
    committed = ROOT / "exercises" / assignment / f"{assignment}.ipynb"
    generated = fresh_release / assignment / f"{assignment}.ipynb"
    assert committed.is_file(), f"{committed} is missing: run `make exercises`"
    assert _comparable(committed) == _comparable(generated), (
        f"exercises/{assignment} is out of date with solutions/: run `make exercises`"
    )
    extra = {p.name for p in (ROOT / "exercises" / assignment).iterdir()} - {
        p.name for p in (fresh_release / assignment).iterdir()
    }
    assert not extra, f"files in exercises/{assignment} that nbgrader does not make: {extra}"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_notebook_holds_no_solution_and_no_hidden_test(assignment):
    text = (ROOT / "exercises" / assignment / f"{assignment}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "check_hidden"):
        assert marker not in text


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_grade_ids_follow_the_contract(assignment):
    """One solution cell per exercise, named exactly as the exercise; graded test cells test_<name>..."""
    notebook = read_notebook(ROOT / "exercises" / assignment / f"{assignment}.ipynb")
    meta = [(grade_id(c), c.metadata.get("nbgrader", {})) for c in notebook.cells if grade_id(c)]
    solutions = [gid for gid, m in meta if m.get("solution")]
    tests = [gid for gid, m in meta if m.get("grade") and not m.get("solution")]
    expected = {exercise.name for exercise in of_assignment(assignment)}
    assert sorted(solutions) == sorted(expected)
    for name in expected:
        own = [t for t in tests if t.startswith(f"test_{name}")]
        assert f"test_{name}" in own and f"test_{name}_hidden" in own
    assert all(any(t.startswith(f"test_{name}") for name in expected) for t in tests)
    assert all(m.get("points", 0) > 0 for gid, m in meta if m.get("grade"))
