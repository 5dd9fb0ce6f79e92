"""python -m autograder progress: runs a student's notebooks and says which exercises pass their visible checks."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
from conftest import ROOT, env_with_venv, grade_id, read_notebook
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader.utils import compute_checksum

from autograder import progress
from autograder.__main__ import main
from autograder.progress import Limits, Status
from autograder.release import filled_notebook

STUDENT_NOTEBOOKS = sorted((ROOT / "exercises").glob("*/*.ipynb"))


def exercise_names(notebook) -> list[str]:
    return [grade_id(c) for c in notebook.cells if c.metadata.get("nbgrader", {}).get("solution")]


def filled_with_reference(student_path, folder):
    """The student notebook with every exercise filled in from the reference, written under ``folder``."""
    assignment = student_path.stem
    reference = read_notebook(ROOT / "solutions" / assignment / f"{assignment}.ipynb")
    notebook = filled_notebook(read_notebook(student_path), reference, set(exercise_names(reference)))
    (folder / assignment).mkdir()
    nbformat.write(notebook, folder / assignment / f"{assignment}.ipynb")


def statuses(found) -> dict:
    return {(p.chapter, p.name): p.status for p in found}


# ----------------------------------------------------------------------------- the course's own notebooks


# One test per chapter, so that the notebooks' runs spread over the test workers.
@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=lambda path: path.stem)
def test_untouched_exercises_are_all_not_started_and_stay_unchanged(path, tmp_path):
    before = path.read_bytes()
    (tmp_path / path.parent.name).symlink_to(path.parent)  # the chapter's folder in exercises/, alone
    chapters, unreadable = progress.find_chapters(tmp_path)
    found, problems = progress.progress_of(chapters)
    assert not unreadable and not problems
    expected = {(path.stem, name) for name in exercise_names(read_notebook(path))}
    assert set(statuses(found)) == expected
    assert all(status is Status.NOT_STARTED for status in statuses(found).values()), statuses(found)
    assert path.read_bytes() == before


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=lambda path: path.stem)
def test_notebooks_filled_with_the_reference_are_all_done(path, tmp_path):
    filled_with_reference(path, tmp_path)
    chapters, _ = progress.find_chapters(tmp_path)
    found, problems = progress.progress_of(chapters)
    assert not problems
    assert {p.chapter for p in found} == {path.stem}
    not_done = {(p.chapter, p.name): p.reason for p in found if p.status is not Status.DONE}
    assert not not_done


def test_points_are_those_of_the_exercise_graded_cells():
    path = ROOT / "exercises" / "ch04_scaled_dot_product" / "ch04_scaled_dot_product.ipynb"
    expected = {}
    for cell in read_notebook(path).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            name = grade_id(cell).removeprefix("test_").removesuffix("_hidden")
            total, hidden = expected.get(name, (0, 0))
            expected[name] = (total + meta["points"], hidden + meta["points"] * grade_id(cell).endswith("_hidden"))
    assert {e.name: (e.points, e.hidden_points) for e in progress.read_chapter(path).exercises} == expected


# ----------------------------------------------------------------------------- how cells end, on small notebooks

STUB = "def first(a, b):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
VARIANTS = {
    "untouched": STUB,
    "correct": "def first(a, b):\n    return a + b",
    "wrong": "def first(a, b):\n    return a - b",
    "syntax": "def first(a, b)\n    return a + b",
    "loop": "import time\nwhile True:\n    time.sleep(0.05)",  # past the limit without holding a core
    "stubborn": "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n    except BaseException:\n        pass",
    "exits": "import os\nos._exit(1)",
    "beside": "def first(a, b):\n    return int(open('answer.txt').read())",
    "setup_fails": "def first(a, b):\n    return a + b",
}
LIMITS = Limits(cell=3, notebook=120, grace=3)


def nbgrader_cell(source, name, **meta):
    """A code cell as nbgrader releases it, with the checksum of its released source."""
    cell = new_code_cell(
        source,
        metadata={
            "nbgrader": {
                "grade_id": name,
                "schema_version": 3,
                "task": False,
                "solution": False,
                "grade": False,
                "locked": False,
                **meta,
            }
        },
    )
    cell.metadata.nbgrader["checksum"] = compute_checksum(cell)
    return cell


def student_notebook(first_source: str, setup: str = "import os"):
    """Two exercises: `first` (1 visible + 2 hidden points) as given, and `second`, already correct."""
    notebook = new_notebook(
        cells=[
            new_markdown_cell("# Exercises"),
            nbgrader_cell(setup, "setup", locked=True),
            nbgrader_cell(STUB, "first", solution=True),
            nbgrader_cell("assert first(1, 2) == 3", "test_first", grade=True, locked=True, points=1),
            nbgrader_cell(
                "# The hidden checks of `first` run when your notebook is graded.",
                "test_first_hidden",
                grade=True,
                locked=True,
                points=2,
            ),
            nbgrader_cell("def second():\n    return 2", "second", solution=True),
            nbgrader_cell("assert second() == 2", "test_second", grade=True, locked=True, points=1),
        ]
    )
    notebook.cells[2].source = first_source
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def write_variant(folder, name):
    (folder / name).mkdir()
    setup = "import not_a_module_of_this_course" if name == "setup_fails" else "import os"
    nbformat.write(student_notebook(VARIANTS[name], setup), folder / name / f"{name}.ipynb")
    return folder / name / f"{name}.ipynb"


# Its tests share one xdist group, so that the notebooks run once, on one worker.
@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    paths = [write_variant(folder, name) for name in VARIANTS]
    (folder / "beside" / "answer.txt").write_text("3")
    before = {path: path.read_bytes() for path in paths}
    chapters, unreadable = progress.find_chapters(folder)
    found, problems = progress.progress_of(chapters, LIMITS)
    assert not unreadable
    return {(p.chapter, p.name): p for p in found}, problems, before


@pytest.mark.xdist_group("progress_variants")
def test_each_way_a_cell_can_end(variants):
    found, _, _ = variants
    expected = {
        "untouched": (Status.NOT_STARTED, Status.DONE),
        "correct": (Status.DONE, Status.DONE),
        "wrong": (Status.FAILS, Status.DONE),
        "syntax": (Status.ERROR, Status.DONE),
        "loop": (Status.TIMED_OUT, Status.DONE),  # interrupted: the later cells still run
        "stubborn": (Status.TIMED_OUT, Status.NOT_RUN),  # ignores the interrupt: its kernel is stopped
        "exits": (Status.ERROR, Status.NOT_RUN),
        "beside": (Status.DONE, Status.DONE),  # runs in the notebook's own folder
        "setup_fails": (Status.DONE, Status.DONE),
    }
    assert {name: (found[name, "first"].status, found[name, "second"].status) for name in VARIANTS} == expected


@pytest.mark.xdist_group("progress_variants")
def test_reasons_are_one_clear_sentence(variants):
    found, problems, _ = variants
    assert found["wrong", "first"].reason == "AssertionError"
    assert found["syntax", "first"].reason.startswith("the cell that defines it raised SyntaxError")
    assert "(line 1)" in found["syntax", "first"].reason
    assert found["loop", "first"].reason == "the cell that defines `first` ran longer than 3 s and was stopped."
    assert "did not stop when interrupted" in found["stubborn", "first"].reason
    assert found["stubborn", "second"].reason == "the notebook stopped at the cell that defines `first`."
    assert found["exits", "first"].reason.startswith("the Python process stopped in the cell that defines `first`")
    assert problems == [
        "setup_fails: the cell `setup` raised ModuleNotFoundError: No module named 'not_a_module_of_this_course'"
    ]


@pytest.mark.xdist_group("progress_variants")
def test_points_count_visible_and_hidden_cells(variants):
    found, _, _ = variants
    first, second = found["correct", "first"], found["correct", "second"]
    assert (first.points, first.hidden_points, second.points, second.hidden_points) == (3, 2, 1, 0)


@pytest.mark.xdist_group("progress_variants")
def test_the_notebooks_are_never_written(variants):
    _, _, before = variants
    assert {path: path.read_bytes() for path in before} == before


def test_the_notebook_time_limit_stops_the_rest(tmp_path):
    path = tmp_path / "slow.ipynb"
    nbformat.write(student_notebook("import time\ntime.sleep(30)"), path)
    found, _ = progress.progress_of([progress.read_chapter(path)], Limits(cell=60, notebook=3, grace=3))
    first, second = found
    assert first.status is Status.TIMED_OUT
    assert (
        first.reason
        == "the cell that defines `first` was still running when the notebook's 3 s ran out and was stopped."
    )
    assert second.status is Status.NOT_RUN and second.reason == "the notebook used up its 3 s before this cell."


def test_exercises_come_from_the_metadata_with_the_longest_matching_name():
    notebook = new_notebook(
        cells=[
            nbgrader_cell("", "Encoder", solution=True),
            nbgrader_cell("", "EncoderLayer", solution=True),
            nbgrader_cell("", "split", solution=True),
            nbgrader_cell("", "split_heads", solution=True),
            nbgrader_cell("check()", "test_EncoderLayer", grade=True, points=1),
            nbgrader_cell("check()", "test_Encoder", grade=True, points=2),
            nbgrader_cell("# hidden", "test_Encoder_hidden", grade=True, points=4),
            nbgrader_cell("check()", "test_split_heads", grade=True, points=8),
            nbgrader_cell("check()", "test_split", grade=True, points=16),
            nbgrader_cell("check()", "test_something_else", grade=True, points=32),
        ]
    )
    points = {e.name: (e.points, e.hidden_points, len(e.visible_tests)) for e in progress.exercises_of(notebook)}
    assert points == {
        "Encoder": (6, 4, 1),
        "EncoderLayer": (1, 0, 1),
        "split": (16, 0, 1),
        "split_heads": (8, 0, 1),
        "test_something_else": (32, 0, 1),
    }


# ----------------------------------------------------------------------------- the command line


def run_cli(capsys, *args):
    status = main(["progress", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda tmp: tmp / "missing", "There is no file or folder"),
        (lambda tmp: (tmp / "notes.ipynb").write_text("{not json") and tmp / "notes.ipynb", "is not valid JSON"),
        (
            lambda tmp: (tmp / "data.json").write_text('{"a": 1}') and tmp / "data.json",
            "is JSON but not a Jupyter notebook",
        ),
        (lambda tmp: (tmp / "blob.ipynb").write_bytes(b"\xff\xfe\x00") and tmp / "blob.ipynb", "it is not a text file"),
        (
            lambda tmp: (
                nbformat.write(new_notebook(cells=[new_code_cell("1")]), tmp / "scratch.ipynb") or tmp / "scratch.ipynb"
            ),
            "has no nbgrader exercise cells",
        ),
        (lambda tmp: tmp, "There are no notebooks in"),
        (lambda tmp: nbformat.write(new_notebook(), tmp / "scratch.ipynb") or tmp, "None of the 1 notebooks"),
    ],
    ids=["missing", "not-json", "json-not-notebook", "binary", "no-nbgrader-cells", "empty-folder", "only-scratch"],
)
def test_bad_paths_get_one_sentence_and_status_2(tmp_path, capsys, make, expected):
    status, out, err = run_cli(capsys, make(tmp_path))
    assert status == 2 and out == ""
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_broken_notebook_in_a_folder_is_reported_after_the_others(tmp_path, capsys):
    write_variant(tmp_path, "correct")
    (tmp_path / "broken.ipynb").write_text("{")
    status, out, err = run_cli(capsys, tmp_path, "--timeout", "30")
    assert status == 2
    assert "2 of 2 exercises done" in out
    assert (
        err.strip().splitlines()[-1].startswith(f"{tmp_path / 'broken.ipynb'} is not a notebook: it is not valid JSON")
    )


def test_help_and_bad_options(capsys):
    with pytest.raises(SystemExit) as done:
        main(["progress", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "a notebook, an assignment folder, or a folder of them" in text and "--timeout" in text
    with pytest.raises(SystemExit) as refused:
        main(["progress", "--jobs", "0"])
    assert refused.value.code == 2 and "expected a whole number of at least 1" in capsys.readouterr().err


def test_the_command_prints_a_table_with_a_total(tmp_path):
    path = write_variant(tmp_path, "untouched")
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "progress", str(path)],
        cwd=tmp_path,
        env=env_with_venv(PYTHONIOENCODING="utf-8"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["chapter", "exercise", "visible", "checks", "visible", "points", "graded", "later"]
    assert lines[2].split() == ["untouched", "first", "\u2718", "not", "started", "0", "of", "1", "2"]
    assert lines[3].split() == ["second", "\u2714", "done", "1", "of", "1", "0"]
    assert lines[5].split() == ["total", "1", "of", "2", "exercises", "done", "1", "of", "2", "2"]
    assert "Graded later: 2 of the 4 points come from hidden checks" in " ".join(result.stdout.split())
    assert f"notebook from {path.resolve()} with" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.xdist_group("progress_variants")
def test_points_earned_are_those_of_passing_visible_cells_and_hidden_points_are_graded_later(variants):
    found = {chapter: p for (chapter, name), p in variants[0].items() if name == "first"}
    assert (found["correct"].earned, found["correct"].visible_points, found["correct"].hidden_points) == (1, 1, 2)
    for failing in ("wrong", "untouched", "syntax", "loop"):
        assert found[failing].earned == 0, failing
    text = progress.table([found["correct"], found["wrong"]])
    row = next(line for line in text.splitlines() if line.startswith("wrong"))
    assert row.split()[-4:] == ["0", "of", "1", "2"]
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.split()[-4:] == ["1", "of", "2", "4"]


def test_without_a_path_outside_the_course_folder_it_says_where_it_looked(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "progress"],
        cwd=tmp_path,
        env=env_with_venv(PYTHONIOENCODING="utf-8"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"No path was given, and {tmp_path} has no exercises/ folder and no notebooks: "
        "give the notebook or the folder of notebooks to check, for example "
        "`python -m autograder progress path/to/exercises`."
    )


def test_without_a_path_it_runs_the_notebooks_of_the_working_folder(tmp_path):
    path = write_variant(tmp_path, "correct")
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "progress", "--timeout", "60"],
        cwd=path.parent,
        env=env_with_venv(PYTHONIOENCODING="utf-8"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"from {path.parent.resolve()} with" in result.stderr
    assert "2 of 2 exercises done" in result.stdout


def test_a_missing_package_points_to_doctor(tmp_path):
    (tmp_path / "nbclient").mkdir()
    (tmp_path / "nbclient" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'nbclient'\", name='nbclient')"
    )
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env_with_venv(PYTHONPATH=str(tmp_path)),
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "progress needs nbclient: run `python -m autograder doctor`."
