"""Submissions written as text notebooks of the student's code: the edits they make to a notebook.

The honest variants (tests/honest/) and the attacks (tests/attacks/) are MyST text notebooks: the
front matter says what the test expects, and each code cell holds the student's code with one
option that names the edit and, as its value, the cell it is made to (tests/honest/README.md).
An attack may also change a cell's metadata or remove it (tests/attacks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
from conftest import grade_id

from autograder import conventions

EDITS = ("replace", "before", "after", "prefix", "suffix", "docstring")  # what an honest student does
TAMPERING_EDITS = ("delete", "keep")  # what only an attack does: remove the cell, or change its metadata alone
METADATA = ("cell_type", "grade_id", "points", "nbgrader")  # what an attack may change beside an edit
EACH_EXERCISE, FIRST_EXERCISE, EACH_TEST, LAST_CELL = "each exercise", "first exercise", "each test", "last cell"


@dataclass
class Edit:
    kind: str  # one of EDITS or TAMPERING_EDITS
    target: str  # a grade id, or one of EACH_EXERCISE, FIRST_EXERCISE, EACH_TEST, LAST_CELL
    code: str  # the student's code, with {exercise}, {exercise!r}, {exercises} and {exercises!r} filled in
    metadata: dict = field(default_factory=dict)  # of METADATA: what the edited or new cell gets


def read_edits(path: Path, kinds=EDITS, metadata=()) -> tuple[dict, list[Edit]]:
    """(the front matter, one edit per code cell) of a MyST text notebook; each code cell has exactly one
    option of ``kinds`` and may have options of ``metadata``."""
    notebook = jupytext.read(path, fmt="md:myst")
    edits = []
    for number, cell in enumerate(c for c in notebook.cells if c.cell_type == "code"):
        found = [k for k in cell.metadata if k in kinds]
        if len(found) != 1 or set(cell.metadata) - set(kinds) - set(metadata):
            also = f" (and may have {', '.join(metadata)})" if metadata else ""
            raise ValueError(
                f"{path.name}: code cell {number + 1} has options {sorted(cell.metadata)}; "
                f"it needs exactly one of {', '.join(kinds)}{also}"
            )
        changes = {k: v for k, v in cell.metadata.items() if k in metadata}
        edits.append(Edit(found[0], str(cell.metadata[found[0]]), cell.source, changes))
    return dict(notebook.metadata), edits


def _filled(code: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        code = code.replace(placeholder, value)
    return code


def _targets(target: str, exercises: list[str]) -> list[tuple[str | None, str | None]]:
    """(the exercise the code is about, the grade id of the cell it goes to) for each cell a target names."""
    if target == EACH_EXERCISE:
        return [(name, name) for name in exercises]
    if target == FIRST_EXERCISE:
        return [(exercises[0], exercises[0])]
    if target == EACH_TEST:
        return [(name, conventions.test_id(name)) for name in exercises]
    if target == LAST_CELL:
        return [(None, None)]
    return [(target if target in exercises else None, target)]


def _change_metadata(cell, changes: dict) -> None:
    if "nbgrader" in changes:
        cell.metadata["nbgrader"] = changes["nbgrader"]
    for key in ("grade_id", "points"):
        if key in changes:
            cell.metadata["nbgrader"][key] = changes[key]
    if changes.get("cell_type") == "markdown":
        cell.cell_type = "markdown"
        cell.pop("outputs", None)
        cell.pop("execution_count", None)


def apply_edits(name: str, edits: list[Edit], nb, exercises: list[str], values: dict[str, str] | None = None) -> None:
    """Make the edits of the submission ``name`` to ``nb``, in order. ``exercises`` are the notebook's exercises
    in notebook order; ``values`` fills more placeholders of the code (``{"{port_file!r}": "'/x'"}``)."""
    for edit in edits:
        for exercise, gid in _targets(edit.target, exercises):
            code = _filled(
                edit.code,
                {
                    "{exercises!r}": repr(exercises),
                    "{exercises}": ", ".join(exercises),
                    "{exercise!r}": repr(exercise),
                    "{exercise}": str(exercise),
                    **(values or {}),
                },
            )
            if gid is None:
                if edit.kind != "after":
                    raise ValueError(f"{name}: only `after` goes to the {LAST_CELL}, not `{edit.kind}`")
                nb.cells.append(nbformat.v4.new_code_cell(code + "\n"))
                continue
            cell = next((c for c in nb.cells if grade_id(c) == gid), None)
            if cell is None:
                raise ValueError(f"{name}: the notebook has no cell {gid!r} to {edit.kind}")
            _change_metadata(_edited(edit.kind, nb, cell, code, name), edit.metadata)


def _edited(kind: str, nb, cell, code: str, name: str):
    """Make one edit to ``cell`` of ``nb``; the cell it leaves (a new one for `before` and `after`)."""
    index = nb.cells.index(cell)
    if kind in ("before", "after"):
        new = nbformat.v4.new_code_cell(code + "\n")
        nb.cells.insert(index + (kind == "after"), new)
        return new
    if kind == "replace":
        cell.source = code + "\n"
    elif kind == "prefix":
        cell.source = code + "\n" + cell.source
    elif kind == "suffix":
        cell.source = cell.source + "\n" + code + "\n"
    elif kind == "delete":
        nb.cells.remove(cell)
    elif kind == "docstring":
        if '"""' not in cell.source:
            raise ValueError(f"{name}: cell {grade_id(cell)!r} has no docstring to add to")
        cell.source = cell.source.replace('"""', '"""' + code + " ", 1)
    return cell
