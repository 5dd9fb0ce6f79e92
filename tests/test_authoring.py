"""One source per fact: the committed notebooks, tables and reference are what the text notebooks and the
declarations make, an edit to either is caught until `make notebooks` runs, and bad sources get one sentence."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT

from autograder import authoring, conventions, kit
from autograder.__main__ import main
from autograder.exercises import EXERCISES, of_assignment
from autograder.spec import REGISTERED, Exercise

ASSIGNMENTS = authoring.assignments(ROOT)
CH04 = "ch04_scaled_dot_product"
ROW = re.compile(r"^\| `(\w+)[^`]*` \| .* \| (\d+) \| (\d+) \| (\d+) \|$", re.M)


def test_every_assignment_has_a_text_notebook():
    assert ASSIGNMENTS == sorted(p.parent.name for p in (ROOT / "solutions").glob("*/*.ipynb"))


def test_the_committed_files_are_what_the_sources_make():
    stale = [str(path.relative_to(ROOT)) for path in authoring.stale(ROOT)]
    assert not stale, f"{', '.join(stale)} differ from their sources: run `make notebooks`."


@pytest.fixture
def scratch(tmp_path) -> Path:
    """Chapter 4's text notebook, nbgrader notebook and chapter page in a scratch course."""
    for relative in (f"solutions/{CH04}/{CH04}.md", f"solutions/{CH04}/{CH04}.ipynb", f"book/{CH04}.md"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    return tmp_path


def _changed(root: Path) -> list[str]:
    return sorted(
        str(path.relative_to(root))
        for path, text in authoring.outputs(CH04, root).items()
        if path.read_text(encoding="utf-8") != text
    )


def test_an_edited_hint_makes_the_notebook_stale_and_only_its_cell_changes(scratch):
    assert _changed(scratch) == []
    source = scratch / f"solutions/{CH04}/{CH04}.md"
    hint = "`x.amax(dim=dim, keepdim=True)` keeps the reduced axis with size 1"
    assert hint in source.read_text()
    source.write_text(source.read_text().replace(hint, hint + " (one more word)"))
    assert _changed(scratch) == [f"solutions/{CH04}/{CH04}.ipynb"]
    before = nbformat.read(ROOT / f"solutions/{CH04}/{CH04}.ipynb", as_version=4)
    after = authoring.build(CH04, scratch)
    differ = [i for i, (a, b) in enumerate(zip(before.cells, after.cells)) if a != b]
    assert len(differ) == 1 and "(one more word)" in after.cells[differ[0]].source


def test_changing_points_is_one_declaration_that_the_cells_and_both_tables_follow(scratch, monkeypatch):
    monkeypatch.setattr(EXERCISES["softmax"], "points", (2, 5))
    assert _changed(scratch) == [f"book/{CH04}.md", f"solutions/{CH04}/{CH04}.ipynb"]
    notebook = authoring.build(CH04, scratch)
    points = {conventions.grade_id(c): conventions.metadata(c).get("points") for c in notebook.cells}
    assert (points["test_softmax"], points["test_softmax_hidden"]) == (2, 5)
    assert ("softmax", "2", "20", "7") in ROW.findall(notebook.cells[0].source)
    page = authoring.outputs(CH04, scratch)[scratch / f"book/{CH04}.md"]
    assert ("softmax", "2", "20", "7") in ROW.findall(page)


def test_changing_minutes_is_one_declaration_that_the_tables_and_the_overview_follow(scratch, monkeypatch):
    monkeypatch.setattr(EXERCISES["softmax"], "minutes", 35)
    page = authoring.outputs(CH04, scratch)[scratch / f"book/{CH04}.md"]
    assert ("softmax", "2", "35", "3") in ROW.findall(page)
    assert "60 minutes of reading, 105 minutes of exercises." in page


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_points_difficulty_and_minutes_everywhere_equal_the_declaration(assignment):
    notebook = nbformat.read(ROOT / f"solutions/{assignment}/{assignment}.ipynb", as_version=4)
    exercises = {ex.name: ex for ex in of_assignment(assignment)}
    cells = {}
    for cell in notebook.cells:
        found = conventions.test_of(cell, exercises)
        if found:
            cells[found] = cell.metadata.nbgrader["points"]
    declared = {
        (name, layer): ex.points[i] for name, ex in exercises.items() for i, layer in enumerate(conventions.LAYERS)
    }
    assert cells == declared
    expected = sorted((ex.name, str(ex.difficulty), str(ex.minutes), str(sum(ex.points))) for ex in exercises.values())
    intro = [cell.source for cell in notebook.cells if cell.cell_type == "markdown"][0]
    assert sorted(ROW.findall(intro)) == expected, "the notebook's intro table"
    page = (ROOT / "book" / f"{assignment}.md").read_text(encoding="utf-8")
    assert sorted(ROW.findall(page.split("\n## Exercises\n")[1])) == expected, "the chapter page's table"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_chapter_overview_gives_the_sum_of_the_exercise_minutes(assignment):
    page = (ROOT / "book" / f"{assignment}.md").read_text(encoding="utf-8")
    said = re.search(r"(\d+) minutes of exercises", page)
    assert said, "the overview box should say how many minutes of exercises"
    assert int(said.group(1)) == sum(ex.minutes for ex in of_assignment(assignment))


@pytest.fixture
def registry_as_it_was():
    """The throwaway exercises these tests make leave the course's registry as they found it: the
    registry refuses a second exercise of one name, and test_engine checks it holds the course's own."""
    before = dict(REGISTERED)
    yield
    REGISTERED.clear()
    REGISTERED.update(before)


@pytest.mark.parametrize(
    ("declaration", "said"),
    [
        ({"points": (1,)}, "points should be (visible, hidden)"),
        ({"points": (0, 0)}, "not both 0"),
        ({"points": (1, -1)}, "at least 0"),
        ({"points": (True, 2)}, "whole numbers"),
        ({"difficulty": 6}, "difficulty should be a whole number from 1 to 5, not 6"),
        ({"difficulty": 2.5}, "difficulty should be"),
        ({"minutes": 0}, "minutes should be a whole number above 0, not 0"),
        ({"task": "two\nlines"}, "one line of text"),
        ({"task": "a | b"}, "without '|'"),
    ],
)
def test_a_declaration_that_cannot_be_right_is_refused_with_one_sentence(declaration, said, registry_as_it_was):
    with pytest.raises(ValueError, match=re.escape(said)) as error:
        Exercise("thing", "ch99_test", **declaration)
    assert str(error.value).startswith("Exercise 'thing': ") and str(error.value).count(". ") == 0


def test_a_right_declaration_is_kept(registry_as_it_was):
    ex = Exercise("thing", "ch99_test", points=(0, 3), difficulty=5, minutes=1, task="a thing")
    assert (ex.points, ex.difficulty, ex.minutes, ex.task) == ((0, 3), 5, 1, "a thing")


def _broken(scratch: Path, old: str, new: str) -> str:
    source = scratch / f"solutions/{CH04}/{CH04}.md"
    assert old in source.read_text()
    source.write_text(source.read_text().replace(old, new, 1))
    with pytest.raises(authoring.AuthoringError) as error:
        authoring.build(CH04, scratch)
    return str(error.value)


def test_a_text_notebook_without_the_table_line_is_told_where_it_goes(scratch):
    said = _broken(scratch, authoring.TABLE_PLACEHOLDER, "")
    assert f"put the line `{authoring.TABLE_PLACEHOLDER}` once in a markdown cell, not 0 times" in said


def test_a_solution_without_its_markers_is_told_which_exercise(scratch):
    said = _broken(scratch, "    ### END SOLUTION\n```\n\n## 2.", "```\n\n## 2.")
    assert "the solution cell of `softmax` has no `### BEGIN SOLUTION`" in said


def test_a_declared_exercise_that_no_cell_defines_is_named(scratch):
    said = _broken(scratch, "def attention_scores(", "def scores(")
    assert (
        "no code cell defines `attention_scores`, which autograder/exercises/ch04_scaled_dot_product.py declares"
        in said
    )


def test_two_exercises_in_one_cell_are_told_apart(scratch):
    said = _broken(
        scratch,
        "    ### END SOLUTION\n```\n\n## 2.",
        "    ### END SOLUTION\ndef attention_scores(q, k):\n    pass\n```\n\n## 2.",
    )
    assert "one code cell defines `softmax` and `attention_scores`; give each exercise its own cell" in said


def test_an_exercise_without_points_is_told_what_to_declare(scratch, monkeypatch):
    monkeypatch.setattr(EXERCISES["softmax"], "points", None)
    with pytest.raises(authoring.AuthoringError, match=r"`softmax` declares no points: give Exercise\('softmax'"):
        authoring.build(CH04, scratch)


def test_the_signatures_come_from_the_stubs_without_annotations():
    _, sections = authoring.read(CH04, ROOT)
    assert [authoring.call_signature(s) for s in sections] == [
        "softmax(x, dim=-1)",
        "attention_scores(q, k)",
        "scaled_dot_product_attention(q, k, v, mask=None)",
        "SelfAttention(d_model, d_k)",
    ]


def test_the_stub_replaces_each_answer_as_nbgrader_does():
    source = "def f(x):\n    '''Doc.'''\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\n"
    assert authoring.stub(source) == "def f(x):\n    '''Doc.'''\n    raise NotImplementedError()"


def test_the_exercise_reference_holds_every_exercise_and_no_solution_line():
    page = (ROOT / authoring.REFERENCE_PAGE).read_text(encoding="utf-8")
    for assignment in ASSIGNMENTS:
        _, sections = authoring.read(assignment, ROOT)
        for section in sections:
            assert f"### `{authoring.call_signature(section)}`" in page
    found, measure = kit.leaks({str(authoring.REFERENCE_PAGE): page.encode()})
    assert not found, [f"{leak.exercise}: {leak.statement}" for leak in found]
    assert sum(distinctive for _, distinctive in measure.values()) > 100, "the measure looked for the solutions' lines"


def test_the_leak_measure_would_see_a_solution_line_on_the_reference_page():
    page = (ROOT / authoring.REFERENCE_PAGE).read_text(encoding="utf-8")
    answer = "    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])\n"
    found, _ = kit.leaks({str(authoring.REFERENCE_PAGE): (page + "```python\n" + answer + "```\n").encode()})
    assert [leak.exercise for leak in found] == ["attention_scores"]


def test_the_command_writes_what_is_stale_and_check_says_so(scratch, monkeypatch, capsys):
    monkeypatch.setenv("AUTOGRADER_COURSE_ROOT", str(scratch))
    assert main(["notebooks"]) == 0  # the scratch course has no reference page yet
    assert "wrote book/exercise_reference.md" in capsys.readouterr().out
    assert main(["notebooks", "--check"]) == 0
    source = scratch / f"solutions/{CH04}/{CH04}.md"
    source.write_text(source.read_text().replace("Hint 1: the idea", "Hint 1: the concept", 1))
    assert main(["notebooks", "--check"]) == 1
    assert capsys.readouterr().out == f"stale solutions/{CH04}/{CH04}.ipynb\n"
    assert main(["notebooks", CH04]) == 0 and main(["notebooks", "--check"]) == 0


def test_the_command_says_one_sentence_on_a_broken_text_notebook(scratch, monkeypatch, capsys):
    monkeypatch.setenv("AUTOGRADER_COURSE_ROOT", str(scratch))
    source = scratch / f"solutions/{CH04}/{CH04}.md"
    source.write_text(source.read_text().replace(authoring.TABLE_PLACEHOLDER, ""))
    assert main(["notebooks"]) == 1
    said = capsys.readouterr().err.strip()
    assert said.startswith(f"{CH04}.md: put the line") and "\n" not in said


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_made_notebook_is_valid_with_one_id_per_cell(assignment):
    notebook = authoring.build(assignment, ROOT)
    nbformat.validate(notebook)
    assert len({cell.id for cell in notebook.cells}) == len(notebook.cells)
