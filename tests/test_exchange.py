"""A term as it runs on a JupyterHub: nbgrader's exchange end to end, with a local exchange folder.

The instructor releases ch04 and three students fetch it, work on it and submit it through the
exchange; the instructor collects, grades with `python -m autograder grade`, generates and releases
feedback; each student fetches their feedback; the exported CSV is checked score by score.
Run twice: with the course package as the repository installs it, and with the grader installed
from a wheel into a virtualenv outside the course folder.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, copy_course, env_with_venv, read_notebook

from autograder import release

ASSIGNMENT = "ch04_scaled_dot_product"
COURSE_ID = "build-a-transformer"
SEED = "515151"
WORK = {
    "alice": {"softmax", "attention_scores", "scaled_dot_product_attention", "SelfAttention"},
    "bob": {"softmax"},
    "carol": set(),
}
# Markup that makes the browser load something: scripts, style sheets, frames, images, CSS imports.
LOADS = re.compile(
    r"<(?:script|img|iframe)\b[^>]*\bsrc\s*=\s*['\"]?(?!data:)[^'\" >]+|"
    r"<link\b[^>]*\bhref\s*=|@import\b",
    re.I,
)


class Term:
    """One instructor's course folder, an exchange, and a folder per student, driven by nbgrader's commands."""

    def __init__(self, tmp: Path, python: str, env: dict, isolated: bool = False):
        self.course = copy_course(tmp / "course")
        self.exchange = tmp / "exchange"
        self.exchange.mkdir()
        self.exchange.chmod(0o777)  # nbgrader's exchange is a shared, world-writable folder
        self.python, self.env = python, env_with_venv(AUTOGRADER_SEED=SEED, AUTOGRADER_DEVICE="cpu", **env)
        if isolated:  # nothing may lead the installed grader back to this checkout
            self.env.pop("PYTHONPATH", None)
        self.home = tmp / "students"

    def run(self, *args: str, cwd: Path) -> str:
        result = subprocess.run(
            [self.python, *args, f"--Exchange.root={self.exchange}"]
            if args[:2] == ("-m", "nbgrader")
            else [self.python, *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout + result.stderr

    def instructor(self, *args: str) -> str:
        return self.run("-m", "nbgrader", *args, cwd=self.course)

    def student(self, name: str, *args: str) -> str:
        folder = self.home / name
        folder.mkdir(parents=True, exist_ok=True)
        return self.run(
            "-m",
            "nbgrader",
            *args,
            f"--course={COURSE_ID}",
            f"--CourseDirectory.student_id={name}",
            f"--Exchange.cache={folder / '.nbgrader-cache'}",
            cwd=folder,
        )  # each student's own cache, as in their home


def _term(term: Term) -> dict:
    """Play the whole term; returns what each student got back and the exported scores."""
    term.instructor("generate_assignment", ASSIGNMENT, "--force")
    term.instructor("release_assignment", ASSIGNMENT, "--force")
    solutions = read_notebook(term.course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    for name, solved in WORK.items():
        term.student(name, "fetch_assignment", ASSIGNMENT)
        notebook = term.home / name / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        nbformat.write(release.filled_notebook(read_notebook(notebook), solutions, solved), notebook)
        term.student(name, "submit", ASSIGNMENT)
    term.instructor("collect", ASSIGNMENT)
    term.run("-m", "autograder", "grade", ASSIGNMENT, "--workers", "2", cwd=term.course)
    term.instructor("generate_feedback", ASSIGNMENT)
    term.instructor("release_feedback", ASSIGNMENT)
    feedback = {}
    for name in WORK:
        term.student(name, "fetch_feedback", ASSIGNMENT)
        pages = sorted((term.home / name / ASSIGNMENT / "feedback").glob(f"*/{ASSIGNMENT}.html"))
        assert len(pages) == 1, f"{name} fetched {len(pages)} feedback pages"
        feedback[name] = pages[0].read_text()
    term.instructor("export")
    with open(term.course / "grades.csv") as handle:
        scores = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(handle)}
    term.instructor("export", "--exporter=autograder.lms.LMSExport", "--to=lms.csv")
    with open(term.course / "lms.csv") as handle:
        sheet = list(csv.DictReader(handle))
    return {"feedback": feedback, "scores": scores, "sheet": sheet, "solutions": solutions}


def _points(solutions, solved: set[str]) -> float:
    """What a submission that solves ``solved`` earns: every graded test cell of those exercises."""
    total = 0.0
    for cell in solutions.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            if any(meta["grade_id"] in (f"test_{n}", f"test_{n}_hidden") for n in solved):
                total += meta["points"]
    return total


def _assert_term(played: dict) -> None:
    expected = {name: _points(played["solutions"], solved) for name, solved in WORK.items()}
    assert played["scores"] == pytest.approx(expected)
    assert expected["alice"] > expected["bob"] > expected["carol"] == 0
    column = next(c for c in played["sheet"][0] if c.startswith(ASSIGNMENT))
    assert {row["SIS Login ID"]: float(row[column]) for row in played["sheet"]} == pytest.approx(expected)
    hidden_sources = [
        c.source
        for c in played["solutions"].cells
        if c.metadata.get("nbgrader", {}).get("grade_id", "").endswith("_hidden")
    ]
    for name, html in played["feedback"].items():
        assert "HIDDEN TESTS" not in html and "check_hidden" not in html, f"{name}'s feedback shows a hidden test"
        assert not any(source.strip() and source.strip() in html for source in hidden_sources)
        assert not re.search(r"On a hidden test[^<]*(got|expected) -?\d", html), "a hidden check printed a value"
        assert not LOADS.findall(html), f"{name}'s feedback loads {LOADS.findall(html)[:3]} from elsewhere"
        assert "<math" in html, "the instructions' formulas did not become MathML"
        assert "white-space: pre-wrap" in html
    assert "passed" in played["feedback"]["alice"] and "is not written yet" in played["feedback"]["bob"]


@pytest.mark.grading
@pytest.mark.xdist_group("exchange")
def test_a_term_through_the_exchange(tmp_path):
    _assert_term(_term(Term(tmp_path, sys.executable, {})))


@pytest.mark.grading
@pytest.mark.xdist_group("exchange-wheel")
def test_a_term_with_the_grader_installed_from_a_wheel(tmp_path, grader_from_wheel):
    python, env = grader_from_wheel
    term = Term(tmp_path, python, env, isolated=True)
    probe = subprocess.run(
        [python, "-c", "import autograder; print(autograder.__file__)"],
        cwd=term.course,
        capture_output=True,
        text=True,
        env=term.env,
    )
    assert probe.returncode == 0 and not probe.stdout.startswith(str(ROOT)), probe.stdout + probe.stderr
    _assert_term(_term(term))
