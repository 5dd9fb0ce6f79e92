"""Students who try to score without solving, graded as one class through the real grading path.

Every file in tests/attacks/ becomes one submission of ch04 (correct apart from the
attack); with a correct and an empty submission beside them, the class is graded by
`python -m autograder grade --workers 2` (stock nbgrader autograde under our
nbgrader_config.py, in two parallel workers). See tests/attacks/README.md.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import socket
import subprocess
import threading
import types
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, autograder_grade, copy_course, env_with_venv, grade_id, read_notebook

from autograder.release import filled_notebook

ASSIGNMENT = "ch04_scaled_dot_product"
ATTACKS = {p.stem: p for p in sorted((ROOT / "tests" / "attacks").glob("*.py"))}
pytestmark = [pytest.mark.grading, pytest.mark.xdist_group("attacks")]  # one graded class for every test
GRADING_OUTPUT = ("autograded", "gradebook.db", "grading-report-", "feedback")


def load_attack(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"attack_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Kit:
    """Small editing helpers handed to each attack's apply()."""

    WRONG = "def softmax(x, dim=-1):\n    return x\n"

    def __init__(self, nb, port_file: Path, course_root: Path):
        self.nb = nb
        self.port_file = str(port_file)
        self.course_root = str(course_root)  # an attacker may well know where the instructor's course lives

    def cell(self, gid: str):
        return next(c for c in self.nb.cells if grade_id(c) == gid)

    def replace(self, gid: str, source: str) -> None:
        self.cell(gid).source = source

    def insert_before(self, gid: str, source: str, nbgrader: dict | None = None) -> None:
        index = self.nb.cells.index(self.cell(gid))
        cell = nbformat.v4.new_code_cell(source)
        if nbgrader:
            cell.metadata["nbgrader"] = nbgrader
        self.nb.cells.insert(index, cell)


def snapshot(course: Path) -> dict[str, str]:
    """Hashes of every file of the course outside the grading output."""
    files = {}
    for path in course.rglob("*"):
        relative = path.relative_to(course).as_posix()
        if path.is_file() and not relative.startswith(GRADING_OUTPUT):
            files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


