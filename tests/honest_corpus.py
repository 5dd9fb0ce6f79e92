"""The honest corpus: every file in tests/honest/ changes the reference notebook of the chapters it names
(tests/honest/README.md), as an honest student may hand in correct work that looks unusual to a grader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
from conftest import ROOT, grade_id
from submissions import Edit, apply_edits, read_edits

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


def honest_students(assignment: str) -> list[str]:
    """The variants that apply to ``assignment``: each is one student of its class, named after the variant."""
    return [variant for a, variant in SUBMISSIONS if a == assignment]


def honest_notebook(course: Path, assignment: str, variant: str) -> nbformat.NotebookNode:
    solutions = nbformat.read(course / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    exercises = [grade_id(c) for c in solutions.cells if c.metadata.get("nbgrader", {}).get("solution")]
    nb = solved_notebook(course, assignment)
    apply_variant(VARIANTS[variant], nb, exercises)
    return nb
