"""Honest but unusual submissions score full marks, graded through the real grading paths.

Every file in tests/honest/ changes the reference notebook of the chapters it names (see
tests/honest/README.md). Each chapter's notebooks are one class, graded twice: by stock
`nbgrader autograde` (under our nbgrader_config.py) and by `python -m autograder grade
--workers 1` (which must end without a traceback; the cluster tests grade with several
workers). Every notebook must score its maximum both times, and none may be listed for
review. Each chapter is one test, so it is graded once whichever worker runs it.
"""

from __future__ import annotations

import subprocess
import types
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, autograder_grade, grade_id, read_notebook
from graded_class import Grading, scratch_class
from submissions import Edit, apply_edits, read_edits

from autograder import conventions
from autograder.release import solved_notebook


@dataclass
class Variant:
    name: str
    assignments: tuple[str, ...]
    edits: list[Edit]


def load_variant(path: Path) -> Variant:
    """A variant from its MyST text notebook: the front matter's `assignments`, then one edit per code cell."""
    front, edits = read_edits(path)
    if not front.get("assignments"):
        raise ValueError(f"{path.name}: the front matter names no `assignments` (the chapters the variant applies to)")
    return Variant(path.stem, tuple(front["assignments"]), edits)


def apply_variant(variant: Variant, nb: nbformat.NotebookNode, exercises: list[str]) -> None:
    """Make the variant's edits to `nb`, in order; `exercises` are the notebook's exercises in notebook order."""
    apply_edits(variant.name, variant.edits, nb, exercises)


VARIANT_FILES = sorted(p for p in (ROOT / "tests" / "honest").glob("*.md") if p.name != "README.md")
VARIANTS = {variant.name: variant for variant in map(load_variant, VARIANT_FILES)}
SUBMISSIONS = sorted((assignment, name) for name, variant in VARIANTS.items() for assignment in variant.assignments)
CHAPTERS = sorted({assignment for assignment, _ in SUBMISSIONS})


def honest_notebook(course: Path, assignment: str, variant: str) -> nbformat.NotebookNode:
    solutions = read_notebook(course / "solutions" / assignment / f"{assignment}.ipynb")
    exercises = [grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")]
    nb = solved_notebook(course, assignment)
    apply_variant(VARIANTS[variant], nb, exercises)
    return nb


def _scores(course: Path, assignment: str, students: list[str]) -> dict[str, tuple[float, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {
            s: (gradebook.find_submission(assignment, s).score, gradebook.find_submission(assignment, s).max_score)
            for s in students
        }


def grade_chapter(assignment: str, course: Path) -> types.SimpleNamespace:
    """The chapter's honest notebooks as one class, graded by stock nbgrader autograde, then by ours (`ours`,
    whose scores are each student's (score, max score))."""
    course, env = scratch_class(course, [assignment], seed="24680", cell_timeout=120)
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
    run = autograder_grade(course, assignment, env, timeout=900, workers=1)
    ours = Grading.read(course, assignment, run, _scores(course, assignment, students))
    return types.SimpleNamespace(students=students, stock=stock, by_nbgrader=by_nbgrader, feedback=feedback, ours=ours)


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
    lost = {}
    for variant in chapter.students:
        score, maximum = chapter.by_nbgrader[variant]
        outcome = chapter.ours.report[variant]
        if not (maximum > 0 and score == maximum):
            lost[variant] = f"nbgrader autograde: {score} / {maximum}; {_failures(chapter.feedback[variant])}"
        elif outcome["status"] != "graded" or outcome["review"] or chapter.ours.scores[variant] != (maximum, maximum):
            lost[variant] = f"autograder grade: {outcome}"
    assert not lost, f"honest notebooks of {assignment} lost points: {lost}"


# --- The loader of tests/honest/ --------------------------------------------------------------


def _tiny_notebook() -> nbformat.NotebookNode:
    """Two exercises, `a` and `b`, each a solution cell followed by its visible test cell."""
    cells = []
    for name in ("a", "b"):
        for gid, source in (
            (name, f'def {name}():\n    """Doc."""\n    return 1'),
            (conventions.test_id(name), f"check({name!r})"),
        ):
            cell = nbformat.v4.new_code_cell(source)
            cell.metadata["nbgrader"] = {"grade_id": gid}
            cells.append(cell)
    return nbformat.v4.new_notebook(cells=cells)


def _variant(tmp_path: Path, body: str, front: str = "assignments: [ch00_warmup]\n") -> Path:
    path = tmp_path / "variant.md"
    path.write_text(f"---\n{front}---\n\nWhat the student does.\n\n{body}")
    return path


def _cell(option: str, code: str) -> str:
    return f"```{{code-cell}} ipython3\n:{option}\n{code}\n```\n\n"


def test_every_edit_of_a_variant_lands_where_it_says(tmp_path):
    body = (
        _cell("prefix: each exercise", "# mine")
        + _cell("suffix: first exercise", "print({exercise!r})")
        + _cell("docstring: b", "Also.")
        + _cell("after: each test", "{exercise}()")
        + _cell("before: test_b", "x = 1")
        + _cell("replace: a", "a = lambda: 1  # of {exercises!r}")
        + _cell("after: last cell", "print([{exercises}])")
    )
    variant = load_variant(_variant(tmp_path, body))
    assert variant.assignments == ("ch00_warmup",) and len(variant.edits) == 7
    nb = _tiny_notebook()
    apply_variant(variant, nb, ["a", "b"])
    assert [c.source for c in nb.cells] == [
        "a = lambda: 1  # of ['a', 'b']\n",
        "check('a')",
        "a()\n",
        '# mine\ndef b():\n    """Also. Doc."""\n    return 1',
        "x = 1\n",
        "check('b')",
        "b()\n",
        "print([a, b])\n",
    ]
    nb = _tiny_notebook()
    apply_variant(load_variant(_variant(tmp_path, _cell("suffix: first exercise", "print({exercise!r})"))), nb, ["a"])
    assert nb.cells[0].source == 'def a():\n    """Doc."""\n    return 1\nprint(\'a\')\n'


@pytest.mark.parametrize(
    "body, front, says",
    [
        (_cell("instead: a", "pass"), "assignments: [ch00_warmup]\n", "needs exactly one of replace"),
        ("```{code-cell} ipython3\npass\n```\n", "assignments: [ch00_warmup]\n", "needs exactly one of replace"),
        (_cell("replace: a", "pass"), "title: no chapters\n", "names no `assignments`"),
    ],
    ids=["unknown-option", "no-option", "no-assignments"],
)
def test_a_malformed_variant_is_refused_with_one_sentence(tmp_path, body, front, says):
    with pytest.raises(ValueError, match=says):
        load_variant(_variant(tmp_path, body, front))


@pytest.mark.parametrize(
    "option, says",
    [("replace: c", "has no cell 'c' to replace"), ("prefix: last cell", "only `after` goes to the last cell")],
    ids=["missing-cell", "prefix-to-the-end"],
)
def test_an_edit_to_a_cell_the_notebook_lacks_is_refused_with_one_sentence(tmp_path, option, says):
    variant = load_variant(_variant(tmp_path, _cell(option, "pass")))
    with pytest.raises(ValueError, match=says):
        apply_variant(variant, _tiny_notebook(), ["a", "b"])
