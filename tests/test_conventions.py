"""The notebook conventions (autograder/conventions.py): exact decoding, on NotebookNodes and plain JSON alike."""

from __future__ import annotations

import json

import nbgrader.utils
import pytest
from conftest import ROOT, read_notebook
from nbformat.v4 import new_code_cell, new_markdown_cell

from autograder import conventions
from autograder.conventions import (
    is_setup,
    is_students,
    is_test,
    parse_test_id,
    solution_of,
    solution_regions,
    without_markers,
)

NAMES = {"Encoder", "EncoderLayer", "softmax", "x_hidden"}
NOTEBOOKS = sorted(ROOT.glob("solutions/*/*.ipynb")) + sorted(ROOT.glob("exercises/*/*.ipynb"))


def cell(source="pass", kind="code", **nbgrader):
    """A cell as nbgrader writes it (only the flags given are set)."""
    make = new_code_cell if kind == "code" else new_markdown_cell
    return make(source, metadata={"nbgrader": nbgrader} if nbgrader else {})


def plain(node) -> dict:
    """The same cell as json.loads reads it from a file: dicts, and the source as a list of lines."""
    data = json.loads(json.dumps(node))
    data["source"] = data["source"].splitlines(keepends=True)
    return data


def test_test_ids_are_written_and_read_back_exactly():
    assert conventions.test_id("softmax") == "test_softmax"
    assert conventions.test_id("softmax", "hidden") == "test_softmax_hidden"
    for name in NAMES:
        for layer in conventions.LAYERS:
            assert parse_test_id(conventions.test_id(name, layer), NAMES) == (name, layer)
    with pytest.raises(ValueError, match="'visible' or 'hidden', not 'secret'"):
        conventions.test_id("softmax", "secret")


@pytest.mark.parametrize(
    "grade_id, expected",
    [
        ("test_EncoderLayer", ("EncoderLayer", "visible")),  # not Encoder's, though Encoder is a prefix of it
        ("test_EncoderLayer_hidden", ("EncoderLayer", "hidden")),
        ("test_Encoder", ("Encoder", "visible")),
        ("test_Encoder_hidden", ("Encoder", "hidden")),
        ("test_x_hidden", ("x_hidden", "visible")),  # an exercise whose own name ends in _hidden
        ("test_x_hidden_hidden", ("x_hidden", "hidden")),
        ("test_EncoderLay", None),  # a prefix of a name is no name
        ("test_Encoder_extra", None),
        ("test_softmax_hidden2", None),
        ("softmax", None),  # the solution cell's id
        ("test_", None),
        ("test_unknown", None),
        ("", None),
    ],
)
def test_grade_ids_are_decoded_exactly(grade_id, expected):
    assert parse_test_id(grade_id, NAMES) == expected


