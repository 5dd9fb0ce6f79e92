"""Make the student notebooks (``exercises/``) from ``solutions/`` with nbgrader's own generate_assignment."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from nbgrader.apps import NbGraderAPI
from traitlets.config import Config

from . import conventions, nbconfig
from .config import course_root


def assignments(root: Path | None = None) -> list[str]:
    root = root or course_root()
    return sorted(p.name for p in (root / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())


def generate(names: list[str], release_dir: Path, root: Path | None = None) -> None:
    """Write the student version of each assignment under ``release_dir/<name>/``.

    Uses a throwaway gradebook, so that releasing never touches an instructor's grades.
    """
    root = root or course_root()
    _put_alembic_on_path()
    with tempfile.TemporaryDirectory() as scratch:
        config = nbconfig.configure(Config(), root)
        config.CourseDirectory.release_directory = str(Path(release_dir).resolve())
        config.CourseDirectory.db_url = f"sqlite:///{scratch}/gradebook.db"
        api = NbGraderAPI(config=config)
        for name in names:
            result = api.generate_assignment(name, force=True, create=True)
            if not result["success"]:
                raise RuntimeError(f"nbgrader could not generate {name}:\n{result.get('error') or result.get('log')}")


def generate_in_course(course: Path, assignment: str, env: dict | None = None) -> None:
    """Stock ``nbgrader generate_assignment``, run in the course folder ``course`` as an instructor runs it before
    grading: it writes exercises/<assignment>/ and records the assignment in the course's gradebook, which stock
    ``nbgrader autograde`` needs (used by the tests and benchmarks, on scratch copies of the course)."""
    generate_assignment = ["nbgrader", "generate_assignment", assignment, "--force"]
    subprocess.run(generate_assignment, cwd=course, env=env, check=True, capture_output=True)


def solved_notebook(course: Path, assignment: str, names: set[str] | None = None):
    """The notebook released in ``course`` (by ``generate_in_course``) with the named exercises, all of them by
    default, answered by the reference (``filled_notebook``)."""
    import nbformat

    solutions = nbformat.read(course / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    released = nbformat.read(course / "exercises" / assignment / f"{assignment}.ipynb", as_version=4)
    if names is None:
        names = {name for cell in solutions.cells if (name := conventions.solution_of(cell))}
    return filled_notebook(released, solutions, names)


def _put_alembic_on_path() -> None:
    """nbgrader runs ``alembic`` by name; make it the one installed beside this Python."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def filled_notebook(student_version, solutions, names: set[str]):
    """A copy of the student notebook with the named exercises' cells taken from the reference.

    What a student who solved exactly those exercises would hand in (used by the tests and benchmarks).
    """
    import nbformat

    answers = {
        name: conventions.without_markers(cell.source)
        for cell in solutions.cells
        if (name := conventions.solution_of(cell)) in names
    }
    notebook = nbformat.from_dict(nbformat.reads(nbformat.writes(student_version), as_version=4))
    for cell in notebook.cells:
        if conventions.grade_id(cell) in answers:
            cell.source = answers[conventions.grade_id(cell)]
    return notebook
