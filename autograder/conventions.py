"""The notebook conventions of the course, owned here and nowhere else.

Every assignment notebook follows nbgrader's cell metadata (schema 3):

- an exercise's **solution cell** has ``solution: true`` and the exercise's name as ``grade_id``;
- its **test cells** are graded and locked: ``test_<name>`` runs the visible checks and
  ``test_<name>_hidden`` the hidden ones (removed from the student version);
- **set-up cells** are locked, not graded and not solutions (imports, lent components);
- the answer inside a solution cell stands between ``### BEGIN SOLUTION`` and ``### END SOLUTION``.

The authoring tools write these names with :func:`test_id`; grading, progress reports and
the class tools read them back with :func:`test_of` and :func:`solution_of`.

A cell may be a ``NotebookNode`` or a cell loaded as plain JSON. The three flags are read as
``nbgrader.utils`` reads them (``is_grade``, ``is_solution``, ``is_locked``: a solution cell is
never locked, a graded cell always is; ``tests/test_conventions.py`` holds them to nbgrader's on
every notebook of the course), but without importing nbgrader: the student kit does not ship it,
and importing it costs seconds in every kernel that loads the reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

VISIBLE, HIDDEN = "visible", "hidden"
LAYERS = (VISIBLE, HIDDEN)
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_PREFIX, _HIDDEN_SUFFIX = "test_", "_hidden"


def metadata(cell: Any) -> dict:
    """A cell's nbgrader metadata ({} for a cell nbgrader does not know)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_id(cell: Any) -> str | None:
    return metadata(cell).get("grade_id")


def source(cell: Any) -> str:
    """A cell's source as one string (plain JSON may hold it as a list of lines)."""
    text = cell.get("source", "")
    return text if isinstance(text, str) else "".join(text)


def _is_code(cell: Any) -> bool:
    return cell.get("cell_type") == "code"


def is_grade(cell: Any) -> bool:
    """Graded by nbgrader (a test cell, or an answer that is also graded): ``nbgrader.utils.is_grade``."""
    return bool(metadata(cell).get("grade", False))


def is_solution(cell: Any) -> bool:
    """An answer the student writes: ``nbgrader.utils.is_solution``."""
    return bool(metadata(cell).get("solution", False))


def is_locked(cell: Any) -> bool:
    """A cell nbgrader restores at grading: ``nbgrader.utils.is_locked`` (answers never, graded cells always)."""
    if is_solution(cell):
        return False
    return is_grade(cell) or bool(metadata(cell).get("locked", False))


def test_id(name: str, layer: str = VISIBLE) -> str:
    """The grade_id of exercise ``name``'s test cell of ``layer`` ("visible" or "hidden")."""
    if layer not in LAYERS:
        raise ValueError(f"a test layer is 'visible' or 'hidden', not {layer!r}")
    return _PREFIX + name + (_HIDDEN_SUFFIX if layer == HIDDEN else "")


def parse_test_id(grade_id: str, names: Iterable[str]) -> tuple[str, str] | None:
    """(exercise, layer) that ``grade_id`` names among the exercises ``names``, or None.

    Decoded exactly, never by prefix: ``test_EncoderLayer`` is EncoderLayer's, not Encoder's.
    """
    names = set(names)
    if not grade_id.startswith(_PREFIX):
        return None
    rest = grade_id.removeprefix(_PREFIX)
    if rest in names:
        return rest, VISIBLE
    if rest.endswith(_HIDDEN_SUFFIX) and rest.removesuffix(_HIDDEN_SUFFIX) in names:
        return rest.removesuffix(_HIDDEN_SUFFIX), HIDDEN
    return None


def is_test(cell: Any) -> bool:
    """A graded code cell of tests (not a graded answer)."""
    return _is_code(cell) and is_grade(cell) and not is_solution(cell)


def test_of(cell: Any, names: Iterable[str]) -> tuple[str, str] | None:
    """(exercise, layer) for a graded test cell of one of the exercises ``names``, else None."""
    if not is_test(cell):
        return None
    return parse_test_id(grade_id(cell) or "", names)


def solution_of(cell: Any) -> str | None:
    """The exercise a solution code cell answers (its grade_id), else None."""
    if not _is_code(cell) or not is_solution(cell):
        return None
    return grade_id(cell)


def is_setup(cell: Any) -> bool:
    """A locked code cell that is neither graded nor an answer: imports and lent components."""
    return _is_code(cell) and is_locked(cell) and not is_grade(cell)


def is_students(cell: Any) -> bool:
    """A code cell the student may have written or changed (not locked, not a test)."""
    return _is_code(cell) and not is_locked(cell)


def without_markers(source: str) -> str:
    """A solution cell's source without its BEGIN/END SOLUTION marker lines: the reference as a student would type it."""
    return "\n".join(line for line in source.splitlines() if line.strip() not in (BEGIN_SOLUTION, END_SOLUTION))


def solution_regions(source: str) -> list[str]:
    """The answers of a solution cell: the text between each BEGIN SOLUTION line and its END SOLUTION line."""
    regions, current = [], None
    for line in source.splitlines():
        if line.strip() == BEGIN_SOLUTION:
            current = []
        elif line.strip() == END_SOLUTION and current is not None:
            regions.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return regions