@pytest.mark.parametrize("as_json", [False, True], ids=["NotebookNode", "plain JSON"])
def test_cells_are_told_apart(as_json):
    shape = plain if as_json else (lambda node: node)
    test = shape(cell(grade_id="test_EncoderLayer", grade=True, locked=True, points=2))
    hidden = shape(cell(grade_id="test_Encoder_hidden", grade=True, locked=True, points=1))
    answer = shape(cell(grade_id="Encoder", solution=True))
    graded_answer = shape(cell(grade_id="Encoder", solution=True, grade=True, points=1))
    setup = shape(cell(grade_id="setup", locked=True))
    scratch = shape(cell())  # a cell the student added: no nbgrader metadata
    markdown = shape(cell("# Encoder", kind="markdown", grade_id="intro", locked=True))
    unknown_test = shape(cell(grade_id="test_Decoder", grade=True, locked=True, points=1))

    assert conventions.test_of(test, NAMES) == ("EncoderLayer", "visible")
    assert conventions.test_of(hidden, NAMES) == ("Encoder", "hidden")
    assert [conventions.test_of(c, NAMES) for c in (answer, graded_answer, setup, scratch, markdown, unknown_test)] == [
        None
    ] * 6
    assert [is_test(c) for c in (test, unknown_test, graded_answer, setup)] == [True, True, False, False]

    assert solution_of(answer) == solution_of(graded_answer) == "Encoder"
    assert [solution_of(c) for c in (test, setup, scratch, markdown)] == [None] * 4

    assert [is_setup(c) for c in (setup, test, answer, scratch, markdown)] == [True, False, False, False, False]
    # A solution cell is the student's even when its metadata says locked: nbgrader never locks an answer.
    locked_answer = shape(cell(grade_id="Encoder", solution=True, locked=True))
    assert [is_students(c) for c in (answer, graded_answer, locked_answer, scratch)] == [True] * 4
    assert [is_students(c) for c in (test, setup, markdown)] == [False] * 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_flags_are_nbgraders_on_every_notebook_of_the_course(path):
    """The flags read without importing nbgrader are nbgrader.utils's own, cell by cell."""
    notebook = read_notebook(path)
    raw = json.loads(path.read_text(encoding="utf-8"))["cells"]
    assert len(raw) == len(notebook.cells)
    for node, data in zip(notebook.cells, raw):
        for ours, theirs in (
            (conventions.is_grade, nbgrader.utils.is_grade),
            (conventions.is_solution, nbgrader.utils.is_solution),
            (conventions.is_locked, nbgrader.utils.is_locked),
        ):
            assert ours(node) == ours(data) == bool(theirs(node)), (ours.__name__, conventions.grade_id(node))
        assert conventions.source(data) == node.source


def test_every_exercise_of_the_course_has_its_cells():
    from autograder.exercises import EXERCISES, of_assignment

    for path in sorted(ROOT.glob("solutions/*/*.ipynb")):
        notebook = read_notebook(path)
        names = {exercise.name for exercise in of_assignment(path.stem)}
        answers = {solution_of(c) for c in notebook.cells} - {None}
        tests = {conventions.test_of(c, EXERCISES) for c in notebook.cells} - {None}
        assert answers == names
        assert tests == {(name, layer) for name in names for layer in conventions.LAYERS}


def test_solution_markers_are_removed_and_regions_found():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\nz = 2"
    assert without_markers(source) == "def f(x):\n    y = x + 1\n    return y\n\nz = 2"
    assert solution_regions(source) == ["    y = x + 1\n    return y"]
    two = "### BEGIN SOLUTION\na = 1\n### END SOLUTION\nb = 2\n### BEGIN SOLUTION\nc = 3\n### END SOLUTION"
    assert solution_regions(two) == ["a = 1", "c = 3"]
    assert solution_regions("a = 1  # ### BEGIN SOLUTION is only a marker on a line of its own") == []
    assert without_markers("x = '### BEGIN SOLUTION'") == "x = '### BEGIN SOLUTION'"


def test_progress_counts_each_test_cell_for_its_own_exercise():
    """Encoder is a prefix of EncoderLayer: each keeps its own points, visible and hidden."""
    from nbformat.v4 import new_notebook

    from autograder.progress import exercises_of

    def test(name, layer, points):
        source = f"check({name!r}, {name})" if layer == "visible" else "# The hidden checks run when graded."
        return cell(source, grade_id=conventions.test_id(name, layer), grade=True, locked=True, points=points)

    notebook = new_notebook(
        cells=[
            cell(grade_id="setup", locked=True),
            cell(grade_id="EncoderLayer", solution=True),
            test("EncoderLayer", "visible", 2),
            test("EncoderLayer", "hidden", 3),
            cell(grade_id="Encoder", solution=True),
            test("Encoder", "visible", 1),
            test("Encoder", "hidden", 4),
            cell("assert True", grade_id="test_extra", grade=True, locked=True, points=5),  # names no exercise
        ]
    )
    found = {e.name: (e.solution, e.visible_tests, e.points, e.hidden_points) for e in exercises_of(notebook)}
    assert found == {
        "EncoderLayer": (1, [2], 5.0, 3.0),
        "Encoder": (4, [5], 5.0, 4.0),
        "test_extra": (None, [7], 5.0, 0.0),
    }