class Listener:
    """A local TCP server that counts the connections it receives (none may arrive)."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    outside = tmp_path_factory.mktemp("outside")
    listener = Listener()
    port_file = outside / "port"
    port_file.write_text(str(listener.port))
    env = env_with_venv(
        AUTOGRADER_SEED="97531",
        AUTOGRADER_DEVICE="cpu",
        AUTOGRADER_CELL_TIMEOUT="20",
        AUTOGRADER_MEMORY_LIMIT=str(3 * 2**30),
    )
    subprocess.run(
        ["nbgrader", "generate_assignment", ASSIGNMENT, "--force"], cwd=course, env=env, check=True, capture_output=True
    )
    solutions = read_notebook(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    released = read_notebook(course / "exercises" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    exercises = {grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")}

    def submit(student: str, attack=None, filled=True):
        nb = filled_notebook(released, solutions, exercises if filled else set())
        if attack:
            attack.apply(nb, Kit(nb, port_file, course))
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{ASSIGNMENT}.ipynb")

    submit("correct")
    submit("empty", filled=False)
    attacks = {name: load_attack(path) for name, path in ATTACKS.items()}
    for name, attack in attacks.items():
        submit(f"attack-{name}", attack)
    before = snapshot(course)
    run = autograder_grade(course, ASSIGNMENT, env)
    from nbgrader.api import Gradebook

    scores, maxima = {}, {}
    refused = {f"attack-{n}" for n, a in attacks.items() if hasattr(a, "REFUSED")}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for student in ["correct", "empty"] + [f"attack-{n}" for n in attacks if f"attack-{n}" not in refused]:
            submission = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            scores[student] = {g.name: (g.score or 0.0) for g in submission.grades}
            maxima[student] = sum(g.max_score for g in submission.grades)
    points = {
        grade_id(c): c.metadata["nbgrader"]["points"]
        for c in solutions.cells
        if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")
    }
    report = json.loads((course / f"grading-report-{ASSIGNMENT}.json").read_text())["students"]
    yield types.SimpleNamespace(
        course=course,
        scores=scores,
        maxima=maxima,
        points=points,
        attacks=attacks,
        report=report,
        before=before,
        after=snapshot(course),
        listener=listener,
        output=run.stdout,
    )
    listener.server.close()


def exercise_scores(graded, student: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for gid, score in graded.scores[student].items():
        name = next(
            n
            for n in ("softmax", "attention_scores", "scaled_dot_product_attention", "SelfAttention")
            if gid in (f"test_{n}", f"test_{n}_hidden")
        )
        totals[name] = totals.get(name, 0.0) + score
    return totals


def full_marks(graded) -> dict[str, float]:
    return exercise_scores(types.SimpleNamespace(scores={"x": graded.points}), "x")


def autograded(graded, student: str) -> nbformat.NotebookNode:
    return read_notebook(graded.course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")


def stopped_in(graded, name: str, cell_id: str, exercises: set[str]) -> bool:
    """Whether the feedback of every test cell of ``exercises`` says that its checks did not run because the
    notebook stopped in the cell ``cell_id`` (it ran past the time limit, or the kernel died there)."""
    nb = autograded(graded, f"attack-{name}")
    number = next(i for i, c in enumerate(nb.cells) if grade_id(c) == cell_id) + 1
    tests = {f"test_{e}{layer}" for e in exercises for layer in ("", "_hidden")}
    verdicts = [o.get("evalue", "") for c in nb.cells if grade_id(c) in tests for o in c.get("outputs", [])]
    return bool(verdicts) and all("did not run" in v and f"cell {number}" in v for v in verdicts)


def test_honest_submissions_keep_exact_scores(graded):
    assert exercise_scores(graded, "correct") == full_marks(graded)
    assert set(exercise_scores(graded, "empty").values()) == {0.0}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_earns_nothing_on_the_tampered_exercise(graded, name):
    attack = graded.attacks[name]
    if hasattr(attack, "REFUSED"):
        outcome = graded.report[f"attack-{name}"]
        assert outcome["status"] == "failed" and outcome["score"] is None
        assert attack.REFUSED in outcome["detail"]
        return
    got = exercise_scores(graded, f"attack-{name}")
    stopped = getattr(attack, "ZERO_IF_STOPPED", set())
    zero = set(attack.ZERO) | (stopped if stopped and stopped_in(graded, name, attack.STOPPED_IN, stopped) else set())
    expected = {exercise: (0.0 if exercise in zero else full) for exercise, full in full_marks(graded).items()}
    assert got == expected
    assert graded.maxima[f"attack-{name}"] == sum(graded.points.values()), "the maximum score changed"


def test_no_side_effects_outside_the_grading_output(graded):
    assert graded.after == graded.before
    for sentinel in graded.attacks["write_elsewhere"].SENTINELS:
        assert not Path(os.path.expanduser(sentinel)).exists()
    assert graded.listener.connections == 0, "a notebook reached the network"
    leftover = subprocess.run(["pgrep", "-f", graded.attacks["outlive_notebook"].LEFTOVER], capture_output=True)
    assert leftover.returncode == 1, "a process started by a notebook outlived its grading"


def test_a_flood_of_output_is_cut(graded):
    notebook = graded.course / "autograded" / "attack-flood_output" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert notebook.stat().st_size < graded.attacks["flood_output"].MAX_NOTEBOOK_BYTES


def test_tampering_is_named_and_listed_for_review(graded):
    tampered = {f"attack-{n}": a.REVIEW for n, a in graded.attacks.items() if hasattr(a, "REVIEW")}
    assert tampered, "no attack is tampering"
    for student, finding in tampered.items():
        assert re.match(finding, graded.report[student]["review"]), graded.report[student]
        verdicts = [
            o.get("evalue", "")
            for c in autograded(graded, student).cells
            if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")
            for o in c.get("outputs", [])
        ]
        assert verdicts and all(
            re.match(f"Not graded: {finding}, and student code may not touch", v) for v in verdicts
        ), verdicts
        row = next(line for line in graded.output.splitlines() if student in line)
        assert "needs review" in row, row
    assert "need review (tampering found)" in graded.output
    for student, outcome in graded.report.items():
        assert student in tampered or not outcome.get("review"), (student, outcome)


def test_the_summary_names_every_student(graded):
    for student in graded.report:
        assert student in graded.output
