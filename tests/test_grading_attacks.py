"""Students who try to score without solving, graded as one class through the real grading path.

Every text notebook in tests/attacks/ becomes one submission of ch04 (correct apart from
the attack); with a correct and an empty submission beside them, the class is graded by
`python -m autograder grade --workers 2` (stock nbgrader autograde under our
nbgrader_config.py, in two parallel workers). See tests/attacks/README.md.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import threading
import types
from dataclasses import dataclass, field, fields
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, autograder_grade, grade_id, read_notebook
from graded_class import Grading, scratch_class
from submissions import EDITS, METADATA, TAMPERING_EDITS, Edit, apply_edits, read_edits

from autograder.release import solved_notebook

ASSIGNMENT = "ch04_scaled_dot_product"
ATTACK_FILES = sorted(p for p in (ROOT / "tests" / "attacks").glob("*.md") if p.name != "README.md")
pytestmark = [pytest.mark.grading, pytest.mark.xdist_group("attacks")]  # one graded class for every test
GRADING_OUTPUT = ("autograded", "gradebook.db", "grading-report-", "feedback")


@dataclass
class Attack:
    """An attack, and what the test expects of it (its text notebook's front matter; tests/attacks/README.md)."""

    name: str
    edits: list[Edit]
    zero: set[str] = field(default_factory=set)  # the exercises that earn nothing; the others keep full points
    refused: str | None = None  # nbgrader refuses the notebook: what the report says instead of a score
    review: str | None = None  # tampering: a pattern of what the feedback and the class report name
    zero_if_stopped: set[str] = field(default_factory=set)  # they earn nothing if the notebook stopped in...
    stopped_in: str | None = None  # ...this cell
    sentinels: tuple[str, ...] = ()  # files the attack writes outside the submission (none may appear)
    leftover: str | None = None  # the command line of a process that must not outlive grading
    max_notebook_bytes: int | None = None  # the autograded notebook stays smaller than this


def load_attack(path: Path) -> Attack:
    """An attack from its MyST text notebook: what it earns in the front matter, then one edit per code cell."""
    front, edits = read_edits(path, EDITS + TAMPERING_EDITS, METADATA)
    known = {f.name for f in fields(Attack)} - {"name", "edits"}
    if set(front) - known - {"jupytext"} or len({"zero", "refused"} & set(front)) != 1:
        raise ValueError(
            f"{path.name}: the front matter has {sorted(front)}; "
            f"it needs one of `zero` and `refused`, and may have {sorted(known)}"
        )
    expected = {key: value for key, value in front.items() if key in known}
    for key in ("zero", "zero_if_stopped"):
        expected[key] = set(expected.get(key, ()))
    expected["sentinels"] = tuple(expected.get("sentinels", ()))
    return Attack(path.stem, edits, **expected)


ATTACKS = {attack.name: attack for attack in map(load_attack, ATTACK_FILES)}


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


@dataclass
class GradedAttacks(Grading):
    """The class graded (``scores``: each student's score by graded cell), and what the tests compare it with."""

    maxima: dict[str, float]  # each student's maximum score
    points: dict[str, float]  # the points of each graded cell, as the reference notebook gives them
    changed_outside: list[str]  # the files of the course outside the grading output that grading changed
    listener: Listener  # it counts the connections that reached it


def snapshot(course: Path) -> dict[str, str]:
    """Hashes of every file of the course outside the grading output."""
    files = {}
    for path in course.rglob("*"):
        relative = path.relative_to(course).as_posix()
        if path.is_file() and not relative.startswith(GRADING_OUTPUT):
            files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course, env = scratch_class(tmp_path_factory.mktemp("course"), [ASSIGNMENT], seed="97531", cell_timeout=10)
    listener = Listener()
    port_file = tmp_path_factory.mktemp("outside") / "port"
    port_file.write_text(str(listener.port))
    solutions = read_notebook(course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    exercises = [grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")]

    values = {"{port_file!r}": repr(str(port_file)), "{course_root!r}": repr(str(course))}

    def submit(student: str, attack: Attack | None = None, filled=True):
        nb = solved_notebook(course, ASSIGNMENT, None if filled else set())
        if attack:
            apply_edits(attack.name, attack.edits, nb, exercises, values)
        folder = course / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{ASSIGNMENT}.ipynb")

    submit("correct")
    submit("empty", filled=False)
    for name, attack in ATTACKS.items():
        submit(f"attack-{name}", attack)
    before = snapshot(course)
    run = autograder_grade(course, ASSIGNMENT, env)
    from nbgrader.api import Gradebook

    scores, maxima = {}, {}
    refused = {f"attack-{n}" for n, a in ATTACKS.items() if a.refused}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for student in ["correct", "empty"] + [f"attack-{n}" for n in ATTACKS if f"attack-{n}" not in refused]:
            submission = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            scores[student] = {g.name: (g.score or 0.0) for g in submission.grades}
            maxima[student] = sum(g.max_score for g in submission.grades)
    points = {
        grade_id(c): c.metadata["nbgrader"]["points"]
        for c in solutions.cells
        if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")
    }
    after = snapshot(course)
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    yield GradedAttacks.read(
        course, ASSIGNMENT, run, scores, maxima=maxima, points=points, changed_outside=changed, listener=listener
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


def test_the_corpus_holds_every_kind_of_attack():
    assert len(ATTACKS) >= 21 and all(attack.edits for attack in ATTACKS.values())
    kinds = {edit.kind for attack in ATTACKS.values() for edit in attack.edits}
    assert set(TAMPERING_EDITS) | {"replace", "before"} <= kinds
    assert all(any(getattr(a, field) for a in ATTACKS.values()) for field in ("refused", "review", "zero_if_stopped"))


def test_honest_submissions_keep_exact_scores(graded):
    assert exercise_scores(graded, "correct") == full_marks(graded)
    assert set(exercise_scores(graded, "empty").values()) == {0.0}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_earns_nothing_on_the_tampered_exercise(graded, name):
    attack = ATTACKS[name]
    if attack.refused:
        outcome = graded.report[f"attack-{name}"]
        assert outcome["status"] == "failed" and outcome["score"] is None
        assert attack.refused in outcome["detail"]
        return
    got = exercise_scores(graded, f"attack-{name}")
    stopped = attack.zero_if_stopped
    zero = attack.zero | (stopped if stopped and stopped_in(graded, name, attack.stopped_in, stopped) else set())
    expected = {exercise: (0.0 if exercise in zero else full) for exercise, full in full_marks(graded).items()}
    assert got == expected
    assert graded.maxima[f"attack-{name}"] == sum(graded.points.values()), "the maximum score changed"


def test_no_side_effects_outside_the_grading_output(graded):
    assert graded.changed_outside == []
    for sentinel in ATTACKS["write_elsewhere"].sentinels:
        assert not Path(os.path.expanduser(sentinel)).exists()
    assert graded.listener.connections == 0, "a notebook reached the network"
    leftover = subprocess.run(["pgrep", "-f", ATTACKS["outlive_notebook"].leftover], capture_output=True)
    assert leftover.returncode == 1, "a process started by a notebook outlived its grading"


def test_a_flood_of_output_is_cut(graded):
    notebook = graded.course / "autograded" / "attack-flood_output" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert notebook.stat().st_size < ATTACKS["flood_output"].max_notebook_bytes


def test_tampering_is_named_and_listed_for_review(graded):
    tampered = {f"attack-{n}": a.review for n, a in ATTACKS.items() if a.review}
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
        row = next(line for line in graded.run.stdout.splitlines() if student in line)
        assert "needs review" in row, row
    assert "need review (tampering found)" in graded.run.stdout
    for student, outcome in graded.report.items():
        assert student in tampered or not outcome.get("review"), (student, outcome)


def test_the_summary_names_every_student(graded):
    for student in graded.report:
        assert student in graded.run.stdout


def attack_file(folder: Path, front: str, cell: str) -> Path:
    path = folder / "attack.md"
    path.write_text(f"---\n{front}\n---\n\nWhat the student does.\n\n```{{code-cell}} ipython3\n{cell}\n```\n")
    return path


def test_an_attack_file_is_read_into_its_edits_and_what_it_earns(tmp_path):
    attack = load_attack(attack_file(tmp_path, "zero: [softmax]\nleftover: sleeper", ":keep: test_softmax\n:points: 9"))
    assert attack == Attack(
        "attack", [Edit("keep", "test_softmax", "", {"points": 9})], {"softmax"}, leftover="sleeper"
    )


@pytest.mark.parametrize(
    "front, cell, says",
    [
        ("scores: [softmax]", ":replace: softmax\npass", "needs one of `zero` and `refused`"),
        ("zero: [softmax]\nrefused: corrupted", ":replace: softmax\npass", "needs one of `zero` and `refused`"),
        ("zero: [softmax]", ":swap: softmax\npass", "needs exactly one of replace"),
        ("zero: [softmax]", ":replace: softmax\n:locked: true\npass", "and may have cell_type"),
    ],
    ids=["unknown-expectation", "zero-and-refused", "unknown-edit", "unknown-metadata"],
)
def test_a_malformed_attack_file_is_refused_with_one_sentence(tmp_path, front, cell, says):
    with pytest.raises(ValueError, match=says):
        load_attack(attack_file(tmp_path, front, cell))
